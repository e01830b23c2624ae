"""A deterministic backend for tests and benchmarks.

It is never a fallback: nothing switches to it when a real backend fails, because a canned
answer served as if it came from a model is exactly the silent failure DESIGN section 7 forbids.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Sequence

import anyio
from anyio.lowlevel import checkpoint

from mongars.core.errors import BackendUnavailable
from mongars.core.llm.base import (
    BackendHealth,
    ChatMessage,
    Completion,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    collect,
)


def fake_answer_tokens(messages: Sequence[ChatMessage]) -> list[str]:
    """``"echo: <last user message>"`` as word tokens whose concatenation is the answer."""
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    words = ["echo:", *last_user.split()]
    return [words[0], *(f" {word}" for word in words[1:])]


class FakeBackend:
    """Answers ``echo: <last user message>``, one whitespace-separated word per token.

    Failure modes, for exercising callers: ``fail_before_first_token`` raises
    ``BackendUnavailable`` before any output; ``fail_after_tokens=N`` yields at most N deltas,
    then raises ``BackendUnavailable`` instead of ending; ``hang_before_first_token`` waits
    forever so that callers' timeouts fire. ``token_delay_seconds`` paces the tokens. Every
    request is kept in ``requests``, and the name of every thread that counted tokens in
    ``counting_threads``.
    """

    def __init__(
        self,
        *,
        model: str = "fake-echo",
        token_delay_seconds: float = 0.0,
        fail_before_first_token: bool = False,
        fail_after_tokens: int | None = None,
        hang_before_first_token: bool = False,
        hang_after_tokens: int | None = None,
        confidence: float | None = None,
        context_window: int = 8192,
    ) -> None:
        self._model = model
        self.token_delay_seconds = token_delay_seconds
        self.fail_before_first_token = fail_before_first_token
        self.fail_after_tokens = fail_after_tokens
        self.hang_before_first_token = hang_before_first_token
        self.hang_after_tokens = hang_after_tokens
        self.confidence = confidence
        self._context_window = context_window
        self.requests: list[tuple[list[ChatMessage], GenerationParams]] = []
        self.closed = False
        # Pretend counting blocks, as a real tokenizer's does; the threads that counted.
        self.counting_blocks = False
        self.counting_threads: set[str] = set()

    @property
    def name(self) -> str:
        return "fake"

    @property
    def model(self) -> str:
        return self._model

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        self.counting_threads.add(threading.current_thread().name)
        return len(text.split())

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> Completion:
        return await collect(self.stream(messages, params))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        params = params or GenerationParams()
        self.requests.append((list(messages), params))
        if self.hang_before_first_token:
            await anyio.sleep_forever()
        if self.fail_before_first_token:
            raise BackendUnavailable("The fake backend is configured to be unavailable.")
        tokens = fake_answer_tokens(messages)
        finish_reason = "stop"
        if len(tokens) > params.max_tokens:
            tokens, finish_reason = tokens[: params.max_tokens], "length"
        dying = self.fail_after_tokens is not None
        for index, token in enumerate(tokens[: self.fail_after_tokens] if dying else tokens):
            if index == self.hang_after_tokens:
                await anyio.sleep_forever()
            if self.token_delay_seconds:
                await anyio.sleep(self.token_delay_seconds)
            else:
                await checkpoint()
            yield TextDelta(token)
        if dying:
            raise BackendUnavailable("The fake backend died mid-answer, as configured.")
        prompt_tokens = sum(self.count_tokens(m.content) for m in messages)
        yield StreamEnd(
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens)),
            finish_reason=finish_reason,
            model=self._model,
            confidence=self.confidence,
        )

    async def health(self) -> BackendHealth:
        if self.fail_before_first_token or self.hang_before_first_token:
            return BackendHealth(reachable=False, model_present=None, detail="fake: failing")
        return BackendHealth(reachable=True, model_present=True, detail="fake backend")

    async def aclose(self) -> None:
        self.closed = True
