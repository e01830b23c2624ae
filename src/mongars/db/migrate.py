"""Run Alembic migrations from code (``mongars migrate``, ``mongars serve``, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Full-text search objects are engine-specific and created by raw SQL in the migrations; the
# models do not describe them, so schema comparison must not report them as strays.
# The same for chunks (0004), plus pgvector's column and HNSW index where the extension exists.
UNMODELLED_OBJECTS = frozenset(
    {
        "ix_messages_content_tsv",
        "content_tsv",
        "ix_chunks_text_tsv",
        "text_tsv",
        "embedding_vec",
        "ix_chunks_embedding_hnsw",
    }
)
UNMODELLED_TABLE_PREFIXES = ("messages_fts", "chunks_fts")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if name is None:
        return True
    if type_ == "table" and name.startswith(UNMODELLED_TABLE_PREFIXES):
        return False
    return name not in UNMODELLED_OBJECTS


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        # env.py uses this connection instead of building an engine from the environment.
        config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync_conn: command.upgrade(alembic_config(sync_conn), revision)
        )


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
