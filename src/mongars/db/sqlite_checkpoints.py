"""SQLite's WAL checkpoints, off the request path.

Left to itself, SQLite checkpoints inside the commit that grows the write-ahead log past 1,000
pages: that commit copies the log into the database file and syncs both before it returns, so
one chat turn in a hundred or so waits for a disk sync (the slowest turns in
``bench/overhead.py``). The server's connection turns automatic checkpoints off
(``database.create_engine(..., background_checkpoints=True)``) and this task checkpoints from a
connection of its own, in a worker thread, every ``CHECKPOINT_INTERVAL_SECONDS``:
``PASSIVE``, so it never waits for a lock and blocks neither readers nor the writer. Once a
checkpoint has copied the whole log, the next commit starts writing the log from its
beginning again, so it stays small.

Other processes on the same file (the CLI, a second worker) keep automatic checkpoints on
their own connections, and SQLite checkpoints once more when the last connection closes.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio
import anyio.to_thread

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 1.0


async def run_checkpoints(
    database: Path, *, interval_seconds: float = CHECKPOINT_INTERVAL_SECONDS
) -> None:
    """Checkpoint ``database``'s log every ``interval_seconds`` until cancelled."""
    connection = await anyio.to_thread.run_sync(_connect, database)
    try:
        while True:
            await anyio.sleep(interval_seconds)
            try:
                await anyio.to_thread.run_sync(_checkpoint, connection)
            except sqlite3.Error as exc:
                # A missed checkpoint only lets the log grow until the next one succeeds.
                logger.warning("SQLite checkpoint of %s failed: %s", database, exc)
    finally:
        connection.close()


def _connect(database: Path) -> sqlite3.Connection:
    # check_same_thread=False: anyio may run each call on a different worker thread; the
    # calls never overlap.
    connection = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=0")  # PASSIVE never waits; neither does this
    return connection


def _checkpoint(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """(busy, frames in the log, frames copied) as SQLite reports them."""
    row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])
