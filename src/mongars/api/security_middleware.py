"""Hardening as pure ASGI middleware: trusted hosts, strict CORS, security headers.

Hosts and origins are decided by ``core.origins`` (the same rule the WebSocket upgrade uses).
WebSocket scopes pass through untouched here: the upgrade handler checks Host and Origin
itself, so that its refusals can say which check failed.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars.api.error_bodies import send_error
from mongars.config import Settings
from mongars.core.origins import host_allowed, origin_allowed

CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "Content-Language",
    "Last-Event-ID",
    "X-Request-ID",
)
# What a page may read from our responses besides the CORS-safelisted headers.
CORS_EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Stream-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Link",
    "Content-Disposition",
)
CORS_MAX_AGE_SECONDS = 600
HSTS = "max-age=63072000; includeSubDomains"


class TrustedHostMiddleware:
    """400 ``host_not_allowed`` for a Host this service does not answer to (DNS rebinding)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not host_allowed(
            Headers(scope=scope).get("host"), self.settings
        ):
            await send_error(
                send,
                400,
                "This server does not answer to that Host.",
                "host_not_allowed",
                path=scope["path"],
            )
            return
        await self.app(scope, receive, send)


class CORSMiddleware:
    """Cross-origin access for exactly the allowed origins (``core.origins``), credentials
    included; any other origin gets no CORS headers, so browsers keep its pages out."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        allowed = origin is not None and origin_allowed(origin, headers.get("host"), self.settings)
        if scope["method"] == "OPTIONS" and origin and "access-control-request-method" in headers:
            await self._preflight(send, origin if allowed else None, headers, scope["path"])
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allowed and origin:
                    out["Access-Control-Allow-Origin"] = origin
                    out["Access-Control-Allow-Credentials"] = "true"
                    out["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str | None, headers: Headers, path: str) -> None:
        method = headers["access-control-request-method"].upper()
        if origin is None or method not in CORS_METHODS:
            await send_error(
                send,
                403,
                "Cross-origin requests from this origin are not allowed.",
                "origin_not_allowed",
                {"Vary": "Origin"},
                path=path,
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-allow-methods", ", ".join(CORS_METHODS).encode()),
                    (b"access-control-allow-headers", ", ".join(CORS_REQUEST_HEADERS).encode()),
                    (b"access-control-max-age", str(CORS_MAX_AGE_SECONDS).encode()),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


class SecurityHeadersMiddleware:
    """Headers every response gets unless it set its own: no sniffing, no referrer, never in
    a frame, not cached (answers hold personal data and tokens), HSTS in production. API
    responses also get a CSP that allows nothing; HTML pages (/docs) keep their own."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.production = settings.is_production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                defaults = {
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY",
                    "Content-Security-Policy": "frame-ancestors 'none'"
                    if html
                    else "default-src 'none'; frame-ancestors 'none'",
                    "Cache-Control": "no-store",
                }
                if self.production:
                    defaults["Strict-Transport-Security"] = HSTS
                for name, value in defaults.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
