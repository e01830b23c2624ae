from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from mongars.core.errors import MongarsError, NotFound
from mongars.core.streams import Stream, StreamGap, StreamHub

OWNER = uuid.uuid4()


@pytest.fixture
async def hub() -> AsyncIterator[StreamHub]:
    async with anyio.create_task_group() as group:
        yield StreamHub(group, buffer_events=4, retention_seconds=60)
        group.cancel_scope.cancel()


def start(hub: StreamHub, words: list[str], gate: anyio.Event | None = None) -> Stream:
    async def run(stream: Stream) -> None:
        for word in words:
            if gate is not None:
                await gate.wait()
            stream.publish("delta", {"text": word})
        stream.publish("done", {})

    return hub.start(owner_id=OWNER, conversation_id=uuid.uuid4(), run=run)


class TestReading:
    async def test_a_late_reader_gets_everything_then_the_end(self, hub: StreamHub) -> None:
        stream = start(hub, ["a", "b"])
        await stream.wait()
        events = [e async for e in stream.events(after=0) if e]
        assert [(e.seq, e.type) for e in events] == [(1, "delta"), (2, "delta"), (3, "done")]

    async def test_a_live_reader_follows_until_the_end(self, hub: StreamHub) -> None:
        gate = anyio.Event()
        stream = start(hub, ["a", "b", "c"], gate)
        seen: list[int] = []

        async def read() -> None:
            seen.extend([e.seq async for e in stream.events(after=1) if e])

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            await anyio.sleep(0.01)
            gate.set()
        assert seen == [2, 3, 4]

    async def test_a_stream_nobody_reads_keeps_no_events_but_its_outcome(
        self, hub: StreamHub
    ) -> None:
        async def run(stream: Stream) -> None:
            stream.publish("delta", {"text": "a"})
            stream.outcome = "the answer"
            stream.publish("done", {})

        stream = hub.start(
            owner_id=OWNER, conversation_id=uuid.uuid4(), run=run, resumable=False, read=False
        )
        assert await stream.wait() == "the answer"
        assert not stream.keeps_events
        assert stream.last_seq == 2
        assert [e async for e in stream.events(after=0)] == []
        with pytest.raises(NotFound):
            await hub.get(stream.id, OWNER)

    async def test_idle_streams_yield_keepalives(self, hub: StreamHub) -> None:
        stream = start(hub, ["a"], anyio.Event())
        reader = stream.events(after=0, keepalive_seconds=0.01)
        assert await anext(reader) is None
        stream.cancel()


class TestBounds:
    async def test_resuming_before_the_evicted_start_is_a_gap(self, hub: StreamHub) -> None:
        stream = start(hub, list("abcdefg"))
        await stream.wait()
        with pytest.raises(StreamGap):
            await stream.ensure_resumable(0)
        await stream.ensure_resumable(4)  # events 5..8 are still buffered
        assert [e.seq async for e in stream.events(after=4) if e] == [5, 6, 7, 8]

    async def test_finished_streams_are_dropped_after_retention(self) -> None:
        async with anyio.create_task_group() as group:
            hub = StreamHub(group, buffer_events=4, retention_seconds=0.01)
            first = start(hub, ["a"])
            await first.wait()
            await anyio.sleep(0.02)
            start(hub, ["b"])  # starting a stream sweeps expired ones
            with pytest.raises(NotFound):
                await hub.get(first.id, OWNER)
            group.cancel_scope.cancel()


class TestOwnership:
    async def test_another_owner_sees_nothing(self, hub: StreamHub) -> None:
        stream = start(hub, ["a"])
        assert await hub.get(stream.id, OWNER) is stream
        with pytest.raises(NotFound):
            await hub.get(stream.id, uuid.uuid4())


class TestCancellation:
    async def test_cancel_ends_the_run_and_the_stream(self, hub: StreamHub) -> None:
        stream = start(hub, ["a"], anyio.Event())
        await anyio.lowlevel.checkpoint()
        assert hub.active_in(stream.conversation_id, OWNER) == [stream]
        assert stream.cancel() is True
        with anyio.fail_after(1):
            await stream.wait()
        assert stream.finished
        assert stream.cancel() is False


class TestAFailingRun:
    async def test_ends_its_stream_with_an_error_and_spares_the_others(
        self, hub: StreamHub
    ) -> None:
        """All generations share one task group: one that raises must not cancel the rest."""
        gate = anyio.Event()
        survivor = start(hub, ["a", "b"], gate)

        async def broken(stream: Stream) -> None:
            stream.publish("delta", {"text": "half"})
            raise RuntimeError("a bug")

        failed = hub.start(owner_id=OWNER, conversation_id=uuid.uuid4(), run=broken)
        with anyio.fail_after(1):
            outcome = await failed.wait()
        assert isinstance(outcome, MongarsError)
        events = [e async for e in failed.events(after=0) if e]
        assert [e.type for e in events] == ["delta", "error"]
        gate.set()
        with anyio.fail_after(1):
            await survivor.wait()
        assert [e.type for e in survivor.available(0)] == ["delta", "delta", "done"]
        assert start(hub, ["c"]) is not None  # the group still takes new generations
