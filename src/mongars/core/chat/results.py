"""What a finished turn looks like to callers: the HTTP response, the stream's ``done`` event
and (later) the WebSocket frame are all built from ``TurnResult``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.engine import Row

from mongars.db.tables import Message


class StoredMessage(BaseModel):
    id: int
    conversation_id: uuid.UUID
    role: str
    content: str
    status: Literal["complete", "incomplete", "error"]
    model: str | None
    backend: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, message: Message | Row[Any]) -> StoredMessage:
        """From a ``Message`` or a row of its columns (``turns.STORED_COLUMNS``)."""
        return cls.model_validate(message, from_attributes=True)


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Citation(BaseModel):
    """A passage the answer was grounded in (filled in once documents can be attached)."""

    document_id: str
    chunk_id: str
    score: float
    snippet: str


class TurnResult(BaseModel):
    conversation_id: uuid.UUID
    user_message_id: int
    message: StoredMessage
    usage: TokenUsage
    confidence: float = Field(ge=0.0, le=1.0)
    confidence_source: Literal["logprobs", "unavailable"]
    finish_reason: str
    processing_time: float = Field(description="Seconds from receipt to the stored answer.")
    citations: list[Citation] = Field(default_factory=list)


class UnstoredAnswer(BaseModel):
    """The outcome of a turn the caller asked not to store (OpenAI-compatible ``store: false``)."""

    text: str
    model: str
    usage: TokenUsage
    finish_reason: str
    processing_time: float
    citations: list[Citation] = Field(default_factory=list)
