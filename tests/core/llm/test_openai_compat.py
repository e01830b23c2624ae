"""``OpenAICompatBackend`` against a real OpenAI-compatible server: llama.cpp's HTTP server (as
shipped inside the xllamacpp wheel) serving the SmolLM2 GGUF from a child process on 127.0.0.1;
and, for wire behaviours llama.cpp does not show, against a local stub server.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web

from mongars.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
)
from mongars.core.llm import (
    ChatMessage,
    CircuitBreaker,
    CircuitState,
    GenerationParams,
    OpenAICompatBackend,
    StreamEnd,
    TextDelta,
)
from mongars.devtools.cluster import free_port
from tests.http_stub import DroppingServer, StubServer, counted_connects
from tests.model_fixtures import ALIAS, LlamaServer

pytestmark = pytest.mark.anyio

MESSAGES = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="What is the capital of France?"),
]
GREEDY = GenerationParams(temperature=0.0, max_tokens=12)


@pytest.fixture
async def backend(llama_server: LlamaServer) -> AsyncIterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(
        llama_server.url + "/v1", ALIAS, llama_server.api_key, read_timeout_seconds=30
    )
    yield backend
    await backend.aclose()


class TestAgainstLlamaCppServer:
    async def test_complete_returns_text_usage_and_confidence(
        self, backend: OpenAICompatBackend
    ) -> None:
        completion = await backend.complete(MESSAGES, GREEDY)

        assert completion.text.strip()
        assert completion.model == ALIAS
        assert completion.usage.prompt_tokens > 0
        assert 0 < completion.usage.completion_tokens <= GREEDY.max_tokens
        assert completion.finish_reason in {"stop", "length"}
        assert completion.confidence is not None
        assert 0.0 < completion.confidence <= 1.0

    async def test_stream_yields_deltas_then_one_end_matching_complete(
        self, backend: OpenAICompatBackend
    ) -> None:
        events = [event async for event in backend.stream(MESSAGES, GREEDY)]

        deltas = [event for event in events[:-1] if isinstance(event, TextDelta)]
        end = events[-1]
        assert len(deltas) == len(events) - 1 >= 2
        assert isinstance(end, StreamEnd)
        # One delta per generated token; an end-of-sequence token is counted but has no text.
        assert end.usage.completion_tokens - len(deltas) in (0, 1)
        assert end.confidence is not None
        completion = await backend.complete(MESSAGES, GREEDY)
        assert "".join(delta.text for delta in deltas) == completion.text
        assert end.usage == completion.usage

    async def test_leaving_a_stream_early_closes_it(self, backend: OpenAICompatBackend) -> None:
        params = GenerationParams(max_tokens=200)
        async with aclosing(backend.stream(MESSAGES, params)) as stream:
            async for _ in stream:
                break
        completion = await backend.complete(MESSAGES, GenerationParams(max_tokens=2))
        assert completion.usage.completion_tokens <= 2

    async def test_health_lists_the_model(self, backend: OpenAICompatBackend) -> None:
        health = await backend.health()

        assert health.reachable
        assert health.model_present is True

    async def test_health_reports_an_unknown_model(self, llama_server: LlamaServer) -> None:
        backend = OpenAICompatBackend(llama_server.url, "no-such-model", llama_server.api_key)
        try:
            health = await backend.health()
        finally:
            await backend.aclose()

        assert health.reachable
        assert health.model_present is False

    async def test_prompt_beyond_the_context_window_is_a_client_error(
        self, backend: OpenAICompatBackend
    ) -> None:
        huge = [ChatMessage(role="user", content="hello " * 2000)]

        with pytest.raises(ContextLengthExceeded):
            await backend.complete(huge, GREEDY)

    async def test_rejected_key_is_a_backend_error_without_the_key(
        self, llama_server: LlamaServer
    ) -> None:
        wrong_key = "sk-wrong-" + secrets.token_hex(8)
        backend = OpenAICompatBackend(llama_server.url, ALIAS, wrong_key, max_retries=0)
        try:
            with pytest.raises(BackendError) as caught:
                await backend.complete(MESSAGES, GREEDY)
        finally:
            await backend.aclose()

        assert "401" in caught.value.detail
        assert wrong_key not in caught.value.detail
        assert backend.breaker.state is CircuitState.CLOSED


class TestRefusedConnection:
    async def test_refused_connection_opens_the_circuit_then_fails_fast(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        requests = counted_connects(monkeypatch)
        breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=60)
        backend = OpenAICompatBackend(
            f"http://127.0.0.1:{free_port()}", "any-model", max_retries=0, breaker=breaker
        )
        try:
            started = time.monotonic()
            for _ in range(3):
                with pytest.raises(BackendUnavailable):
                    await backend.complete(MESSAGES, GREEDY)
            assert time.monotonic() - started < 2.0
            assert breaker.state is CircuitState.OPEN
            assert len(requests) == 3

            with pytest.raises(BackendUnavailable) as caught:
                await backend.complete(MESSAGES, GREEDY)
            with pytest.raises(BackendUnavailable):
                await anext(backend.stream(MESSAGES, GREEDY))
        finally:
            await backend.aclose()

        assert len(requests) == 3  # no network I/O once the circuit is open
        assert caught.value.retry_after_seconds is not None
        assert 0 < caught.value.retry_after_seconds <= 60
        assert caught.value.headers["Retry-After"] == str(caught.value.retry_after_seconds)

    async def test_refused_connection_is_retried_before_giving_up(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        requests = counted_connects(monkeypatch)
        backend = OpenAICompatBackend(
            f"http://127.0.0.1:{free_port()}",
            "any-model",
            max_retries=2,
            retry_base_delay_seconds=0.01,
        )
        try:
            with pytest.raises(BackendUnavailable):
                await backend.complete(MESSAGES, GREEDY)
        finally:
            await backend.aclose()

        assert len(requests) == 3

    async def test_connection_dropped_before_any_answer_is_retried(self) -> None:
        async with DroppingServer.running() as server:
            backend = OpenAICompatBackend(
                server.url, "any-model", max_retries=2, retry_base_delay_seconds=0.01
            )
            try:
                with pytest.raises(BackendUnavailable) as caught:
                    await backend.complete(MESSAGES, GREEDY)
            finally:
                await backend.aclose()

        assert server.connections == 3
        assert backend.breaker.consecutive_failures == 3
        assert "cannot be reached" in caught.value.detail

    async def test_health_of_an_unreachable_server(self) -> None:
        backend = OpenAICompatBackend(f"http://127.0.0.1:{free_port()}", "any-model")
        try:
            health = await backend.health()
        finally:
            await backend.aclose()

        assert not health.reachable
        assert health.model_present is None


def _stub_backend(stub: StubServer, **kwargs: Any) -> OpenAICompatBackend:
    kwargs.setdefault("max_retries", 0)
    return OpenAICompatBackend(stub.url + "/v1", "m", **kwargs)


def _sse(events: list[dict[str, Any]], *, end: str = "\n") -> str:
    lines = [f"data: {json.dumps(event)}{end}{end}" for event in events]
    return "".join(lines) + f"data: [DONE]{end}{end}"


class TestWireFormatEdgeCases:
    """Behaviours llama.cpp's server does not exhibit, played by a stub server."""

    async def test_server_rejecting_logprobs_is_asked_again_without_them(
        self, stub: StubServer
    ) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            if "logprobs" in await request.json():
                return web.json_response(
                    {"error": {"message": "logprobs not supported"}}, status=400
                )
            message = {"role": "assistant", "content": "hi"}
            return web.json_response({"choices": [{"message": message}]})

        stub.handler = handler
        backend = _stub_backend(stub)
        first = await backend.complete(MESSAGES)
        second = await backend.complete(MESSAGES)
        await backend.aclose()

        assert first.text == second.text == "hi"
        assert first.confidence is None
        bodies = [json.loads(received.body) for received in stub.received]
        assert ["logprobs" in body for body in bodies] == [True, False, False]
        assert {received.path for received in stub.received} == {"/v1/chat/completions"}

    async def test_stream_without_usage_counts_tokens_itself(self, stub: StubServer) -> None:
        events = [
            {"choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]},
            {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]},
        ]

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            text = ": keep-alive\n\n" + _sse(events)
            return web.Response(text=text, content_type="text/event-stream")

        stub.handler = handler
        backend = _stub_backend(stub)
        collected = [event async for event in backend.stream(MESSAGES)]
        await backend.aclose()

        assert collected[:-1] == [TextDelta("Hello"), TextDelta(" there")]
        end = collected[-1]
        assert isinstance(end, StreamEnd)
        assert end.finish_reason == "stop"
        assert end.usage.completion_tokens == backend.count_tokens("Hello there")
        assert end.usage.prompt_tokens == sum(backend.count_tokens(m.content) for m in MESSAGES)

    @pytest.mark.parametrize("end", ["\r\n", "\r"])
    async def test_stream_lines_may_end_with_carriage_returns(
        self, stub: StubServer, end: str
    ) -> None:
        events = [{"choices": [{"delta": {"content": "Bonjour"}, "finish_reason": "stop"}]}]

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(text=_sse(events, end=end), content_type="text/event-stream")

        stub.handler = handler
        backend = _stub_backend(stub)
        collected = [event async for event in backend.stream(MESSAGES)]
        await backend.aclose()

        assert collected[0] == TextDelta("Bonjour")
        assert isinstance(collected[1], StreamEnd)
        assert collected[1].finish_reason == "stop"

    async def test_stream_is_read_past_done_so_its_connection_is_reused(
        self, stub: StubServer
    ) -> None:
        events = [{"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]}]

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(_sse(events).encode())
            await asyncio.sleep(0.05)  # the body goes on after [DONE]
            await response.write(b": the end\n\n")
            await response.write_eof()
            return response

        stub.handler = handler
        backend = _stub_backend(stub)
        for _ in range(2):
            streamed = [event async for event in backend.stream(MESSAGES)]
            assert streamed[0] == TextDelta("hi")
        await backend.aclose()

        first, second = stub.received
        assert first.client_port == second.client_port  # one pooled connection

    async def test_stream_cut_before_the_end_is_unavailable(self, stub: StubServer) -> None:
        event = {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]}

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(text=f"data: {json.dumps(event)}\n\n")

        stub.handler = handler
        backend = _stub_backend(stub)
        stream = backend.stream(MESSAGES)
        assert await anext(stream) == TextDelta("Hel")
        with pytest.raises(BackendUnavailable):
            await anext(stream)
        await backend.aclose()

    async def test_key_echoed_by_the_server_is_scrubbed(self, stub: StubServer) -> None:
        key = "sk-secret-" + secrets.token_hex(8)

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            message = f"Incorrect API key provided: {key}"
            return web.json_response({"error": {"message": message}}, status=401)

        stub.handler = handler
        backend = _stub_backend(stub, api_key=key)
        with pytest.raises(BackendError) as caught:
            await backend.complete(MESSAGES)
        await backend.aclose()

        assert stub.received[0].headers["Authorization"] == f"Bearer {key}"
        assert key not in caught.value.detail
        assert "HTTP 401" in caught.value.detail

    async def test_non_json_answer_is_a_backend_error(self, stub: StubServer) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(text="<html>proxy login</html>", content_type="text/html")

        stub.handler = handler
        backend = _stub_backend(stub)
        with pytest.raises(BackendError, match="not JSON"):
            await backend.complete(MESSAGES)
        await backend.aclose()

    async def test_503_while_loading_is_retried_until_ready(self, stub: StubServer) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            if len(stub.received) == 1:
                return web.json_response({"error": {"message": "Loading model"}}, status=503)
            message = {"role": "assistant", "content": "ready"}
            return web.json_response({"choices": [{"message": message}]})

        stub.handler = handler
        backend = _stub_backend(stub, max_retries=1, retry_base_delay_seconds=0.001)
        completion = await backend.complete(MESSAGES)
        await backend.aclose()

        assert completion.text == "ready"
        assert len(stub.received) == 2
        assert backend.breaker.consecutive_failures == 0

    async def test_429_is_unavailable_with_its_retry_after_and_not_retried(
        self, stub: StubServer
    ) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            body = {"error": {"message": "Rate limit reached"}}
            return web.json_response(body, status=429, headers={"Retry-After": "7"})

        stub.handler = handler
        backend = _stub_backend(stub, max_retries=2, retry_base_delay_seconds=0.001)
        with pytest.raises(BackendUnavailable) as caught:
            await backend.complete(MESSAGES)
        await backend.aclose()

        assert len(stub.received) == 1
        assert caught.value.retry_after_seconds == 7
        assert "HTTP 429" in caught.value.detail
        assert backend.breaker.consecutive_failures == 0

    async def test_redirect_is_not_followed(self, stub: StubServer) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(status=307, headers={"Location": "/elsewhere"})

        stub.handler = handler
        backend = _stub_backend(stub)
        with pytest.raises(BackendError, match="HTTP 307"):
            await backend.complete(MESSAGES)
        await backend.aclose()

        assert len(stub.received) == 1

    async def test_cookies_a_server_sets_are_never_sent_back(self, stub: StubServer) -> None:
        """One client serves every user: a cookie kept from one turn would ride on the next."""

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            message = {"role": "assistant", "content": "hi"}
            response = web.json_response({"choices": [{"message": message}]})
            response.set_cookie("session", "from-the-backend")
            return response

        stub.handler = handler
        # By name: aiohttp's default jar ignores cookies from hosts given as IP addresses.
        backend = OpenAICompatBackend(
            stub.url.replace("127.0.0.1", "localhost") + "/v1", "m", max_retries=0
        )
        await backend.complete(MESSAGES)
        await backend.complete(MESSAGES)
        await backend.aclose()

        assert [received.headers.get("Cookie") for received in stub.received] == [None, None]

    async def test_silence_past_the_read_timeout_is_a_backend_timeout(
        self, stub: StubServer
    ) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            await asyncio.sleep(1.0)
            return web.json_response({})

        stub.handler = handler
        backend = _stub_backend(stub, read_timeout_seconds=0.2, max_retries=2)
        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            await backend.complete(MESSAGES)
        await backend.aclose()

        assert time.monotonic() - started < 0.9
        assert len(stub.received) == 1  # a timeout is never retried
        assert backend.breaker.consecutive_failures == 1

    async def test_a_line_past_the_reader_limit_is_a_backend_error(self, stub: StubServer) -> None:
        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(text="data: " + "x" * 600_000 + "\n\n")

        stub.handler = handler
        backend = _stub_backend(stub)
        with pytest.raises(BackendError, match="longer than"):
            await anext(backend.stream(MESSAGES))
        await backend.aclose()
