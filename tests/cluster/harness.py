"""Replicas as real server processes on loopback, sharing PostgreSQL and Redis.

The processes are started by ``mongars.devtools.cluster`` (what ``make cluster`` runs); this
module gives the tests their defaults: a fresh schema in the ``test`` database, a fresh Redis
key prefix, the fake backend and cheap password hashing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import pytest

from mongars.devtools import cluster
from mongars.devtools.cluster import Replica
from tests.conftest import IN_CI

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "Replica",
    "cluster_env",
    "fresh_schema",
    "replicas",
    "schema_or_skip",
]

POSTGRES_URL = os.environ.get("MONGARS_TEST_POSTGRES_URL", cluster.DEFAULT_POSTGRES_URL)
REDIS_URL = os.environ.get("MONGARS_TEST_REDIS_URL", cluster.DEFAULT_REDIS_URL)


def cluster_env(
    tmp_path: Path,
    schema: str,
    *,
    database_url: str = POSTGRES_URL,
    redis_url: str | None = REDIS_URL,
    **extra: str,
) -> dict[str, str]:
    settings = {
        "MONGARS_LLM__BACKEND": "fake",
        "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
        "MONGARS_AUTH__ARGON2_TIME_COST": "1",
        "MONGARS_AUTH__ARGON2_PARALLELISM": "1",
        **extra,  # a test may override any of the above
    }
    return cluster.cluster_env(
        tmp_path,
        database_url=database_url,
        schema=schema,
        redis_url=redis_url,
        key_prefix=f"mongars-test-{secrets.token_hex(4)}",
        secret_key="cluster-secret-" + "k" * 40,
        **settings,
    )


@contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A new schema in the shared ``test`` database, dropped afterwards (synchronous, for
    fixtures of synchronous tests too). Raises ``OSError``/``asyncpg.PostgresError`` when
    PostgreSQL is unreachable."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_execute(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        asyncio.run(_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@contextmanager
def schema_or_skip(prefix: str) -> Iterator[str]:
    """``fresh_schema``, skipping the test without PostgreSQL (failing it in CI)."""
    with ExitStack() as stack:
        try:
            schema = stack.enter_context(fresh_schema(prefix))
        except (OSError, asyncpg.PostgresError) as exc:
            if IN_CI:
                pytest.fail(f"PostgreSQL is needed for these tests: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        yield schema


async def _execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def replicas(env: dict[str, str], count: int, tmp_path: Path) -> Iterator[list[Replica]]:
    with cluster.replicas(env, count, tmp_path) as started:
        yield started
