"""The engine and session factory, created once per app in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from mongars.config import Settings
from mongars.db.fair_pool import HandOffPool
from mongars.db.sqlite_driver import OneTripAiosqlite, OneTripConnection, mark_inline_cursor

T = TypeVar("T")


def create_engine(settings: Settings, *, background_checkpoints: bool = False) -> AsyncEngine:
    """``background_checkpoints``: SQLite only, the server's engine; its connections leave WAL
    checkpoints to ``sqlite_checkpoints.run_checkpoints``, which the caller must run."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite takes one writer at a time anyway, and with a pool
        # of them concurrent writers wait inside SQLite's busy handler, which sleeps in steps of
        # up to 100 ms (measured: p99 of seconds at 16 turns in flight). Queued for the single
        # connection they wait on an asyncio condition instead, woken the moment it is free.
        # Sessions release it at commit, so only a transaction's own work holds it, and it goes
        # to them in the order they asked (``fair_pool``).
        one_trip = url.startswith("sqlite+aiosqlite")
        engine = create_async_engine(
            url,
            # Not same-thread: the adapter runs small statements on the event loop's thread
            # too, never while its own thread is using the connection (``sqlite_driver``).
            connect_args={"timeout": 30, "check_same_thread": not one_trip},
            poolclass=HandOffPool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            **({"module": OneTripAiosqlite()} if one_trip else {}),
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if one_trip:
            event.listen(engine.sync_engine, "before_cursor_execute", mark_inline_cursor)
        if background_checkpoints:
            event.listen(engine.sync_engine, "connect", _no_automatic_checkpoints)
        return engine
    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        connect_args["server_settings"] = {"search_path": settings.database_schema}
    # pre_ping: after a PostgreSQL restart, stale pooled connections are replaced instead of
    # failing one request each, so the service recovers by itself.
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes concurrent writers (several
    # workers) wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def _no_automatic_checkpoints(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    # Once a checkpoint has emptied it, the log file shrinks back to this size when it is
    # reused, rather than keeping the size of the largest burst of writes ever seen.
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cursor.close()


def sqlite_database_path(engine: AsyncEngine) -> Path | None:
    """The file behind an SQLite engine (None for PostgreSQL or an in-memory database)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: routes serialise ORM objects after the unit of work commits.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def commit_with(db: AsyncSession, work: Callable[[Connection], T]) -> T:
    """Run ``work`` (sync Core statements) on the session's connection, then commit the session.

    For a hot path's few small, fixed statements: on the server's SQLite engine the statements
    and the commit are one call, on the event loop's thread when nothing else is open
    (``OneTripConnection.run_and_commit``); elsewhere they run in one ``run_sync``. Either way,
    what the session wrote before is committed with them, and a failure rolls everything back.

    ``work`` may run on the database's thread: give it statements and values, nothing that
    needs the event loop. It may also run twice, its first attempt rolled back (it found the
    database locked and moved to that thread): keep its effects to its statements.
    """
    result, _ = await _run_in_one_call(await db.connection(), work)
    # On SQLite nothing is left to send; this ends the session's transaction and hands the
    # connection back to the pool.
    await db.commit()
    return result


async def transact(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` (sync Core statements) in a transaction of its own, then commit.

    ``commit_with`` for work that needs no session: a chat turn's answer phase, which has no
    request and no ORM objects. Skipping the session saves its setup and bookkeeping (about
    80 us a call on SQLite, measured with a one-off script); the same rules apply to ``work``.
    """
    async with engine.connect() as connection:
        result, committed = await _run_in_one_call(connection, work)
        if not committed:
            await connection.commit()
        return result


async def _run_in_one_call(
    connection: AsyncConnection, work: Callable[[Connection], T]
) -> tuple[T, bool]:
    """``work`` on ``connection``, and whether it was committed with it: on the server's SQLite
    engine, yes, in one call; elsewhere through ``run_sync``, the commit left to the caller."""
    adapter = (await connection.get_raw_connection()).dbapi_connection
    if isinstance(adapter, OneTripConnection):
        return await adapter.run_and_commit(work), True
    return await connection.run_sync(work), False
