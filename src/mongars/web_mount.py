"""The Django chat UI (``web/mongars_web``) in the API's ASGI app, or alone in front of a
remote API (``mongars web``).

In the API's app the UI is the router's fallback rather than a mount at ``/``: it only ever
sees requests that no API route matched, so it cannot shadow a path the API declares, whatever
order routers are added in. Paths under the API's prefixes never reach it either, so an unknown
``/api/...`` path keeps the API's JSON 404.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from mongars.api.security_middleware import SecurityHeadersMiddleware, TrustedHostMiddleware
from mongars.config import Settings

logger = logging.getLogger(__name__)

# Every API route's path starts with one of these (tests/web/test_mount.py holds the list to
# app.API_ROUTERS); /docs, /redoc and /static stay reserved even when they are turned off.
API_PREFIXES = (
    "/api",
    "/token",
    "/ws",
    "/v1",
    "/metrics",
    "/healthz",
    "/ready",
    "/static",
    "/docs",
    "/redoc",
    "/openapi.json",
)


# What the access log and the HTTP metrics see as the route of every page of the UI.
WEB_ROUTE = SimpleNamespace(path="/{web_ui_page}")


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def mount_web(app: FastAPI, settings: Settings) -> None:
    """Serve the UI at ``/`` from ``app`` (unless ``MONGARS_WEB_ENABLED=false``)."""
    if not settings.web_enabled:
        return
    from mongars_web.asgi import web_application
    from mongars_web.connector import InProcessApi

    web = web_application(
        settings, InProcessApi(app=app, registration_open=settings.registration_open)
    )
    api_fallback = app.router.default

    async def web_or_not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_api_path(scope["path"]):
            # Access logs and metrics label every page with one route, never the raw path.
            scope["route"] = WEB_ROUTE
            await web(scope, receive, send)
        else:
            await api_fallback(scope, receive, send)

    app.router.default = web_or_not_found


def standalone_web_app(
    settings: Settings, api_url: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> ASGIApp:
    """The UI alone, talking to the API at ``api_url`` (through ``transport``, in tests), with
    its own static files."""
    from mongars_web.asgi import web_application
    from mongars_web.connector import RemoteApi

    routes = []
    if settings.static_path.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=settings.static_path)))
    else:
        logger.warning(
            "No web assets at %s: the pages work without JavaScript only. Build them with "
            "`make assets`.",
            settings.static_path,
        )
    connector = RemoteApi(base_url=api_url, transport=transport)
    routes.append(Mount("/", web_application(settings, connector)))
    app: ASGIApp = Starlette(routes=routes)
    app = TrustedHostMiddleware(app, settings)
    return SecurityHeadersMiddleware(app, settings)
