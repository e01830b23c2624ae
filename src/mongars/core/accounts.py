"""Account rules: registration, login, sessions with rotating refresh tokens, passwords, admin.

Services never commit: the request's unit of work (``api.dependencies.get_db_session``) commits
once the route succeeds and rolls back otherwise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from mongars.core.security.access_tokens import AccessTokenCodec
from mongars.core.security.opaque_tokens import OpaqueTokenDigester, new_refresh_token
from mongars.core.security.passwords import PasswordHasher
from mongars.db.base import utcnow
from mongars.db.repositories.sessions import SessionRepository
from mongars.db.repositories.users import UserRepository
from mongars.db.tables import AuthSession, RefreshToken, User

INVALID_CREDENTIALS = "Incorrect username or password."


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class AccountService:
    def __init__(
        self,
        *,
        hasher: PasswordHasher,
        access_tokens: AccessTokenCodec,
        refresh_digester: OpaqueTokenDigester,
        refresh_ttl_seconds: int,
    ) -> None:
        self.hasher = hasher
        self.access_tokens = access_tokens
        self.refresh_digester = refresh_digester
        self.refresh_ttl_seconds = refresh_ttl_seconds

    # -- accounts ---------------------------------------------------------------------------

    async def create_user(
        self, db: AsyncSession, *, username: str, password: str, is_admin: bool = False
    ) -> User:
        users = UserRepository(db)
        if await users.exists(username):
            raise Conflict(f"The username {username!r} is taken.", code="username_taken")
        user = User(
            username=username, password_hash=await self.hasher.hash(password), is_admin=is_admin
        )
        try:
            async with db.begin_nested():
                return await users.add(user)
        except IntegrityError:
            # Two registrations of one name raced past the check above; the index decided.
            raise Conflict(f"The username {username!r} is taken.", code="username_taken") from None

    async def authenticate(self, db: AsyncSession, *, username: str, password: str) -> User:
        user = await UserRepository(db).get_by_username(username.strip().lower())
        # Always verify, against a dummy hash for unknown users: same time, same answer.
        valid = await self.hasher.verify(user.password_hash if user else None, password)
        if user is None or not valid:
            raise AuthenticationFailed(INVALID_CREDENTIALS, code="invalid_credentials")
        if user.is_disabled:
            # Only said once the password has been proven, so it reveals nothing to a guesser.
            raise AuthenticationFailed("This account is disabled.", code="account_disabled")
        if self.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.hasher.hash(password)
        user.last_login_at = utcnow()
        return user

    async def change_password(
        self, db: AsyncSession, user: User, *, current_password: str, new_password: str
    ) -> TokenPair:
        if not await self.hasher.verify(user.password_hash, current_password):
            raise InvalidInput("The current password is incorrect.", code="wrong_password")
        user.password_hash = await self.hasher.hash(new_password)
        await self._invalidate_tokens(db, user)
        return await self.start_session(db, user)

    async def set_password(self, db: AsyncSession, *, username: str, password: str) -> User:
        user = await self.get_user(db, username)
        user.password_hash = await self.hasher.hash(password)
        await self._invalidate_tokens(db, user)
        return user

    async def _invalidate_tokens(self, db: AsyncSession, user: User) -> None:
        # The version bump kills every access token at once; revoking sessions kills refreshes.
        user.token_version += 1
        await SessionRepository(db).revoke_all(user.id, utcnow())
        await db.flush()

    # -- sessions ---------------------------------------------------------------------------

    async def start_session(self, db: AsyncSession, user: User) -> TokenPair:
        now = utcnow()
        auth_session = AuthSession(
            id=uuid.uuid4(),
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(seconds=self.refresh_ttl_seconds),
        )
        refresh = new_refresh_token()
        await SessionRepository(db).add(
            auth_session,
            RefreshToken(
                session_id=auth_session.id, token_hash=self.refresh_digester.digest(refresh)
            ),
        )
        return self._pair(user, auth_session, refresh)

    async def refresh(self, db: AsyncSession, refresh_token: str) -> TokenPair:
        sessions = SessionRepository(db)
        found = await sessions.find_refresh_token(self.refresh_digester.digest(refresh_token))
        invalid = AuthenticationFailed(
            "The refresh token is invalid or expired.", code="invalid_refresh_token"
        )
        if found is None:
            raise invalid
        token, auth_session, user = found
        now = utcnow()
        if auth_session.revoked_at is not None or auth_session.expires_at <= now:
            raise invalid
        if user.is_disabled:
            raise AuthenticationFailed("This account is disabled.", code="account_disabled")
        if token.used_at is not None or not await sessions.mark_used(token, now):
            # A rotated token came back: it was copied. End the whole login, for both holders.
            await sessions.revoke(auth_session.id, now)
            invalid.keep_changes = True  # the revocation must stick although this request fails
            raise invalid
        refresh = new_refresh_token()
        await sessions.add_refresh_token(
            RefreshToken(
                session_id=auth_session.id, token_hash=self.refresh_digester.digest(refresh)
            )
        )
        return self._pair(user, auth_session, refresh)

    async def end_session(self, db: AsyncSession, session_id: uuid.UUID) -> None:
        await SessionRepository(db).revoke(session_id, utcnow())

    def _pair(self, user: User, auth_session: AuthSession, refresh: str) -> TokenPair:
        access = self.access_tokens.issue(
            user_id=user.id, session_id=auth_session.id, token_version=user.token_version
        )
        remaining = int((auth_session.expires_at - utcnow()).total_seconds())
        return TokenPair(
            access_token=access,
            expires_in=self.access_tokens.ttl_seconds,
            refresh_token=refresh,
            refresh_expires_in=max(remaining, 0),
        )

    # -- administration ---------------------------------------------------------------------

    async def get_user(self, db: AsyncSession, username: str) -> User:
        user = await UserRepository(db).get_by_username(username.strip().lower())
        if user is None:
            raise NotFound(f"No user named {username!r}.", code="user_not_found")
        return user

    async def list_users(
        self, db: AsyncSession, *, limit: int, offset: int
    ) -> tuple[list[User], int]:
        return await UserRepository(db).page(limit=limit, offset=offset)

    async def list_usernames(self, db: AsyncSession) -> list[str]:
        return await UserRepository(db).usernames()

    async def update_user(
        self,
        db: AsyncSession,
        *,
        acting: User,
        username: str,
        disabled: bool | None,
        is_admin: bool | None,
    ) -> User:
        user = await self.get_user(db, username)
        if user.id == acting.id and (disabled or is_admin is False):
            raise Conflict(
                "Admins cannot disable or demote themselves; ask another admin.",
                code="cannot_modify_self",
            )
        if disabled is not None and disabled != user.is_disabled:
            user.is_disabled = disabled
            if disabled:
                await SessionRepository(db).revoke_all(user.id, utcnow())
        if is_admin is not None:
            user.is_admin = is_admin
        await db.flush()
        return user

    async def delete_user(self, db: AsyncSession, *, acting: User, username: str) -> None:
        user = await self.get_user(db, username)
        if user.id == acting.id:
            raise Conflict("Admins cannot delete themselves.", code="cannot_modify_self")
        await UserRepository(db).delete(user)
