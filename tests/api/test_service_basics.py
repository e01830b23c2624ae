"""The envelope, request ids, size caps, health and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import Accounts


class TestErrorEnvelope:
    async def test_unknown_route(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/nothing-here")
        assert response.status_code == 404
        body = response.json()
        assert body == {
            "detail": "Not Found",
            "code": "not_found",
            "request_id": body["request_id"],
        }
        assert body["request_id"] == response.headers["x-request-id"]

    async def test_wrong_method(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/healthz")
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"

    async def test_malformed_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestRequestId:
    async def test_a_safe_incoming_id_is_kept(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
        assert response.headers["x-request-id"] == "trace-abc.123"

    async def test_an_unsafe_incoming_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/nope", headers={"X-Request-ID": "<script>"})
        assert response.headers["x-request-id"] != "<script>"
        assert response.json()["request_id"] == response.headers["x-request-id"]


class TestBodySizeCap:
    async def test_declared_length_over_the_cap(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/login",
            content=b"x" * (1024 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    async def test_streamed_body_over_the_cap(self, client: httpx.AsyncClient) -> None:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b"x" * 65536

        response = await client.post(
            "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


class TestHealth:
    async def test_liveness(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"

    async def test_readiness_checks_the_database(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.json()["checks"]["database"]["ok"] is True


class TestOpenApi:
    async def test_operation_ids_are_stable_and_every_route_is_documented(
        self, client: httpx.AsyncClient
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        operations = [op for path in schema["paths"].values() for op in path.values()]
        ids = [op["operationId"] for op in operations]
        assert len(ids) == len(set(ids))
        assert {"login", "issue_token", "register_user", "read_me", "create_api_key"} <= set(ids)
        assert all(op.get("description") or op.get("summary") for op in operations)
        assert all("_api_v1_" not in op_id for op_id in ids)

    async def test_error_responses_are_declared(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        patch = schema["paths"]["/api/v1/users/{username}"]["patch"]
        assert {"401", "403", "404", "409", "422"} <= set(patch["responses"])


class TestReadinessWithRedis:
    async def test_reports_redis_and_fails_when_it_is_down(self, tmp_path: Path) -> None:

        from mongars.app import create_app
        from tests.conftest import in_process, migrated_settings
        from tests.live_server import free_port

        for url, ok in (
            ("redis://127.0.0.1:6379/0", True),
            (f"redis://127.0.0.1:{free_port()}/0", False),
        ):
            settings = await migrated_settings(tmp_path, redis_url=url)
            async with in_process(create_app(settings)) as served:
                response = await served.client.get("/ready")
            assert response.json()["checks"]["redis"]["ok"] is ok
            assert response.status_code == (200 if ok else 503)
