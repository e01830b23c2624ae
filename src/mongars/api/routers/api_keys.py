"""API keys for programs: ``Authorization: Bearer mg_...`` wherever a token works."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from mongars.api.dependencies import CurrentUser, DbSession, ResourcesDep, SessionUser
from mongars.api.errors import responses
from mongars.api.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(401, 403))
async def create_api_key(
    body: ApiKeyCreate, user: SessionUser, db: DbSession, resources: ResourcesDep
) -> ApiKeyCreated:
    """Create a key; the secret is in this response only. Needs a login session: a key cannot
    make keys (one that leaked would otherwise outlive its revocation through them)."""
    created = await resources.api_keys.create(
        db, user, name=body.name, expires_in_days=body.expires_in_days
    )
    return ApiKeyCreated(
        **ApiKeyOut.model_validate(created.record).model_dump(), key=created.secret
    )


@router.get("", responses=responses(401))
async def list_api_keys(
    user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> list[ApiKeyOut]:
    """Your keys, newest first (never their secrets)."""
    return [ApiKeyOut.model_validate(key) for key in await resources.api_keys.list(db, user)]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 404))
async def delete_api_key(
    key_id: uuid.UUID, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> None:
    """Revoke one of your keys; it stops working at once."""
    await resources.api_keys.delete(db, user, key_id)
