"""Helpers for talking to the WebSocket channel with the real ``websockets`` client."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.live_server import LiveServer


async def get_ticket(server: LiveServer, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/v1/auth/ws/ticket", headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["ticket"])


def ws_url(server: LiveServer, ticket: str | None) -> str:
    base = server.base_url.replace("http://", "ws://") + "/ws/chat/"
    return base if ticket is None else f"{base}?t={ticket}"


def open_socket(
    server: LiveServer,
    ticket: str | None,
    *,
    origin: str | None = None,
    host_header: str | None = None,
    **kwargs: Any,
) -> Any:
    url = ws_url(server, ticket)
    if host_header is not None:
        # The URL names the Host header; host/port say where the TCP connection really goes.
        address, port = server.base_url.removeprefix("http://").split(":")
        url = url.replace(f"{address}:{port}", host_header)
        kwargs.update(host=address, port=int(port))
    return connect(url, origin=origin, open_timeout=5, **kwargs)  # type: ignore[arg-type]


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        return dict(json.loads(await ws.recv()))


async def receive_until(
    ws: ClientConnection, type_: str, within: float = 10.0
) -> list[dict[str, Any]]:
    """Frames up to and including the first of ``type_`` (pings skipped)."""
    frames = []
    while True:
        frame = await receive(ws, within)
        if frame["type"] == "ping":
            continue
        frames.append(frame)
        if frame["type"] == type_:
            return frames


async def send(
    ws: ClientConnection, type_: str, data: dict[str, Any] | None = None, id_: str = "c1"
) -> None:
    await ws.send(json.dumps({"id": id_, "type": type_, "data": data or {}}))


async def close_code(ws: ClientConnection, within: float = 5.0) -> tuple[int, str]:
    """Wait for the server to close the socket; its close code and reason."""

    async def drain() -> None:
        while True:
            await ws.recv()

    with anyio.fail_after(within), pytest.raises(ConnectionClosed) as closed:
        await drain()
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason
