"""GET /metrics: every family after real traffic, bounded labels, and who may read it."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from mongars.app import create_app
from mongars.config import RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import PASSWORD, RunningApp, migrated_settings
from tests.live_server import LiveServer, live_server, register_and_login
from tests.ws_client import get_ticket, open_socket, receive, receive_until, send

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def values(series: Series, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {frozenset(labels): value for (n, labels), value in series.items() if n == name}


def has(series: Series, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    for label_set, value in values(series, name).items():
        if wanted <= label_set:
            return value
    return None


@pytest.fixture(scope="module")
async def traffic_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    """A live server of its own: three chat turns a minute, so the fourth is refused."""
    settings = await migrated_settings(
        tmp_path_factory.mktemp("metrics"),
        rate_limit=RateLimitSettings(chat_per_minute=3, login_per_minute=0, register_per_hour=0),
    )
    with live_server(settings, FakeBackend()) as server:
        yield server


class TestFamiliesAfterTraffic:
    async def test_every_family_is_present_with_its_labels(
        self, traffic_server: LiveServer
    ) -> None:
        server = traffic_server
        headers = register_and_login(server.base_url, "metrics-user", PASSWORD)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            ok = await http.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "hello"}
            )
            assert ok.status_code == 200, ok.text
            conversation_id = ok.json()["conversation_id"]
            await http.get(f"/api/v1/conversations/{conversation_id}", headers=headers)
            server.fake.fail_before_first_token = True
            failed = await http.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "fail"}
            )
            assert failed.status_code >= 500
            server.fake.fail_before_first_token = False

            # A WebSocket turn, then a resume of its stream.
            async with await open_socket(server, await get_ticket(server, headers)) as ws:
                assert (await receive(ws))["type"] == "ws.connected"
                await receive(ws)  # history.snapshot
                await send(ws, "chat.send", {"message": "over the socket"}, id_="s1")
                frames = await receive_until(ws, "chat.done")
                stream_id = frames[0]["data"]["stream_id"]
                await send(ws, "resume", {"stream_id": stream_id, "after_seq": 0}, id_="r1")
                await receive_until(ws, "chat.done")
                during = parse((await http.get("/metrics")).text)
            # And over SSE: the finished stream is replayed to its end.
            resumed = await http.get(
                f"/api/v1/streams/{stream_id}", params={"after": 0}, headers=headers
            )
            assert resumed.status_code == 200

            refused = await http.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "one too many"}
            )
            assert refused.status_code == 429
            metrics = await http.get("/metrics")

        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        series = parse(metrics.text)

        assert has(series, "mongars_build_info", version=_version()) == 1
        route = "/api/v1/conversation/chat"
        assert has(series, "mongars_http_requests_total", route=route, method="POST", status="200")
        assert has(series, "mongars_http_requests_total", route=route, status="429")
        assert has(
            series,
            "mongars_http_requests_total",
            route="/api/v1/conversations/{conversation_id}",
            method="GET",
        )
        assert has(series, "mongars_http_request_duration_seconds_count", route=route)
        assert has(series, "mongars_chat_turns_total", backend="fake", outcome="complete") == 2
        assert has(series, "mongars_chat_turns_total", backend="fake", outcome="error") == 1
        assert has(series, "mongars_chat_turns_total", backend="fake", outcome="incomplete") == 0
        assert has(series, "mongars_chat_time_to_first_token_seconds_count", backend="fake") == 2
        assert has(series, "mongars_chat_tokens_total", backend="fake", direction="in")
        assert has(series, "mongars_chat_tokens_total", backend="fake", direction="out")
        assert has(series, "mongars_backend_request_duration_seconds_count", backend="fake") == 3
        assert has(series, "mongars_backend_errors_total", backend="fake")
        assert has(series, "mongars_backend_circuit_state", backend="fake", state="closed") == 1
        assert has(series, "mongars_backend_circuit_state", backend="fake", state="open") == 0
        assert has(series, "mongars_stream_resumes_total", transport="ws") == 1
        assert has(series, "mongars_stream_resumes_total", transport="sse") == 1
        assert has(series, "mongars_rejects_total", route_class="chat", reason="rate_limited") == 1
        assert has(series, "mongars_rag_search_duration_seconds_count") == 0
        # While the socket was open: counted; its frames: sent, none dropped.
        assert has(during, "mongars_ws_connections") == 1
        assert has(series, "mongars_ws_connections") == 0
        sent = has(series, "mongars_ws_events_total", outcome="sent")
        assert sent is not None
        assert sent >= 4
        assert has(series, "mongars_ws_events_total", outcome="dropped") == 0

    async def test_labels_name_route_templates_never_paths_or_users(
        self, traffic_server: LiveServer
    ) -> None:
        headers = register_and_login(traffic_server.base_url, "label-user", PASSWORD)
        missing = str(uuid.uuid4())
        async with httpx.AsyncClient(base_url=traffic_server.base_url) as http:
            response = await http.get(f"/api/v1/conversations/{missing}", headers=headers)
            assert response.status_code == 404
            series = parse((await http.get("/metrics")).text)
        template = "/api/v1/conversations/{conversation_id}"
        assert has(series, "mongars_http_requests_total", route=template, status="404")
        for _name, labels in series:
            for _key, value in labels:
                assert missing not in value
                assert "label-user" not in value


def _version() -> str:
    from mongars import __version__

    return __version__


class TestBoundedLabels:
    async def test_a_thousand_random_404_paths_add_no_series(
        self, client: httpx.AsyncClient
    ) -> None:
        async def series_keys() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
            response = await client.get("/metrics")
            assert response.status_code == 200
            return set(parse(response.text))

        # Both kinds of 404: a page the web UI does not have, and an unknown API path.
        await client.get("/no/such/path")
        await client.get("/api/no/such/path")
        await series_keys()  # the scrape's own series exist from now on
        before = await series_keys()
        rng = random.Random(8)
        for _ in range(1000):
            path = "/" + "/".join(
                "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 12)))
                for _ in range(rng.randint(1, 4))
            )
            response = await client.get(path, params={"q": rng.random()})
            assert response.status_code == 404
        after = await series_keys()
        assert after == before


@pytest.fixture
async def token_app(tmp_path: Path) -> AsyncIterator[object]:
    settings = await migrated_settings(tmp_path, metrics_token="scrape-me-" + "x" * 20)
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    async with LifespanManager(app) as manager:
        yield manager.app


def _client(asgi: object, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi, client=(host, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestWhoMayRead:
    async def test_loopback_reads_without_a_token(self, running_app: RunningApp) -> None:
        for host in ("127.0.0.1", "::1"):
            async with _client(running_app.asgi, host) as http:
                assert (await http.get("/metrics")).status_code == 200

    async def test_remote_refused_when_no_token_is_configured(
        self, running_app: RunningApp
    ) -> None:
        async with _client(running_app.asgi, "203.0.113.9") as http:
            response = await http.get("/metrics", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403
        body = response.json()
        assert body["code"] == "metrics_forbidden"
        assert body["request_id"] == response.headers["X-Request-ID"]
        assert "mongars_" not in response.text

    async def test_remote_needs_the_token(self, token_app: object) -> None:
        async with _client(token_app, "198.51.100.4") as http:
            missing = await http.get("/metrics")
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await http.get(
                "/metrics", headers={"Authorization": "Bearer scrape-me-" + "x" * 20}
            )
        assert (missing.status_code, missing.json()["code"]) == (401, "metrics_token_invalid")
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert wrong.status_code == 401
        assert right.status_code == 200
        assert "mongars_http_requests_total" in right.text
