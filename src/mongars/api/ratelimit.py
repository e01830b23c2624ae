"""Rate limits and quotas as route dependencies, and the headers that tell clients about them.

A limited route names its class in its signature (``caller: ChatAdmission``). The decision is
left on the request's scope, and ``RateLimitHeadersMiddleware`` writes the ``RateLimit-*``
headers into whatever response goes out: the route's own, an error from further down (a 401
after a wrong password, a 404), or a stream, whose headers leave before its first byte. A
refusal is a ``RateLimitExceeded`` carrying the same headers plus ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars.api.dependencies import (
    Credential,
    CurrentUser,
    DbSession,
    ResourcesDep,
    authenticate,
    resources_of,
)
from mongars.api.errors import ErrorEnvelope
from mongars.core.ratelimit import Decision, LoginThrottle, RouteClass
from mongars.db.tables import User
from mongars.resources import Resources

SCOPE_KEY = "mongars.rate_limit"


class _Holder:
    __slots__ = ("decision",)

    def __init__(self) -> None:
        self.decision: Decision | None = None


def remember(connection: HTTPConnection, decision: Decision) -> None:
    """Report ``decision`` in the response's headers (the most restrictive one wins)."""
    holder = connection.scope.get(SCOPE_KEY)
    if not isinstance(holder, _Holder) or not decision.limited:
        return
    current = holder.decision
    if current is None or decision.remaining <= current.remaining:
        holder.decision = decision


class RateLimitHeadersMiddleware:
    """Pure ASGI: adds the remembered decision's headers to the response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder = _Holder()
        scope[SCOPE_KEY] = holder

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and holder.decision is not None:
                headers = MutableHeaders(scope=message)
                for name, value in holder.decision.headers().items():
                    if name not in headers:  # a refusal already carries its own
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_address(connection: HTTPConnection) -> str:
    # The socket peer, or, when it is one of MONGARS_HTTP__TRUSTED_PROXIES, the client that
    # proxy names in X-Forwarded-For: `mongars serve` has uvicorn rewrite the scope before the
    # app sees it, so nothing here parses forwarded headers.
    return connection.client.host if connection.client else "unknown"


async def _limit(
    connection: HTTPConnection, resources: ResourcesDep, route_class: RouteClass, subject: str
) -> Decision:
    # A refusal raises, carrying its own headers; an admission is reported by the middleware.
    decision = await resources.limiter.enforce(route_class, subject)
    remember(connection, decision)
    return decision


async def limit_ws_ticket(request: Request, user: CurrentUser, resources: ResourcesDep) -> Decision:
    return await _limit(request, resources, "ws_ticket", str(user.id))


async def limit_register(request: Request, resources: ResourcesDep) -> Decision:
    return await _limit(request, resources, "register", client_address(request))


WsTicketRateLimit = Annotated[Decision, Depends(limit_ws_ticket)]
RegisterRateLimit = Annotated[Decision, Depends(limit_register)]


class LoginGuard:
    """Wraps one login attempt: throttled per client address and username, and its outcome
    recorded (wrong passwords lead to an escalating lockout)."""

    def __init__(self, request: Request, throttle: LoginThrottle) -> None:
        self.request = request
        self.throttle = throttle

    @asynccontextmanager
    async def attempt(self, username: str) -> AsyncIterator[None]:
        address = client_address(self.request)
        async with self.throttle.attempt(address, username) as decision:
            remember(self.request, decision)
            yield


async def get_login_guard(request: Request, resources: ResourcesDep) -> LoginGuard:
    return LoginGuard(request, resources.login_throttle)


LoginRateLimit = Annotated[LoginGuard, Depends(get_login_guard)]


@dataclass(frozen=True, slots=True)
class ChatCaller:
    """Who may start a chat turn now: authenticated and within the per-minute chat limit (the
    daily quota is checked with the question's write, ``ChatService.prepare``); with the
    request's unit of work and the app's resources."""

    user: User
    db: AsyncSession
    resources: Resources


async def admit_chat(request: Request, credential: Credential, db: DbSession) -> ChatCaller:
    # One dependency for both checks, and no sub-dependency it can do without: FastAPI walks a
    # dependency's whole sub-tree (the account, the session, the resources) again every time
    # a route names it, and this one runs on every chat turn.
    resources = resources_of(request)
    user = (await authenticate(resources, db, credential)).user
    await _limit(request, resources, "chat", str(user.id))
    return ChatCaller(user=user, db=db, resources=resources)


async def admit_embeddings(request: Request, credential: Credential, db: DbSession) -> ChatCaller:
    caller = await admit_chat(request, credential, db)
    await caller.resources.quotas.enforce(db, caller.user)
    return caller


# Chat turns over HTTP, SSE and the OpenAI-compatible API (the WebSocket handler checks the
# same limit itself, per message; ``ChatService.prepare`` checks the quota for all of them).
ChatAdmission = Annotated[ChatCaller, Depends(admit_chat)]
# Embeddings: the chat budget, and refused once the daily quota is used up.
EmbeddingAdmission = Annotated[ChatCaller, Depends(admit_embeddings)]

_HEADER_DOCS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Limit": {
        "description": "Requests allowed in the window.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the window.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the whole budget is available again.",
        "schema": {"type": "integer"},
    },
}


def rate_limited_response(*, quota: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI for a limited route's 429 (``rate_limited``, or ``quota_exceeded``)."""
    codes = "`rate_limited` or `quota_exceeded` (daily allowance)" if quota else "`rate_limited`"
    return {
        429: {
            "model": ErrorEnvelope,
            "description": f"Too many requests: {codes}. Wait `Retry-After` seconds.",
            "headers": _HEADER_DOCS,
        }
    }
