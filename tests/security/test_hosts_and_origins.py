"""Host and Origin: a spoofed Host is refused, only allowed origins get CORS, and every
response carries the security headers (HSTS in production only; docs off there)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from mongars.app import create_app
from mongars.config import HttpSettings
from tests.conftest import in_process, migrated_settings

APP_ORIGIN = "https://app.example.com"


@asynccontextmanager
async def app_client(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    settings = await migrated_settings(tmp_path, **overrides)
    async with in_process(create_app(settings)) as served:
        yield served.client


class TestSpoofedHost:
    @pytest.mark.parametrize("host", ["evil.example", "attacker.test:8000", "127.0.0.1.nip.io"])
    async def test_is_refused_before_anything_runs(
        self, client: httpx.AsyncClient, host: str
    ) -> None:
        response = await client.get("/api/v1/user/me", headers={"Host": host})
        assert response.status_code == 400
        assert response.json()["code"] == "host_not_allowed"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_openai_routes_refuse_in_openais_shape(self, client: httpx.AsyncClient) -> None:
        # OpenAI clients raise their typed errors only from OpenAI's body shape.
        response = await client.get("/v1/models", headers={"Host": "evil.example"})
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "message": "This server does not answer to that Host.",
                "type": "invalid_request_error",
                "param": None,
                "code": "host_not_allowed",
            }
        }

    async def test_loopback_only_in_development(self, tmp_path: Path) -> None:
        async with app_client(tmp_path) as client:
            assert (
                await client.get("/healthz", headers={"Host": "localhost:8000"})
            ).status_code == 200
        production = {
            "env": "production",
            "secret_key": "p" * 48,
            "http": HttpSettings(allowed_hosts=["chat.example.com"]),
        }
        async with app_client(tmp_path, **production) as client:
            assert (await client.get("/healthz", headers={"Host": "localhost"})).status_code == 400
            listed = await client.get("/healthz", headers={"Host": "chat.example.com"})
            assert listed.status_code == 200


class TestCors:
    @pytest.fixture
    async def cors_client(self, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
        http = HttpSettings(allowed_hosts=["testserver"], allowed_origins=[APP_ORIGIN])
        async with app_client(tmp_path, http=http) as client:
            yield client

    async def test_an_allowed_origin_may_read_with_credentials(
        self, cors_client: httpx.AsyncClient
    ) -> None:
        response = await cors_client.get("/healthz", headers={"Origin": APP_ORIGIN})
        assert response.headers["access-control-allow-origin"] == APP_ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "RateLimit-Remaining" in response.headers["access-control-expose-headers"]
        assert "Origin" in response.headers["vary"]
        preflight = await cors_client.options(
            "/api/v1/conversation/chat",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "Authorization" in preflight.headers["access-control-allow-headers"]

    @pytest.mark.parametrize(
        "origin",
        [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "null",
            "http://app.example.com",
        ],
    )
    async def test_any_other_origin_gets_nothing(
        self, cors_client: httpx.AsyncClient, origin: str
    ) -> None:
        response = await cors_client.get("/healthz", headers={"Origin": origin})
        assert response.status_code == 200  # the browser, not us, withholds it from the page
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
        preflight = await cors_client.options(
            "/api/v1/auth/login",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403
        assert preflight.json()["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in preflight.headers
        openai_preflight = await cors_client.options(
            "/v1/chat/completions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert openai_preflight.status_code == 403
        assert openai_preflight.json()["error"]["code"] == "origin_not_allowed"
        assert openai_preflight.json()["error"]["type"] == "permission_error"


class TestSecurityHeaders:
    async def test_on_api_responses_and_errors(self, client: httpx.AsyncClient) -> None:
        for response in (await client.get("/healthz"), await client.get("/api/v1/user/me")):
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-frame-options"] == "DENY"
            assert (
                headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
            )
            assert headers["cache-control"] == "no-store"
            assert "strict-transport-security" not in headers  # development

    async def test_docs_keep_their_scripts_but_not_framing(self, client: httpx.AsyncClient) -> None:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"

    async def test_production_adds_hsts_and_hides_the_docs(self, tmp_path: Path) -> None:
        production = {
            "env": "production",
            "secret_key": "p" * 48,
            "http": HttpSettings(allowed_hosts=["testserver"]),
        }
        async with app_client(tmp_path, **production) as client:
            health = await client.get("/healthz")
            assert health.headers["strict-transport-security"].startswith("max-age=")
            assert (await client.get("/docs")).status_code == 404
        async with app_client(tmp_path, docs_enabled=True, **production) as client:
            assert (await client.get("/docs")).status_code == 200
