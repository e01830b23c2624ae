"""A real server for the official ``openai`` client: the fake backend answers, RAG's embedder
is the session's real MiniLM, and a user with an API key of their own per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from mongars.config import RagSettings
from mongars.core.llm import FakeBackend
from mongars.core.rag.embedder import Embedder
from tests.conftest import PASSWORD, Database, RunningApp, empty_all_tables, reset_fake
from tests.live_server import LiveServer, live_server, register_and_login


@dataclass
class OpenAIUser:
    base_url: str  # the OpenAI-style base URL, ending in /v1
    api_key: str
    headers: dict[str, str]  # a native access token, for checking history and usage


@pytest.fixture(scope="session")
def openai_server(database: Database, embedder: Embedder) -> Iterator[LiveServer]:
    settings = database.settings.model_copy(update={"rag": RagSettings(enabled=True)})
    with live_server(settings, FakeBackend(), embedder=embedder) as server:
        yield server


@pytest.fixture
async def server(openai_server: LiveServer, running_app: RunningApp) -> AsyncIterator[LiveServer]:
    yield openai_server
    reset_fake(openai_server.fake)
    # The same database as running_app's: cleaned through it after each test.
    await empty_all_tables(running_app.resources)


def new_user(server: LiveServer, username: str = "ada") -> OpenAIUser:
    headers = register_and_login(server.base_url, username, PASSWORD)
    created = httpx.post(
        f"{server.base_url}/api/v1/api-keys", headers=headers, json={"name": "openai"}
    )
    assert created.status_code == 201, created.text
    return OpenAIUser(f"{server.base_url}/v1", created.json()["key"], headers)


@pytest.fixture
def user(server: LiveServer) -> OpenAIUser:
    return new_user(server)
