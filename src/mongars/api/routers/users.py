"""Accounts: self-service under /api/v1/user, administration under /api/v1/users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from mongars.api.dependencies import AdminUser, CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.ratelimit import LoginRateLimit, RegisterRateLimit, rate_limited_response
from mongars.api.schemas.auth import TokenResponse
from mongars.api.schemas.users import (
    PasswordChangeRequest,
    RegisterRequest,
    UserListResponse,
    UserOut,
    UserPage,
    UserUpdate,
)
from mongars.core.errors import PermissionDenied

router = APIRouter(tags=["users"])

UsernamePath = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/api/v1/user/register",
    status_code=status.HTTP_201_CREATED,
    responses={**responses(403, 409), **rate_limited_response()},
)
async def register_user(
    body: RegisterRequest, _limit: RegisterRateLimit, db: DbSession, resources: ResourcesDep
) -> UserOut:
    """Create an account (never an admin) when registration is open."""
    if not resources.settings.registration_open:
        raise PermissionDenied(
            "Registration is closed; ask an administrator for an account.",
            code="registration_closed",
        )
    user = await resources.accounts.create_user(db, username=body.username, password=body.password)
    return UserOut.model_validate(user)


@router.get("/api/v1/user/me", responses=responses(401))
async def read_me(user: CurrentUser) -> UserOut:
    """The account behind the credential."""
    return UserOut.model_validate(user)


@router.post(
    "/api/v1/user/change-password",
    responses={**responses(400, 401), **rate_limited_response()},
)
async def change_password(
    body: PasswordChangeRequest,
    user: CurrentUser,
    guard: LoginRateLimit,
    db: DbSession,
    resources: ResourcesDep,
) -> TokenResponse:
    """Change the password; every earlier token stops working and fresh tokens are returned.

    The current password is throttled like a login: a stolen token must not become a way to
    guess it, and with it take the account."""
    async with guard.attempt(user.username):
        pair = await resources.accounts.change_password(
            db, user, current_password=body.old_password, new_password=body.new_password
        )
    return TokenResponse.from_pair(pair)


@router.get("/api/v1/user/list", responses=responses(401, 403))
async def list_usernames(
    _admin: AdminUser, db: DbSession, resources: ResourcesDep
) -> UserListResponse:
    """All usernames (admin; the charter's route, kept for its clients)."""
    return UserListResponse(users=await resources.accounts.list_usernames(db))


@router.get("/api/v1/users", responses=responses(401, 403))
async def list_users(
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> UserPage:
    """A page of accounts, oldest first (admin)."""
    users, total = await resources.accounts.list_users(db, limit=limit, offset=offset)
    return UserPage(
        items=[UserOut.model_validate(user) for user in users],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.patch("/api/v1/users/{username}", responses=responses(401, 403, 404, 409))
async def update_user(
    username: UsernamePath,
    body: UserUpdate,
    admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
) -> UserOut:
    """Disable or enable an account, or grant or remove admin rights (admin)."""
    user = await resources.accounts.update_user(
        db, acting=admin, username=username, disabled=body.disabled, is_admin=body.is_admin
    )
    return UserOut.model_validate(user)


@router.delete(
    "/api/v1/users/{username}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 409),
)
async def delete_user(
    username: UsernamePath, admin: AdminUser, db: DbSession, resources: ResourcesDep
) -> None:
    """Delete an account and everything it owns (admin)."""
    await resources.accounts.delete_user(db, acting=admin, username=username)
