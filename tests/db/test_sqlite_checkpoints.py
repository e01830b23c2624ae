"""WAL checkpoints run in the background, not inside a request's commit (SQLite)."""

from __future__ import annotations

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
from mongars.db.sqlite_checkpoints import run_checkpoints
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
