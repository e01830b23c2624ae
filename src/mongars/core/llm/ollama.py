"""Adapter for Ollama's native HTTP API (``/api/chat``, ``/api/tags``, ``/api/pull``).

The native API is used rather than Ollama's OpenAI shim because it reports exact token counts
(``prompt_eval_count``, ``eval_count``) and accepts ``options.num_ctx``: we send the configured
context window with every request, so ``context_window`` is what the model really gets instead
of Ollama's small default. Streaming is NDJSON, one object per line, the last with
``"done": true``. ``logprobs`` is requested; Ollama versions that predate it ignore the field.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import aiohttp

from mongars.core.errors import BackendError, BackendUnavailable
from mongars.core.llm._http import HttpCore, RemoteBackend, iter_lines
from mongars.core.llm.base import (
    BackendHealth,
    ChatMessage,
    Completion,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    confidence_from_logprobs,
)
from mongars.core.llm.resilience import CircuitBreaker, RetryPolicy

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
_CHAT_PATH = "/api/chat"
_TAGS_PATH = "/api/tags"
_PULL_PATH = "/api/pull"


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One status line of a pull, with bytes summed over every layer announced so far."""

    status: str
    completed_bytes: int
    total_bytes: int


def _logprobs(chunk: dict[str, Any]) -> list[float]:
    entries = chunk.get("logprobs")
    if not isinstance(entries, list):
        return []
    return [
        float(entry["logprob"])
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("logprob"), int | float)
    ]


