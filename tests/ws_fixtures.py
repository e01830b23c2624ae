"""Fixtures for WebSocket tests (a pytest plugin, see tests/conftest.py): a real uvicorn
server per database kind, cleaned after each test, and helpers to log in and connect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mongars.core.llm import FakeBackend
from tests.conftest import PASSWORD, Database, RunningApp, empty_all_tables, reset_fake
from tests.live_server import LiveServer, live_server, register_and_login
from tests.ws_client import get_ticket, open_socket, receive


@pytest.fixture(scope="session")
def live_ws(database: Database) -> Iterator[LiveServer]:
    with live_server(database.settings, FakeBackend()) as server:
        yield server


@pytest.fixture
async def server(live_ws: LiveServer, running_app: RunningApp) -> AsyncIterator[LiveServer]:
    yield live_ws
    reset_fake(live_ws.fake)
    await empty_all_tables(running_app.resources)


def login(server: LiveServer, name: str) -> dict[str, str]:
    return register_and_login(server.base_url, name, PASSWORD)


async def connected(server: LiveServer, headers: dict[str, str], **kwargs: object):  # type: ignore[no-untyped-def]
    ws = await open_socket(server, await get_ticket(server, headers), **kwargs)  # type: ignore[arg-type]
    hello = await receive(ws)
    snapshot = await receive(ws)
    assert (hello["type"], snapshot["type"]) == ("ws.connected", "history.snapshot")
    return ws
