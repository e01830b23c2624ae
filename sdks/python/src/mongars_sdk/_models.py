"""Typed responses, mirroring the schemas in the server's ``openapi.json``.

Every model ignores fields it does not know, so an older SDK keeps working when a newer server
adds one; ``tests/sdk/test_models_match_openapi.py`` checks these against the committed schema.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- auth, users, keys -----------------------------------------------------------------------


class TokenResponse(Model):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class User(Model):
    id: uuid.UUID
    username: str
    is_admin: bool
    is_disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserPage(Model):
    items: list[User]
    total: int
    limit: int
    offset: int


class ApiKey(Model):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The secret; shown this once.")


class Ticket(Model):
    ticket: str
    ttl: int


# -- chat ------------------------------------------------------------------------------------


class SpeechSegment(Model):
    text: str
    estimated_duration: float
    pause_after: float


class SpeechTurn(Model):
    turn_id: str
    text: str
    created_at: datetime
    segments: list[SpeechSegment]
    average_words_per_second: float
    tempo: float


class TokenUsage(Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Citation(Model):
    document_id: str
    chunk_id: str
    score: float
    snippet: str


class ChatResponse(Model):
    response: str
    confidence: float
    confidence_source: Literal["logprobs", "unavailable"]
    processing_time: float
    speech_turn: SpeechTurn
    conversation_id: uuid.UUID
    message_id: int
    user_message_id: int
    status: Literal["complete", "incomplete", "error"]
    finish_reason: str
    model: str | None
    usage: TokenUsage
    citations: list[Citation]


class StoredMessage(Model):
    id: int
    conversation_id: uuid.UUID
    role: str
    content: str
    status: Literal["complete", "incomplete", "error"]
    model: str | None
    created_at: datetime
    completed_at: datetime | None


class TurnResult(Model):
    """A streamed turn's ``done`` event: the stored answer."""

    conversation_id: uuid.UUID
    user_message_id: int
    message: StoredMessage
    usage: TokenUsage
    confidence: float
    confidence_source: Literal["logprobs", "unavailable"]
    finish_reason: str
    processing_time: float
    citations: list[Citation] = []


class CancelResponse(Model):
    cancelled: list[str]


class StreamEvent(Model):
    """One Server-Sent Event of a generation: ``start``, ``delta`` (``text``), then ``done``
    (the stored answer, see ``result``) or ``error`` (``code``, ``detail``)."""

    stream_id: str
    seq: int
    type: str
    data: dict[str, Any]

    @property
    def text(self) -> str:
        """A ``delta``'s text ("" for other events)."""
        return str(self.data.get("text", "")) if self.type == "delta" else ""

    def result(self) -> TurnResult:
        """The stored answer carried by a ``done`` event."""
        if self.type != "done":
            raise ValueError(f"a {self.type!r} event carries no result")
        return TurnResult.model_validate(self.data)


# -- history and conversations ---------------------------------------------------------------


class HistoryItem(Model):
    user_id: uuid.UUID
    query: str
    response: str
    timestamp: datetime
    id: int
    conversation_id: uuid.UUID
    response_id: int | None
    status: Literal["complete", "incomplete", "error", "pending"]
    model: str | None


class HistoryPage(Model):
    items: list[HistoryItem]
    next_url: str | None = Field(description="The `Link: rel=next` target; None on the last page.")


class Conversation(Model):
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationSummary(Conversation):
    message_count: int
    preview: str | None


class ConversationPage(Model):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int


class Message(Model):
    id: int
    role: str
    content: str
    status: str
    reply_to_id: int | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime
    completed_at: datetime | None


class ConversationDetail(Conversation):
    messages: list[Message]


class ConversationExport(ConversationDetail):
    exported_at: datetime


class SearchHit(Model):
    message_id: int
    conversation_id: uuid.UUID
    conversation_title: str
    role: str
    created_at: datetime
    snippet: str
    highlights: list[tuple[int, int]]
    rank: float


# -- RAG -------------------------------------------------------------------------------------


class Document(Model):
    id: uuid.UUID
    collection: str
    path: str
    title: str
    content_hash: str
    mime: str
    size_bytes: int
    status: str
    chunk_count: int
    shared: bool
    created_at: datetime
    updated_at: datetime


class IngestResponse(Model):
    document: Document
    deduplicated: bool
    replaced: bool


class IngestJob(Model):
    job_id: str
    status: Literal["running", "done", "failed"]
    filename: str
    collection: str
    chunks_embedded: int
    chunks_total: int
    document_id: uuid.UUID | None
    replaced: bool
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class DocumentSearchResult(Model):
    chunk_id: int
    document_id: uuid.UUID
    collection: str
    path: str
    title: str
    ordinal: int
    text: str
    score: float
    similarity: float | None


class DocumentSearchResponse(Model):
    results: list[DocumentSearchResult]


class RagReference(Model):
    repository: str
    file_path: str
    summary: str
    score: float
    url: str | None


class RagContext(Model):
    enabled: bool
    focus_areas: list[str]
    references: list[RagReference]


# -- models, usage, health -------------------------------------------------------------------


class RoleParameters(Model):
    temperature: float
    top_p: float
    max_tokens: int


class RoleAvailability(Model):
    reachable: bool
    model_present: bool | None
    detail: str
    circuit: str | None


class Role(Model):
    role: str
    backend: str
    model: str
    parameters: RoleParameters
    availability: RoleAvailability


class Profile(Model):
    name: str
    description: str


class ModelsResponse(Model):
    active_profile: str
    profiles: list[Profile]
    roles: list[Role]


class RoleProvision(Model):
    role: str
    backend: str
    model: str | None
    status: Literal["running", "completed", "failed"]
    phase: str
    completed_bytes: int
    total_bytes: int | None
    detail: str | None
    error: str | None
    joined: bool
    started_at: datetime | None
    finished_at: datetime | None


class ProvisionJob(Model):
    """Background provisioning (pulling models): poll ``get_provision_job`` until ``status``
    is ``completed`` or ``failed``."""

    id: str
    profile: str
    force: bool
    status: Literal["running", "completed", "failed"]
    created_at: datetime
    roles: list[RoleProvision]


class Allowance(Model):
    used: int
    limit: int | None
    remaining: int | None


class Usage(Model):
    day: date
    resets_at: datetime
    messages: Allowance
    tokens: Allowance


class QuotaOverrides(Model):
    daily_messages: int | None = None
    daily_tokens: int | None = None


class UserUsage(Model):
    username: str
    overrides: QuotaOverrides
    usage: Usage


class Liveness(Model):
    status: str = "ok"
    version: str


class CheckResult(Model):
    ok: bool
    detail: str


class Readiness(Model):
    status: Literal["ready", "not_ready"]
    checks: dict[str, CheckResult]


# -- WebSocket -------------------------------------------------------------------------------


class WsFrame(Model):
    """A server frame: ``ws.connected``, ``history.snapshot``, ``ack``, ``chat.delta``,
    ``chat.done``, ``chat.error``, ``chat.message``, ``error`` (pings are answered for you)."""

    id: str | None = None
    type: str
    ts: str | None = None
    data: dict[str, Any] = {}

    @property
    def stream_id(self) -> str | None:
        value = self.data.get("stream_id")
        return str(value) if value is not None else None

    @property
    def seq(self) -> int | None:
        value = self.data.get("seq")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.data.get("text", "")) if self.type == "chat.delta" else ""
