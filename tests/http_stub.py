"""Real HTTP servers on 127.0.0.1 that play a model backend's wire behaviours a test needs and the
real servers do not show on demand (a 503 while loading, a key echoed in an error, a stream cut
short, a connection dropped before any answer).

- ``StubServer``: each request is answered by ``handler``, an ``aiohttp.web`` handler the test
  sets; every request is recorded (``received``), with the client port it came from, so a test
  can tell whether the client reused its connection.
- ``DroppingServer``: reads each request's head and hangs up without a byte of answer.
- ``counted_connects``: counts the requests that reach aiohttp's connector, which is where a
  request to a port nobody listens on is refused (no server can count those).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


async def _unset(request: web.BaseRequest) -> web.StreamResponse:
    return web.json_response({"error": "no handler set"}, status=500)


class StubServer:
    def __init__(self) -> None:
        self.handler: Handler = _unset
        self.received: list[Received] = []
        self._server = RawTestServer(self._handle, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(
            Received(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=await request.read(),
                client_port=int(peer[1]) if peer else 0,
            )
        )
        return await self.handler(request)

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[StubServer]:
        server = cls()
        await server._server.start_server()
        try:
            yield server
        finally:
            await server._server.close()


class DroppingServer:
    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _hang_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[DroppingServer]:
        server = cls()
        listener = await asyncio.start_server(server._hang_up, "127.0.0.1", 0)
        server.port = listener.sockets[0].getsockname()[1]
        try:
            yield server
        finally:
            listener.close()
            await listener.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def counted_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of every request that asks aiohttp's connector for a connection, pooled or new."""
    seen: list[str] = []
    original = aiohttp.BaseConnector.connect

    async def counting(self: aiohttp.BaseConnector, req: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(req.url))
        return await original(self, req, *args, **kwargs)

    monkeypatch.setattr(aiohttp.BaseConnector, "connect", counting)
    return seen
