"""WAL checkpoints run in the background, not inside a request's commit (SQLite)."""

from __future__ import annotations

import os
import sqlite3
import threading
from functools import partial
from pathlib import Path

import anyio
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mongars.app import create_app
from mongars.config import Settings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.db.database import create_engine, sqlite_database_path
from mongars.db.sqlite_checkpoints import (
    checkpoint,
    connect,
    run_checkpoints,
)
from tests.conftest import migrated_settings

PAGE = 4096
# Well past SQLite's automatic checkpoint at 1,000 pages.
ROWS = 1500


async def write_pages(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS scratch (b BLOB)"))
    for _ in range(ROWS // 100):  # many commits, as requests make them
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO scratch (b) VALUES (randomblob(:n))"),
                [{"n": PAGE}] * 100,
            )


async def autocheckpoint(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one())


async def file_size(path: Path) -> int:
    return (await anyio.Path(path).stat()).st_size


async def grows_past(path: Path, size: int, seconds: float = 10.0) -> bool:
    with anyio.move_on_after(seconds):
        while await file_size(path) < size:  # noqa: ASYNC110 - a file's size: no event to await
            await anyio.sleep(0.05)
        return True
    return False


def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]


async def test_commits_leave_checkpoints_to_the_background_task(tmp_path: Path) -> None:
    engine = create_engine(sqlite_settings(tmp_path), background_checkpoints=True)
    database = sqlite_database_path(engine)
    assert database is not None
    try:
        assert await autocheckpoint(engine) == 0
        await write_pages(engine)
        # Everything is still in the log: no commit copied it into the database file.
        assert await file_size(database) < 100 * PAGE
        assert await file_size(Path(f"{database}-wal")) > ROWS * PAGE
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(run_checkpoints, database, interval_seconds=0.05))
            assert await grows_past(database, ROWS * PAGE)
            tasks.cancel_scope.cancel()
    finally:
        await engine.dispose()


async def test_other_engines_keep_automatic_checkpoints(tmp_path: Path) -> None:
    engine = create_engine(sqlite_settings(tmp_path))
    database = sqlite_database_path(engine)
    assert database is not None
    try:
        assert await autocheckpoint(engine) == 1000
        await write_pages(engine)
        assert await file_size(database) > 1000 * PAGE  # a commit checkpointed
    finally:
        await engine.dispose()


async def test_the_server_checkpoints_its_database(tmp_path: Path) -> None:
    settings = await migrated_settings(tmp_path)
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    async with LifespanManager(app) as manager:
        engine = manager._state["resources"].engine
        assert await autocheckpoint(engine) == 0
        database = sqlite_database_path(engine)
        assert database is not None
        before = await file_size(database)
        await write_pages(engine)
        assert await grows_past(database, before + ROWS * PAGE)


def keep_committing(database: Path, stop: threading.Event) -> None:
    """Small commits back to back from a connection of its own (another worker, or a steady
    stream of turns), so that some always land while a checkpoint copies the log."""
    connection = sqlite3.connect(database, timeout=10)
    connection.execute("PRAGMA wal_autocheckpoint=0")  # as the server's connection
    # The log file is cut back to nothing whenever this connection starts the log over: the
    # test sees a restart in the file's size, without a checkpoint of its own to look.
    connection.execute("PRAGMA journal_size_limit=0")
    try:
        while not stop.is_set():
            connection.execute("INSERT INTO scratch (b) VALUES (randomblob(100))")
            connection.commit()
    finally:
        connection.close()


def frames_in_log(database: Path) -> int:
    """How many frames the log holds now (it restarts from 0 when SQLite starts it over)."""
    connection = connect(database)
    try:
        return int(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        connection.close()


async def test_the_log_is_started_over_while_commits_keep_coming(tmp_path: Path) -> None:
    engine = create_engine(sqlite_settings(tmp_path), background_checkpoints=True)
    database = sqlite_database_path(engine)
    assert database is not None
    log = Path(f"{database}-wal")
    try:
        await write_pages(engine)
        assert await file_size(log) > ROWS * PAGE
        stop = threading.Event()
        writer = threading.Thread(target=keep_committing, args=(database, stop))
        writer.start()
        try:
            async with anyio.create_task_group() as background:
                background.start_soon(
                    partial(
                        run_checkpoints,
                        database,
                        interval_seconds=0.05,
                        restart_after_pages=ROWS // 2,
                    )
                )
                # A passive checkpoint alone copies the log but never gets it started over
                # while commits land during the copy: the log only grows.
                with anyio.fail_after(30):
                    while await file_size(log) > ROWS // 2 * PAGE:  # noqa: ASYNC110 - a file's size: no event to await
                        await anyio.sleep(0.05)
                background.cancel_scope.cancel()
        finally:
            stop.set()
            writer.join()
        assert await file_size(database) > ROWS * PAGE  # copied, not lost
    finally:
        await engine.dispose()


async def test_starting_the_log_over_gives_way_to_an_open_write(tmp_path: Path) -> None:
    engine = create_engine(sqlite_settings(tmp_path), background_checkpoints=True)
    database = sqlite_database_path(engine)
    assert database is not None
    checkpointer = connect(database)
    restart = partial(checkpoint, checkpointer, ROWS // 2)
    try:
        await write_pages(engine)
        async with engine.begin() as writing:
            await writing.execute(text("INSERT INTO scratch (b) VALUES (x'00')"))
            # The write lock is taken: the checkpoint neither waits for it nor breaks it.
            busy, _frames, _copied = await anyio.to_thread.run_sync(restart)
            assert busy == 1
        assert frames_in_log(database) > ROWS
        busy, _frames, _copied = await anyio.to_thread.run_sync(restart)
        assert busy == 0
        async with engine.begin() as writing:  # the first commit after it starts the log over
            await writing.execute(text("INSERT INTO scratch (b) VALUES (x'01')"))
        assert frames_in_log(database) < 10
        async with engine.connect() as connection:
            count = await connection.execute(text("SELECT count(*) FROM scratch"))
            assert count.scalar_one() == ROWS + 2
    finally:
        checkpointer.close()
        await engine.dispose()


async def test_checkpoints_run_on_a_thread_of_their_own_at_the_lowest_priority(
    tmp_path: Path,
) -> None:
    engine = create_engine(sqlite_settings(tmp_path), background_checkpoints=True)
    database = sqlite_database_path(engine)
    assert database is not None
    try:
        await write_pages(engine)
        async with anyio.create_task_group() as background:
            background.start_soon(partial(run_checkpoints, database, interval_seconds=0.05))
            assert await grows_past(database, ROWS * PAGE)
            threads = [t for t in threading.enumerate() if t.name.startswith("sqlite-checkpoints")]
            assert len(threads) == 1
            assert threads[0].native_id is not None
            # The event loop keeps the core: a copy of the log never delays a request.
            assert os.getpriority(os.PRIO_PROCESS, threads[0].native_id) == 19
            background.cancel_scope.cancel()
        assert not [t for t in threading.enumerate() if t.name.startswith("sqlite-checkpoints")]
    finally:
        await engine.dispose()
