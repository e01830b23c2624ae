"""OpenTelemetry: spans with parent links when on; nothing of the SDK imported when off."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mongars.app import create_app
from mongars.core.llm import ChatBackend, FakeBackend, OpenAICompatBackend
from mongars.core.model_roles import ModelRoles
from mongars.observability import tracing
from tests.conftest import PASSWORD, in_process, migrated_settings
from tests.http_stub import StubServer


@dataclass
class TracedApp:
    http: httpx.AsyncClient
    exporter: InMemorySpanExporter
    resources: object


@asynccontextmanager
async def traced_app(tmp_path: Path, backend: ChatBackend) -> AsyncIterator[TracedApp]:
    settings = await migrated_settings(tmp_path, otel_enabled=True)
    exporter = InMemorySpanExporter()
    app = create_app(settings, roles=ModelRoles.single(backend), span_exporter=exporter)
    async with in_process(app) as served:
        yield TracedApp(served.client, exporter, served.resources)
    assert not tracing.enabled()
    assert not AioHttpClientInstrumentor().is_instrumented_by_opentelemetry


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[TracedApp]:
    async with traced_app(tmp_path, FakeBackend()) as app:
        yield app


async def chat_turn(traced: TracedApp) -> list[ReadableSpan]:
    """One chat turn by a new user; the spans it made, once its generation's have ended."""
    registered = await traced.http.post(
        "/api/v1/user/register", json={"username": "tracy", "password": PASSWORD}
    )
    assert registered.status_code == 201
    login = await traced.http.post(
        "/api/v1/auth/login", json={"username": "tracy", "password": PASSWORD}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    traced.exporter.clear()

    response = await traced.http.post(
        "/api/v1/conversation/chat", headers=headers, json={"message": "hi"}
    )
    assert response.status_code == 200
    # The generation's span ends once its listeners ran, just after the answer went out.
    with anyio.fail_after(5):
        while not any(s.name == "chat.turn" for s in traced.exporter.get_finished_spans()):  # noqa: ASYNC110 - polling an exporter
            await anyio.sleep(0.01)
    return list(traced.exporter.get_finished_spans())


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


class TestTracingOn:
    async def test_a_chat_turn_is_one_trace_with_parent_links(self, traced: TracedApp) -> None:
        spans = await chat_turn(traced)

        server = _one(spans, "POST /api/v1/conversation/chat")
        turn = _one(spans, "chat.turn")
        backend = _one(spans, "chat.backend")
        assert server.parent is None
        assert turn.parent is not None
        assert turn.parent.span_id == server.context.span_id
        assert backend.parent is not None
        assert backend.parent.span_id == turn.context.span_id
        assert {span.context.trace_id for span in (server, turn, backend)} == {
            server.context.trace_id
        }
        assert turn.attributes is not None
        assert turn.attributes["mongars.backend"] == "fake"
        # SQLAlchemy's statements and the turn's writes belong to the same trace.
        sql = [s for s in spans if s.name.split()[0] in {"SELECT", "INSERT", "UPDATE"}]
        assert sql
        assert {s.context.trace_id for s in sql} == {server.context.trace_id}
        stored = _one(spans, "chat.store_answer")
        assert stored.parent is not None
        assert stored.parent.span_id == turn.context.span_id
        asked = _one(spans, "chat.store_question")
        assert asked.context.trace_id == server.context.trace_id

    async def test_a_remote_backend_call_is_a_client_span_of_the_backend_span(
        self, tmp_path: Path
    ) -> None:
        async def answer(request: web.BaseRequest) -> web.StreamResponse:
            choice = {"message": {"role": "assistant", "content": "hello"}, "delta": {}}
            if not (await request.json())["stream"]:
                return web.json_response({"choices": [{**choice, "finish_reason": "stop"}]})
            events = [
                {"choices": [{"delta": {"content": "hello"}, "finish_reason": "stop"}]},
            ]
            body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return web.Response(text=body, content_type="text/event-stream")

        async with StubServer.running() as stub:
            stub.handler = answer
            backend = OpenAICompatBackend(stub.url, "m", max_retries=0)
            try:
                async with traced_app(tmp_path, backend) as traced:
                    spans = await chat_turn(traced)
            finally:
                await backend.aclose()

        server = _one(spans, "POST /api/v1/conversation/chat")
        parent = _one(spans, "chat.backend")
        calls = [
            span
            for span in spans
            if span.kind is SpanKind.CLIENT
            and span.instrumentation_scope is not None
            and "aiohttp" in span.instrumentation_scope.name
        ]
        assert len(calls) == 1, [span.name for span in spans]
        call = calls[0]
        assert call.parent is not None
        assert call.parent.span_id == parent.context.span_id
        assert call.context.trace_id == server.context.trace_id
        assert call.attributes is not None
        assert any("/v1/chat/completions" in str(value) for value in call.attributes.values()), (
            call.attributes
        )
        assert 200 in call.attributes.values(), call.attributes

    async def test_the_span_helper_nests_under_the_current_span(self, traced: TracedApp) -> None:
        traced.exporter.clear()
        with tracing.span("outer"), tracing.span("rag.search", attributes={"k": 4}) as current:
            assert current is not None
        spans = list(traced.exporter.get_finished_spans())
        outer, inner = _one(spans, "outer"), _one(spans, "rag.search")
        assert inner.parent is not None
        assert inner.parent.span_id == outer.context.span_id

    async def test_metrics_scrapes_make_no_spans(self, traced: TracedApp) -> None:
        traced.exporter.clear()
        assert (await traced.http.get("/metrics")).status_code == 200
        assert not [s for s in traced.exporter.get_finished_spans() if "metrics" in s.name]


def test_tracing_off_imports_no_sdk_exporter_or_instrumentation(tmp_path: Path) -> None:
    """A whole app, lifespan and requests included, with tracing off (the default).

    Other libraries load parts of OpenTelemetry themselves (FastAPI the API package, redis-py
    the metrics SDK when it is installed): what must stay out is ours, the trace SDK, the
    exporters and the instrumentations.
    """
    script = textwrap.dedent(
        """
        import asyncio, sys
        import httpx
        from asgi_lifespan import LifespanManager
        from mongars.app import create_app
        from mongars.config import LLMSettings, RagSettings, Settings
        from mongars.db import migrate
        from mongars.db.database import create_engine

        async def main() -> None:
            settings = Settings(
                _env_file=None, data_dir=sys.argv[1], secret_key="s" * 40,
                llm=LLMSettings(backend="fake"), rag=RagSettings(enabled=False),
            )
            engine = create_engine(settings)
            await migrate.upgrade(engine)
            await engine.dispose()
            app = create_app(settings)
            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                    assert (await c.get("/healthz")).status_code == 200
                    assert (await c.get("/metrics")).status_code == 200

        asyncio.run(main())
        loaded = sorted(
            name for name in sys.modules
            if name.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter",
                                "opentelemetry.instrumentation"))
        )
        print(loaded)
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
