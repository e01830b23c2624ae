from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.sqlite_driver import inline
from mongars.db.tables import ApiKey, User

# Run on every request made with an API key, and on each WebSocket action opened with one:
# built once, so their cache keys are computed once.
_WITH_OWNER = select(ApiKey, User).join(User, ApiKey.user_id == User.id)
_FIND_WITH_OWNER = inline(_WITH_OWNER.where(ApiKey.key_hash == bindparam("key_hash")))
_GET_WITH_OWNER = inline(_WITH_OWNER.where(ApiKey.id == bindparam("key_id")))


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
        return await self._with_owner(_GET_WITH_OWNER, {"key_id": key_id})

    async def find_with_owner(self, key_hash: str) -> tuple[ApiKey, User] | None:
        return await self._with_owner(_FIND_WITH_OWNER, {"key_hash": key_hash})

    async def _with_owner(
        self, query: Select[ApiKey, User], values: dict[str, object]
    ) -> tuple[ApiKey, User] | None:
        row = (await self.session.execute(query, values)).first()
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
