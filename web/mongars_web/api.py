"""The UI's API calls on behalf of the logged-in user, with their tokens kept in the session.

The access token is refreshed shortly before it expires, and once more if the API refuses it
anyway (revoked, clock skew); when the refresh token is refused too the session is emptied and
the user is sent back to the login page (``LoginRequired``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any

import httpx
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.middleware.csrf import rotate_token

from mongars_web.connector import SCOPE_KEY, ApiConnector

TOKENS_KEY = "api_tokens"
USER_KEY = "api_user"
# Refresh this long before the access token's end, so that a slow request does not outlive it.
REFRESH_MARGIN_SECONDS = 10


class LoginRequired(Exception):
    """No usable login in this session (never logged in, logged out, or expired)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ApiError(Exception):
    """The API refused or failed a call; ``detail`` is its sentence for people."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None
    field_errors: dict[str, str] | None = None

    def __str__(self) -> str:
        return self.detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("code") or "error")
        detail = body.get("detail")
        field_errors: dict[str, str] | None = None
        if isinstance(detail, list):  # FastAPI's 422 list: name the fields
            field_errors = {
                str(error.get("loc", ["", "?"])[-1]): str(error.get("msg", "is invalid"))
                for error in detail
                if isinstance(error, dict)
            }
            detail = "; ".join(f"{name}: {message}" for name, message in field_errors.items())
        retry_after = response.headers.get("Retry-After")
        return cls(
            status=response.status_code,
            code=code,
            detail=str(detail or f"The API answered {response.status_code}."),
            retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
            field_errors=field_errors,
        )

    @classmethod
    def unreachable(cls, exc: httpx.HTTPError) -> ApiError:
        return cls(
            status=503,
            code="api_unreachable",
            detail="The monGARS service cannot be reached right now; try again in a moment.",
        )


def connector_of(request: HttpRequest) -> ApiConnector:
    scope = getattr(request, "scope", None) or {}
    connector = scope.get(SCOPE_KEY)
    if connector is None:
        raise RuntimeError(
            "No API connector in the request scope: serve mongars_web through "
            "mongars.web_mount or `mongars web`."
        )
    return connector  # type: ignore[no-any-return]


def _stored_tokens(body: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    return {
        "access": body["access_token"],
        "refresh": body["refresh_token"],
        "access_expires_at": now + int(body["expires_in"]),
    }


class Api:
    """The API as seen by one UI request."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.connector = connector_of(request)

    def _client(self) -> httpx.AsyncClient:
        return self.connector.client(getattr(self.request, "scope", {}))

    # -- without a login ------------------------------------------------------------------------

    async def anonymous(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            async with self._client() as client:
                response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError.unreachable(exc) from exc
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    async def log_in(self, username: str, password: str) -> dict[str, Any]:
        response = await self.anonymous(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}
        )
        await self.start_session(response.json())
        return await self.me()

    async def start_session(self, token_body: dict[str, Any]) -> None:
        session = self.request.session
        # A new session id and CSRF secret at every login (as Django's own login() does): a
        # session id or token planted or seen before it is worthless.
        await session.acycle_key()
        rotate_token(self.request)
        await session.aset(TOKENS_KEY, _stored_tokens(token_body))

    async def me(self) -> dict[str, Any]:
        user: dict[str, Any] = (await self.call("GET", "/api/v1/user/me")).json()
        await self.request.session.aset(
            USER_KEY, {"username": user["username"], "is_admin": user["is_admin"]}
        )
        return user

    async def log_out(self) -> None:
        tokens = await self.request.session.aget(TOKENS_KEY)
        if tokens:
            # Already over on the API's side? The session is emptied all the same.
            with contextlib.suppress(ApiError, LoginRequired):
                await self.call("POST", "/api/v1/auth/logout")
        await self.request.session.aflush()

    # -- on behalf of the user ------------------------------------------------------------------

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        tokens = await self.request.session.aget(TOKENS_KEY)
        if not tokens:
            raise LoginRequired()
        if tokens["access_expires_at"] - REFRESH_MARGIN_SECONDS <= time.time():
            tokens = await self._refresh(tokens)
        try:
            async with self._client() as client:
                response = await self._send(client, method, path, tokens, kwargs)
                if response.status_code == 401:
                    tokens = await self._refresh(tokens, client)
                    response = await self._send(client, method, path, tokens, kwargs)
        except httpx.HTTPError as exc:
            raise ApiError.unreachable(exc) from exc
        if response.status_code == 401:
            await self.request.session.aflush()
            raise LoginRequired("expired")
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        tokens: dict[str, Any],
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        headers = {**kwargs.get("headers", {}), "Authorization": f"Bearer {tokens['access']}"}
        return await client.request(method, path, **{**kwargs, "headers": headers})

    async def _refresh(
        self, tokens: dict[str, Any], client: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        # The API ends the whole login when a rotated refresh token comes back (a copy), so two
        # requests of one session (two tabs) must not both refresh with the same token: one
        # refreshes and saves at once, the other waits, then takes the tokens it stored.
        session = self.request.session
        async with _refresh_lock(session.session_key or ""):
            stored = await _tokens_in_store(session)
            if stored and stored["refresh"] != tokens["refresh"]:
                await session.aset(TOKENS_KEY, stored)
                return stored
            response = await self._post_refresh(tokens["refresh"], client)
            fresh = _stored_tokens(response.json())
            await session.aset(TOKENS_KEY, fresh)
            await session.asave()
            return fresh

    async def _post_refresh(
        self, refresh_token: str, client: httpx.AsyncClient | None
    ) -> httpx.Response:
        body = {"refresh_token": refresh_token}
        try:
            if client is None:
                async with self._client() as own:
                    response = await own.post("/api/v1/auth/refresh", json=body)
            else:
                response = await client.post("/api/v1/auth/refresh", json=body)
        except httpx.HTTPError as exc:
            raise ApiError.unreachable(exc) from exc
        if response.status_code in (400, 401, 422):
            # The login itself is over (expired, revoked, password changed elsewhere).
            await self.request.session.aflush()
            raise LoginRequired("expired")
        if response.is_error:
            raise ApiError.from_response(response)
        return response


# One lock per session being refreshed, in this process (several replicas can still race; the
# API then ends that login, which is the safe outcome). Weak: gone once nobody waits on it.
_refresh_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _refresh_lock(session_key: str) -> asyncio.Lock:
    lock = _refresh_locks.get(session_key)
    if lock is None:
        lock = _refresh_locks[session_key] = asyncio.Lock()
    return lock


async def _tokens_in_store(session: SessionBase) -> dict[str, Any] | None:
    """The tokens as last saved for this session (another request may have refreshed them)."""
    if session.session_key is None:
        return None
    current = session.__class__(session_key=session.session_key)
    tokens: dict[str, Any] | None = await current.aget(TOKENS_KEY)
    return tokens


def plain_words(error: ApiError) -> str:
    """The API's refusal as a sentence for the person at the keyboard."""
    wait = f" Try again in {error.retry_after} seconds." if error.retry_after else ""
    if error.code in ("rate_limited", "login_locked"):
        return f"Too many requests in a short time.{wait or ' Wait a moment and try again.'}"
    if error.code == "backend_unavailable":
        return f"The model is not available right now.{wait or ' Try again in a moment.'}"
    if error.code == "backend_timeout":
        return "The model took too long to answer. Try again, perhaps with a shorter question."
    if error.code == "quota_exceeded":
        return f"You have used today's allowance. {error.detail}"
    return error.detail
