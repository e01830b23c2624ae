"""aiosqlite, as SQLAlchemy drives it, with one trip to the database thread per statement.

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
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

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
    """A buffered cursor whose statement, rows and metadata arrive in one thread call."""

    __slots__ = ("_outcome",)

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # Not the parent's: it opens an aiosqlite cursor (a thread call) up front.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome: _Outcome = (None, None, -1, None)

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
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            self._outcome = await connection._execute(  # type: ignore[no-untyped-call]
                _execute,
                connection._conn,  # the sqlite3 connection, used only on its own thread
                operation,
                parameters,
                many,
            )
        rows = self._outcome[1]
        self._rows = collections.deque(rows) if rows else collections.deque()

    async def _async_soft_close(self) -> None:
        return  # nothing is open on the database thread

    def close(self) -> None:
        self._rows.clear()


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass of it


class OneTripAiosqlite(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to give ``create_async_engine`` for an ``sqlite+aiosqlite`` URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *args: Any, **kwargs: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*args, **kwargs)
        return _OneTripConnection(self, adapted._connection)
