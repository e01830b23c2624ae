"""Open WebSocket connections on this replica, and how frames reach them.

Every connection has a bounded send queue (``ws_connection_queue_size`` frames) drained by its
own sender task. Producers never wait on a socket: they *offer* a frame, and a full queue
means the client is not keeping up. Overflow policy: that connection is closed with code 1013
("try again later") and nothing is dropped silently; every chat frame belongs to a resumable
stream, so the client reconnects and sends ``resume`` from the last sequence it saw. One slow
client therefore costs only itself: fan-out to everyone else never blocks.

Client frames are metered per user with a token bucket (``ws_rate_limit_burst`` frames,
refilled at ``ws_rate_limit_per_second``), kept per replica.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

OVERFLOW_CLOSE_CODE = 1013
OVERFLOW_REASON = "send queue full: reconnect and resume"


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def frame(type_: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A server frame: ``{"id", "type", "ts", "data"}``."""
    return {
        "id": uuid.uuid4().hex,
        "type": type_,
        "ts": datetime.now(UTC).isoformat(),
        "data": data or {},
    }


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(
            self.capacity, self.tokens + (now - self.updated) * self.refill_per_second
        )
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.refill_per_second


class Outbox:
    """A bounded queue of encoded frames with one reader: the connection's sender task.

    Hand-written rather than anyio's memory object stream, which is the obvious choice: a
    fan-out puts one frame into thousands of these at once, and the memory stream's receive
    path asks for the running loop several times per frame (a ``getpid`` system call each, in
    CPython 3.11's asyncio), which profiled as the largest single cost of a fan-out
    (bench/ws.py --profile). This one wakes its reader with one future and nothing else.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def put_nowait(self, item: str) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if len(self._items) >= self._size:
            raise anyio.WouldBlock
        self._items.append(item)
        self._wake()

    async def receive(self) -> str:
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> str:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection:
    def __init__(self, user_id: uuid.UUID, queue_size: int) -> None:
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        # Serialized frames: a frame fanned out to many sockets is encoded once, not per socket.
        self.outbox = Outbox(queue_size)
        self.overflowed = False
        # Called once when the queue overflows (the session closes the socket with 1013).
        self.on_overflow: Callable[[], None] | None = None
        # Streams this socket follows: their completions reach it as chat.done, so the
        # user-wide chat.message for the same turn is not sent to it again.
        self.following: set[str] = set()
        self.sent = 0
        self.dropped = 0

    def offer(self, message: dict[str, Any] | str) -> bool:
        if self.overflowed:
            self.dropped += 1
            return False
        try:
            self.outbox.put_nowait(message if isinstance(message, str) else encode(message))
        except anyio.WouldBlock:
            self.dropped += 1
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self.outbox.close()


class ConnectionRegistry:
    def __init__(self, *, queue_size: int, burst: int, refill_per_second: float) -> None:
        self.queue_size = queue_size
        self._burst = burst
        self._refill = refill_per_second
        self._by_user: dict[uuid.UUID, set[Connection]] = defaultdict(set)
        self._buckets: dict[uuid.UUID, TokenBucket] = {}
        # Frames of connections already closed, so the metrics' totals never go down.
        self._closed_sent = 0
        self._closed_dropped = 0

    def open(self, user_id: uuid.UUID) -> Connection:
        connection = Connection(user_id, self.queue_size)
        self._by_user[user_id].add(connection)
        return connection

    def discard(self, connection: Connection) -> None:
        connections = self._by_user.get(connection.user_id)
        if connections is not None and connection in connections:
            connections.discard(connection)
            self._closed_sent += connection.sent
            self._closed_dropped += connection.dropped
            if not connections:
                del self._by_user[connection.user_id]
                self._buckets.pop(connection.user_id, None)
        connection.close()

    def close_all(self) -> None:
        for connections in list(self._by_user.values()):
            for connection in list(connections):
                self.discard(connection)

    def throttle(self, user_id: uuid.UUID) -> float:
        """0 when the user may send a frame now, else the seconds to wait."""
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = TokenBucket(self._burst, self._refill)
        return bucket.take()

    def connections_of(self, user_id: uuid.UUID) -> list[Connection]:
        return list(self._by_user.get(user_id, ()))

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    def frame_totals(self) -> tuple[int, int]:
        """Frames sent and dropped on this replica since it started (for metrics)."""
        live = [c for connections in self._by_user.values() for c in connections]
        return (
            self._closed_sent + sum(c.sent for c in live),
            self._closed_dropped + sum(c.dropped for c in live),
        )

    async def deliver_user_event(
        self, user_id: uuid.UUID, type_: str, data: dict[str, Any]
    ) -> None:
        """Event-bus handler: a user's event reaches each of their sockets on this replica."""
        stream_id = data.get("stream_id")
        encoded: str | None = None
        for connection in self.connections_of(user_id):
            if type_ == "chat.message" and stream_id in connection.following:
                continue
            encoded = encoded or encode(frame(type_, data))
            connection.offer(encoded)
