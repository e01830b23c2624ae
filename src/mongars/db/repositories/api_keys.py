from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.sqlite_driver import inline
from mongars.db.tables import ApiKey, User

# Runs on every request made with an API key: built once, so its cache key is computed once.
_FIND_WITH_OWNER = inline(
    select(ApiKey, User)
    .join(User, ApiKey.user_id == User.id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, api_key: ApiKey) -> ApiKey:
        self.session.add(api_key)
        await self.session.flush()
        return api_key

    async def list_for(self, user_id: uuid.UUID) -> list[ApiKey]:
        result = await self.session.execute(
            select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
        )
        return list(result.scalars())

    async def get_with_owner(self, key_id: uuid.UUID) -> tuple[ApiKey, User] | None:
        result = await self.session.execute(
            inline(select(ApiKey, User).join(User, ApiKey.user_id == User.id)).where(
                ApiKey.id == key_id
            )
        )
        row = result.first()
        return None if row is None else (row[0], row[1])

    async def find_with_owner(self, key_hash: str) -> tuple[ApiKey, User] | None:
        result = await self.session.execute(_FIND_WITH_OWNER, {"key_hash": key_hash})
        row = result.first()
        return None if row is None else (row[0], row[1])

    async def delete_owned(self, key_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Delete a key only if it belongs to the user: another user's key looks absent."""
        result = await self.session.execute(
            delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def touch(self, key_id: uuid.UUID, when: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        )
