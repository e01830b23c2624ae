from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from mongars.core.history import ConversationSummary, ConversationWithMessages, SearchHit
from mongars.db.tables import MessageRole, MessageStatus


def _one_line(title: str) -> str:
    # Runs of spaces, tabs and newlines become one space, as in the titles chat gives.
    title = " ".join(title.split())
    if any(unicodedata.category(char) == "Cc" for char in title):
        raise ValueError("must not contain control characters")
    return title


ConversationTitle = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
    Field(description="1 to 200 characters on one line, spaces around it removed; not blank."),
]
ExportFormat = Literal["markdown", "json"]


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: ConversationTitle


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime = Field(description="Last activity: the list's order.")


class ConversationSummaryOut(ConversationOut):
    message_count: int
    preview: str | None = Field(
        description="The start of the newest message (up to 160 characters); null if none."
    )

    @classmethod
    def from_summary(cls, summary: ConversationSummary) -> ConversationSummaryOut:
        return cls(
            **ConversationOut.model_validate(summary.conversation).model_dump(),
            message_count=summary.message_count,
            preview=summary.preview,
        )


class ConversationPage(BaseModel):
    """A page of conversations: ask again with ``offset + limit`` while it is below ``total``."""

    items: list[ConversationSummaryOut]
    total: int
    limit: int
    offset: int


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: MessageRole
    content: str
    status: MessageStatus
    reply_to_id: int | None = Field(description="For a reply: the question it answers.")
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime
    completed_at: datetime | None


class ConversationDetail(ConversationOut):
    messages: list[MessageOut] = Field(description="Every message, oldest first.")

    @classmethod
    def from_found(cls, found: ConversationWithMessages, **extra: Any) -> Self:
        return cls(
            **ConversationOut.model_validate(found.conversation).model_dump(),
            messages=[MessageOut.model_validate(message) for message in found.messages],
            **extra,
        )


class ConversationExport(ConversationDetail):
    exported_at: datetime


class SearchHitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    message_id: int
    conversation_id: uuid.UUID
    conversation_title: str
    role: MessageRole
    created_at: datetime
    snippet: str = Field(description="Plain text around the match (not HTML: escape it).")
    highlights: list[tuple[int, int]] = Field(
        description="[start, end) character offsets of the matched words in `snippet`."
    )
    rank: float = Field(description="Relevance, higher is better; compare within one answer.")

    @classmethod
    def from_hit(cls, hit: SearchHit) -> SearchHitOut:
        return cls.model_validate(hit)
