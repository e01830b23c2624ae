from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel

from mongars.core.ws_connections import ConnectionRegistry, TokenBucket, frame

ALICE, BOB = uuid.uuid4(), uuid.uuid4()


@contextmanager
def registry(queue_size: int = 8) -> Iterator[ConnectionRegistry]:
    connections = ConnectionRegistry(queue_size=queue_size, burst=3, refill_per_second=1000.0)
    try:
        yield connections
    finally:
        connections.close_all()


class TestOverflowPolicy:
    async def test_a_full_queue_closes_the_connection_and_drops_nothing_silently(
        self,
    ) -> None:
        with registry(queue_size=8) as connections:
            slow = connections.open(ALICE)
            accepted = [slow.offer(frame("chat.delta", {"n": n})) for n in range(10)]
            assert accepted == [True] * 8 + [False, False]
            assert slow.overflowed
            assert (slow.sent, slow.dropped) == (8, 2)

    async def test_overflow_tells_the_session_once(self) -> None:
        with registry(queue_size=8) as connections:
            slow = connections.open(ALICE)
            told: list[str] = []
            slow.on_overflow = lambda: told.append("close 1013")
            for n in range(12):
                slow.offer(frame("chat.delta", {"n": n}))
            assert told == ["close 1013"]

    async def test_the_outbox_hands_frames_over_in_order_then_ends_when_closed(self) -> None:
        with registry(queue_size=8) as connections:
            connection = connections.open(ALICE)
            received: list[str] = []

            async def drain() -> None:
                async for message in connection.outbox:
                    received.append(json.loads(message)["data"]["n"])

            async with anyio.create_task_group() as group:
                group.start_soon(drain)
                for n in range(3):
                    connection.offer(frame("chat.delta", {"n": n}))
                    await anyio.lowlevel.checkpoint()
                connections.discard(connection)
            assert received == [0, 1, 2]
            assert not connection.offer(frame("chat.delta", {"n": 3}))

    async def test_a_slow_consumer_does_not_delay_another_users_events(self) -> None:
        with registry(queue_size=8) as connections:
            slow, fast = connections.open(ALICE), connections.open(BOB)
            for n in range(20):
                slow.offer(frame("chat.delta", {"n": n}))  # nobody drains Alice's socket
            with anyio.fail_after(0.1):
                await connections.deliver_user_event(BOB, "chat.message", {"stream_id": "s"})
                received = await fast.outbox.receive()
            assert json.loads(received)["type"] == "chat.message"

    async def test_the_socket_following_a_stream_does_not_get_its_chat_message_twice(self) -> None:
        with registry() as connections:
            follower, other_tab = connections.open(ALICE), connections.open(ALICE)
            follower.following.add("s1")
            await connections.deliver_user_event(ALICE, "chat.message", {"stream_id": "s1"})
            assert follower.sent == 0
            assert other_tab.sent == 1

    async def test_discard_forgets_the_user(self) -> None:
        with registry() as connections:
            connection = connections.open(ALICE)
            assert len(connections) == 1
            connections.discard(connection)
            assert len(connections) == 0
            assert connections.connections_of(ALICE) == []


class TestTokenBucket:
    def test_burst_then_refill(self) -> None:
        bucket = TokenBucket(capacity=3, refill_per_second=10)
        assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = bucket.take()
        assert 0 < wait <= 0.1
        bucket.updated -= 0.2  # as if 200 ms had passed
        assert bucket.take() == 0.0

    def test_per_user(self) -> None:
        connections = ConnectionRegistry(queue_size=8, burst=2, refill_per_second=0.001)
        assert [connections.throttle(ALICE) for _ in range(2)] == [0.0, 0.0]
        assert connections.throttle(ALICE) > 0
        assert connections.throttle(BOB) == 0.0
