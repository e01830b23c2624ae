"""One authenticator for every credential type (access token or API key).

Each call re-reads the account: a disabled user, a bumped token version, a revoked session or a
deleted key fails on the very next request, whatever the credential's own expiry says. A
channel that outlives its request (a WebSocket) keeps a ``Grant`` instead of the credential and
re-checks it with ``Authenticator.recheck`` under the same rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.errors import AuthenticationFailed, PermissionDenied
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester, is_api_key
from mongars.db.base import utcnow
from mongars.db.repositories.api_keys import ApiKeyRepository
from mongars.db.repositories.sessions import SessionRepository
from mongars.db.repositories.users import UserRepository
from mongars.db.tables import User

# Writing last_used_at on every request would turn each read into a write; a minute is plenty.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """What was proven when a long-lived channel opened: the user at a token version, through a
    login session or an API key. Enough to ask again later whether it still holds."""

    user_id: uuid.UUID
    token_version: int
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> Grant:
        return cls(
            principal.user.id,
            principal.user.token_version,
            principal.session_id,
            principal.api_key_id,
        )


class CredentialsRevoked(AuthenticationFailed):
    """A grant no longer holds: logged out, password changed, account disabled or deleted,
    key deleted or expired. Which one is not said."""

    code = "credentials_revoked"
    default_detail = "The credential this connection was opened with is no longer valid."


class Authenticator:
    def __init__(
        self, access_tokens: AccessTokenCodec, api_key_digester: OpaqueTokenDigester
    ) -> None:
        self.access_tokens = access_tokens
        self.api_key_digester = api_key_digester

    async def authenticate(self, db: AsyncSession, credential: str | None) -> Principal:
        if not credential:
            raise AuthenticationFailed("Authentication is required.", code="not_authenticated")
        if is_api_key(credential):
            return await self._from_api_key(db, credential)
        return await self._from_access_token(db, credential)

    async def recheck(self, db: AsyncSession, grant: Grant) -> Principal:
        """The grant's principal, re-read now; ``CredentialsRevoked`` if it no longer holds."""
        user: User | None
        if grant.session_id is not None:
            found = await SessionRepository(db).user_with_session(grant.user_id, grant.session_id)
            user = None if found is None or found[1].revoked_at is not None else found[0]
        elif grant.api_key_id is not None:
            owned = await ApiKeyRepository(db).get_with_owner(grant.api_key_id)
            expired = owned is not None and _expired(owned[0].expires_at, utcnow())
            user = None if owned is None or expired else owned[1]
        else:
            user = await UserRepository(db).get(grant.user_id)
        if (
            user is None
            or user.id != grant.user_id
            or user.is_disabled
            or user.token_version != grant.token_version
        ):
            raise CredentialsRevoked()
        return Principal(user=user, session_id=grant.session_id, api_key_id=grant.api_key_id)

    async def _from_access_token(self, db: AsyncSession, token: str) -> Principal:
        claims = self.access_tokens.decode(token)
        found = await SessionRepository(db).user_with_session(claims.user_id, claims.session_id)
        revoked = AuthenticationFailed("The access token has been revoked.", code="token_revoked")
        if found is None:
            raise revoked
        user, auth_session = found
        _require_enabled(user)
        if auth_session.revoked_at is not None or user.token_version != claims.token_version:
            raise revoked
        return Principal(user=user, session_id=auth_session.id)

    async def _from_api_key(self, db: AsyncSession, key: str) -> Principal:
        found = await ApiKeyRepository(db).find_with_owner(self.api_key_digester.digest(key))
        if found is None or not self.api_key_digester.matches(key, found[0].key_hash):
            raise AuthenticationFailed("The API key is invalid.", code="invalid_api_key")
        api_key, user = found
        now = utcnow()
        if _expired(api_key.expires_at, now):
            raise AuthenticationFailed("The API key has expired.", code="api_key_expired")
        _require_enabled(user)
        if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
            await ApiKeyRepository(db).touch(api_key.id, now)
        return Principal(user=user, api_key_id=api_key.id)


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def _require_enabled(user: User) -> None:
    if user.is_disabled:
        raise AuthenticationFailed("This account is disabled.", code="account_disabled")


def require_login_session(principal: Principal) -> Principal:
    """Refuse API keys: what only a person at a login may do (mint a key: a leaked key must
    not be able to outlive its own revocation, or its expiry, through keys it made)."""
    if principal.session_id is None:
        raise PermissionDenied(
            "This needs a login session; an API key cannot do it.", code="login_session_required"
        )
    return principal


def require_admin(principal: Principal) -> Principal:
    if not principal.user.is_admin:
        raise PermissionDenied("This needs an administrator account.", code="admin_required")
    return principal
