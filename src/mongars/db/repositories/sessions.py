"""Login sessions and the refresh tokens that belong to them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.sqlite_driver import inline
from mongars.db.tables import AuthSession, RefreshToken, User


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, auth_session: AuthSession, refresh_token: RefreshToken) -> None:
        self.session.add(auth_session)
        await self.session.flush()
        self.session.add(refresh_token)
        await self.session.flush()

    async def add_refresh_token(self, refresh_token: RefreshToken) -> None:
        self.session.add(refresh_token)
        await self.session.flush()

    async def find_refresh_token(
        self, token_hash: str
    ) -> tuple[RefreshToken, AuthSession, User] | None:
        result = await self.session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, RefreshToken.session_id == AuthSession.id)
            .join(User, AuthSession.user_id == User.id)
            .where(RefreshToken.token_hash == token_hash)
        )
        row = result.first()
        return None if row is None else (row[0], row[1], row[2])

    async def mark_used(self, token: RefreshToken, when: datetime) -> bool:
        """Claim a refresh token. False when a concurrent request claimed it first."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
            .values(used_at=when)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def user_with_session(
        self, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[User, AuthSession] | None:
        """The account and the login an access token names, in one round trip."""
        result = await self.session.execute(
            inline(
                select(User, AuthSession)
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(User.id == user_id, AuthSession.id == session_id)
            )
        )
        row = result.first()
        return None if row is None else (row[0], row[1])

    async def revoke(self, session_id: uuid.UUID, when: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=when)
            .execution_options(synchronize_session=False)
        )

    async def revoke_all(self, user_id: uuid.UUID, when: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=when)
            .execution_options(synchronize_session=False)
        )
