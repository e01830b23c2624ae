"""The model-backend tests use the session fixtures of ``tests/model_fixtures.py``
(``embedded``, ``llama_server``), shared with the API tests, and ``stub``, a local HTTP server
whose answers a test writes (``tests/http_stub.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.http_stub import StubServer


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    async with StubServer.running() as server:
        yield server
