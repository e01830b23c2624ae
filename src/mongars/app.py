"""The application factory: ``create_app(settings)`` wires middleware, error handlers and
routers; the lifespan opens every long-lived resource and closes it on shutdown."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypedDict

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from mongars import __version__
from mongars.api.errors import install_error_handlers
from mongars.api.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from mongars.api.ratelimit import RateLimitHeadersMiddleware
from mongars.api.routers import (
    api_keys,
    auth,
    chat,
    conversations,
    health,
    history,
    metrics,
    models,
    openai_compat,
    rag,
    usage,
    users,
    ws,
)
from mongars.api.security_middleware import (
    CORSMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
)
from mongars.config import Settings
from mongars.core.model_roles import ModelRoles
from mongars.core.rag.embedder import TextEmbedder
from mongars.observability import tracing
from mongars.observability.http import ObservabilityMiddleware
from mongars.resources import Resources, open_resources
from mongars.web_mount import mount_web

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

# Allocations before a young collection, and young (then middle) collections before an older
# one. A young collection's pause grows with the threshold (about 1.5 us per object it frees:
# 50,000 paused a chat turn 70-90 ms), so young ones stay small; older ones, whose pauses
# grow with every object of thousands of open sockets, are rarer than CPython's 700/10/10
# (bench/ws.py, bench/overhead.py).
GC_THRESHOLDS = (2_000, 20, 50)


class LifespanState(TypedDict):
    resources: Resources


def _operation_id(route: APIRoute) -> str:
    # Stable, readable ids (the route function's name) so generated SDK methods read well.
    return route.name


# Full paths in their decorators, no prefix: web_mount.API_PREFIXES must cover every one.
API_ROUTERS = (
    health.router,
    auth.router,
    users.router,
    usage.router,
    api_keys.router,
    chat.router,
    history.router,
    conversations.router,
    rag.router,
    ws.router,
    metrics.router,
    models.router,
    openai_compat.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    roles: ModelRoles | None = None,
    span_exporter: SpanExporter | None = None,
    embedder: TextEmbedder | None = None,
) -> FastAPI:
    """``roles`` overrides the model backends built from ``settings.llm``; ``span_exporter``
    replaces the OTLP exporter when ``settings.otel_enabled`` (tests); ``embedder`` the
    embedding model (tests share one across apps)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[LifespanState]:
        try:
            async with open_resources(settings, roles=roles, embedder=embedder) as resources:
                # Everything loaded so far (modules, models, Django) lives as long as the
                # process: keep it out of the collector's scans, which otherwise grow with it
                # and pause every request now and then.
                gc.freeze()
                # Young collections every 700 allocations (CPython's default) make full ones
                # frequent once thousands of sockets are open, each a pause of the whole loop.
                previous_thresholds = gc.get_threshold()
                gc.set_threshold(*GC_THRESHOLDS)
                try:
                    yield {"resources": resources}
                finally:
                    gc.set_threshold(*previous_thresholds)
                    gc.unfreeze()  # what this app held may be collected once it is gone
        finally:
            if settings.otel_enabled:
                tracing.shutdown_tracing()

    app = FastAPI(
        title="monGARS",
        version=__version__,
        summary="Self-hosted conversational-AI gateway.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url="/docs" if settings.show_docs else None,
        redoc_url="/redoc" if settings.show_docs else None,
    )
    install_error_handlers(app)
    # Added last = outermost: the request id exists before anything else runs.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.http.max_body_bytes,
        # Uploads have their own, larger cap; the service checks the file itself again.
        route_limits={rag.DOCUMENTS_PATH: settings.rag.max_upload_bytes},
    )
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(CORSMiddleware, settings=settings)
    app.add_middleware(TrustedHostMiddleware, settings=settings)
    # Outside the host check, so that its refusals carry the headers too.
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    # Sees every answer, refusals included, with the request id already set.
    app.add_middleware(ObservabilityMiddleware)
    app.add_middleware(RequestIdMiddleware)
    for router in API_ROUTERS:
        app.include_router(router)
    _mount_static(app, settings)
    # The Django chat UI answers whatever no API route matches (see web_mount).
    mount_web(app, settings)
    if settings.otel_enabled:
        # Adds its middleware now, before the app starts (outermost: one span per request).
        tracing.setup_tracing(app, settings, span_exporter)
    return app


def _mount_static(app: FastAPI, settings: Settings) -> None:
    directory = settings.static_path
    if directory.is_dir():
        app.mount("/static", StaticFiles(directory=directory), name="static")
        return
    logger.warning(
        "No web assets at %s, so /static is not served and the web UI works without "
        "JavaScript only: build them with `make assets` (run by `make run` and `make test`) "
        "or point MONGARS_STATIC_DIR at a directory that has them.",
        directory,
    )


def create_app_from_environment() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (each worker reads the same environment)."""
    return create_app(Settings())
