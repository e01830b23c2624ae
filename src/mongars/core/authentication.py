"""One authenticator for every credential type (access token or API key).

Each call re-reads the account: a disabled user, a bumped token version, a revoked session or a
deleted key fails on the very next request, whatever the credential's own expiry says.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.errors import AuthenticationFailed, PermissionDenied
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester, is_api_key
from mongars.db.base import utcnow
from mongars.db.repositories.api_keys import ApiKeyRepository
from mongars.db.repositories.sessions import SessionRepository
from mongars.db.tables import User

# Writing last_used_at on every request would turn each read into a write; a minute is plenty.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None


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
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise AuthenticationFailed("The API key has expired.", code="api_key_expired")
        _require_enabled(user)
        if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
            await ApiKeyRepository(db).touch(api_key.id, now)
        return Principal(user=user, api_key_id=api_key.id)


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
