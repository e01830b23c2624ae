"""Fixtures for the SDK tests: the live server (tests/ws_fixtures.py's ``server``, once per
database kind) behind a proxy that can cut connections, and accounts made through the SDK."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.live_server import LiveServer
from tests.sdk.dropping_proxy import DroppingProxy, dropping_proxy

_names = itertools.count(1)


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[DroppingProxy]:
    with dropping_proxy(server.base_url) as running:
        yield running


@pytest.fixture
def username() -> str:
    return f"sdkuser{next(_names)}"
