"""Rate limits through the API: headers on every limited response (streams included, before
their first byte), 429 ``rate_limited`` with ``Retry-After``, per-user and per-address keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mongars.api.ratelimit import WsTicketRateLimit
from mongars.app import create_app
from mongars.config import RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.core.ratelimit import Decision
from mongars.db.tables import Message
from mongars.resources import Resources
from tests.conftest import PASSWORD, in_process, migrated_settings
from tests.live_server import live_server, register_and_login

LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


async def open_client(
    tmp_path: Path, app_hook: object = None, **limits: int
) -> AsyncIterator[tuple[httpx.AsyncClient, Resources]]:
    settings = await migrated_settings(tmp_path, rate_limit=RateLimitSettings(**limits))
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    if callable(app_hook):
        app_hook(app)
    async with in_process(app) as served:
        yield served.client, served.resources


async def signed_up(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    await client.post("/api/v1/user/register", json={"username": username, "password": PASSWORD})
    token = await client.post("/token", data={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def limit_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in LIMIT_HEADERS}


@pytest.fixture
async def chat_twice_a_minute(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, Resources]]:
    async for pair in open_client(tmp_path, chat_per_minute=2):
        yield pair


class TestChatLimit:
    async def test_headers_count_down_then_429_with_retry_after(
        self, chat_twice_a_minute: tuple[httpx.AsyncClient, Resources]
    ) -> None:
        client, resources = chat_twice_a_minute
        headers = await signed_up(client, "ada")
        responses = [
            await client.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": f"n{n}"}
            )
            for n in range(3)
        ]
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert limit_headers(responses[0]) == {
            "ratelimit-limit": "2",
            "ratelimit-remaining": "1",
            "ratelimit-reset": "30",
        }
        assert responses[1].headers["ratelimit-remaining"] == "0"
        refused = responses[2]
        assert refused.json()["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "30"
        assert limit_headers(refused) == {
            "ratelimit-limit": "2",
            "ratelimit-remaining": "0",
            "ratelimit-reset": "60",
        }
        async with resources.sessions() as db:
            stored = await db.scalar(select(func.count()).select_from(Message))
        assert stored == 4  # two turns; the refused one never started
        assert resources.limiter.rejects.counts[("chat", "rate_limited")] == 1

    async def test_the_stream_route_shares_the_budget_and_each_user_has_their_own(
        self, chat_twice_a_minute: tuple[httpx.AsyncClient, Resources]
    ) -> None:
        client, _ = chat_twice_a_minute
        ada, bob = await signed_up(client, "ada"), await signed_up(client, "bob")
        whole = await client.post("/api/v1/conversation/chat", headers=ada, json={"message": "a"})
        streamed = await client.post(
            "/api/v1/conversation/chat/stream", headers=ada, json={"message": "b"}
        )
        assert (whole.status_code, streamed.status_code) == (200, 200)
        assert streamed.headers["ratelimit-remaining"] == "0"
        refused = await client.post(
            "/api/v1/conversation/chat/stream", headers=ada, json={"message": "c"}
        )
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/json"
        other = await client.post("/api/v1/conversation/chat", headers=bob, json={"message": "d"})
        assert other.status_code == 200

    async def test_refusals_further_down_still_report_the_limit(
        self, chat_twice_a_minute: tuple[httpx.AsyncClient, Resources]
    ) -> None:
        client, _ = chat_twice_a_minute
        headers = await signed_up(client, "ada")
        missing = await client.post(
            "/api/v1/conversation/chat",
            headers=headers,
            json={"message": "hi", "conversation_id": "00000000-0000-4000-8000-000000000000"},
        )
        assert missing.status_code == 404
        assert missing.headers["ratelimit-remaining"] == "1"

    async def test_unlimited_routes_and_unlimited_classes_carry_no_headers(
        self, tmp_path: Path
    ) -> None:
        async for client, _ in open_client(tmp_path, chat_per_minute=0):
            headers = await signed_up(client, "ada")
            chat = await client.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "x"}
            )
            me = await client.get("/api/v1/user/me", headers=headers)
            for response in (chat, me):
                assert response.status_code == 200
                assert "ratelimit-limit" not in response.headers


class TestStreamHeaders:
    async def test_a_stream_has_its_headers_before_its_first_event(self, tmp_path: Path) -> None:
        settings = await migrated_settings(
            tmp_path, rate_limit=RateLimitSettings(chat_per_minute=5)
        )
        fake = FakeBackend(token_delay_seconds=0.3)
        with live_server(settings, fake) as server:
            auth = await anyio.to_thread.run_sync(
                register_and_login, server.base_url, "ada", PASSWORD
            )
            async with (
                httpx.AsyncClient(base_url=server.base_url, timeout=20) as client,
                client.stream(
                    "POST",
                    "/api/v1/conversation/chat/stream",
                    headers=auth,
                    json={"message": "one two three"},
                ) as response,
            ):
                # The answer is still being generated (a token every 0.3 s): these came first.
                assert response.headers["content-type"].startswith("text/event-stream")
                assert limit_headers(response) == {
                    "ratelimit-limit": "5",
                    "ratelimit-remaining": "4",
                    "ratelimit-reset": "12",
                }
                assert "retry-after" not in response.headers
                assert b"event: done" in await response.aread()


class TestRegistrationLimit:
    async def test_per_client_address(self, tmp_path: Path) -> None:
        async for client, _ in open_client(tmp_path, register_per_hour=2):
            codes = [
                (
                    await client.post(
                        "/api/v1/user/register", json={"username": name, "password": PASSWORD}
                    )
                ).status_code
                for name in ("ann", "ben", "cat")
            ]
            assert codes == [201, 201, 429]
            elsewhere = httpx.ASGITransport(
                app=client._transport.app,  # type: ignore[attr-defined]
                client=("203.0.113.9", 4000),
            )
            async with httpx.AsyncClient(
                transport=elsewhere, base_url="http://testserver"
            ) as other:
                response = await other.post(
                    "/api/v1/user/register", json={"username": "dan", "password": PASSWORD}
                )
                assert response.status_code == 201


class TestTicketLimit:
    async def test_the_dependency_for_ticket_issuance(self, tmp_path: Path) -> None:
        def add_probe(app: FastAPI) -> None:
            async def probe(limit: WsTicketRateLimit) -> dict[str, int]:
                return {"remaining": limit.remaining}

            app.add_api_route("/probe", probe, methods=["POST"])

        async for client, _ in open_client(tmp_path, add_probe, ws_ticket_per_minute=1):
            headers = await signed_up(client, "ada")
            assert (await client.post("/probe")).status_code == 401
            first = await client.post("/probe", headers=headers)
            assert first.json() == {"remaining": 0}
            second = await client.post("/probe", headers=headers)
            assert second.status_code == 429
            assert int(second.headers["retry-after"]) == 60


def test_decisions_are_plain_values_for_the_websocket_handler() -> None:
    # What `await resources.limiter.check("chat", user_id)` hands the WebSocket handler.
    refused = Decision(False, 10, 0, 60.0, 6.0)
    assert (refused.allowed, refused.limit, refused.remaining) == (False, 10, 0)
    assert refused.headers()["Retry-After"] == "6"
