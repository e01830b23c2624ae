"""Which Host headers and browser Origins this service trusts.

One rule for HTTP (trusted hosts, CORS) and WebSocket upgrades: the Host must be ours (so a
DNS-rebinding page cannot reach a loopback service through its own name), and a browser
Origin must be the service's own origin or listed exactly. In development, localhost and
loopback addresses on any port are trusted too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mongars.config import Settings

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def split_host(host_header: str) -> tuple[str, str | None]:
    """``"Example.COM:8000"`` → ``("example.com", "8000")``; IPv6 literals keep brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return host, None
        name, rest = host[: end + 1], host[end + 1 :]
        return name, rest[1:] if rest.startswith(":") else None
    name, _, port = host.partition(":")
    return name, port or None


def host_allowed(host_header: str | None, settings: Settings) -> bool:
    if not host_header:
        return False
    name, _port = split_host(host_header)
    allowed = {h.lower() for h in settings.http.allowed_hosts}
    if "*" in allowed or name in allowed:
        return True
    return not settings.is_production and name in LOOPBACK_HOSTS


def origin_allowed(origin: str | None, host_header: str | None, settings: Settings) -> bool:
    """Whether a browser page at ``origin`` may call us (``origin`` as sent, e.g.
    ``https://chat.example.com``). A missing Origin is not decided here."""
    if not origin:
        return False
    normalized = origin.strip().rstrip("/").lower()
    if normalized in {o.rstrip("/").lower() for o in settings.http.allowed_origins}:
        return True
    parts = urlsplit(normalized)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if host_header and parts.netloc == host_header.strip().lower():
        return True  # same origin: the page was served by this service
    return not settings.is_production and split_host(parts.netloc)[0] in LOOPBACK_HOSTS
