"""aiosqlite, as SQLAlchemy drives it, with one trip to the database thread per statement, and
none at all for the hot path's small statements.

aiosqlite runs each call on its connection's own thread and hands the result back to the event
loop. SQLAlchemy's adapter makes one such call to open a cursor, one to execute, one to fetch
the rows and one to close the cursor: four thread hand-offs (each a queue put, a wake-up, a
``call_soon_threadsafe`` and a future) for a statement that SQLite itself runs in microseconds.
On a chat turn's dozen statements those hand-offs cost more CPU than the statements
(``bench/overhead.py --profile``). This adapter does the four steps in one call on that thread.

It is passed to SQLAlchemy as the dialect's DBAPI module (``create_async_engine(module=...)``);
the URL, the dialect, the pool and the server-side cursors are aiosqlite's own. It relies on
``aiosqlite.Connection._execute`` (run a function on the connection's thread), which aiosqlite's
own cursors use for every call.

Inline statements. Even one hand-off costs more than the statements a chat turn runs: an indexed
SELECT takes SQLite about 3 microseconds and an INSERT with its commit about 20 (WAL,
``synchronous=NORMAL``), the trip to the thread and back about 100 (one-off measurements,
``bench/turn_phases.py`` shows the effect on a turn). So statements marked with
``inline()`` (execution option), and ``run_and_commit``'s work, run on the event loop's own
thread instead, under one rule that keeps the loop from ever waiting on SQLite: they run there
only from a clean state (no transaction open) and with SQLite's lock wait turned off; if they
would have to wait for a lock (another process writing, a checkpoint restarting the log),
what they did is rolled back and the same call goes to the database thread, where waiting
blocks nobody. Mark only small, bounded statements (index lookups, a turn's writes): a slow
query run inline would stall every stream of the process.

``run_and_commit`` runs a function taking a sync SQLAlchemy ``Connection`` over the same sqlite3
connection, so several statements and their commit cost one call and no per-statement async
bridging (one chat-turn phase: 0.26 ms of CPU instead of 0.86 ms through
``AsyncSession.run_sync``, measured with a one-off script). The statements are the same Core
statements, compiled and typed by SQLAlchemy's own SQLite dialect.

It also spares commits and rollbacks with nothing to do their trip: the pool rolls back every
connection it takes back, also after a commit, and a session commits after ``run_and_commit``
has. The adapter learns whether a transaction is open from the same call that runs each
statement (or the commit), and skips a commit or rollback only when none is; ``sqlite3`` itself
would send nothing to SQLite then.

The sqlite3 connection is opened with ``check_same_thread=False`` (``database.create_engine``),
as it is used from two threads, never at once: the engine's pool hands the one connection to
one session at a time, which awaits each call before it makes the next.
"""

from __future__ import annotations

import collections
import contextvars
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import Connection, Executable, create_engine
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")
E = TypeVar("E", bound=Executable)

INLINE_OPTION = "mongars_sqlite_inline"


def inline(statement: E) -> E:
    """``statement``, marked to run on the event loop's thread on the server's SQLite engine
    (see the module's docstring); elsewhere the mark is ignored. Small, bounded statements
    only."""
    return statement.execution_options(**{INLINE_OPTION: True})


def mark_inline_cursor(
    _connection: Any,
    cursor: DBAPICursor,
    _statement: str,
    _parameters: Any,
    context: ExecutionContext | None,
    _executemany: bool,
) -> None:
    """``before_cursor_execute`` listener: passes a statement's ``inline()`` mark to its cursor."""
    marked = context is not None and context.execution_options.get(INLINE_OPTION)
    if marked and isinstance(cursor, OneTripCursor):
        cursor.inline = True


class _LockWait(Exception):
    """An inline call would have had to wait for SQLite's lock; it was undone."""


