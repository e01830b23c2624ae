from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, cast

from pydantic import BaseModel, Field

from mongars.core.history import Turn

TurnStatus = Literal["complete", "incomplete", "error", "pending"]


class HistoryItem(BaseModel):
    """One turn: a question and the reply to it. The charter's four fields come first."""

    user_id: uuid.UUID
    query: str = Field(description="The question, as typed.")
    response: str = Field(
        description="The reply; partial when `status` is incomplete, empty when pending or error."
    )
    timestamp: datetime = Field(description="When the question was asked.")
    id: int = Field(description="The question's message id; pass it as `before` to page on.")
    conversation_id: uuid.UUID
    response_id: int | None = Field(description="The reply's message id; null while pending.")
    status: TurnStatus = Field(
        description="The reply's status, or `pending` when there is no reply (yet)."
    )
    model: str | None = Field(description="The model that answered.")

    @classmethod
    def from_turn(cls, turn: Turn) -> HistoryItem:
        question, reply = turn.question, turn.reply
        return cls(
            user_id=question.user_id,
            query=question.content,
            response=reply.content if reply else "",
            timestamp=question.created_at,
            id=question.id,
            conversation_id=question.conversation_id,
            response_id=reply.id if reply else None,
            status=cast(TurnStatus, reply.status) if reply else "pending",
            model=reply.model if reply else None,
        )
