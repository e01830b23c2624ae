"""Fixtures for tests that run several replicas (see harness.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.cluster.harness import POSTGRES_URL

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
async def cluster_schema() -> AsyncIterator[str]:
    """A fresh schema in the shared PostgreSQL ``test`` database, dropped afterwards."""
    schema = f"mongars_cluster_{secrets.token_hex(4)}"
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is needed for cluster tests: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()
