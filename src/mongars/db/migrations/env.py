"""Alembic environment.

``mongars migrate`` hands over an open connection (see ``mongars.db.migrate``). Run through the
``alembic`` command instead (to write a new revision), it builds an engine from the same
settings the service uses.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from mongars.db import tables  # noqa: F401 - registers every table on the metadata
from mongars.db.base import Base
from mongars.db.migrate import include_object

config = context.config
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    from mongars.config import Settings
    from mongars.db.database import create_engine

    engine = create_engine(Settings())
    async with engine.begin() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    asyncio.run(run_from_settings())
