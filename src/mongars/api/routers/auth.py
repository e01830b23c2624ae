"""Log in, refresh and log out. ``POST /token`` is the OAuth2 password flow for tools that
speak it (and for the docs' Authorize button); the JSON routes are for everything else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from mongars.api.dependencies import CurrentPrincipal, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.ratelimit import LoginRateLimit, rate_limited_response
from mongars.api.schemas.auth import LoginRequest, RefreshRequest, TokenResponse
from mongars.core.errors import InvalidInput

router = APIRouter(tags=["auth"])


LOGIN_FAILURES = {**responses(401), **rate_limited_response()}


@router.post("/token", responses=LOGIN_FAILURES)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    guard: LoginRateLimit,
    db: DbSession,
    resources: ResourcesDep,
) -> TokenResponse:
    """Exchange a username and password (OAuth2 password form) for tokens."""
    async with guard.attempt(form.username):
        user = await resources.accounts.authenticate(
            db, username=form.username, password=form.password
        )
    return TokenResponse.from_pair(await resources.accounts.start_session(db, user))


@router.post("/api/v1/auth/login", responses=LOGIN_FAILURES)
async def login(
    body: LoginRequest, guard: LoginRateLimit, db: DbSession, resources: ResourcesDep
) -> TokenResponse:
    """Exchange a username and password (JSON) for an access and a refresh token."""
    async with guard.attempt(body.username):
        user = await resources.accounts.authenticate(
            db, username=body.username, password=body.password
        )
    return TokenResponse.from_pair(await resources.accounts.start_session(db, user))


@router.post("/api/v1/auth/refresh", responses=responses(401))
async def refresh_tokens(
    body: RefreshRequest, db: DbSession, resources: ResourcesDep
) -> TokenResponse:
    """Trade a refresh token for new tokens; the old refresh token stops working."""
    return TokenResponse.from_pair(await resources.accounts.refresh(db, body.refresh_token))


@router.post(
    "/api/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=responses(400, 401)
)
async def logout(principal: CurrentPrincipal, db: DbSession, resources: ResourcesDep) -> None:
    """End this login: its access and refresh tokens stop working at once."""
    if principal.session_id is None:
        raise InvalidInput(
            "Log out with an access token; an API key is revoked by deleting it.",
            code="not_a_session",
        )
    await resources.accounts.end_session(db, principal.session_id)
