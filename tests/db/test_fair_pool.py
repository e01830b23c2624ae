"""The SQLite engine's pool serves checkouts in the order they were asked for: a connection
returned goes to the caller that has waited longest, never to one that asks afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.util.concurrency import greenlet_spawn
from sqlalchemy.util.queue import Empty

from mongars.db.database import create_engine
from mongars.db.fair_pool import HandOffPool, HandOffQueue
from tests.conftest import make_settings


def waiting_get(queue: HandOffQueue[str], timeout: float | None = None) -> asyncio.Task[str]:
    # The pool calls get() from SQLAlchemy's sync code, bridged to the loop by a greenlet.
    return asyncio.create_task(greenlet_spawn(queue.get, True, timeout))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_returned_item_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    queue = HandOffQueue[str](maxsize=1)
    first, second = waiting_get(queue), waiting_get(queue)
    await settle()
    queue.put_nowait("connection")
    # Asked before the first waiter has even run again: nothing is idle for the newcomer.
    with pytest.raises(Empty):
        queue.get_nowait()
    assert await first == "connection"
    await settle()
    assert not second.done()
    queue.put_nowait("connection")
    assert await second == "connection"
    assert queue.qsize() == 0


async def test_an_idle_item_is_taken_at_once_when_nobody_waits() -> None:
    queue = HandOffQueue[str](maxsize=2)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert queue.full()
    assert await greenlet_spawn(queue.get) == "a"
    assert queue.get_nowait() == "b"
    assert queue.empty()


async def test_a_waiter_that_times_out_leaves_the_line() -> None:
    queue = HandOffQueue[str](maxsize=1)
    with pytest.raises(Empty):
        await waiting_get(queue, timeout=0.01)
    queue.put_nowait("connection")
    assert queue.qsize() == 1  # idle, not handed to the caller that gave up


async def test_an_item_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    queue = HandOffQueue[str](maxsize=1)
    leaving, staying = waiting_get(queue), waiting_get(queue)
    await settle()
    queue.put_nowait("connection")  # to `leaving`, which is cancelled before it runs
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await staying == "connection"


async def test_the_server_engine_uses_the_hand_off_pool(tmp_path: Path) -> None:
    engine = create_engine(make_settings(tmp_path))
    try:
        assert isinstance(engine.sync_engine.pool, HandOffPool)
    finally:
        await engine.dispose()
