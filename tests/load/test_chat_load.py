"""100 simulated users chatting for 60 s against two replicas (real ``mongars serve``
processes on PostgreSQL and Redis, the fake backend), each user through the Python SDK
(``mongars_sdk.AsyncClient``, one per replica): no 5xx, no error of any kind, and every
acknowledged turn (an answer with a ``message_id``) is in the database exactly once, counted
with SQL. Loopback only; rate limits and quotas are turned off so that only faults would
refuse."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import httpx
import pytest
from mongars_sdk import APIConnectionError, APIStatusError, AsyncClient

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
    clients: list[AsyncClient] = field(default_factory=list)  # one per replica
    turns: list[Turn] = field(default_factory=list)


def sdk_client(base_url: str, **credentials: str | None) -> AsyncClient:
    # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: otherwise a
    # turn can be sent on a connection the server is closing at that instant, which fails
    # without the server having seen it (a race in HTTP/1.1 itself, not a fault).
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(keepalive_expiry=1.0))
    return AsyncClient(
        base_url,
        timeout=REQUEST_TIMEOUT_SECONDS,
        max_retries=0,  # a refusal must show, not be retried away
        transport=transport,
        **credentials,
    )


async def sign_up(user: User, first: str, second: str) -> None:
    """Register on one replica, log in on the other, and use those tokens on both."""
    async with sdk_client(first) as registrar:
        await registrar.register(user.name, PASSWORD)
    on_second = sdk_client(second)
    tokens = await on_second.login(user.name, PASSWORD)
    on_first = sdk_client(
        first, access_token=tokens.access_token, refresh_token=tokens.refresh_token
    )
    user.clients = [on_first, on_second]


async def chat_until(user: User, deadline: float) -> None:
    """One user: a turn, then the next as soon as it is answered, alternating replicas, in
    one conversation, until the deadline. A turn started before the deadline is finished."""
    conversation_id = None
    n = 0
    while time.monotonic() < deadline:
        turn = Turn(message=f"{user.name} turn {n}")
        user.turns.append(turn)
        try:
            answer = await user.clients[n % 2].chat(turn.message, conversation_id=conversation_id)
        except APIStatusError as exc:
            turn.status, turn.error = exc.status_code, str(exc)[:300]
            return
        except APIConnectionError as exc:
            turn.error = f"{type(exc).__name__}: {exc}"
            return
        turn.status = 200
        turn.message_id, turn.user_message_id = answer.message_id, answer.user_message_id
        conversation_id = answer.conversation_id
        n += 1


class TestHundredUsersForAMinute:
    async def test_no_5xx_and_every_acknowledged_turn_stored_exactly_once(
        self, pair: list[Replica], cluster_schema: str
    ) -> None:
        urls = [replica.base_url for replica in pair]
        prefix = f"load{uuid.uuid4().hex[:6]}"
        users = [User(f"{prefix}u{n:03d}") for n in range(USERS)]
        try:
            async with anyio.create_task_group() as group:
                for n, user in enumerate(users):
                    group.start_soon(sign_up, user, urls[n % 2], urls[(n + 1) % 2])
            started = time.monotonic()
            deadline = started + DURATION_SECONDS
            async with anyio.create_task_group() as group:
                for user in users:
                    group.start_soon(chat_until, user, deadline)
            elapsed = time.monotonic() - started
        finally:
            for user in users:
                for client in user.clients:
                    await client.close()

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
