"""The SQLite engine's adapter: one call on aiosqlite's thread per statement, none for an
``inline()`` statement or a ``commit_with`` from a clean state (they run on the event loop's
thread) unless the database is locked, no call for a commit or rollback with nothing to do, and
otherwise what SQLAlchemy's own aiosqlite adapter does (rows, metadata, errors, streamed
results)."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from mongars.db.database import commit_with, create_engine, sqlite_database_path
from mongars.db.sqlite_driver import OneTripCursor, inline
from tests.conftest import make_settings

request_label: contextvars.ContextVar[str] = contextvars.ContextVar("request_label", default="")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(tmp_path))
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function aiosqlite runs on its connection's thread."""
    calls: list[str] = []
    original: Callable[..., Any] = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return calls


async def test_the_server_engine_uses_the_one_trip_cursor(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, aiosqlite.Connection)
        assert isinstance(raw.dbapi_connection.cursor(), OneTripCursor)  # type: ignore[union-attr]


async def test_a_statement_with_rows_is_one_call_on_the_database_thread(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with engine.begin() as connection:
        thread_calls.clear()
        inserted = await connection.execute(
            text("INSERT INTO t (name) VALUES (:name) RETURNING id, name"), {"name": "a"}
        )
        assert inserted.one() == (1, "a")
        assert thread_calls == ["_execute"]  # not cursor + execute + fetchall + close


async def test_rows_rowcount_and_lastrowid_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        many = await connection.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": n} for n in "bcd"]
        )
        assert many.rowcount == 3
        one = await connection.execute(text("INSERT INTO t (name) VALUES ('e')"))
        assert one.lastrowid == 4
        updated = await connection.execute(text("UPDATE t SET name = name || '!'"))
        assert updated.rowcount == 4
        names = (await connection.execute(text("SELECT name FROM t ORDER BY id"))).scalars()
        assert list(names) == ["b!", "c!", "d!", "e!"]
        empty = await connection.execute(text("SELECT name FROM t WHERE id < 0"))
        assert empty.all() == []


async def test_fetching_in_batches_uses_the_dbapi_default_size(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": n} for n in "abc"]
        )
        result = await connection.execute(text("SELECT name FROM t ORDER BY id"))
        assert result.fetchmany() == [("a",)]  # arraysize 1, as DBAPI says
        assert [list(part) for part in result.partitions(2)] == [[("b",), ("c",)]]


