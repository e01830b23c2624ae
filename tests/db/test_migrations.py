"""The migrations build the schema the models describe, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from mongars.db import migrate
from mongars.db.base import Base
from mongars.db.database import create_engine
from tests.conftest import (
    POSTGRES_URL,
    Database,
    _drop_postgres_schema,
    _postgres_schema,
    make_settings,
)

PROVISIONING_TABLES = {"provisioning_jobs", "provisioning_tasks", "provisioning_job_roles"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of its own with no schema yet (a fresh PostgreSQL schema)."""
    schema = None
    if request.param == "postgresql":
        schema = await _postgres_schema()
        settings = make_settings(tmp_path, database_url=POSTGRES_URL, database_schema=schema)
    else:
        settings = make_settings(tmp_path)
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()
        if schema:
            await _drop_postgres_schema(schema)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync_conn: command.downgrade(migrate.alembic_config(sync_conn), revision)
        )


class TestMigrations:
    async def test_upgrade_from_empty_reaches_head_and_matches_the_models(
        self, database: Database
    ) -> None:
        engine = create_engine(database.settings)
        try:
            head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
            assert await migrate.current_revision(engine) == head

            def diff(connection):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(
                    connection,
                    opts={"compare_type": True, "include_object": migrate.include_object},
                )
                return compare_metadata(context, Base.metadata)

            async with engine.connect() as connection:
                differences = await connection.run_sync(diff)
                tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert differences == []
            assert {table.name for table in Base.metadata.sorted_tables} <= tables
        finally:
            await engine.dispose()

    async def test_upgrade_is_idempotent(self, database: Database) -> None:
        engine = create_engine(database.settings)
        try:
            await migrate.upgrade(engine)
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    def test_a_single_head(self) -> None:
        assert len(ScriptDirectory.from_config(migrate.alembic_config()).get_heads()) == 1


class TestProvisioningJobsMigration:
    async def test_0006_adds_the_provisioning_tables_and_downgrades_without_a_trace(
        self, empty_engine: AsyncEngine
    ) -> None:
        await migrate.upgrade(empty_engine, "0005")
        before = await table_names(empty_engine)
        assert not before & PROVISIONING_TABLES
        await migrate.upgrade(empty_engine, "0006")
        assert await table_names(empty_engine) - before == PROVISIONING_TABLES
        await downgrade(empty_engine, "0005")
        assert await table_names(empty_engine) == before
        assert await migrate.current_revision(empty_engine) == "0005"
