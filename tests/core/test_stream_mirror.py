"""The Redis mirror of a generation (real Redis on 127.0.0.1:6379, keys under a prefix of
their own): what another replica needs to resume must live as long as the generation does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from mongars.core import stream_mirror
from mongars.core.stream_mirror import RedisStreamMirror
from mongars.core.streams import Stream, StreamHub

OWNER = uuid.uuid4()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"mongars-test-mirror-{uuid.uuid4().hex}"
    client.test_prefix = prefix  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def mirror_on(redis: Redis, retention_seconds: float) -> RedisStreamMirror:
    return RedisStreamMirror(
        redis,
        key_prefix=redis.test_prefix,  # type: ignore[attr-defined]
        buffer_events=100,
        retention_seconds=retention_seconds,
    )


class TestALongGeneration:
    async def test_stays_resumable_past_the_retention_while_it_runs(
        self, redis: Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Retention 1 s and a 1 s lease: the stream's record would lapse after 2 s unless
        # the generation's appends keep it. The generation takes about 3 s.
        monkeypatch.setattr(stream_mirror, "LEASE_SECONDS", 1)
        mirror = mirror_on(redis, retention_seconds=1)

        async def run(stream: Stream) -> None:
            for n in range(8):
                stream.publish("delta", {"text": str(n)})
                await anyio.sleep(0.4)
            stream.publish("done", {})

        async with anyio.create_task_group() as group:
            hub = StreamHub(group, buffer_events=100, retention_seconds=1, mirror=mirror)
            stream = hub.start(owner_id=OWNER, conversation_id=uuid.uuid4(), run=run)
            await anyio.sleep(2.6)
            running = await mirror.open(stream.id)
            await stream.wait()
        assert running is not None
        assert running.owner_id == OWNER
        events = [e async for e in running.events(after=5) if e]
        assert [e.seq for e in events] == [6, 7, 8, 9]
        assert events[-1].type == "done"

    async def test_a_record_left_without_its_owner_reads_as_missing(self, redis: Redis) -> None:
        mirror = mirror_on(redis, retention_seconds=60)
        await redis.hset(f"{redis.test_prefix}:stream:abc:meta", "finished", b"1")  # type: ignore[attr-defined]
        assert await mirror.open("abc") is None
