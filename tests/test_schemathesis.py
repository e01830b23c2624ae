"""schemathesis against the app's own OpenAPI document, over real HTTP, as a logged-in
administrator (so that admin routes are exercised too): no 5xx, and no response (status,
content type, body, headers) that the document does not declare."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mongars.app import create_app
from mongars.config import RagSettings, Settings
from mongars.core.llm import FakeBackend
from mongars.resources import build_account_services, open_database
from tests.conftest import (
    PASSWORD,
    POSTGRES_URL,
    _drop_postgres_schema,
    _postgres_schema,
    make_settings,
    migrated_settings,
)
from tests.live_server import LiveServer, live_server

T = TypeVar("T")
ADMIN = "root"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Operations that end the caller's login: log in again after them.
SESSION_ENDING = {"/api/v1/auth/logout", "/api/v1/user/change-password"}


async def create_admin(settings: Settings) -> None:
    services = build_account_services(settings)
    async with open_database(settings) as sessions, sessions() as db:
        await services.accounts.create_user(db, username=ADMIN, password=PASSWORD, is_admin=True)
        await db.commit()


class Session:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.token = ""
        self.login()

    def login(self) -> None:
        response = httpx.post(
            f"{self.server.base_url}/api/v1/auth/login",
            json={"username": ADMIN, "password": PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def run_async(function: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run a coroutine function from this synchronous fixture, on a loop of its own (the test
    session's loop belongs to the async fixtures)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, function, *args).result()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    schema_name = run_async(_postgres_schema) if request.param == "postgresql" else None
    engine: dict[str, object] = (
        {"database_url": POSTGRES_URL, "database_schema": schema_name} if schema_name else {}
    )
    try:
        # RAG on (the other tests share one embedder; this server loads its own).
        app_settings = run_async(
            lambda: migrated_settings(data_dir, rag=RagSettings(enabled=True), **engine)
        )
        run_async(create_admin, app_settings)
        with live_server(app_settings, FakeBackend()) as server:
            yield Session(server)
    finally:
        if schema_name:
            run_async(_drop_postgres_schema, schema_name)


# The document as the app builds it (no I/O: nothing is opened before the lifespan). Loaded
# eagerly: schemathesis's lazy fixture loader does not work with pytest 9. Without the web UI:
# its pages are not in the document, and Django, configured once per process, would keep this
# app's data dir for the whole test session (its session files went to ./unused).
schema = schemathesis.openapi.from_dict(
    create_app(make_settings(Path("unused"), web_enabled=False)).openapi()
)


@schema.parametrize()
@settings(
    # Bounded (about ten seconds an engine); the same cases every run, so that CI is
    # repeatable. Raise it locally to dig deeper (100 found nothing more on either engine).
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_schema(case: schemathesis.Case, session: Session) -> None:
    case.call_and_validate(
        base_url=session.server.base_url, headers=session.headers, checks=CHECKS, timeout=20
    )
    if case.path in SESSION_ENDING:
        session.login()
