"""What the fault tests start and inspect: a private Redis server, the mock model backend as
a process, and the rows a replica stored (read with SQL, not through the API under test)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from mongars.devtools.cluster import Replica, stop
from tests.cluster.harness import POSTGRES_URL
from tests.conftest import PASSWORD
from tests.live_server import register_and_login

MOCK_BACKEND = Path(__file__).resolve().parents[2] / "bench" / "mock_backend.py"
MOCK_ANSWER = "Hello from the mock backend."


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


class RedisServer:
    """A private ``redis-server`` (no persistence) this test may stop: never the shared one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for the Redis fault test"
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self._process)

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextmanager
def mock_backend(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``bench/mock_backend.py``: an OpenAI-compatible server answering ``MOCK_ANSWER``."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(MOCK_BACKEND), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        stop(process)


@dataclass(frozen=True)
class Row:
    id: int
    role: str
    status: str
    content: str


def stored_messages(schema: str, username: str) -> list[Row]:
    """``fetch_messages`` for synchronous tests."""
    return asyncio.run(fetch_messages(schema, username))


async def fetch_messages(schema: str, *usernames: str) -> list[Row]:
    """Every message row of these users, in insertion order, straight from PostgreSQL."""
    connection = await asyncpg.connect(
        POSTGRES_URL, timeout=5, server_settings={"search_path": schema}
    )
    try:
        records = await connection.fetch(
            "SELECT m.id, m.role, m.status, m.content FROM messages m"
            " JOIN users u ON u.id = m.user_id WHERE u.username = ANY($1::text[]) ORDER BY m.id",
            list(usernames),
        )
    finally:
        await connection.close()
    return [Row(r["id"], r["role"], r["status"], r["content"]) for r in records]


def sign_up(replica: Replica, username: str) -> dict[str, str]:
    return register_and_login(replica.base_url, username, PASSWORD)


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def ready(replica: Replica) -> httpx.Response:
    return httpx.get(f"{replica.base_url}/ready", timeout=5)
