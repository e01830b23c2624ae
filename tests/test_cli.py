"""The ``mongars`` command as an operator uses it, against a real uvicorn server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from mongars.devtools.cluster import free_port
from tests.live_server import register_and_login
from tests.ws_client import receive, receive_until, send

MONGARS = [sys.executable, "-m", "mongars"]
PASSWORD = "correct horse battery"


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [*MONGARS, *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    return {
        **clean,
        "MONGARS_DATA_DIR": str(tmp_path / "var"),
        "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
        "MONGARS_AUTH__ARGON2_TIME_COST": "1",
    }


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(  # noqa: S603
        [*MONGARS, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "server.log").read_text())
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


class TestServe:
    def test_a_newcomer_registers_logs_in_and_reads_their_profile(
        self, server: str, tmp_path: Path
    ) -> None:
        with httpx.Client(base_url=server, timeout=10) as client:
            assert client.get("/ready").json()["status"] == "ready"
            assert (
                client.post(
                    "/api/v1/user/register", json={"username": "newcomer", "password": PASSWORD}
                ).status_code
                == 201
            )
            tokens = client.post(
                "/token", data={"username": "newcomer", "password": PASSWORD}
            ).json()
            me = client.get(
                "/api/v1/user/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert me.status_code == 200
            assert me.json()["username"] == "newcomer"
            assert client.get("/openapi.json").status_code == 200
        # serve migrated the default SQLite database itself, in the data directory
        assert (tmp_path / "var" / "mongars.db").exists()
        assert (tmp_path / "var" / "secret_key").exists()

    def test_first_admin_comes_from_the_cli(self, server: str, env: dict[str, str]) -> None:
        created = run(
            env, "user", "create-admin", "Boss", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        with httpx.Client(base_url=server, timeout=10) as client:
            token = client.post(
                "/api/v1/auth/login", json={"username": "boss", "password": PASSWORD}
            ).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            assert (
                client.get("/api/v1/users", headers=headers).json()["items"][0]["is_admin"] is True
            )

            reset = run(
                env, "user", "set-password", "boss", "--password-stdin", stdin="another password\n"
            )
            assert reset.returncode == 0, reset.stderr
            assert client.get("/api/v1/user/me", headers=headers).status_code == 401

    async def test_the_embedded_model_streams_over_a_websocket(self, server: str) -> None:
        # As a user runs it: `mongars serve` with its default backend, the embedded SmolLM2,
        # and a real WebSocket client with a single-use ticket.
        headers = register_and_login(server, "streamer", PASSWORD)
        async with httpx.AsyncClient(base_url=server) as http:
            ticket = (await http.post("/api/v1/auth/ws/ticket", headers=headers)).json()["ticket"]
        url = server.replace("http://", "ws://") + f"/ws/chat/?t={ticket}"
        async with connect(url, origin=server, open_timeout=10) as ws:
            assert (await receive(ws, within=10))["type"] == "ws.connected"
            assert (await receive(ws, within=10))["type"] == "history.snapshot"
            await send(ws, "chat.send", {"message": "Name one colour."}, id_="m1")
            frames = await receive_until(ws, "chat.done", within=60)
        assert any(f["type"] == "ack" and f["data"]["ref"] == "m1" for f in frames)
        deltas = [f["data"]["text"] for f in frames if f["type"] == "chat.delta"]
        message = frames[-1]["data"]["message"]
        assert message["status"] == "complete"
        assert message["backend"] == "embedded"
        assert message["content"].strip()
        assert "".join(deltas) == message["content"]
        assert message["completion_tokens"] > 0


class TestUserCommands:
    def test_bad_input_is_refused_with_a_reason(self, env: dict[str, str]) -> None:
        short = run(env, "user", "create", "someone", "--password-stdin", stdin="short\n")
        assert short.returncode == 2
        assert "password must be 8 to 128 characters" in short.stderr
        spaced = run(env, "user", "create", "has space", "--password-stdin", stdin=PASSWORD + "\n")
        assert spaced.returncode == 2
        assert "username may contain only" in spaced.stderr

    def test_duplicates_and_unknown_users(self, env: dict[str, str]) -> None:
        assert (
            run(env, "user", "create", "zoe", "--password-stdin", stdin=PASSWORD + "\n").returncode
            == 0
        )
        again = run(env, "user", "create", "zoe", "--password-stdin", stdin=PASSWORD + "\n")
        assert again.returncode == 1
        assert "taken" in again.stderr
        missing = run(
            env, "user", "set-password", "nobody", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert missing.returncode == 1
        assert "No user named" in missing.stderr

    def test_migrate_reports_the_revision(self, env: dict[str, str]) -> None:
        result = run(env, "migrate")
        assert result.returncode == 0, result.stderr
        assert "revision" in result.stderr

    def test_production_without_a_secret_refuses_to_start(self, env: dict[str, str]) -> None:
        result = run({**env, "MONGARS_ENV": "production"}, "migrate")
        assert result.returncode == 2
        assert "MONGARS_SECRET_KEY" in result.stderr
