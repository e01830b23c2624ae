"""Everything that holds state or a connection, built once per app in the lifespan.

Routes reach it through ``api.dependencies``; nothing here is a module-level singleton, so a
test can run several differently configured apps side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mongars.config import Settings
from mongars.core.accounts import AccountService
from mongars.core.api_keys import ApiKeyService
from mongars.core.authentication import Authenticator
from mongars.core.chat.service import ChatService
from mongars.core.history import HistoryService
from mongars.core.model_roles import ModelRoles
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester
from mongars.core.security.passwords import PasswordHasher
from mongars.core.security.secret_key import derive_key, load_master_secret
from mongars.core.streams import StreamHub
from mongars.db.database import create_engine, create_session_factory
from mongars.redis_client import open_redis


@dataclass(frozen=True, slots=True)
class AccountServices:
    accounts: AccountService
    api_keys: ApiKeyService
    authenticator: Authenticator


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
    streams: StreamHub
    chat: ChatService
    history: HistoryService


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_resources(
    settings: Settings, *, roles: ModelRoles | None = None
) -> AsyncIterator[Resources]:
    """``roles`` replaces the backends the settings describe (embedding, tests, benchmarks);
    whoever passes them in keeps ownership and closes them."""
    account_services = build_account_services(settings)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    owns_roles = roles is None
    roles = roles or ModelRoles.from_settings(settings.llm)
    try:
        # Load and warm the models before the first request, never during one.
        await roles.warm_up()
        async with open_redis(settings) as redis, anyio.create_task_group() as generations:
            streams = StreamHub(
                generations,
                buffer_events=settings.chat.stream_buffer_events,
                retention_seconds=settings.chat.stream_retention_seconds,
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
                streams=streams,
                chat=ChatService(
                    sessions=sessions, roles=roles, streams=streams, settings=settings.chat
                ),
                history=HistoryService(),
            )
            # Shutting down: generations still running are cancelled and store what they
            # have as incomplete answers.
            generations.cancel_scope.cancel()
    finally:
        if owns_roles:
            await roles.aclose()
        await engine.dispose()
