"""The model-backend contract: value types, stream events and the ``ChatBackend`` protocol.

Every adapter (embedded llama.cpp, Ollama, any OpenAI-compatible server, the fake) speaks these
types, so the conversation service never sees a wire format. Failures are raised as the domain
errors of ``mongars.core.errors``: ``BackendUnavailable`` (down, refusing, circuit open),
``BackendTimeout``, ``BackendError`` (an answer we cannot use) and ``ContextLengthExceeded``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling settings for one generation. Defaults suit a chat answer."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Callers validate user input at the API edge; these guard programming mistakes.
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be within [0, 2]")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be within (0, 1]")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer.

    ``finish_reason`` is the backend's word, normally ``"stop"`` (natural end or a stop
    sequence) or ``"length"`` (``max_tokens`` reached). ``confidence`` is the mean token
    probability when the backend reports log-probabilities, else ``None``.
    """

    text: str
    usage: Usage
    model: str
    finish_reason: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage
    finish_reason: str
    model: str
    confidence: float | None = None


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """``model_present`` is ``None`` when the backend could not be asked (e.g. unreachable)."""

    reachable: bool
    model_present: bool | None
    detail: str


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model behind a uniform async interface.

    ``stream`` yields ``TextDelta`` items and always ends with exactly one ``StreamEnd``; an error
    raised mid-stream means the answer is incomplete. Consume it with ``contextlib.aclosing`` so
    that leaving early stops the generation at once rather than when the iterator is collected.
    """

    @property
    def name(self) -> str:
        """The backend kind: ``embedded``, ``ollama``, ``openai`` or ``fake``."""
        ...

    @property
    def model(self) -> str: ...

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to, prompt and answer together."""
        ...

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncGenerator[StreamEvent, None]: ...

    async def health(self) -> BackendHealth: ...

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``, used to trim history to the context budget."""
        ...

    @property
    def counting_blocks(self) -> bool:
        """Whether ``count_tokens`` may block (a real tokenizer): the prompt is then built in a
        worker thread, not on the event loop."""
        ...

    async def aclose(self) -> None: ...


def confidence_from_logprobs(logprobs: Iterable[float]) -> float | None:
    """Mean token probability, ``exp(mean logprob)``, clamped to [0, 1]; ``None`` if empty."""
    values = [value for value in logprobs if not math.isnan(value)]
    if not values:
        return None
    mean = math.fsum(values) / len(values)
    return min(1.0, max(0.0, math.exp(mean)))


def estimate_tokens(text: str) -> int:
    """A deliberately generous token estimate for backends whose tokenizer we cannot run.

    One token per three UTF-8 bytes over-counts English BPE text (about four bytes per token)
    and roughly matches code and CJK text, so a history trimmed with it fits the real window.
    """
    return math.ceil(len(text.encode("utf-8")) / 3)


async def collect(events: AsyncIterator[StreamEvent]) -> Completion:
    """Drain a stream into a ``Completion``."""
    parts: list[str] = []
    end: StreamEnd | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            end = event
    if end is None:
        raise RuntimeError("stream ended without a StreamEnd")
    return Completion(
        text="".join(parts),
        usage=end.usage,
        model=end.model,
        finish_reason=end.finish_reason,
        confidence=end.confidence,
    )
