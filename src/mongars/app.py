"""The application factory: ``create_app(settings)`` wires middleware, error handlers and
routers; the lifespan opens every long-lived resource and closes it on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from fastapi.routing import APIRoute

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
from mongars.resources import Resources, open_resources


class LifespanState(TypedDict):
    resources: Resources


def _operation_id(route: APIRoute) -> str:
    # Stable, readable ids (the route function's name) so generated SDK methods read well.
    return route.name


def create_app(settings: Settings | None = None, *, roles: ModelRoles | None = None) -> FastAPI:
    """``roles`` overrides the model backends built from ``settings.llm``."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[LifespanState]:
        async with open_resources(settings, roles=roles) as resources:
            yield {"resources": resources}

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
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.http.max_body_bytes)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(CORSMiddleware, settings=settings)
    app.add_middleware(TrustedHostMiddleware, settings=settings)
    # Outside the host check, so that its refusals carry the headers too.
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    app.add_middleware(RequestIdMiddleware)
    for router in (
        health.router,
        auth.router,
        users.router,
        usage.router,
        api_keys.router,
        chat.router,
        history.router,
        conversations.router,
        ws.router,
    ):
        app.include_router(router)
    return app


def create_app_from_environment() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (each worker reads the same environment)."""
    return create_app(Settings())
