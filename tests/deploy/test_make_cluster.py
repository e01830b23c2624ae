"""``make cluster`` (``python -m mongars.devtools.cluster``): two replicas come up sharing one
database, the printed instructions work across them, and SIGTERM (or Ctrl-C) stops everything
it started."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.harness import POSTGRES_URL, REDIS_URL, schema_or_skip
from tests.conftest import PASSWORD

STARTUP_SECONDS = 90  # two replicas importing the whole app on a busy 2-core machine


@pytest.fixture
def schema() -> Iterator[str]:
    with schema_or_skip("mongars_launcher") as name:
        yield name


def wait_for_line(output: Path, marker: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        text = output.read_text()
        if marker in text:
            return text
        if process.poll() is not None:
            raise AssertionError(f"the launcher exited:\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"no {marker!r} after {STARTUP_SECONDS} s:\n{output.read_text()}")


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


class TestMakeCluster:
    def test_two_replicas_share_accounts_and_stop_on_sigterm(
        self, schema: str, tmp_path: Path
    ) -> None:
        output = tmp_path / "launcher.out"
        options = {
            "--first-port": "0",
            "--backend": "fake",
            "--schema": schema,
            "--postgres-url": POSTGRES_URL,
            "--redis-url": REDIS_URL,
        }
        command = [sys.executable, "-m", "mongars.devtools.cluster"]
        command += [part for pair in options.items() for part in pair]
        with output.open("wb") as sink:
            launcher = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            text = wait_for_line(output, "Ctrl-C stops every replica.", launcher)
            urls = re.findall(r"^  (http://127\.0\.0\.1:\d+)$", text, re.MULTILINE)
            assert len(urls) == 2, text
            assert "/api/v1/user/register" in text
            username = f"u{uuid.uuid4().hex[:8]}"
            credentials = {"username": username, "password": PASSWORD}
            registered = httpx.post(f"{urls[0]}/api/v1/user/register", json=credentials)
            assert registered.status_code == 201, registered.text
            token = httpx.post(f"{urls[1]}/token", data=credentials).json()["access_token"]
            answer = httpx.post(
                f"{urls[1]}/api/v1/conversation/chat",
                headers={"Authorization": f"Bearer {token}"},
                json={"message": "hello"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["response"] == "echo: hello"
        finally:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(timeout=60)
        assert "Stopping the replicas." in output.read_text()
        assert not any(listening(url) for url in urls)
