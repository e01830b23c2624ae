"""The model backend (an OpenAI-compatible server process) killed under a running replica:
the first failures are 503 ``backend_unavailable``, then the circuit opens and every turn is
refused at once with ``Retry-After``; once the backend is back the circuit closes by itself.
A turn that reached the dead backend stores the question and an answer marked ``error``
(never canned text); a turn refused by the open circuit stores nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mongars.devtools.cluster import Replica, free_port
from tests.cluster.harness import cluster_env, replicas
from tests.faults.support import MOCK_ANSWER, mock_backend, sign_up, stored_messages

FAILURES_TO_OPEN = 2
COOLDOWN_SECONDS = 5
# Refused by the open circuit: no network I/O toward the backend, only the turn's own
# bookkeeping. Generous for a shared 2-core machine, far below a connect timeout.
FAST_REFUSAL_SECONDS = 1.5


@pytest.fixture(scope="module")
def backend_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, cluster_schema: str, backend_port: int
) -> Iterator[Replica]:
    tmp_path: Path = tmp_path_factory.mktemp("backend-fault")
    env = cluster_env(
        tmp_path,
        cluster_schema,
        redis_url=None,
        MONGARS_LLM__BACKEND="openai",
        MONGARS_LLM__BASE_URL=f"http://127.0.0.1:{backend_port}/v1",
        MONGARS_LLM__MODEL="bench-model",
        MONGARS_LLM__MAX_RETRIES="0",
        MONGARS_LLM__CONNECT_TIMEOUT_SECONDS="2",
        MONGARS_LLM__BREAKER_FAILURE_THRESHOLD=str(FAILURES_TO_OPEN),
        MONGARS_LLM__BREAKER_COOLDOWN_SECONDS=str(COOLDOWN_SECONDS),
        MONGARS_RATE_LIMIT__CHAT_PER_MINUTE="0",
        MONGARS_RAG__ENABLED="false",
    )
    with replicas(env, 1, tmp_path) as (only,):
        yield only


def chat(replica: Replica, headers: dict[str, str], message: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{replica.base_url}/api/v1/conversation/chat",
        headers=headers,
        json={"message": message},
        timeout=30,
    )
    return response, time.monotonic() - started


def completions_served(port: int) -> int:
    stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
    return int(stats.get("stream", 0)) + int(stats.get("plain", 0))


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "backend_unavailable"
    # Refused connection or open circuit alike, the client is told when to come back.
    assert int(response.headers["Retry-After"]) >= 1


class TestBackendKilled:
    def test_circuit_opens_refuses_fast_then_closes_after_recovery(
        self, replica: Replica, backend_port: int, cluster_schema: str
    ) -> None:
        username = f"u{uuid.uuid4().hex[:8]}"
        headers = sign_up(replica, username)
        with mock_backend(backend_port) as backend:
            answered, _ = chat(replica, headers, "before")
            assert answered.status_code == 200, answered.text
            assert answered.json()["response"] == MOCK_ANSWER
            backend.kill()
            backend.wait()

        # The backend is gone: each of the first failures is a 503 (connection refused).
        for n in range(FAILURES_TO_OPEN):
            refused, _ = chat(replica, headers, f"down {n}")
            assert_unavailable(refused)
        opened = time.monotonic()

        with mock_backend(backend_port):
            # Back already, but the circuit is open: turns are refused without trying, fast,
            # with a truthful Retry-After, until the cooldown has passed.
            for n in range(3):
                refused, seconds = chat(replica, headers, f"open {n}")
                assert_unavailable(refused)
                assert 1 <= int(refused.headers["retry-after"]) <= COOLDOWN_SECONDS
                assert seconds < FAST_REFUSAL_SECONDS
            assert time.monotonic() - opened < COOLDOWN_SECONDS, "too slow to see it open"
            assert completions_served(backend_port) == 0

            time.sleep(max(0.0, opened + COOLDOWN_SECONDS + 0.5 - time.monotonic()))
            trial, _ = chat(replica, headers, "after")  # the half-open trial, which closes it
            closed, _ = chat(replica, headers, "after again")
            assert completions_served(backend_port) == 2
        assert trial.status_code == 200, trial.text
        assert closed.status_code == 200, closed.text
        assert closed.json()["response"] == MOCK_ANSWER

        rows = stored_messages(cluster_schema, username)
        # Turns that reached the backend keep the question and an answer row saying how they
        # ended; turns refused by the open circuit stored nothing at all.
        assert [(r.role, r.content if r.role == "user" else r.status) for r in rows] == [
            ("user", "before"),
            ("assistant", "complete"),
            ("user", "down 0"),
            ("assistant", "error"),
            ("user", "down 1"),
            ("assistant", "error"),
            ("user", "after"),
            ("assistant", "complete"),
            ("user", "after again"),
            ("assistant", "complete"),
        ]
        assert all(r.content != MOCK_ANSWER for r in rows if r.status == "error")
