"""Adapter for any server speaking OpenAI's ``/v1/chat/completions`` (vLLM, llama.cpp server,
LM Studio, OpenAI itself).

Log-probabilities are requested (``logprobs``, ``top_logprobs: 1``, the smallest value llama.cpp
answers) to derive a confidence. Servers that ignore the fields simply give ``None``; a server
that rejects them with a 400 naming ``logprobs`` is asked again without them, once, and never
again by this instance.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

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

T = TypeVar("T")

_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"


def _server_root(base_url: str) -> str:
    # OpenAI clients are configured with ".../v1"; we build "/v1/..." paths ourselves.
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _token_logprobs(choice: dict[str, Any]) -> list[float]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return []
    return [
        float(item["logprob"])
        for item in logprobs["content"]
        if isinstance(item, dict) and isinstance(item.get("logprob"), int | float)
    ]


def _usage(data: dict[str, Any]) -> tuple[int, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` payload of each server-sent event (multi-line data joined by newlines)."""
    buffer: list[str] = []
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer.clear()
        elif line.startswith("data:"):
            buffer.append(line[5:].removeprefix(" "))
    if buffer:
        yield "\n".join(buffer)


class OpenAICompatBackend(RemoteBackend):
    """Chat with an OpenAI-compatible server over a shared ``aiohttp.ClientSession`` it owns.

    ``base_url`` is the server root (a trailing ``/v1`` is accepted). ``context_window`` must be
    told: the protocol does not expose it. Token counts without server usage are estimates.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 120.0,
        max_retries: int = 2,
        retry_base_delay_seconds: float = 0.25,
        breaker: CircuitBreaker | None = None,
        context_window: int = 8192,
        request_logprobs: bool = True,
    ) -> None:
        self._model = model
        self._context_window = context_window
        self._request_logprobs = request_logprobs
        self._health_timeout_seconds = min(read_timeout_seconds, 5.0)
        label = "OpenAI-compatible backend"
        self._http = HttpCore(
            label=label,
            base_url=_server_root(base_url),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            retry=RetryPolicy(max_retries=max_retries, base_delay_seconds=retry_base_delay_seconds),
            breaker=breaker or CircuitBreaker(name=label),
            secrets=[api_key] if api_key else [],
        )

    @property
    def name(self) -> str:
        return "openai"

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> Completion:
        params = params or GenerationParams()
        data = await self._post_json(messages, params)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish_reason = str(choice.get("finish_reason") or "stop")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed(data) from exc
        if not isinstance(text, str):
            raise self._malformed(data)
        logprobs = _token_logprobs(choice)
        return Completion(
            text=text,
            usage=self._resolve_usage(data, messages, text, logprobs),
            model=str(data.get("model") or self._model),
            finish_reason=finish_reason,
            confidence=confidence_from_logprobs(logprobs),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        params = params or GenerationParams()
        response = await self._open_stream(messages, params)
        parts: list[str] = []
        logprobs: list[float] = []
        finish_reason: str | None = None
        last: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        done = False
        try:
            async with self._http.reading():
                async for payload in _sse_data(iter_lines(response)):
                    # Read on to the end of the body after [DONE]: a response closed early
                    # cannot go back to the pool, and every turn would open a new connection.
                    if done:
                        continue
                    if payload.strip() == "[DONE]":
                        done = True
                        continue
                    chunk = self._parse_chunk(payload)
                    last = chunk
                    if _usage(chunk) is not None:
                        usage = chunk
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        logprobs.extend(_token_logprobs(choice))
                        finish_reason = choice.get("finish_reason") or finish_reason
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if isinstance(delta, dict) else None
                        if isinstance(text, str) and text:
                            parts.append(text)
                            yield TextDelta(text)
        finally:
            response.release()
        if not done and finish_reason is None:
            raise BackendUnavailable(
                "The OpenAI-compatible backend closed the stream before the answer was complete."
            )
        yield StreamEnd(
            usage=self._resolve_usage(usage, messages, "".join(parts), logprobs),
            finish_reason=str(finish_reason or "stop"),
            model=str(last.get("model") or self._model),
            confidence=confidence_from_logprobs(logprobs),
        )

    async def health(self) -> BackendHealth:
        return await self._health_from_listing(
            _MODELS_PATH,
            names=lambda body: _model_ids(body["data"]),
            matches=lambda name: name == self._model,
            describe=lambda present: (
                f"model {self._model!r} is {'listed' if present else 'not listed'} by the server"
            ),
        )

    async def _post_json(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> dict[str, Any]:
        async def send(body: dict[str, Any]) -> dict[str, Any]:
            data = await self._http.request_json("POST", _CHAT_PATH, body=body)
            if not isinstance(data, dict):
                raise self._malformed(data)
            return data

        return await self._with_logprobs_fallback(send, self._body(messages, params, stream=False))

    async def _open_stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> aiohttp.ClientResponse:
        async def send(body: dict[str, Any]) -> aiohttp.ClientResponse:
            return await self._http.open("POST", _CHAT_PATH, body=body)

        return await self._with_logprobs_fallback(send, self._body(messages, params, stream=True))

    async def _with_logprobs_fallback(
        self, send: Callable[[dict[str, Any]], Awaitable[T]], body: dict[str, Any]
    ) -> T:
        try:
            return await send(body)
        except BackendError as exc:
            if not body.get("logprobs") or "logprob" not in exc.detail.lower():
                raise
        self._request_logprobs = False
        body.pop("logprobs")
        body.pop("top_logprobs")
        return await send(body)

    def _body(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self._request_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 1
        return body

    def _parse_chunk(self, payload: str) -> dict[str, Any]:
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise BackendError(
                "The OpenAI-compatible backend sent a stream event that is not JSON: "
                f"{self._http.excerpt(payload)}"
            ) from exc
        if not isinstance(chunk, dict):
            raise self._malformed(chunk)
        if "error" in chunk:
            raise BackendError(
                "The OpenAI-compatible backend failed mid-answer: "
                f"{self._http.excerpt(json.dumps(chunk['error']))}"
            )
        return chunk

    def _resolve_usage(
        self,
        data: dict[str, Any],
        messages: Sequence[ChatMessage],
        text: str,
        logprobs: list[float],
    ) -> Usage:
        reported = _usage(data)
        if reported is not None:
            return Usage(prompt_tokens=reported[0], completion_tokens=reported[1])
        # No usage from the server: one logprob per generated token is exact, the rest estimated.
        prompt = sum(self.count_tokens(m.content) for m in messages)
        completion = len(logprobs) if logprobs else self.count_tokens(text)
        return Usage(prompt_tokens=prompt, completion_tokens=completion)

    def _malformed(self, data: Any) -> BackendError:
        return BackendError(
            "The OpenAI-compatible backend sent an unexpected response: "
            f"{self._http.excerpt(json.dumps(data, default=str))}"
        )


def _model_ids(entries: Iterable[Any]) -> Iterable[str]:
    for entry in entries:
        if isinstance(entry, dict):
            if isinstance(entry.get("id"), str):
                yield entry["id"]
            # llama.cpp lists alternative names under "aliases".
            yield from (alias for alias in entry.get("aliases") or [] if isinstance(alias, str))
