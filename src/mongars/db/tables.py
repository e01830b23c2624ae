"""Every table monGARS stores. Migrations in ``migrations/versions`` must agree with these
(a test compares them on SQLite and PostgreSQL)."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from mongars.db.base import Base, new_id, utcnow


class MessageRole(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(enum.StrEnum):
    COMPLETE = "complete"
    # Generation stopped early: cancelled, the backend died mid-answer, or the process crashed.
    INCOMPLETE = "incomplete"
    # No answer at all: the backend failed before its first token.
    ERROR = "error"


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # Stored lower-cased: usernames are case-insensitive, so "Alice" and "alice" are one account.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_disabled: Mapped[bool] = mapped_column(default=False)
    # Bumped on password change: every access token carries the version it was issued under.
    token_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]


class AuthSession(Base):
    """One login: the family of refresh tokens that descend from it, revoked together."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    # HMAC-SHA256 of the token, hex. The token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when the token is exchanged. Presenting it again means it leaked: the session dies.
    used_at: Mapped[datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the key, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_id_updated_at", "user_id", "updated_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Last activity: the list shows the most recently used conversations first.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# BIGINT on PostgreSQL; on SQLite it must be INTEGER to alias the rowid (autoincrement, and the
# key FTS5's external-content table joins on).
MessageId = BigInteger().with_variant(Integer(), "sqlite")


class Message(Base):
    """One message as typed (user) or as generated (assistant).

    An assistant message is inserted as ``incomplete`` before generation starts and completed
    in place, so a crash mid-answer leaves a consistent row that says so.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_user_id_id", "user_id", "id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # Denormalised from the conversation: history and search filter on it without a join.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.COMPLETE)
    # The user message an assistant message answers.
    reply_to_id: Mapped[int | None] = mapped_column(
        MessageId, ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    backend: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[int | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class UserQuota(Base):
    """An administrator's override of one user's daily allowances (null: the default; 0:
    unlimited)."""

    __tablename__ = "user_quotas"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    daily_messages: Mapped[int | None]
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DailyUsage(Base):
    """What one user used on one UTC day, counted as each turn finishes."""

    __tablename__ = "daily_usage"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    messages: Mapped[int] = mapped_column(default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class DocumentStatus(enum.StrEnum):
    READY = "ready"


class Document(Base):
    """An ingested file. Private to its owner, unless an administrator shared it: shared
    documents are readable by everyone (their collection is a "shared collection")."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_owner_id_collection", "owner_id", "collection"),
        Index("ix_documents_owner_id_content_hash", "owner_id", "content_hash"),
        Index("ix_documents_shared", "shared"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    collection: Mapped[str] = mapped_column(String(100))
    # The file's name or path as given at ingest; re-ingesting the same path replaces it.
    path: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(300))
    # sha256 of the uploaded bytes: the same content is stored once per owner and collection.
    content_hash: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.READY)
    chunk_count: Mapped[int] = mapped_column(default=0)
    shared: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Chunk(Base):
    """A passage of a document and its embedding (float32, little-endian, as raw bytes).

    On PostgreSQL with the ``vector`` extension, migration 0004 adds an ``embedding_vec``
    column with an HNSW index beside it (unmodelled: the models stay engine-neutral)."""

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_document_id_ordinal", "document_id", "ordinal"),)

    # INTEGER on SQLite so that it aliases the rowid FTS5 joins on (see MessageId).
    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int]
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class ModelRoleChoice(Base):
    """An administrator's run-time choice of one role's model, re-applied at startup over the
    settings (null fields: the settings' value)."""

    __tablename__ = "model_roles"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    backend: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(256))
    base_url: Mapped[str | None] = mapped_column(String(2048))
    temperature: Mapped[float | None] = mapped_column(Float)
    max_tokens: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProvisioningJob(Base):
    """One request to provision roles' models (``POST /api/v1/models/provision`` or ``mongars
    models provision``). Its roles point at the tasks doing the work: a task is shared by the
    roles on one model and by later jobs that joined it while it ran."""

    __tablename__ = "provisioning_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    profile: Mapped[str] = mapped_column(String(64))
    force: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProvisioningTask(Base):
    """One pull or check of one target, as last written by the replica running it.

    That replica writes on each phase change and at the end, progress at most once a second,
    and touches ``updated_at`` while the task runs even without progress: a running row that
    goes quiet belongs to a replica that stopped."""

    __tablename__ = "provisioning_tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    backend: Mapped[str] = mapped_column(String(16))
    # Text: model names and phases come from settings and model servers, unbounded.
    model: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(Text)
    completed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # Which replica runs it (host:pid), named when it stops without finishing.
    replica: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProvisioningJobRole(Base):
    """A role of a job, and the task provisioning it."""

    __tablename__ = "provisioning_job_roles"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provisioning_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The order the roles were asked in, which is the order the job reports them.
    position: Mapped[int]
    # No cascade: a task is deleted only once no job points at it.
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("provisioning_tasks.id"), index=True)
    # True when the task was already running for an earlier job.
    joined: Mapped[bool] = mapped_column(default=False)
