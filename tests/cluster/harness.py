"""Replicas as real server processes on loopback, sharing PostgreSQL and Redis.

Each replica is ``python -m mongars serve`` with its own port, the same database (a fresh
schema in the ``test`` database) and the same Redis key prefix, so they share exactly what
production replicas share and nothing else.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.live_server import free_port

POSTGRES_URL = os.environ.get(
    "MONGARS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MONGARS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Replica:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def cluster_env(tmp_path: Path, schema: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    return {
        **clean,
        "MONGARS_DATA_DIR": str(tmp_path),
        "MONGARS_SECRET_KEY": "cluster-secret-" + "k" * 40,  # every replica signs alike
        "MONGARS_DATABASE_URL": POSTGRES_URL,
        "MONGARS_DATABASE_SCHEMA": schema,
        "MONGARS_REDIS_URL": REDIS_URL,
        "MONGARS_REDIS_KEY_PREFIX": f"mongars-test-{secrets.token_hex(4)}",
        "MONGARS_LLM__BACKEND": "fake",
        "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
        "MONGARS_AUTH__ARGON2_TIME_COST": "1",
        **extra,
    }


@contextmanager
def replicas(env: dict[str, str], count: int, tmp_path: Path) -> Iterator[list[Replica]]:
    migrated = subprocess.run(
        [sys.executable, "-m", "mongars", "migrate"], env=env, capture_output=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr.decode()
    with ExitStack() as stack:
        started = []
        for index in range(count):
            started.append(stack.enter_context(_replica(env, f"replica-{index}", tmp_path)))
        for replica in started:
            _wait_ready(replica)
        yield started


@contextmanager
def _replica(env: dict[str, str], name: str, tmp_path: Path) -> Iterator[Replica]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "mongars", "serve", "--port", str(port), "--no-migrate"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Replica(name, f"http://127.0.0.1:{port}", process, log)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError(f"{replica.name} exited:\n{replica.log.read_text()}")
        try:
            if httpx.get(f"{replica.base_url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{replica.name} not ready:\n{replica.log.read_text()}")
