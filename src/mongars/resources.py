"""Everything that holds state or a connection, built once per app in the lifespan.

Routes reach it through ``api.dependencies``; nothing here is a module-level singleton, so a
test can run several differently configured apps side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mongars.config import Settings
from mongars.core.accounts import AccountService
from mongars.core.api_keys import ApiKeyService
from mongars.core.authentication import Authenticator
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester
from mongars.core.security.passwords import PasswordHasher
from mongars.core.security.secret_key import derive_key, load_master_secret
from mongars.db.database import create_engine, create_session_factory


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    accounts: AccountService
    api_keys: ApiKeyService
    authenticator: Authenticator


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    master = load_master_secret(settings)
    access_tokens = AccessTokenCodec(
        derive_key(master, "jwt"), settings.auth.access_token_ttl_seconds
    )
    api_key_digester = OpaqueTokenDigester(derive_key(master, "api-key"))
    engine = create_engine(settings)
    try:
        yield Resources(
            settings=settings,
            engine=engine,
            sessions=create_session_factory(engine),
            accounts=AccountService(
                hasher=PasswordHasher(settings.auth),
                access_tokens=access_tokens,
                refresh_digester=OpaqueTokenDigester(derive_key(master, "refresh-token")),
                refresh_ttl_seconds=settings.auth.refresh_token_ttl_seconds,
            ),
            api_keys=ApiKeyService(api_key_digester),
            authenticator=Authenticator(access_tokens, api_key_digester),
        )
    finally:
        await engine.dispose()
