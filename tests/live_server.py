"""A real uvicorn server on loopback, in a thread with its own event loop.

For what the in-process ASGI transport cannot show: responses read incrementally, connections
dropped mid-stream, WebSockets. Talk to it over HTTP only (its database engine belongs to its
own loop); configure its model through the ``FakeBackend`` handed in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from mongars.app import create_app
from mongars.config import Settings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.core.rag.embedder import TextEmbedder
from mongars.devtools.cluster import free_port


@dataclass
class LiveServer:
    base_url: str
    fake: FakeBackend


@contextmanager
def live_server(
    settings: Settings, fake: FakeBackend, *, embedder: TextEmbedder | None = None
) -> Iterator[LiveServer]:
    port = free_port()
    app = create_app(settings, roles=ModelRoles.single(fake), embedder=embedder)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(base_url=base_url, fake=fake)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def register_and_login(base_url: str, username: str, password: str) -> dict[str, str]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post(
            "/api/v1/user/register", json={"username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        tokens = client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert tokens.status_code == 200, tokens.text
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}
