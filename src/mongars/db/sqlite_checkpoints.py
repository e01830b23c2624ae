"""SQLite's WAL checkpoints, off the request path.

Left to itself, SQLite checkpoints inside the commit that grows the write-ahead log past 1,000
pages: that commit copies the log into the database file and syncs both before it returns, so
one chat turn in a hundred or so waits for a disk sync (the slowest turns in
``bench/overhead.py``). The server's connection turns automatic checkpoints off
(``database.create_engine(..., background_checkpoints=True)``) and this task checkpoints from a
connection of its own, in a worker thread, every ``CHECKPOINT_INTERVAL_SECONDS``:
``PASSIVE``, so it never waits for a lock and blocks neither readers nor the writer.

The checkpoints run on a thread of their own at the lowest CPU priority. When the server has
one core (pinned, as in ``bench/overhead.py``, or a small machine), a checkpoint copying a
second's worth of log competed with the event loop for it and delayed the turns in flight by
10-30 ms once a second: that was the benchmark's p99 (about 20 ms, now about 8). At the lowest
priority it runs while the loop waits.

A passive checkpoint alone does not keep the log small under steady writes: SQLite starts the
log over only when a write begins after a checkpoint that copied all of it, and with a turn
committing every few milliseconds some commit always lands while the copy runs (measured
with a one-off load script: the log grew by about 20 MB a second, to 411 MB in 18 s, and was
never started over; each checkpoint's cost grew with it). So once the log holds more than
``RESTART_AFTER_PAGES`` and a passive checkpoint has copied what it found, a ``RESTART``
checkpoint copies the few pages written meanwhile and has the next commit start the log over
(``journal_size_limit`` then trims the file). It holds the write lock for that copy and a sync;
with no busy timeout it never waits: when a commit or a reader is in the way it tries again a
millisecond later, a few times, then the next second.

Other processes on the same file (the CLI, a second worker) keep automatic checkpoints on
their own connections, and SQLite checkpoints once more when the last connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 1.0
# 64 MB of 4 KB pages (the log's journal_size_limit): a restart every few seconds under
# full load, each making one commit wait a few milliseconds.
RESTART_AFTER_PAGES = 16384
# Tries at a restart per checkpoint, a millisecond apart, before leaving it to the next one.
RESTART_ATTEMPTS = 5


async def run_checkpoints(
    database: Path,
    *,
    interval_seconds: float = CHECKPOINT_INTERVAL_SECONDS,
    restart_after_pages: int = RESTART_AFTER_PAGES,
) -> None:
    """Checkpoint ``database``'s log every ``interval_seconds`` until cancelled."""
    loop = asyncio.get_running_loop()
    # Not anyio's worker threads: they are shared, and a thread's priority cannot be raised
    # back without privileges.
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="sqlite-checkpoints", initializer=_lowest_priority
    ) as thread:
        connection = await loop.run_in_executor(thread, connect, database)
        try:
            while True:
                await anyio.sleep(interval_seconds)
                try:
                    await loop.run_in_executor(thread, checkpoint, connection, restart_after_pages)
                except sqlite3.Error as exc:
                    # A missed checkpoint only lets the log grow until the next one succeeds.
                    logger.warning("SQLite checkpoint of %s failed: %s", database, exc)
        finally:
            # On the checkpoint thread, once a checkpoint still running there has returned.
            with anyio.CancelScope(shield=True):
                await loop.run_in_executor(thread, connection.close)


def _lowest_priority() -> None:
    """The calling thread's nice value to 19 (Linux: a per-thread attribute)."""
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: the default priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def connect(database: Path) -> sqlite3.Connection:
    # check_same_thread=False: anyio's threads in tests; only ever one call at a time.
    connection = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=0")  # PASSIVE never waits; neither does this
    return connection


def checkpoint(
    connection: sqlite3.Connection, restart_after_pages: int = RESTART_AFTER_PAGES
) -> tuple[int, int, int]:
    """(busy, frames in the log, frames copied) as SQLite reports them for the last step."""
    busy, frames, copied = _run(connection, "PASSIVE")
    if busy or frames != copied or frames <= restart_after_pages:
        return busy, frames, copied
    for _ in range(RESTART_ATTEMPTS):
        busy, frames, copied = _run(connection, "RESTART")
        if not busy:
            break
        time.sleep(0.001)  # a commit held the write lock: commits last well under that
    return busy, frames, copied


def _run(connection: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    row = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(row[0]), int(row[1]), int(row[2])
