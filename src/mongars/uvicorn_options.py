"""What `mongars serve` and `mongars web` both tell uvicorn."""

from __future__ import annotations

from typing import Any

from mongars.config import Settings


def uvicorn_options(settings: Settings, log_config: dict[str, Any]) -> dict[str, Any]:
    return {
        # uvicorn's ProxyHeadersMiddleware takes the client address and scheme from the
        # trusted proxies' X-Forwarded-For / -Proto (addresses and CIDR networks); with none
        # configured it stays off and the socket peer is the client.
        "proxy_headers": bool(settings.http.trusted_proxies),
        "forwarded_allow_ips": settings.http.trusted_proxies or None,
        "server_header": False,
        "log_config": log_config,
        "log_level": settings.log_level.lower(),
        # mongars.access replaces uvicorn's access log, without raw paths or query strings.
        "access_log": False,
    }
