"""Generation streams shared across replicas through Redis.

The replica that generates keeps its local log (``streams.Stream``) and a mirror task copies
every event into a Redis Stream, ``<prefix>:stream:<id>:events``, with entry ids ``<seq>-0``
so that resuming after sequence N is ``XREAD`` from ``N-0``. A hash ``…:meta`` names the owner
and conversation; a short-lived ``…:lease`` key, refreshed while the generation runs, tells a
reader on another replica whether the generator is still alive. Everything expires
``retention_seconds`` after the stream ends, and the log is trimmed to ``buffer_events``.

If the generating replica dies, its lease lapses: remote readers end with a
``stream_interrupted`` error instead of waiting forever (the answer row stays ``incomplete``).
If Redis is down, streaming on the generating replica goes on; only remote resume is lost.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mongars.core.streams import TERMINAL_EVENTS, Stream, StreamEvent, StreamGap
from mongars.redis_client import SOCKET_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

LEASE_SECONDS = 10
LEASE_REFRESH_SECONDS = 3.0
MAX_BLOCK_SECONDS = SOCKET_TIMEOUT_SECONDS / 2


class RedisStreamMirror:
    def __init__(
        self, redis: Redis, *, key_prefix: str, buffer_events: int, retention_seconds: float
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._buffer_events = buffer_events
        self._retention = int(retention_seconds)

    def _key(self, stream_id: str, part: str) -> str:
        return f"{self._prefix}:stream:{stream_id}:{part}"

    async def copy(self, stream: Stream) -> None:
        """Mirror ``stream`` into Redis until it ends. Runs beside the generation."""
        events, meta, lease = (self._key(stream.id, p) for p in ("events", "meta", "lease"))
        cursor = 0
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(
                    meta,
                    mapping={
                        "owner": str(stream.owner_id),
                        "conversation": str(stream.conversation_id),
                    },
                )
                pipe.expire(meta, self._retention + LEASE_SECONDS)
                pipe.set(lease, b"1", ex=LEASE_SECONDS)
                await pipe.execute()
            while True:
                batch = stream.available(cursor)
                if batch:
                    await self._append(events, meta, lease, batch)
                    cursor = batch[-1].seq
                elif stream.finished:
                    break
                else:
                    await stream.changed(LEASE_REFRESH_SECONDS)
                    if not stream.available(cursor) and not stream.finished:
                        async with self._redis.pipeline(transaction=False) as pipe:
                            pipe.set(lease, b"1", ex=LEASE_SECONDS)
                            # Kept while the generation runs, however long it takes.
                            pipe.expire(meta, self._retention + LEASE_SECONDS)
                            await pipe.execute()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(meta, "finished", b"1")
                pipe.expire(meta, self._retention)
                pipe.expire(events, self._retention)
                pipe.delete(lease)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # Degraded mode: this replica still streams; other replicas cannot resume it.
            logger.warning("stream %s not mirrored to Redis: %s", stream.id, exc)

    async def _append(self, events: str, meta: str, lease: str, batch: list[StreamEvent]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in batch:
                pipe.xadd(
                    events,
                    {"type": event.type, "data": json.dumps(event.data, separators=(",", ":"))},
                    id=f"{event.seq}-0",
                    maxlen=self._buffer_events,
                    approximate=True,
                )
            pipe.expire(events, self._retention + LEASE_SECONDS)
            pipe.expire(meta, self._retention + LEASE_SECONDS)
            pipe.set(lease, b"1", ex=LEASE_SECONDS)
            await pipe.execute()

    async def open(self, stream_id: str) -> RemoteStream | None:
        try:
            meta = cast(dict[bytes, bytes], await self._redis.hgetall(self._key(stream_id, "meta")))
        except (RedisError, OSError) as exc:
            logger.warning("cannot look up stream %s in Redis: %s", stream_id, exc)
            return None
        if b"owner" not in meta:  # unknown, or expired (a lone "finished" left behind)
            return None
        return RemoteStream(
            self._redis,
            stream_id=stream_id,
            owner_id=uuid.UUID(meta[b"owner"].decode()),
            conversation_id=uuid.UUID(meta[b"conversation"].decode()),
            keys=(
                self._key(stream_id, "events"),
                self._key(stream_id, "meta"),
                self._key(stream_id, "lease"),
            ),
        )


class RemoteStream:
    """A reader over a stream generated on another replica."""

    def __init__(
        self,
        redis: Redis,
        *,
        stream_id: str,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        keys: tuple[str, str, str],
    ) -> None:
        self._redis = redis
        self.id = stream_id
        self.owner_id = owner_id
        self.conversation_id: uuid.UUID | None = conversation_id
        self._events, self._meta, self._lease = keys

    async def ensure_resumable(self, after: int) -> None:
        first = cast(list[tuple[bytes, Any]], await self._redis.xrange(self._events, count=1))
        if first and after < _seq(first[0][0]) - 1:
            raise StreamGap

    async def events(
        self, *, after: int = 0, keepalive_seconds: float | None = None
    ) -> AsyncIterator[StreamEvent | None]:
        cursor = after
        # Each XREAD blocks for less than the client's socket timeout, which would otherwise
        # end a wait on a quiet stream (a slow first token, a dead generator) as if Redis had
        # failed; keep-alives are counted in wall time across such short waits.
        block_ms = int(min(keepalive_seconds or LEASE_REFRESH_SECONDS, MAX_BLOCK_SECONDS) * 1000)
        quiet_since = time.monotonic()
        while True:
            entries = await self._read(cursor, block_ms)
            for event in entries:
                cursor = event.seq
                quiet_since = time.monotonic()
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
            if entries:
                continue
            finished = bool(await self._redis.hget(self._meta, "finished"))
            if finished or not await self._redis.exists(self._lease):
                # The generating replica may have appended its last events (and then said it
                # had finished) after the read above: read once more before ending.
                for event in await self._read(cursor, None):
                    cursor = event.seq
                    yield event
                    if event.type in TERMINAL_EVENTS:
                        return
                if finished:
                    return
                if await self._redis.hget(self._meta, "finished"):
                    continue  # it finished meanwhile: go round for what it appended first
                yield StreamEvent(seq=cursor + 1, type="error", data=_interrupted())
                return
            if keepalive_seconds is not None and (
                time.monotonic() - quiet_since >= keepalive_seconds
            ):
                quiet_since = time.monotonic()
                yield None
            await anyio.lowlevel.checkpoint()

    async def _read(self, cursor: int, block_ms: int | None) -> list[StreamEvent]:
        """The mirrored events after ``cursor``, waiting up to ``block_ms`` (None: not at all)."""
        # RESP2 shape (the client's default): [[key, [(entry_id, fields), ...]]]
        reply = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
            await self._redis.xread({self._events: f"{cursor}-0"}, count=512, block=block_ms),
        )
        return [
            StreamEvent(
                seq=_seq(entry_id),
                type=fields[b"type"].decode(),  # type: ignore[arg-type]
                data=json.loads(fields[b"data"]),
            )
            for entry_id, fields in (reply[0][1] if reply else [])
        ]


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _interrupted() -> dict[str, Any]:
    return {
        "code": "stream_interrupted",
        "detail": "The replica generating this answer stopped; the stored answer is incomplete.",
    }