async def insert_twice(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO t (name) VALUES ('x')"))
        await connection.execute(text("INSERT INTO t (name) VALUES ('x')"))


async def select_missing(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT * FROM missing"))


async def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError, match="UNIQUE"):
        await insert_twice(engine)
    with pytest.raises(OperationalError, match="no such table"):
        await select_missing(engine)
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_streamed_results_still_use_a_server_side_cursor(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": str(i)} for i in range(250)]
        )
    async with engine.connect() as connection:
        result = await connection.stream(text("SELECT name FROM t ORDER BY id"))
        seen = [row.name async for row in result]
    assert seen == [str(i) for i in range(250)]


async def test_a_committed_connection_goes_back_to_the_pool_without_a_rollback_trip(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO t (name) VALUES ('a')"))
    async with engine.connect() as connection:
        await connection.execute(text("SELECT name FROM t"))
    # The pool resets every connection it takes back; with no transaction open, for free.
    assert thread_calls == ["_execute", "commit", "_execute"]


async def test_an_uncommitted_transaction_is_still_rolled_back_on_return(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("INSERT INTO t (name) VALUES ('a')"))
    assert thread_calls == ["_execute", "rollback"]
    with pytest.raises(IntegrityError):
        await insert_twice(engine)
    assert thread_calls[-1] == "rollback"
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_after_streamed_results_the_pool_rolls_back_to_be_safe(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with engine.connect() as connection:
        result = await connection.stream(text("SELECT name FROM t"))
        assert [row async for row in result] == []
    assert thread_calls[-1] == "rollback"


def insert_names(*names: str) -> Callable[[Connection], list[int]]:
    def work(connection: Connection) -> list[int]:
        statement = text("INSERT INTO t (name) VALUES (:name) RETURNING id")
        return [connection.execute(statement, {"name": name}).scalar_one() for name in names]

    return work


async def names_in(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT name FROM t ORDER BY id"))).scalars())


async def test_commit_with_from_a_clean_state_runs_on_the_event_loops_thread(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    threads: list[str] = []

    def work(connection: Connection) -> list[int]:
        threads.append(threading.current_thread().name)
        return insert_names("a", "b")(connection)

    async with AsyncSession(engine) as db:
        assert await commit_with(db, work) == [1, 2]
    assert threads == [threading.current_thread().name]
    assert thread_calls == []  # the session's own commit sends nothing either
    assert await names_in(engine) == ["a", "b"]


async def test_commit_with_after_the_sessions_own_writes_is_one_trip_to_the_thread(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with AsyncSession(engine) as db:
        await db.execute(text("INSERT INTO t (name) VALUES ('before')"))
        thread_calls.clear()
        ids = await commit_with(db, insert_names("a", "b"))
        assert ids == [2, 3]
        assert thread_calls == ["_run_and_commit"]  # the session's own commit sends nothing
    assert await names_in(engine) == ["before", "a", "b"]  # the session's earlier write too


@pytest.mark.parametrize("earlier_write", [False, True], ids=["inline", "on the thread"])
async def test_commit_with_rolls_back_the_whole_unit_of_work_on_failure(
    engine: AsyncEngine, earlier_write: bool
) -> None:
    async with AsyncSession(engine) as db:
        if earlier_write:
            await db.execute(text("INSERT INTO t (name) VALUES ('before')"))
        with pytest.raises(IntegrityError, match="UNIQUE"):
            await commit_with(db, insert_names("a", "a"))
        await db.rollback()
    assert await names_in(engine) == []
    async with AsyncSession(engine) as db:  # the connection is usable afterwards
        await commit_with(db, insert_names("c"))
    assert await names_in(engine) == ["c"]


@pytest.mark.parametrize("earlier_write", [False, True], ids=["inline", "on the thread"])
async def test_commit_with_carries_the_callers_context(
    engine: AsyncEngine, earlier_write: bool
) -> None:
    seen: list[str] = []

    def work(connection: Connection) -> None:
        seen.append(request_label.get())

    token = request_label.set("turn 42")
    try:
        async with AsyncSession(engine) as db:
            if earlier_write:
                await db.execute(text("INSERT INTO t (name) VALUES ('before')"))
            await commit_with(db, work)
    finally:
        request_label.reset(token)
    assert seen == ["turn 42"]


async def test_an_inline_statement_makes_no_trip(
    engine: AsyncEngine, thread_calls: list[str]
) -> None:
    async with AsyncSession(engine) as db:
        await commit_with(db, insert_names("a", "b"))
        found = await db.execute(inline(text("SELECT id FROM t WHERE name = :n")), {"n": "b"})
        assert found.scalar_one() == 2
        unmarked = await db.execute(text("SELECT id FROM t WHERE name = :n"), {"n": "a"})
        assert unmarked.scalar_one() == 1
    assert thread_calls == ["_execute"]  # the unmarked one only


async def lock_wait_setting(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("PRAGMA busy_timeout"))).scalar_one())


@pytest.mark.parametrize("how", ["commit_with", "inline statement"])
async def test_a_locked_database_moves_the_call_to_the_thread_and_the_loop_runs_on(
    engine: AsyncEngine, thread_calls: list[str], how: str
) -> None:
    """Another process holds the write lock: the inline attempt gives up at once, and the
    waiting happens on the database thread while the event loop serves everything else."""
    path = sqlite_database_path(engine)
    assert path is not None
    lock_wait_before = await lock_wait_setting(engine)
    other_process = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other_process.execute, "COMMIT")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    thread_calls.clear()
    try:
        async with AsyncSession(engine) as db:
            if how == "commit_with":
                await commit_with(db, insert_names("a"))
            else:
                await db.execute(inline(text("INSERT INTO t (name) VALUES ('a')")))
                await db.commit()
    finally:
        ticking.cancel()
        other_process.close()
    assert ticks >= 10  # a blocked loop would have ticked at most once in 0.3 s
    assert thread_calls[0] == ("_run_and_commit" if how == "commit_with" else "_execute")
    assert await names_in(engine) == ["a"]
    assert await lock_wait_setting(engine) == lock_wait_before == 10_000  # restored
