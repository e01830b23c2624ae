"""Passwords, access and refresh tokens and API keys never reach the logs: not the access log,
not the error log, not ours, whatever the outcome of the request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
import uvicorn

from mongars.app import create_app
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import migrated_settings
from tests.live_server import free_port

PASSWORD = "a very secret passphrase"
# The test's own HTTP client logs too; only what the server writes matters here.
CLIENT_LOGGERS = ("httpx", "httpcore")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    settings = await migrated_settings(tmp_path)
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    port = free_port()
    # log_config=None: uvicorn's loggers propagate to the root, where caplog listens.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="debug", log_config=None, access_log=True
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server died while starting"
        assert time.monotonic() < deadline, "the server did not start in time"
        await anyio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def test_credentials_are_never_logged(server: str, caplog: pytest.LogCaptureFixture) -> None:
    await anyio.to_thread.run_sync(exercise, server, caplog)


def exercise(server: str, caplog: pytest.LogCaptureFixture) -> None:
    secrets: list[str] = [PASSWORD]
    with caplog.at_level(logging.DEBUG), httpx.Client(base_url=server, timeout=10) as client:
        client.post("/api/v1/user/register", json={"username": "ada", "password": PASSWORD})
        client.post("/api/v1/auth/login", json={"username": "ada", "password": "wrong " + PASSWORD})
        client.post("/api/v1/auth/login", json={"username": "ada", "password": "x" * 2000})
        client.post("/token", data={"username": "ada", "password": "wrong " + PASSWORD})
        tokens = client.post(
            "/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}
        ).json()
        secrets += [
            tokens["access_token"],
            tokens["refresh_token"],
            "wrong " + PASSWORD,
            "x" * 2000,
        ]
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        key = client.post("/api/v1/api-keys", headers=auth, json={"name": "ci"}).json()["key"]
        secrets.append(key)
        client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {key}"})
        client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        client.post(
            "/api/v1/user/change-password",
            headers=auth,
            json={"old_password": PASSWORD, "new_password": PASSWORD + "!"},
        )
        client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {key}x"})
    server_lines = [
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(CLIENT_LOGGERS)
    ]
    # uvicorn's access log ('"POST /path HTTP/1.1" status') and ours (mongars.access).
    access = [line for line in server_lines if '"POST /api/v1/auth/login HTTP' in line]
    assert len(access) == 3, "the access log was not captured"
    ours = [
        r for r in caplog.records if r.name == "mongars.access" and "auth/login" in r.msg % r.args
    ]
    assert len(ours) == 3, "monGARS's access log was not captured"
    text = "\n".join(server_lines)
    for secret in secrets:
        assert secret not in text
    assert "Bearer" not in text
