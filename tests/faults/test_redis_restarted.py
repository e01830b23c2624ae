"""Redis stopped and restarted under two replicas (a private ``redis-server``, never the
machine's shared one). The documented degraded mode: ``/ready`` reports Redis down, chat,
login and streaming keep working, each replica enforces rate limits from its own memory
(so two replicas allow up to twice the budget), and WebSockets cannot open (the single-use
ticket check needs Redis: 503 ``redis_unavailable``). When Redis is back, both replicas reconnect
by themselves: ready again, one shared budget again, no restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from mongars.devtools.cluster import Replica, free_port
from tests.cluster.harness import cluster_env, replicas
from tests.faults.support import RedisServer, ready, sign_up, stored_messages, wait_until
from tests.live_server import LiveServer
from tests.ws_client import get_ticket, open_socket, receive

PER_MINUTE = 3
# The limiter retries Redis every 5 s; the event bus reconnects on its own schedule.
RECOVERY_SECONDS = 30


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, cluster_schema: str, redis: RedisServer
) -> Iterator[list[Replica]]:
    tmp_path = tmp_path_factory.mktemp("redis-fault")
    env = cluster_env(
        tmp_path,
        cluster_schema,
        redis_url=redis.url,
        MONGARS_RATE_LIMIT__CHAT_PER_MINUTE=str(PER_MINUTE),
        # Each check signs up a fresh user; only the chat limit is under test.
        MONGARS_RATE_LIMIT__REGISTER_PER_HOUR="0",
    )
    with replicas(env, 2, tmp_path) as started:
        yield started


def alternate_chats(pair: list[Replica], headers: dict[str, str], count: int) -> list[int]:
    """``count`` turns, alternating replicas; their status codes."""
    codes = []
    with httpx.Client(headers=headers, timeout=30) as client:
        for n in range(count):
            replica = pair[n % 2]
            response = client.post(
                f"{replica.base_url}/api/v1/conversation/chat", json={"message": f"turn {n}"}
            )
            assert response.status_code in {200, 429}, response.text
            codes.append(response.status_code)
    return codes


def shared_budget_is_back(pair: list[Replica]) -> bool:
    """A fresh user gets exactly PER_MINUTE turns across both replicas, not per replica."""
    headers = sign_up(pair[0], f"u{uuid.uuid4().hex[:8]}")
    return alternate_chats(pair, headers, 2 * PER_MINUTE) == [200] * PER_MINUTE + [429] * (
        PER_MINUTE
    )


def open_websocket(replica: Replica, headers: dict[str, str]) -> str:
    """Take a ticket and open a socket: the first frame's type, or the refusal's code."""

    async def attempt() -> str:
        live = LiveServer(base_url=replica.base_url, fake=None)  # type: ignore[arg-type]
        ticket = await get_ticket(live, headers)
        try:
            async with await open_socket(live, ticket) as ws:
                return str((await receive(ws))["type"])
        except InvalidStatus as refused:
            status, body = refused.response.status_code, refused.response.body or b"{}"
        assert status == 503
        return str(json.loads(body)["code"])

    return asyncio.run(attempt())


def last_event(body: str, kind: str) -> dict[str, Any]:
    """The data of the last SSE event of type ``kind`` in a whole response body."""
    found = None
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == kind:
            found = json.loads(lines["data"])
    assert found is not None, f"no {kind!r} event in {body[-500:]!r}"
    return found


class TestRedisRestarted:
    def test_degraded_without_redis_then_recovers_without_restart(
        self, pair: list[Replica], redis: RedisServer, cluster_schema: str
    ) -> None:
        a, b = pair
        pids = [r.process.pid for r in pair]
        assert shared_budget_is_back(pair)  # the baseline: one budget for both replicas

        redis.stop()
        for replica in pair:
            wait_until(
                lambda replica=replica: ready(replica).status_code == 503,
                RECOVERY_SECONDS,
                f"{replica.name} reporting Redis down",
            )
            checks = ready(replica).json()["checks"]
            assert checks["redis"]["ok"] is False
            assert checks["database"]["ok"] is True

        # Degraded: accounts, chat and streaming work; limits come from each replica's memory.
        username = f"u{uuid.uuid4().hex[:8]}"
        headers = sign_up(a, username)  # registered on a, logged in and chatting on both
        assert alternate_chats(pair, headers, 2 * PER_MINUTE + 2) == [200] * (2 * PER_MINUTE) + [
            429,
            429,
        ]
        streamer = sign_up(b, f"u{uuid.uuid4().hex[:8]}")
        streamed = httpx.post(
            f"{b.base_url}/api/v1/conversation/chat/stream",
            headers=streamer,
            json={"message": "streamed without redis"},
            timeout=30,
        )
        assert streamed.status_code == 200
        done = last_event(streamed.text, "done")
        assert done["message"]["status"] == "complete"
        assert done["message"]["content"] == "echo: streamed without redis"

        # The single-use ticket check needs Redis: a ticket is issued, the upgrade refused.
        assert open_websocket(a, headers) == "redis_unavailable"

        # Redis comes back (empty, like a restart without persistence): recovery by itself.
        redis.start()
        for replica in pair:
            wait_until(
                lambda replica=replica: ready(replica).status_code == 200,
                RECOVERY_SECONDS,
                f"{replica.name} ready again",
            )
        wait_until(
            lambda: shared_budget_is_back(pair),
            RECOVERY_SECONDS,
            "one rate-limit budget shared by both replicas again",
            interval=1,
        )
        assert open_websocket(b, headers) == "ws.connected"
        assert [r.process.pid for r in pair] == pids
        assert all(r.process.poll() is None for r in pair)

        rows = stored_messages(cluster_schema, username)
        answered = [r for r in rows if r.role == "assistant"]
        assert len(answered) == 2 * PER_MINUTE  # refused turns stored nothing
        assert all(r.status == "complete" for r in answered)
