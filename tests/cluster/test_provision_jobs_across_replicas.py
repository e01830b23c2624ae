"""Provisioning jobs are stored in the database, so every replica answers for every job: two
apps in one process share one database (an SQLite file, or a PostgreSQL schema), the job is
started through one and followed through the other. Ollama is the protocol fake of
tests/ollama_pull_server.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mongars.config import Settings
from tests.api.test_models import admin_of, own_app
from tests.api.test_models_provision import job_when, job_when_done, reasoning_on
from tests.conftest import POSTGRES_URL, _drop_postgres_schema, _postgres_schema, migrated_settings
from tests.ollama_pull_server import FakeOllamaStore, fake_ollama_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def shared_database(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, object]]:
    """Where both replicas store things: settings overrides (none: an SQLite file in the
    test's data directory; or a fresh PostgreSQL schema, dropped afterwards)."""
    if request.param == "sqlite":
        yield {}
        return
    schema = await _postgres_schema()
    try:
        yield {"database_url": POSTGRES_URL, "database_schema": schema}
    finally:
        await _drop_postgres_schema(schema)


async def shared_settings(
    database: dict[str, object], tmp_path: Path, store: FakeOllamaStore
) -> Settings:
    """The settings both replicas run with, on a migrated database."""
    return await migrated_settings(tmp_path, llm=reasoning_on(store), **database)


async def provision_reasoning(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/models/provision", headers=headers, json={"roles": ["reasoning"], "force": True}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def held(job: dict[str, Any]) -> bool:
    """The pull is in flight, held after its first layer line (the fake's gate)."""
    return job["roles"][0]["total_bytes"] is not None


class TestJobsAcrossReplicas:
    async def test_a_job_started_on_one_replica_is_followed_on_the_other(
        self, shared_database: dict[str, object], tmp_path: Path
    ) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()
            settings = await shared_settings(shared_database, tmp_path, store)
            async with own_app(settings) as (a, a_resources), own_app(settings) as (b, _):
                admin = await admin_of(a, a_resources)
                started = await provision_reasoning(a, admin.headers)
                in_flight = await job_when(b, admin.headers, started["id"], held)
                # The same shape as the 202, with the pull's progress as replica A wrote it.
                assert set(in_flight) == set(started)
                assert set(in_flight["roles"][0]) == set(started["roles"][0])
                assert {k: in_flight[k] for k in ("id", "profile", "force", "created_at")} == {
                    k: started[k] for k in ("id", "profile", "force", "created_at")
                }
                role = in_flight["roles"][0]
                assert (in_flight["status"], role["status"], role["role"]) == (
                    "running",
                    "running",
                    "reasoning",
                )
                assert (role["backend"], role["model"], role["joined"]) == ("ollama", "tiny", False)
                assert role["phase"].startswith("pulling ")
                assert role["total_bytes"] == 3_000_000
                assert role["started_at"] == started["roles"][0]["started_at"]

                store.gate.set()
                done = await job_when_done(b, admin.headers, started["id"])
                on_a = await a.get(f"/api/v1/models/jobs/{started['id']}", headers=admin.headers)
        assert on_a.json() == done
        role = done["roles"][0]
        assert (done["status"], role["status"], role["phase"]) == (
            "completed",
            "completed",
            "ready",
        )
        assert role["completed_bytes"] == role["total_bytes"] == store.total_bytes
        assert role["finished_at"] is not None
        assert store.pulls["tiny"] == 1

    async def test_a_replica_shut_down_mid_pull_leaves_the_job_failed_for_the_others(
        self, shared_database: dict[str, object], tmp_path: Path
    ) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()
            settings = await shared_settings(shared_database, tmp_path, store)
            async with own_app(settings) as (b, b_resources):
                admin = await admin_of(b, b_resources)
                async with own_app(settings) as (a, _):
                    started = await provision_reasoning(a, admin.headers)
                    await job_when(b, admin.headers, started["id"], held)
                # Replica A stopped; its last write said why its pull ended.
                response = await b.get(
                    f"/api/v1/models/jobs/{started['id']}", headers=admin.headers
                )
                store.gate.set()
        assert response.status_code == 200, response.text
        job = response.json()
        role = job["roles"][0]
        assert (job["status"], role["status"]) == ("failed", "failed")
        assert role["error"] == "Interrupted: the server shut down."
        assert role["total_bytes"] == 3_000_000
        assert role["finished_at"] is not None
