"""Frames of the WebSocket protocol. Every frame is ``{"id", "type", "ts", "data"}``."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field, model_validator


class ClientFrame(BaseModel):
    id: str | None = Field(default=None, max_length=64, description="Echoed in the ack.")
    type: str = Field(min_length=1, max_length=32)
    ts: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class CancelData(BaseModel):
    conversation_id: uuid.UUID | None = None
    stream_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_target(self) -> CancelData:
        if self.conversation_id is None and self.stream_id is None:
            raise ValueError("give conversation_id or stream_id")
        return self


class ResumeData(BaseModel):
    stream_id: str = Field(min_length=1, max_length=64)
    after_seq: int = Field(default=0, ge=0)


class TicketResponse(BaseModel):
    ticket: str = Field(description="Connect to /ws/chat/?t=TICKET within `ttl` seconds, once.")
    ttl: int