def _is_lock_wait(error: BaseException) -> bool:
    cause = getattr(error, "orig", error)  # SQLAlchemy wraps the driver's error
    return (
        isinstance(cause, sqlite3.OperationalError)
        and (cause.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_BUSY
    )


# description, rows, rowcount, lastrowid
_Outcome = tuple[Any, list[Any] | None, int, int | None]


def _execute(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the database thread: run the statement, read all its rows, close the cursor."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement, rows and metadata arrive in one call: on the event
    loop's thread when the statement is marked ``inline()``, else on the database thread."""

    __slots__ = ("_arraysize", "_outcome", "inline")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # Not the parent's: it opens an aiosqlite cursor (a thread call) up front.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome: _Outcome = (None, None, -1, None)
        self.inline = False  # set per statement by ``mark_inline_cursor``
        self._arraysize = 1  # the DBAPI default: what fetchmany() with no size returns

    # The parent keeps these on the aiosqlite cursor this one never opens.
    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def nextset(self) -> None:
        return None  # one statement, one result set

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None  # a no-op in sqlite3 as well

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[2]

    @property
    def lastrowid(self) -> Any:
        return self._outcome[3]

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapt_connection: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        self._outcome = await adapt_connection.call(
            _execute, operation, parameters, many, inline=self.inline
        )
        rows = self._outcome[1]
        self._rows = collections.deque(rows) if rows else collections.deque()

    async def _async_soft_close(self) -> None:
        return  # nothing is open on the database thread

    def close(self) -> None:
        self._rows.clear()


def _sync_view(connection: sqlite3.Connection) -> Connection:
    """A sync SQLAlchemy connection over ``connection``, for its own thread. It owns nothing:
    the static pool hands out this one sqlite3 connection, never resets nor closes it."""
    engine = create_engine(
        "sqlite://", creator=lambda: connection, poolclass=StaticPool, pool_reset_on_return=None
    )
    return engine.connect()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_lock_wait_ms", "_view", "transaction_may_be_open")
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass of it

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Unknown until a statement, commit or rollback tells: assume a transaction is open.
        self.transaction_may_be_open = True
        # The connection's lock wait, restored after each inline call; read on the first one,
        # after the engine's connect-time pragmas have set it.
        self._lock_wait_ms: int | None = None
        # Built now, on the fresh connection: SQLAlchemy initialises a new engine's dialect on
        # its first connection and then rolls it back, which would undo whatever a caller's
        # transaction had written if the view were built on first use.
        aio: aiosqlite.Connection = connection
        self._view: Connection = await_(aio._execute(_sync_view, aio._conn))  # type: ignore[no-untyped-call]

    async def call(self, fn: Callable[..., T], *args: Any, inline: bool) -> T:
        """``fn(sqlite3_connection, *args)``: inline when asked and possible, else on the
        database thread; then note whether it left a transaction open."""
        aio: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        raw = aio._conn
        async with self._execute_mutex:
            self.transaction_may_be_open = True  # until the call has returned
            done_inline = False
            if inline and not raw.in_transaction:
                try:
                    result = self._call_inline(raw, fn, *args)
                    done_inline = True
                except _LockWait:
                    pass  # undone: the thread will wait for the lock instead
            if not done_inline:
                result = await aio._execute(fn, raw, *args)  # type: ignore[no-untyped-call]
            self.transaction_may_be_open = raw.in_transaction
        return result

    def _call_inline(self, raw: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        if self._lock_wait_ms is None:
            self._lock_wait_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
        raw.execute("PRAGMA busy_timeout=0")  # a lock held elsewhere fails at once, no wait
        try:
            return fn(raw, *args)
        except Exception as error:
            if not _is_lock_wait(error):
                raise
            # Nothing was open before the call, so nothing but the call's own work is undone.
            if raw.in_transaction:
                raw.rollback()
            raise _LockWait from error
        finally:
            raw.execute(f"PRAGMA busy_timeout={self._lock_wait_ms}")

    async def run_and_commit(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` then commit, in one call: on the event loop's thread when no
        transaction is open, else on the database thread.

        ``connection`` is a sync SQLAlchemy connection over this one, in whatever transaction
        is open: the commit includes what the caller's unit of work wrote before. On failure
        everything is rolled back and the error raised. It runs in a copy of the caller's
        context (trace, request id), on either thread.
        """
        return await self.call(self._run_and_commit, work, contextvars.copy_context(), inline=True)

    def _run_and_commit(
        self,
        _raw: sqlite3.Connection,  # ``call``'s first argument; the view wraps it already
        work: Callable[[Connection], T],
        context: contextvars.Context,
    ) -> T:
        view = self._view
        try:
            result = context.run(work, view)
            view.commit()
        except BaseException:
            view.rollback()
            raise
        return result

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            # Streamed results run through aiosqlite's own cursor, which does not report.
            self.transaction_may_be_open = True
        return super().cursor(server_side=server_side)

    # With no transaction open, sqlite3's own commit and rollback send nothing to SQLite.
    def commit(self) -> None:
        if self.transaction_may_be_open:
            super().commit()
            self.transaction_may_be_open = False

    def rollback(self) -> None:
        if self.transaction_may_be_open:
            super().rollback()
            self.transaction_may_be_open = False


class OneTripAiosqlite(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to give ``create_async_engine`` for an ``sqlite+aiosqlite`` URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *args: Any, **kwargs: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*args, **kwargs)
        return OneTripConnection(self, adapted._connection)
