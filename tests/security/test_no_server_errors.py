"""Every route in the OpenAPI document, through each way it can fail: no credential, a bad
one, a malformed body, ids that do not exist, the database down. Expected failures are never
a 500, and every refusal is the error envelope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from redis.exceptions import ConnectionError as RedisConnectionError

from mongars.app import create_app
from mongars.core.llm import FakeBackend
from mongars.devtools.cluster import free_port
from tests.conftest import Accounts, in_process, make_settings

NOT_ENVELOPES = {"/ready"}  # readiness answers with its own report, 503 included


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(schema: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in schema["paths"].items():
        for method, spec in methods.items():
            yield Operation(method.upper(), path, spec)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def sample(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    """The smallest value that passes the declared schema (required fields only)."""
    node = resolve(schema, node)
    for choice in node.get("anyOf", []):
        if choice.get("type") != "null":
            return sample(schema, choice)
    kind = node.get("type")
    if kind == "object":
        return {
            name: sample(schema, prop)
            for name, prop in node.get("properties", {}).items()
            if name in node.get("required", [])
        }
    if kind == "integer":
        return max(int(node.get("minimum", 1)), 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if node.get("format") == "uuid":
        return str(uuid.uuid4())
    return "x" * max(8, int(node.get("minLength", 1)))


def request_for(
    schema: dict[str, Any], op: Operation, *, credential: str | None, bad_body: bool = False
) -> dict[str, Any]:
    path = op.path
    params: dict[str, Any] = {}
    for parameter in op.spec.get("parameters", []):
        value = sample(schema, parameter["schema"])
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query" and parameter.get("required"):
            params[parameter["name"]] = value
    request: dict[str, Any] = {"method": op.method, "url": path, "params": params}
    if credential is not None:
        request["headers"] = {"Authorization": f"Bearer {credential}"}
    content = op.spec.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        if bad_body:
            request["content"] = b'{"not": json'
            request.setdefault("headers", {})["Content-Type"] = "application/json"
        else:
            request["json"] = sample(schema, content["application/json"]["schema"])
    elif "application/x-www-form-urlencoded" in content:
        form = sample(schema, content["application/x-www-form-urlencoded"]["schema"])
        request["data"] = {"bogus": "%%%"} if bad_body else form
    return request


def check(op: Operation, mode: str, response: httpx.Response) -> None:
    assert response.status_code != 500, (mode, str(op), response.text)
    assert response.status_code < 500 or mode == "database down", (mode, str(op), response.text)
    if response.status_code >= 400 and op.path not in NOT_ENVELOPES:
        body = response.json()
        if op.path.startswith("/v1/"):
            # The OpenAI-compatible routes answer in OpenAI's error shape.
            assert {"message", "type", "param", "code"} <= set(body["error"]), (mode, str(op), body)
            assert response.headers["X-Request-ID"], (mode, str(op))
        else:
            assert {"detail", "code", "request_id"} <= set(body), (mode, str(op), body)


class TestEveryRoute:
    async def test_without_with_bad_credentials_bad_bodies_and_unknown_ids(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        await accounts.create("root", admin=True)
        walked = 0
        for op in operations(schema):
            for mode, credential in (("no credential", None), ("bad credential", "garbage")):
                response = await client.request(**request_for(schema, op, credential=credential))
                check(op, mode, response)
                if op.secured:
                    assert response.status_code == 401, (mode, str(op))
            # A fresh login each time: some routes (logout, change-password) end the session.
            token = (await accounts.login("root")).access_token
            if "requestBody" in op.spec:
                bad = await client.request(
                    **request_for(schema, op, credential=token, bad_body=True)
                )
                check(op, "bad body", bad)
                assert bad.status_code in (400, 401, 422), str(op)
            token = (await accounts.login("root")).access_token
            unknown = await client.request(**request_for(schema, op, credential=token))
            check(op, "unknown ids", unknown)
            walked += 1
        assert walked >= 30


class TestDatabaseDown:
    async def test_every_route_answers_503_or_without_the_database(self, tmp_path: Path) -> None:
        settings = make_settings(
            tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/test"
        )
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            resources = manager._state["resources"]
            # A genuine signature: authentication gets as far as the database.
            token = resources.accounts.access_tokens.issue(
                user_id=uuid.uuid4(), session_id=uuid.uuid4(), token_version=0
            )
            transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                schema = (await client.get("/openapi.json")).json()
                for op in operations(schema):
                    response = await client.request(**request_for(schema, op, credential=token))
                    check(op, "database down", response)
                    if op.secured or op.method != "GET":
                        assert response.status_code == 503, str(op)
                        body = response.json()
                        code = body["error"]["code"] if op.path.startswith("/v1/") else body["code"]
                        assert code == "database_unavailable", str(op)
                        assert response.headers["retry-after"]


class TestRedisDown:
    async def test_a_feature_that_needs_redis_answers_503(self, tmp_path: Path) -> None:
        app = create_app(make_settings(tmp_path))

        async def needs_redis() -> None:
            raise RedisConnectionError("Connection refused")

        app.add_api_route("/needs-redis", needs_redis)
        async with in_process(app) as served:
            response = await served.client.get("/needs-redis")
        assert response.status_code == 503
        assert response.json()["code"] == "redis_unavailable"
        assert response.headers["retry-after"] == "5"