def _same_model(wanted: str, listed: str) -> bool:
    # Ollama names without a tag mean ":latest".
    def normalise(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return normalise(wanted) == normalise(listed)


class OllamaBackend(RemoteBackend):
    """Chat with an Ollama server (e.g. ``DEFAULT_OLLAMA_URL``) over an ``aiohttp.ClientSession``
    it owns. ``context_window`` is sent as ``num_ctx`` with every request."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 120.0,
        max_retries: int = 2,
        retry_base_delay_seconds: float = 0.25,
        breaker: CircuitBreaker | None = None,
        context_window: int = 4096,
        keep_alive: str | None = None,
        request_logprobs: bool = True,
    ) -> None:
        self._model = model
        self._context_window = context_window
        self._keep_alive = keep_alive
        self._request_logprobs = request_logprobs
        self._health_timeout_seconds = min(read_timeout_seconds, 5.0)
        label = "Ollama backend"
        self._http = HttpCore(
            label=label,
            base_url=base_url.rstrip("/"),
            headers={},
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            retry=RetryPolicy(max_retries=max_retries, base_delay_seconds=retry_base_delay_seconds),
            breaker=breaker or CircuitBreaker(name=label),
        )

    @property
    def name(self) -> str:
        return "ollama"

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> Completion:
        params = params or GenerationParams()
        body = self._body(messages, params, stream=False)
        data = await self._http.request_json("POST", _CHAT_PATH, body=body)
        if not isinstance(data, dict):
            raise self._malformed(data)
        message = data.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise self._malformed(data)
        logprobs = _logprobs(data)
        return Completion(
            text=text,
            usage=self._usage(data, messages, text),
            model=str(data.get("model") or self._model),
            finish_reason=str(data.get("done_reason") or "stop"),
            confidence=confidence_from_logprobs(logprobs),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        params = params or GenerationParams()
        body = self._body(messages, params, stream=True)
        response = await self._http.open("POST", _CHAT_PATH, body=body)
        parts: list[str] = []
        logprobs: list[float] = []
        final: dict[str, Any] | None = None
        chunks = self._chunks(response, "stream line", "failed mid-answer")
        async with aclosing(chunks):
            async for chunk in chunks:
                logprobs.extend(_logprobs(chunk))
                message = chunk.get("message")
                text = message.get("content") if isinstance(message, dict) else None
                if isinstance(text, str) and text:
                    parts.append(text)
                    yield TextDelta(text)
                if chunk.get("done") is True:
                    final = chunk
                    break
        if final is None:
            raise BackendUnavailable(
                "The Ollama backend closed the stream before the answer was complete."
            )
        yield StreamEnd(
            usage=self._usage(final, messages, "".join(parts)),
            finish_reason=str(final.get("done_reason") or "stop"),
            model=str(final.get("model") or self._model),
            confidence=confidence_from_logprobs(logprobs),
        )

    async def health(self) -> BackendHealth:
        return await self._health_from_listing(
            _TAGS_PATH,
            names=lambda body: [
                str(entry.get("name") or entry.get("model"))
                for entry in body["models"]
                if isinstance(entry, dict)
            ],
            matches=lambda name: _same_model(self._model, name),
            describe=lambda present: (
                f"model {self._model!r} is {'pulled' if present else 'not pulled'} "
                "on the Ollama server"
            ),
        )

    async def pull(self) -> AsyncGenerator[PullProgress, None]:
        """Pull the model through the streaming pull API: one ``PullProgress`` per status line
        ("pulling manifest", a layer's download, "verifying sha256 digest", ... "success").

        Raises ``BackendError`` with Ollama's reason when the pull fails, before or midway.
        """
        response = await self._http.open(
            "POST", _PULL_PATH, body={"model": self._model, "stream": True}
        )
        # Each layer (by digest) reports its own total and completed bytes.
        layers: dict[str, tuple[int, int]] = {}
        succeeded = False
        chunks = self._chunks(response, "pull line", f"failed to pull {self._model!r}")
        async with aclosing(chunks):
            async for chunk in chunks:
                digest, total = chunk.get("digest"), chunk.get("total")
                if isinstance(digest, str) and isinstance(total, int):
                    completed = chunk.get("completed")
                    layers[digest] = (completed if isinstance(completed, int) else 0, total)
                status = str(chunk.get("status") or "")
                yield PullProgress(
                    status=status,
                    completed_bytes=sum(done for done, _ in layers.values()),
                    total_bytes=sum(total for _, total in layers.values()),
                )
                if status == "success":
                    succeeded = True
                    break
        if not succeeded:
            raise BackendError(
                f"The Ollama backend ended the pull of {self._model!r} before it succeeded."
            )

    def _body(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, stream: bool
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "num_predict": params.max_tokens,
            "num_ctx": self._context_window,
        }
        if params.stop:
            options["stop"] = list(params.stop)
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": stream,
            "options": options,
        }
        if self._keep_alive is not None:
            body["keep_alive"] = self._keep_alive
        if self._request_logprobs:
            body["logprobs"] = True
        return body

    async def _chunks(
        self, response: aiohttp.ClientResponse, what: str, failing: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The objects of an NDJSON response (chat stream or pull), closing it at the end.
        An ``error`` object, or a line that is not one, raises ``BackendError``."""
        try:
            async with self._http.reading():
                async for line in iter_lines(response):
                    if not line.strip():
                        continue
                    try:
                        chunk = json.loads(line)
                    except ValueError as exc:
                        excerpt = self._http.excerpt(line)
                        raise BackendError(
                            f"The Ollama backend sent a {what} that is not JSON: {excerpt}"
                        ) from exc
                    if not isinstance(chunk, dict):
                        raise self._malformed(chunk)
                    if "error" in chunk:
                        reason = self._http.excerpt(str(chunk["error"]))
                        raise BackendError(f"The Ollama backend {failing}: {reason}")
                    yield chunk
        finally:
            response.release()

    def _usage(self, data: dict[str, Any], messages: Sequence[ChatMessage], text: str) -> Usage:
        # Ollama omits prompt_eval_count when the whole prompt came from its cache.
        prompt = data.get("prompt_eval_count")
        completion = data.get("eval_count")
        if not isinstance(prompt, int):
            prompt = sum(self.count_tokens(m.content) for m in messages)
        if not isinstance(completion, int):
            completion = self.count_tokens(text)
        return Usage(prompt_tokens=prompt, completion_tokens=completion)

    def _malformed(self, data: Any) -> BackendError:
        return BackendError(
            "The Ollama backend sent an unexpected response: "
            f"{self._http.excerpt(json.dumps(data, default=str))}"
        )
