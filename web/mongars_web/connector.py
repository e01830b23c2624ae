"""How the UI reaches the API: the same ASGI app in-process, or a remote base URL.

A connector travels with each request in the ASGI scope (``SCOPE_KEY``), put there by the
wrapper that ``mongars.web_mount`` or ``mongars web`` builds, so one process can serve several
apps (tests do) and Django's process-wide settings hold nothing per app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE_KEY = "mongars.web"
# A chat turn without streaming waits for the whole answer; the API bounds it itself
# (MONGARS_CHAT__TOKEN_TIMEOUT_SECONDS), so this only guards against a hung connection.
API_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=5.0)


class ApiConnector(Protocol):
    # None: unknown (a remote API answers 403 registration_closed when it is).
    registration_open: bool | None

    def client(self, scope: Mapping[str, Any]) -> httpx.AsyncClient:
        """A client for the API, for one request of the UI (``scope`` is that request's)."""
        ...

    def websocket_url(self, scope: Mapping[str, Any]) -> str | None:
        """Where the page opens the WebSocket; None: its own origin."""
        ...


@dataclass
class InProcessApi:
    """The API in the same ASGI app, called through httpx's ASGI transport.

    Chosen over the loopback address of the running server because that address is not known
    in every setup (several workers, a socket, tests without a server), and because calling
    the app directly skips a TCP round trip while still passing through every middleware: the
    API sees the browser's address (its login and registration limits stay per client) and the
    Host the browser used. The app's lifespan state (its ``Resources``) is handed on from the
    UI's request, exactly as the server hands it to every request.
    """

    app: ASGIApp
    registration_open: bool | None = True

    def client(self, scope: Mapping[str, Any]) -> httpx.AsyncClient:
        state = dict(scope.get("state") or {})
        client_address = scope.get("client") or ("127.0.0.1", 0)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"localhost").decode("latin-1")
        app = self.app

        async def with_lifespan_state(inner: Scope, receive: Receive, send: Send) -> None:
            inner["state"] = dict(state)
            await app(inner, receive, send)

        transport = httpx.ASGITransport(
            app=with_lifespan_state, client=(client_address[0], client_address[1])
        )
        return httpx.AsyncClient(
            transport=transport, base_url=f"http://{host}", timeout=API_TIMEOUT
        )

    def websocket_url(self, scope: Mapping[str, Any]) -> str | None:
        return None


@dataclass
class RemoteApi:
    """An API elsewhere (``mongars web --api-url``). A client per UI request: Django may run a
    request's view outside the server's event loop, and an httpx pool is tied to its loop."""

    base_url: str
    registration_open: bool | None = None
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    def client(self, scope: Mapping[str, Any]) -> httpx.AsyncClient:
        # The browser's address, for an API that lists this UI in MONGARS_HTTP__TRUSTED_PROXIES
        # (its login and registration limits then stay per client); others ignore the header.
        browser = scope.get("client")
        headers = {"X-Forwarded-For": browser[0]} if browser else {}
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=API_TIMEOUT, transport=self.transport, headers=headers
        )

    def websocket_url(self, scope: Mapping[str, Any]) -> str | None:
        base = self.base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://") + "/ws/chat/"
        return "ws://" + base.removeprefix("http://") + "/ws/chat/"


def with_connector(app: ASGIApp, connector: ApiConnector) -> ASGIApp:
    """``app`` (Django's), with ``connector`` in the scope of every request it serves."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, SCOPE_KEY: connector}
        await app(scope, receive, send)

    return serve
