"""``OllamaBackend`` against a protocol fake of Ollama's HTTP API.

No real Ollama can run here: this machine has no network access to fetch the Ollama binary or
its models (only the PyPI, npm and Debian package registries are reachable, and none ships
them). So a small real HTTP server on 127.0.0.1 speaks Ollama's wire format instead: ``POST
/api/chat`` answering one JSON object (``stream: false``) or chunked NDJSON lines ending with a
``"done": true`` line carrying ``prompt_eval_count``/``eval_count`` (``stream: true``), and ``GET
/api/tags``. The model name in the request picks the behaviour: a normal answer, 503, 500, a
slow answer, a stream that dies midway, or an unknown model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mongars.core.errors import BackendError, BackendTimeout, BackendUnavailable
from mongars.core.llm import (
    ChatMessage,
    CircuitState,
    GenerationParams,
    OllamaBackend,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

pytestmark = pytest.mark.anyio

MODEL = "smollm2:135m"
ANSWER = ["Paris", " is", " the", " capital", " of", " France", "."]
MESSAGES = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="What is the capital of France?"),
]


class FakeOllama(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OllamaHandler)
        self.chat_requests: list[dict[str, Any]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOllama

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/api/tags":
            self._json(404, {"error": "not found"})
            return
        model = {"name": MODEL, "model": MODEL, "size": 101_000_000, "digest": "c0ffee"}
        self._json(200, {"models": [model, {"name": "llama3.2:latest", "model": "llama3.2"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.chat_requests.append(body)
        model = body["model"]
        if model == "busy":
            message = "server busy, please try again.  maximum pending requests exceeded"
            self._json(503, {"error": message})
        elif model == "broken":
            self._json(500, {"error": "llama runner process has terminated: exit status 2"})
        elif model == "missing":
            self._json(404, {"error": 'model "missing" not found, try pulling it first'})
        elif model == "slow":
            time.sleep(1.0)
            self._json(200, self._final(body, ""))
        elif body["stream"]:
            self._stream(body, die_after=2 if model == "dies" else None)
        else:
            self._json(200, self._final(body, "".join(ANSWER)))

    def _final(self, request: dict[str, Any], content: str) -> dict[str, Any]:
        final: dict[str, Any] = {
            "model": request["model"],
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 26,
            "eval_count": len(ANSWER),
        }
        if request.get("logprobs") and content:
            final["logprobs"] = [{"token": token, "logprob": -0.1} for token in ANSWER]
        return final

    def _stream(self, request: dict[str, Any], *, die_after: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, token in enumerate(ANSWER):
            if die_after is not None and index == die_after:
                self.close_connection = True
                return  # the chunked body is never terminated: the runner "crashed"
            line = {
                "model": request["model"],
                "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": token},
                "done": False,
                "logprobs": [{"token": token, "logprob": -0.1}],
            }
            self._chunk(json.dumps(line) + "\n")
        final = self._final(request, "")
        self._chunk(json.dumps(final) + "\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[FakeOllama]:
    server = FakeOllama()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def make_backend(fake_ollama: FakeOllama) -> AsyncIterator[Any]:
    created: list[OllamaBackend] = []

    def make(model: str = MODEL, **kwargs: Any) -> OllamaBackend:
        kwargs.setdefault("retry_base_delay_seconds", 0.01)
        backend = OllamaBackend(fake_ollama.url, model, **kwargs)
        created.append(backend)
        return backend

    fake_ollama.chat_requests.clear()
    yield make
    for backend in created:
        await backend.aclose()


async def _drain(events: AsyncIterator[StreamEvent], received: list[str]) -> None:
    async for event in events:
        assert isinstance(event, TextDelta)
        received.append(event.text)


class TestOllamaChat:
    async def test_complete_sends_options_and_reads_counts(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        backend = make_backend(context_window=2048)
        params = GenerationParams(temperature=0.2, top_p=0.9, max_tokens=64, stop=["\n\n"])

        completion = await backend.complete(MESSAGES, params)

        assert completion.text == "Paris is the capital of France."
        assert completion.usage.prompt_tokens == 26
        assert completion.usage.completion_tokens == len(ANSWER)
        assert completion.finish_reason == "stop"
        assert completion.model == MODEL
        assert completion.confidence == pytest.approx(0.904837, rel=1e-5)  # exp(-0.1)
        sent = fake_ollama.chat_requests[-1]
        assert sent["stream"] is False
        assert sent["messages"][1] == {"role": "user", "content": MESSAGES[1].content}
        assert sent["options"] == {
            "temperature": 0.2,
            "top_p": 0.9,
            "num_predict": 64,
            "num_ctx": 2048,
            "stop": ["\n\n"],
        }

    async def test_stream_yields_each_line_then_the_done_counts(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        events = [event async for event in make_backend().stream(MESSAGES)]

        assert [event.text for event in events[:-1] if isinstance(event, TextDelta)] == ANSWER
        end = events[-1]
        assert isinstance(end, StreamEnd)
        assert end.usage.prompt_tokens == 26
        assert end.usage.completion_tokens == len(ANSWER)
        assert end.finish_reason == "stop"
        assert end.confidence == pytest.approx(0.904837, rel=1e-5)
        assert fake_ollama.chat_requests[-1]["stream"] is True

    async def test_health_finds_pulled_models_with_implicit_latest_tag(
        self, make_backend: Any
    ) -> None:
        assert (await make_backend(MODEL).health()).model_present is True
        assert (await make_backend("llama3.2").health()).model_present is True
        absent = await make_backend("mistral").health()
        assert absent.reachable
        assert absent.model_present is False


class TestOllamaFailures:
    async def test_503_is_retried_then_unavailable(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        backend = make_backend("busy", max_retries=2)

        with pytest.raises(BackendUnavailable) as caught:
            await backend.complete(MESSAGES)

        assert len(fake_ollama.chat_requests) == 3
        assert "503" in caught.value.detail
        assert "server busy" in caught.value.detail
        assert backend.breaker.consecutive_failures == 3

    async def test_503_on_a_stream_is_retried_before_any_token(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        backend = make_backend("busy", max_retries=1)

        with pytest.raises(BackendUnavailable):
            await anext(backend.stream(MESSAGES))

        assert len(fake_ollama.chat_requests) == 2

    async def test_500_is_a_backend_error_not_retried(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        backend = make_backend("broken", max_retries=2)

        with pytest.raises(BackendError) as caught:
            await backend.complete(MESSAGES)

        assert "500" in caught.value.detail
        assert "llama runner process has terminated" in caught.value.detail
        assert len(fake_ollama.chat_requests) == 1
        assert backend.breaker.state is CircuitState.CLOSED

    async def test_unknown_model_is_a_backend_error(self, make_backend: Any) -> None:
        with pytest.raises(BackendError, match="not found"):
            await make_backend("missing").complete(MESSAGES)

    async def test_read_timeout_is_a_backend_timeout(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        backend = make_backend("slow", read_timeout_seconds=0.2, max_retries=2)

        started = time.monotonic()
        with pytest.raises(BackendTimeout):
            await backend.complete(MESSAGES)

        assert time.monotonic() - started < 0.9
        assert len(fake_ollama.chat_requests) == 1  # a timeout is never retried
        assert backend.breaker.consecutive_failures == 1

    async def test_stream_dying_midway_raises_after_the_tokens_it_sent(
        self, make_backend: Any, fake_ollama: FakeOllama
    ) -> None:
        received: list[str] = []

        with pytest.raises(BackendUnavailable):
            await _drain(make_backend("dies", max_retries=2).stream(MESSAGES), received)

        assert received == ANSWER[:2]
        assert len(fake_ollama.chat_requests) == 1  # never retried mid-stream
