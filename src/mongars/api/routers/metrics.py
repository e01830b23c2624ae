"""Prometheus metrics of this replica."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mongars.api.dependencies import ResourcesDep
from mongars.config import Settings
from mongars.core.errors import AuthenticationFailed, PermissionDenied

router = APIRouter(tags=["observability"])


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _authorize(request: Request, settings: Settings) -> None:
    """Loopback clients (a local Prometheus, an operator's curl) may read; others need the
    bearer ``MONGARS_METRICS_TOKEN``, and are refused when none is configured."""
    if _is_loopback(request.client.host if request.client else None):
        return
    token = settings.metrics_token
    if token is None:
        raise PermissionDenied(
            "Metrics are only served to loopback clients; set MONGARS_METRICS_TOKEN to "
            "allow remote scrapers.",
            code="metrics_forbidden",
        )
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), expected):
        raise AuthenticationFailed(
            "A valid metrics token is required.", code="metrics_token_invalid"
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, resources: ResourcesDep) -> Response:
    """Prometheus text exposition of this replica's metrics."""
    _authorize(request, resources.settings)
    return Response(generate_latest(resources.metrics.registry), media_type=CONTENT_TYPE_LATEST)
