"""Shared fixtures: every API test runs once on SQLite and once on the real PostgreSQL.

PostgreSQL tests use the ``test`` database on 127.0.0.1:5432 with a schema of their own per run
(dropped at the end), so concurrent runs cannot see each other. Without a reachable server the
PostgreSQL half is skipped locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import inspect
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from mongars.app import create_app
from mongars.config import (
    AuthSettings,
    HttpSettings,
    LLMSettings,
    RagSettings,
    RateLimitSettings,
    Settings,
)
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.core.rag.embedder import Embedder
from mongars.db import migrate
from mongars.db.base import Base
from mongars.db.database import create_engine
from mongars.resources import Resources

pytest_plugins = ["tests.model_fixtures", "tests.ws_fixtures"]

POSTGRES_URL = os.environ.get(
    "MONGARS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery"

# Hashing dominates test time at production cost; the algorithm and code path stay the same.
FAST_ARGON2 = AuthSettings(argon2_time_cost=1, argon2_memory_cost_kib=1024, argon2_parallelism=1)
# The test clients' Host names ("testserver": httpx's ASGI default here; "t": short).
TEST_HOSTS = HttpSettings(allowed_hosts=["testserver", "t"])
# One long-lived app serves the whole session from one address, and test users reuse names:
# login and registration limits (tested in tests/security) would trip across tests.
ROOMY_LIMITS = RateLimitSettings(
    login_per_minute=0, register_per_hour=0, login_free_failures=1_000_000
)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every coroutine test runs on anyio's asyncio backend without a marker on each one. The
    # mark must be there before anyio's own collection hook looks for it.
    if inspect.iscoroutinefunction(obj) and collector.funcnamefilter(name):  # type: ignore[attr-defined]
        pytest.mark.anyio(obj)


async def _postgres_schema() -> str:
    schema = f"mongars_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI needs it)")
        pytest.skip(message)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    return schema


async def _drop_postgres_schema(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@dataclass
class Database:
    kind: str
    settings: Settings


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """A migrated, empty database of each kind, for the whole session."""
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    schema = None
    if request.param == "postgresql":
        schema = await _postgres_schema()
        settings = make_settings(data_dir, database_url=POSTGRES_URL, database_schema=schema)
    else:
        settings = make_settings(data_dir)
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    await engine.dispose()
    try:
        yield Database(kind=request.param, settings=settings)
    finally:
        if schema:
            await _drop_postgres_schema(schema)


async def migrated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a database of its own (SQLite unless ``overrides`` name another), already
    migrated."""
    settings = make_settings(data_dir, **overrides)
    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return settings


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "secret_key": "test-secret-" + "x" * 40,
        "auth": FAST_ARGON2,
        "http": TEST_HOSTS,
        "rate_limit": ROOMY_LIMITS,
        # The deterministic fake backend unless a test asks for a real one (see test_chat_*).
        "llm": LLMSettings(backend="fake"),
        # Apps that need RAG get the session's embedder (``embedder`` fixture) instead of
        # loading their own.
        "rag": RagSettings(enabled=False),
    }
    values.update(overrides)
    # _env_file=None: a developer's .env must not leak into the tests.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class RunningApp:
    app: FastAPI
    asgi: object
    resources: Resources
    fake: FakeBackend


@dataclass
class InProcess:
    """An app of a test's own, inside its lifespan, with an HTTP client on it."""

    client: httpx.AsyncClient
    resources: Resources
    asgi: object  # the app as the lifespan wraps it

    def client_from(self, address: str) -> httpx.AsyncClient:
        """Another client on the same app, whose requests come from ``address``."""
        transport = httpx.ASGITransport(app=self.asgi, client=(address, 50000))  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url=self.client.base_url)


@asynccontextmanager
async def in_process(
    app: FastAPI, base_url: str = "http://testserver", **client_options: Any
) -> AsyncIterator[InProcess]:
    """Run ``app``'s lifespan and give a client that calls it in process (no socket)."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, **client_options
        ) as client:
            yield InProcess(client, manager._state["resources"], manager.app)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real embedding model, loaded once per test session."""
    return Embedder()


@pytest.fixture(scope="session")
async def running_app(database: Database, embedder: Embedder) -> AsyncIterator[RunningApp]:
    fake = FakeBackend()
    app = create_app(database.settings, roles=ModelRoles.single(fake), embedder=embedder)
    async with LifespanManager(app) as manager:
        resources = manager._state["resources"]  # the lifespan's own state
        yield RunningApp(app=app, asgi=manager.app, resources=resources, fake=fake)


@pytest.fixture
async def client(running_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=running_app.asgi)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await empty_all_tables(running_app.resources)


@pytest.fixture
def fake_backend(running_app: RunningApp) -> Iterator[FakeBackend]:
    """The backend answering every role in ``running_app``; reset after each test."""
    yield running_app.fake
    reset_fake(running_app.fake)


def reset_fake(fake: FakeBackend) -> None:
    fake.token_delay_seconds = 0.0
    fake.fail_before_first_token = False
    fake.fail_after_tokens = None
    fake.hang_before_first_token = False
    fake.confidence = None
    fake.requests.clear()
    fake.counting_blocks = False
    fake.counting_threads.clear()


async def empty_all_tables(resources: Resources) -> None:
    async with resources.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture
def resources(running_app: RunningApp) -> Resources:
    return running_app.resources


# -- factories ------------------------------------------------------------------------------


@dataclass
class Account:
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Accounts:
    """Makes users through the real services and logs them in through the real API."""

    def __init__(self, client: httpx.AsyncClient, resources: Resources) -> None:
        self.client = client
        self.resources = resources
        self._count = 0

    async def create(self, username: str | None = None, *, admin: bool = False) -> Account:
        self._count += 1
        username = username or f"user{self._count}"
        async with self.resources.sessions() as db:
            await self.resources.accounts.create_user(
                db, username=username, password=PASSWORD, is_admin=admin
            )
            await db.commit()
        return await self.login(username)

    async def login(self, username: str, password: str = PASSWORD) -> Account:
        response = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return Account(username, password, body["access_token"], body["refresh_token"])


@pytest.fixture
def accounts(client: httpx.AsyncClient, resources: Resources) -> Accounts:
    return Accounts(client, resources)
