from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, Field, StringConstraints

from mongars.api.schemas.common import Text
from mongars.core.chat.results import Citation, StoredMessage, TokenUsage, TurnResult
from mongars.core.chat.service import TurnRequest
from mongars.core.chat.speech import speech_turn

RagCollection = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("message must not be empty or only whitespace")
    # PostgreSQL text cannot hold NUL; refuse it on every engine and every route alike.
    if "\x00" in value:
        raise ValueError("message must not contain NUL characters")
    return value


class ChatRequest(BaseModel):
    # Kept exactly as typed (only checked for blankness); its size limit is a setting,
    # enforced by the service with a 413 naming the field.
    message: Annotated[Text, AfterValidator(_not_blank)] = Field(min_length=1)
    conversation_id: uuid.UUID | None = Field(
        default=None,
        validation_alias=AliasChoices("conversation_id", "session_id"),
        description="Continue this conversation; omit to start one. `session_id` is accepted "
        "as an alias for older clients.",
    )
    use_rag: bool = Field(
        default=False,
        description="Ground the answer in your documents (and shared ones); the passages used "
        "come back as `citations`.",
    )
    collections: list[RagCollection] | None = Field(
        default=None,
        max_length=20,
        description="Ground the answer in these collections only (implies `use_rag`).",
    )
    role: Literal["general", "coding", "reasoning"] | None = Field(
        default=None,
        description="The model role to answer with; by default `coding` for messages that "
        "look like code and `general` otherwise. `reasoning` is used only when asked for.",
    )

    def turn_request(self) -> TurnRequest:
        return TurnRequest(
            message=self.message,
            conversation_id=self.conversation_id,
            use_rag=self.use_rag,
            collections=tuple(self.collections) if self.collections else None,
            role=self.role,
        )


class SpeechSegmentOut(BaseModel):
    text: str
    estimated_duration: float
    pause_after: float


class SpeechTurnOut(BaseModel):
    turn_id: str
    text: str
    created_at: datetime
    segments: list[SpeechSegmentOut]
    average_words_per_second: float
    tempo: float


class ChatResponse(BaseModel):
    response: str
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="Mean token probability of the answer when the backend reports "
        "log-probabilities (confidence_source='logprobs'); 0.5, meaning unknown, otherwise.",
    )
    confidence_source: Literal["logprobs", "unavailable"]
    processing_time: float = Field(description="Seconds from receipt to the stored answer.")
    speech_turn: SpeechTurnOut
    conversation_id: uuid.UUID
    message_id: int
    user_message_id: int
    status: Literal["complete", "incomplete", "error"]
    finish_reason: str
    model: str | None
    usage: TokenUsage
    citations: list[Citation]

    @classmethod
    def from_result(cls, result: TurnResult) -> ChatResponse:
        message = result.message
        turn = speech_turn(
            str(message.id), message.content, message.completed_at or message.created_at
        )
        return cls(
            response=message.content,
            confidence=result.confidence,
            confidence_source=result.confidence_source,
            processing_time=result.processing_time,
            speech_turn=SpeechTurnOut.model_validate(turn, from_attributes=True),
            conversation_id=result.conversation_id,
            message_id=message.id,
            user_message_id=result.user_message_id,
            status=message.status,
            finish_reason=result.finish_reason,
            model=message.model,
            usage=result.usage,
            citations=result.citations,
        )


class CancelResponse(BaseModel):
    cancelled: list[str] = Field(description="Ids of the streams that were stopped.")


__all__ = ["CancelResponse", "ChatRequest", "ChatResponse", "StoredMessage"]
