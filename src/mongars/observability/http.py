"""HTTP metrics and the access log, as pure ASGI middleware.

One access line per request on the ``mongars.access`` logger (INFO) with the request id, the
route *template*, the method, the status, the latency and, when the caller authenticated, a
keyed hash of the user id: enough to follow one user through the logs, useless to recover who.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars.api.request_context import request_id_var
from mongars.observability.metrics import UNMATCHED_ROUTE

if TYPE_CHECKING:
    from mongars.resources import Resources

access_logger = logging.getLogger("mongars.access")


@dataclass(slots=True)
class RequestInfo:
    user_id: uuid.UUID | None = None


# Mutable per request: set by the middleware, filled in by the auth dependency.
_request_info: ContextVar[RequestInfo | None] = ContextVar("mongars_request_info", default=None)


def note_user(user_id: uuid.UUID) -> None:
    """Record who the current request authenticated as (for the access log, hashed)."""
    info = _request_info.get()
    if info is not None:
        info.user_id = user_id


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped everything below
        info = RequestInfo()
        token = _request_info.set(info)

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            _request_info.reset(token)
            self._record(scope, status, time.perf_counter() - started, info)

    def _record(self, scope: Scope, status: int, seconds: float, info: RequestInfo) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        resources: Resources | None = state.get("resources")
        route = route_template(scope)
        method = str(scope.get("method", ""))
        if resources is not None:
            resources.metrics.observe_http(route, method, status, seconds)
        if not access_logger.isEnabledFor(logging.INFO):
            return
        user = None
        if info.user_id is not None and resources is not None:
            user = resources.limiter.rejects.hash(str(info.user_id))
        latency_ms = round(seconds * 1000, 2)
        access_logger.info(
            "%s %s %s %.1fms",
            method,
            route,
            status,
            latency_ms,
            extra={
                "request_id": request_id_var.get(),
                "method": method,
                "route": route,
                "status": status,
                "latency_ms": latency_ms,
                "user": user,
            },
        )
