"""Fault tests: real replicas (``mongars serve`` processes) and real servers, broken on
purpose. Each module gets a fresh PostgreSQL schema (``cluster_schema``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import schema_or_skip


@pytest.fixture(scope="module")
def cluster_schema() -> Iterator[str]:
    """Synchronous, so that synchronous tests (most fault tests drive the replicas with
    blocking calls) can use it."""
    with schema_or_skip("mongars_faults") as schema:
        yield schema
