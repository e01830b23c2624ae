"""Daily usage and allowances: your own, and (for admins) anyone's, with per-user overrides."""

from __future__ import annotations

from fastapi import APIRouter

from mongars.api.dependencies import AdminUser, CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.routers.users import UsernamePath
from mongars.api.schemas.usage import QuotaOverrides, UsageOut, UserUsageOut

router = APIRouter(tags=["usage"])


@router.get("/api/v1/user/me/usage", responses=responses(401))
async def read_my_usage(user: CurrentUser, db: DbSession, resources: ResourcesDep) -> UsageOut:
    """What you have used today (UTC) and what you are allowed."""
    return UsageOut.of(await resources.quotas.report(db, user.id))


@router.get("/api/v1/users/{username}/usage", responses=responses(401, 403, 404))
async def read_user_usage(
    username: UsernamePath, _admin: AdminUser, db: DbSession, resources: ResourcesDep
) -> UserUsageOut:
    """A user's usage today, allowances and overrides (admin)."""
    user = await resources.accounts.get_user(db, username)
    return UserUsageOut.of(user.username, await resources.quotas.report(db, user.id))


@router.put("/api/v1/users/{username}/quota", responses=responses(401, 403, 404))
async def set_user_quota(
    username: UsernamePath,
    body: QuotaOverrides,
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
) -> UserUsageOut:
    """Set a user's own daily allowances: null for the default, 0 for unlimited (admin)."""
    user = await resources.accounts.get_user(db, username)
    report = await resources.quotas.set_override(
        db, user, daily_messages=body.daily_messages, daily_tokens=body.daily_tokens
    )
    return UserUsageOut.of(user.username, report)
