"""100 simulated users chatting for 60 s against two replicas (real ``mongars serve``
processes on PostgreSQL and Redis, the fake backend): no 5xx, no error of any kind, and every
acknowledged turn (a 200 with a ``message_id``) is in the database exactly once, counted with
SQL. Loopback only; rate limits and quotas are turned off so that only faults would refuse."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest

from mongars.devtools.cluster import Replica
from tests.cluster.harness import cluster_env, replicas
from tests.conftest import PASSWORD
from tests.faults.support import fetch_messages

USERS = 100
DURATION_SECONDS = 60.0
# Generous: a turn waits behind up to 99 others on a shared 2-core machine.
REQUEST_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, cluster_schema: str) -> Iterator[list[Replica]]:
    tmp_path = tmp_path_factory.mktemp("load")
    env = cluster_env(
        tmp_path,
        cluster_schema,
        MONGARS_RATE_LIMIT__CHAT_PER_MINUTE="0",
        MONGARS_RATE_LIMIT__LOGIN_PER_MINUTE="0",
        MONGARS_RATE_LIMIT__REGISTER_PER_HOUR="0",
        MONGARS_QUOTA__DAILY_MESSAGES="0",
        MONGARS_QUOTA__DAILY_TOKENS="0",
        MONGARS_RAG__ENABLED="false",
        MONGARS_LOG_LEVEL="WARNING",  # an access-log line per turn would cost as much as the turn
    )
    with replicas(env, 2, tmp_path) as started:
        yield started


@dataclass
class Turn:
    message: str
    status: int | None = None  # None: no HTTP answer at all (a transport error)
    message_id: int | None = None
    user_message_id: int | None = None
    error: str = ""


@dataclass
class User:
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)


async def sign_up(client: httpx.AsyncClient, user: User, first: str, second: str) -> None:
    credentials = {"username": user.name, "password": PASSWORD}
    registered = await client.post(f"{first}/api/v1/user/register", json=credentials)
    assert registered.status_code == 201, registered.text
    tokens = await client.post(f"{second}/api/v1/auth/login", json=credentials)
    assert tokens.status_code == 200, tokens.text
    user.headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def chat_until(
    client: httpx.AsyncClient, user: User, urls: list[str], deadline: float
) -> None:
    """One user: a turn, then the next as soon as it is answered, alternating replicas, in
    one conversation, until the deadline. A turn started before the deadline is finished."""
    conversation_id = None
    n = 0
    while time.monotonic() < deadline:
        turn = Turn(message=f"{user.name} turn {n}")
        user.turns.append(turn)
        body: dict[str, str] = {"message": turn.message}
        if conversation_id:
            body["conversation_id"] = conversation_id
        try:
            response = await client.post(
                f"{urls[n % 2]}/api/v1/conversation/chat", headers=user.headers, json=body
            )
        except httpx.TransportError as exc:
            turn.error = f"{type(exc).__name__}: {exc}"
            return
        turn.status = response.status_code
        if response.status_code != 200:
            turn.error = response.text[:300]
            return
        answer = response.json()
        turn.message_id, turn.user_message_id = answer["message_id"], answer["user_message_id"]
        conversation_id = answer["conversation_id"]
        n += 1


class TestHundredUsersForAMinute:
    async def test_no_5xx_and_every_acknowledged_turn_stored_exactly_once(
        self, pair: list[Replica], cluster_schema: str
    ) -> None:
        urls = [replica.base_url for replica in pair]
        prefix = f"load{uuid.uuid4().hex[:6]}"
        users = [User(f"{prefix}u{n:03d}") for n in range(USERS)]
        # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: otherwise
        # a turn can be sent on a connection the server is closing at that instant, which
        # fails without the server having seen it (a race in HTTP/1.1 itself, not a fault).
        limits = httpx.Limits(
            max_connections=2 * USERS, max_keepalive_connections=2 * USERS, keepalive_expiry=1.0
        )
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, limits=limits) as client:
            async with anyio.create_task_group() as group:
                for n, user in enumerate(users):
                    group.start_soon(sign_up, client, user, urls[n % 2], urls[(n + 1) % 2])
            started = time.monotonic()
            deadline = started + DURATION_SECONDS
            async with anyio.create_task_group() as group:
                for n, user in enumerate(users):
                    group.start_soon(
                        chat_until, client, user, urls[n % 2 :] + urls[: n % 2], deadline
                    )
            elapsed = time.monotonic() - started

        turns = [turn for user in users for turn in user.turns]
        failed = [turn for turn in turns if turn.status != 200]
        assert not [t for t in failed if t.status is not None and t.status >= 500], failed[:5]
        assert not failed, failed[:5]
        acknowledged = {turn.message_id: turn for turn in turns}
        assert len(acknowledged) == len(turns)  # every id handed out once
        assert all(user.turns for user in users)  # nobody starved
        print(
            f"{len(turns)} turns by {USERS} users in {elapsed:.1f} s: {len(turns) / elapsed:.0f}/s"
        )

        rows = await fetch_messages(cluster_schema, *(user.name for user in users))
        answers = {row.id: row for row in rows if row.role == "assistant"}
        questions = {row.id: row for row in rows if row.role == "user"}
        # Exactly the acknowledged turns are stored: none missing, none extra, none twice.
        assert set(answers) == set(acknowledged)
        assert len(questions) == len(answers)
        assert Counter(row.content for row in questions.values()).most_common(1)[0][1] == 1
        for message_id, turn in acknowledged.items():
            assert answers[message_id].status == "complete"
            assert answers[message_id].content == f"echo: {turn.message}"
            assert questions[turn.user_message_id].content == turn.message  # type: ignore[index]
