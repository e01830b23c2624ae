"""Everything that holds state or a connection, built once per app in the lifespan.

Routes reach it through ``api.dependencies``; nothing here is a module-level singleton, so a
test can run several differently configured apps side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mongars.config import Settings
from mongars.core.accounts import AccountService
from mongars.core.api_keys import ApiKeyService
from mongars.core.authentication import Authenticator
from mongars.core.chat.service import ChatService, TurnFinished, TurnListener
from mongars.core.events import EventBus
from mongars.core.history import HistoryService
from mongars.core.model_admin import apply_persisted_roles
from mongars.core.model_profiles import ModelProfiles, load_profiles
from mongars.core.model_provisioning import ModelProvisioner, announce_to_admins
from mongars.core.model_roles import ModelRoles
from mongars.core.quotas import QuotaService
from mongars.core.rag.embedder import Embedder, TextEmbedder
from mongars.core.rag.jobs import IngestJobs
from mongars.core.rag.service import RagService
from mongars.core.ratelimit import LoginThrottle, RateLimiter, build_limiter
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester
from mongars.core.security.passwords import PasswordHasher
from mongars.core.security.secret_key import derive_key, load_master_secret
from mongars.core.stream_mirror import RedisStreamMirror
from mongars.core.streams import StreamHub
from mongars.core.tickets import MemoryReplayStore, RedisReplayStore, TicketService
from mongars.core.ws_connections import ConnectionRegistry
from mongars.db.database import create_engine, create_session_factory, sqlite_database_path
from mongars.db.sqlite_checkpoints import run_checkpoints
from mongars.observability import tracing
from mongars.observability.metrics import Metrics
from mongars.redis_client import key, open_redis


@dataclass(frozen=True, slots=True)
class AccountServices:
    accounts: AccountService
    api_keys: ApiKeyService
    authenticator: Authenticator
    ticket_key: bytes
    # Hashes who was rate-limited, in logs and Redis keys.
    subject_key: bytes


def build_account_services(settings: Settings) -> AccountServices:
    master = load_master_secret(settings)
    access_tokens = AccessTokenCodec(
        derive_key(master, "jwt"), settings.auth.access_token_ttl_seconds
    )
    api_key_digester = OpaqueTokenDigester(derive_key(master, "api-key"))
    return AccountServices(
        accounts=AccountService(
            hasher=PasswordHasher(settings.auth),
            access_tokens=access_tokens,
            refresh_digester=OpaqueTokenDigester(derive_key(master, "refresh-token")),
            refresh_ttl_seconds=settings.auth.refresh_token_ttl_seconds,
        ),
        api_keys=ApiKeyService(api_key_digester),
        authenticator=Authenticator(access_tokens, api_key_digester),
        ticket_key=derive_key(master, "ws-ticket"),
        subject_key=derive_key(master, "rate-limit-subject"),
    )


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # None without MONGARS_REDIS_URL: per-process state then lives in memory.
    redis: Redis | None
    accounts: AccountService
    api_keys: ApiKeyService
    authenticator: Authenticator
    roles: ModelRoles
    # The model profiles and the active one; ``profiles.llm`` is the LLM settings in effect.
    profiles: ModelProfiles
    # Background model pulls and checks (POST /api/v1/models/provision).
    provisioning: ModelProvisioner
    streams: StreamHub
    chat: ChatService
    bus: EventBus
    tickets: TicketService
    connections: ConnectionRegistry
    history: HistoryService
    limiter: RateLimiter
    login_throttle: LoginThrottle
    quotas: QuotaService
    # None when MONGARS_RAG__ENABLED=false: the RAG routes then answer 503.
    rag: RagService | None
    # Background ingests of large documents (None with RAG off).
    rag_jobs: IngestJobs | None
    # The app's PROMETHEUS_REGISTRY and every metric on it (GET /metrics).
    metrics: Metrics


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    roles: ModelRoles | None = None,
    embedder: TextEmbedder | None = None,
) -> AsyncIterator[Resources]:
    """``roles`` replaces the backends the settings describe (embedding, tests, benchmarks);
    whoever passes them in keeps ownership and closes them."""
    account_services = build_account_services(settings)
    # A bad profiles file or an unknown profile stops the start, naming what is wrong.
    profiles = load_profiles(settings.llm)
    engine = create_engine(settings, background_checkpoints=True)
    tracing.instrument_engine(engine)
    sessions = create_session_factory(engine)
    owns_roles = roles is None
    roles = roles or ModelRoles.from_settings(profiles.llm)
    try:
        # An administrator's run-time choices (PUT /api/v1/models/roles/{role}) outlive restarts.
        await apply_persisted_roles(roles, profiles.llm, sessions)
        # Load and warm the models before the first request, never during one.
        await roles.warm_up()
        # One embedding model per process (``embedder`` shares one, e.g. across test apps).
        if embedder is None and settings.rag.enabled:
            threads = settings.rag.embedder_threads
            embedder = await anyio.to_thread.run_sync(lambda: Embedder(threads=threads))
        rag = RagService(embedder, settings.rag) if embedder is not None else None
        async with open_redis(settings) as redis, anyio.create_task_group() as generations:
            bus = EventBus(redis, settings.redis_key_prefix)
            generations.start_soon(bus.run, name="event bus")
            if (database := sqlite_database_path(engine)) is not None:
                generations.start_soon(run_checkpoints, database, name="sqlite checkpoints")
            streams = StreamHub(
                generations,
                buffer_events=settings.chat.stream_buffer_events,
                retention_seconds=settings.chat.stream_retention_seconds,
                bus=bus,
                mirror=_stream_mirror(settings, redis),
            )
            chat = ChatService(engine=engine, roles=roles, streams=streams, settings=settings.chat)
            chat.rag = rag
            connections = ConnectionRegistry(
                queue_size=settings.ws_connection_queue_size,
                burst=settings.ws_rate_limit_burst,
                refill_per_second=settings.ws_rate_limit_per_second,
            )
            bus.on_user_event(connections.deliver_user_event)
            chat.listeners.append(_announce_to_sockets(bus))
            limiter = build_limiter(settings, redis, account_services.subject_key)
            quotas = QuotaService(settings.quota, limiter.rejects)
            chat.accounting = quotas.count_turn
            chat.admission = quotas.check_turn
            metrics = Metrics()
            metrics.watch(roles=roles, connections=connections, rejects=limiter.rejects)
            chat.listeners.append(metrics.record_turn)
            provisioning = ModelProvisioner(generations, profiles.llm, sessions)
            provisioning.listeners.append(announce_to_admins(bus, sessions))
            replay = (
                RedisReplayStore(redis, key(settings, "ws-ticket"))
                if redis is not None
                else MemoryReplayStore()
            )
            yield Resources(
                settings=settings,
                engine=engine,
                sessions=sessions,
                redis=redis,
                accounts=account_services.accounts,
                api_keys=account_services.api_keys,
                authenticator=account_services.authenticator,
                roles=roles,
                profiles=profiles,
                provisioning=provisioning,
                streams=streams,
                chat=chat,
                bus=bus,
                tickets=TicketService(
                    account_services.ticket_key,
                    settings.ws_ticket_ttl_seconds,
                    replay,
                    account_services.authenticator,
                ),
                connections=connections,
                history=HistoryService(),
                limiter=limiter,
                login_throttle=LoginThrottle(limiter),
                quotas=quotas,
                rag=rag,
                rag_jobs=IngestJobs(generations, sessions, rag) if rag is not None else None,
                metrics=metrics,
            )
            # Shutting down: generations still running are cancelled and store what they
            # have as incomplete answers.
            generations.cancel_scope.cancel()
    finally:
        if owns_roles:
            await roles.aclose()
        await engine.dispose()


def _stream_mirror(settings: Settings, redis: Redis | None) -> RedisStreamMirror | None:
    if redis is None:
        return None
    return RedisStreamMirror(
        redis,
        key_prefix=settings.redis_key_prefix,
        buffer_events=settings.chat.stream_buffer_events,
        retention_seconds=settings.chat.stream_retention_seconds,
    )


def _announce_to_sockets(bus: EventBus) -> TurnListener:
    """Every finished turn reaches the user's sockets on every replica as ``chat.message``."""

    async def announce(finished: TurnFinished) -> None:
        if finished.message is None:
            return  # not stored: nothing the user's other sockets could show
        await bus.publish_user_event(
            finished.user_id,
            "chat.message",
            {
                "stream_id": finished.stream_id,
                "conversation_id": str(finished.conversation_id),
                "user_message_id": finished.user_message_id,
                "message": finished.message.model_dump(mode="json"),
            },
        )

    return announce
