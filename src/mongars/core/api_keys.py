"""API keys: created and shown once, stored as an HMAC, usable wherever a token is."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.errors import NotFound
from mongars.core.security.opaque_tokens import (
    API_KEY_DISPLAY_LENGTH,
    OpaqueTokenDigester,
    new_api_key,
)
from mongars.db.base import utcnow
from mongars.db.repositories.api_keys import ApiKeyRepository
from mongars.db.tables import ApiKey, User


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    record: ApiKey
    secret: str


class ApiKeyService:
    def __init__(self, digester: OpaqueTokenDigester) -> None:
        self.digester = digester

    async def create(
        self, db: AsyncSession, user: User, *, name: str, expires_in_days: int | None
    ) -> CreatedApiKey:
        secret = new_api_key()
        record = ApiKey(
            user_id=user.id,
            name=name,
            prefix=secret[:API_KEY_DISPLAY_LENGTH],
            key_hash=self.digester.digest(secret),
            created_at=utcnow(),
            expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        return CreatedApiKey(record=await ApiKeyRepository(db).add(record), secret=secret)

    async def list(self, db: AsyncSession, user: User) -> list[ApiKey]:
        return await ApiKeyRepository(db).list_for(user.id)

    async def delete(self, db: AsyncSession, user: User, key_id: uuid.UUID) -> None:
        if not await ApiKeyRepository(db).delete_owned(key_id, user.id):
            raise NotFound("No such API key.", code="api_key_not_found")
