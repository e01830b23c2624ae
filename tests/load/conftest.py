"""The load test's database: a fresh PostgreSQL schema for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import schema_or_skip


@pytest.fixture(scope="module")
def cluster_schema() -> Iterator[str]:
    with schema_or_skip("mongars_load") as schema:
        yield schema
