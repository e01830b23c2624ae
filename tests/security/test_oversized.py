"""Oversized input is refused before it costs anything: bodies by size (whatever
Content-Length claims), messages by their own limit, parameters by their declared bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from mongars.app import create_app
from mongars.config import ChatSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import Accounts, Database, empty_all_tables, in_process

CAP = 1024 * 1024  # MONGARS_HTTP__MAX_BODY_BYTES's default


class TestOversizedBodies:
    async def test_a_declared_oversized_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/user/register",
            content=b"{" + b" " * CAP + b"}",
            headers={"content-type": "application/json"},
        )
        assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")

    async def test_a_streamed_body_that_lies_about_nothing_but_keeps_coming(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()

        async def endless() -> AsyncIterator[bytes]:
            yield b'{"message": "'
            for _ in range(40):
                yield b"x" * 65536

        response = await client.post(
            "/api/v1/conversation/chat",
            content=endless(),
            headers={**account.headers, "content-type": "application/json"},
        )
        assert response.status_code == 413

    async def test_a_message_over_its_own_limit(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        response = await client.post(
            "/api/v1/conversation/chat",
            headers=account.headers,
            json={"message": "x" * (32 * 1024 + 1)},
        )
        assert (response.status_code, response.json()["code"]) == (413, "message_too_large")
        assert fake_backend.requests == []


class TestOversizedParameters:
    async def test_query_path_and_header_bounds(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        long = "a" * 5000
        checks = [
            await client.get(
                "/api/v1/conversations/search", headers=account.headers, params={"q": long}
            ),
            await client.get(f"/api/v1/streams/{long}", headers=account.headers),
            await client.get(
                "/api/v1/streams/x", headers={**account.headers, "Last-Event-ID": long}
            ),
            await client.post(
                "/api/v1/auth/login", json={"username": long, "password": "x" * 2000}
            ),
        ]
        assert [r.status_code for r in checks] == [422, 422, 422, 422]
        assert all("x" * 2000 not in r.text for r in checks)  # passwords are never echoed


class TestSecretsInValidationErrors:
    async def test_a_rejected_body_never_echoes_a_secret(self, client: httpx.AsyncClient) -> None:
        secret = "hunter2-SECRET"
        checks = [
            # A missing field's input is the object around it: the password beside it.
            await client.post("/api/v1/auth/login", json={"password": secret}),
            await client.post("/api/v1/user/register", json={"password": secret}),
            await client.post("/token", data={"password": secret}),
            await client.post("/api/v1/auth/refresh", json={"refresh_token": [secret]}),
            await client.post("/api/v1/auth/login", json={"username": [1], "password": secret}),
        ]
        assert [r.status_code for r in checks] == [422] * len(checks)
        assert [secret in r.text for r in checks] == [False] * len(checks)

    async def test_a_plain_value_is_still_echoed_where_it_helps(
        self, client: httpx.AsyncClient
    ) -> None:
        long_name = "n" * 100
        registered = await client.post(
            "/api/v1/user/register", json={"username": long_name, "password": "x" * 20}
        )
        assert registered.status_code == 422
        [error] = registered.json()["detail"]
        assert error["loc"] == ["body", "username"]
        assert error["input"] == long_name


class TestAMessageTheDatabaseCannotIndex:
    async def test_is_a_422_never_a_500(self, database: Database) -> None:
        """PostgreSQL's full-text vector of a text is limited to 1 MB, and one with many
        distinct words outgrows the text: an operator who raises the message limit can let
        through a message SQLite stores and PostgreSQL refuses (SQLSTATE 54000)."""
        settings = database.settings.model_copy(
            update={"chat": ChatSettings(max_message_bytes=1_000_000)}
        )
        backend = FakeBackend(context_window=10_000_000)
        message = " ".join(f"w{n:06d}" for n in range(110_000))  # 879,999 bytes
        async with in_process(create_app(settings, roles=ModelRoles.single(backend))) as served:
            try:
                account = await Accounts(served.client, served.resources).create()
                response = await served.client.post(
                    "/api/v1/conversation/chat",
                    headers=account.headers,
                    json={"message": message},
                    timeout=60,
                )
            finally:
                await empty_all_tables(served.resources)
        if database.kind == "postgresql":
            assert response.status_code == 422, response.text[:300]
            assert response.json()["detail"][0]["type"] == "value_unstorable"
        else:
            assert response.status_code == 200
