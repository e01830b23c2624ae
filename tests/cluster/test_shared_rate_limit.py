"""Two replicas (real ``mongars serve`` processes) sharing one database and one Redis: a user
allowed 10 chats a minute gets exactly 10 across both, and the 11th is a 429 that says so."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis

from tests.conftest import IN_CI, PASSWORD
from tests.live_server import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
PER_MINUTE = 10


def replica_environment(data_dir: Path, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        {
            "MONGARS_DATA_DIR": str(data_dir),
            "MONGARS_SECRET_KEY": secrets.token_urlsafe(48),  # the same for both replicas
            "MONGARS_REDIS_URL": REDIS_URL,
            "MONGARS_REDIS_KEY_PREFIX": prefix,
            "MONGARS_LLM__BACKEND": "fake",
            "MONGARS_RATE_LIMIT__CHAT_PER_MINUTE": str(PER_MINUTE),
            "MONGARS_AUTH__ARGON2_TIME_COST": "1",
            "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
            "MONGARS_AUTH__ARGON2_PARALLELISM": "1",
        }
    )
    return env


def wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{base_url} did not start:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two replicas for the module; each test uses its own user, so its own budget."""
    tmp_path = tmp_path_factory.mktemp("replicas")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc} (CI needs it)")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    prefix = f"mongars-cluster-{secrets.token_hex(4)}"
    env = replica_environment(tmp_path / "var", prefix)
    mongars = [sys.executable, "-m", "mongars"]
    # Migrate once, then start both without migrating: two processes racing to migrate one
    # database is what `mongars migrate` once per release avoids.
    migrated = subprocess.run(  # noqa: S603
        [*mongars, "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls = []
    try:
        for n in range(2):
            port = free_port()
            log = tmp_path / f"replica{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603
                    [*mongars, "serve", "--port", str(port), "--no-migrate"],
                    env=env,
                    cwd=tmp_path,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append((process, log))
            urls.append(f"http://127.0.0.1:{port}")
        for url, (process, log) in zip(urls, processes, strict=True):
            wait_until_up(url, process, log)
        yield urls[0], urls[1]
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            process.wait(timeout=15)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def sign_up(first: str, second: str, username: str) -> dict[str, str]:
    """Register on one replica, log in on the other: they share the accounts."""
    registered = httpx.post(
        f"{first}/api/v1/user/register", json={"username": username, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    tokens = httpx.post(
        f"{second}/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def assert_refusal(response: httpx.Response) -> None:
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60 // PER_MINUTE
    assert response.headers["ratelimit-limit"] == str(PER_MINUTE)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 55 <= int(response.headers["ratelimit-reset"]) <= 60


class TestOneBudgetAcrossReplicas:
    def test_alternating_replicas_get_ten_then_429_on_both(self, replicas: tuple[str, str]) -> None:
        a, b = replicas
        headers = sign_up(a, b, "ada")
        answers = []
        with httpx.Client(timeout=20, headers=headers) as client:
            for n in range(PER_MINUTE + 2):
                replica = (a, b)[n % 2]
                answers.append(
                    client.post(f"{replica}/api/v1/conversation/chat", json={"message": f"n{n}"})
                )
        assert [r.status_code for r in answers] == [200] * PER_MINUTE + [429, 429]
        remaining = [int(r.headers["ratelimit-remaining"]) for r in answers[:PER_MINUTE]]
        assert remaining == list(range(PER_MINUTE - 1, -1, -1))
        for refused in answers[PER_MINUTE:]:  # the 11th on one replica, the 12th on the other
            assert_refusal(refused)

    async def test_a_concurrent_burst_on_both_gets_exactly_ten(
        self, replicas: tuple[str, str]
    ) -> None:
        a, b = replicas
        headers = await anyio.to_thread.run_sync(sign_up, b, a, "bob")
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=20, headers=headers) as client:

            async def send(replica: str, n: int) -> None:
                answers.append(
                    await client.post(
                        f"{replica}/api/v1/conversation/chat", json={"message": f"burst {n}"}
                    )
                )

            async with anyio.create_task_group() as group:
                for n in range(2 * PER_MINUTE):
                    group.start_soon(send, (a, b)[n % 2], n)
        allowed = [r for r in answers if r.status_code == 200]
        assert len(allowed) == PER_MINUTE
        assert sorted(int(r.headers["ratelimit-remaining"]) for r in allowed) == list(
            range(PER_MINUTE)
        )
        for refused in (r for r in answers if r.status_code != 200):
            assert_refusal(refused)
