"""The migrations build the schema the models describe, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from mongars.db import migrate
from mongars.db.base import Base
from mongars.db.database import create_engine
from tests.conftest import Database


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
