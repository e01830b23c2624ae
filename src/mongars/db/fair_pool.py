"""A connection pool that hands a returned connection to the caller that has waited longest.

SQLAlchemy's asyncio pool keeps idle connections in an ``asyncio.Queue`` and takes one with
``get_nowait()`` before it waits: a task asking for a connection just returned gets it ahead of
the tasks already waiting, and a woken waiter that finds the queue empty again goes to the back
of the line. On the server's one-connection SQLite pool, where a turn's statements run on the
event loop's thread without yielding (``sqlite_driver``), new requests kept overtaking queued
ones: at 16 turns in flight the p99 went from about 80 ms to between 0.2 and 2.3 s
(``bench/overhead.py``). Here a returned connection goes straight to the first waiter, and a
caller takes an idle one only when nobody is waiting (there is none idle otherwise).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

T = TypeVar("T")


class HandOffQueue(AsyncAdaptedQueue[T]):
    """The pool's queue: FIFO waiters, and idle items only while nobody waits."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # not given up (timed out or cancelled)
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # never waits: the pool only puts back what it handed out

    def get_nowait(self) -> T:
        if not self._items:
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._items or not block:
            return self.get_nowait()
        return await_(self._wait(timeout))

    async def _wait(self, limit_seconds: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limit_seconds):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                # Handed over just as this caller gave up: pass it on rather than lose it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
            if isinstance(error, TimeoutError):
                raise Empty() from error
            raise


class HandOffPool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` with ``HandOffQueue``: checkouts are served in arrival order."""

    _queue_class = HandOffQueue[ConnectionPoolEntry]
