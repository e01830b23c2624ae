"""Model backends behind one protocol, ``ChatBackend``, and a factory that builds one from plain
settings values. Importing this package loads no model and opens no connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mongars.core.llm.base import (
    BackendHealth,
    ChatBackend,
    ChatMessage,
    Completion,
    GenerationParams,
    Role,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    collect,
    confidence_from_logprobs,
    estimate_tokens,
)
from mongars.core.llm.embedded import DEFAULT_N_CTX, EmbeddedBackend, default_model_path
from mongars.core.llm.fake import FakeBackend
from mongars.core.llm.ollama import DEFAULT_OLLAMA_URL, OllamaBackend
from mongars.core.llm.openai_compat import OpenAICompatBackend
from mongars.core.llm.resilience import (
    CircuitBreaker,
    CircuitState,
    RetryableBackendError,
    RetryPolicy,
    call_with_retries,
)

__all__ = [
    "BackendHealth",
    "BackendKind",
    "ChatBackend",
    "ChatMessage",
    "CircuitBreaker",
    "CircuitState",
    "Completion",
    "EmbeddedBackend",
    "FakeBackend",
    "GenerationParams",
    "OllamaBackend",
    "OpenAICompatBackend",
    "RetryPolicy",
    "RetryableBackendError",
    "Role",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "build_backend",
    "call_with_retries",
    "collect",
    "confidence_from_logprobs",
    "default_model_path",
    "estimate_tokens",
]

BackendKind = Literal["embedded", "ollama", "openai", "fake"]


def build_backend(
    kind: BackendKind,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    model_path: str | Path | None = None,
    context_window: int | None = None,
    connect_timeout_seconds: float = 5.0,
    read_timeout_seconds: float = 120.0,
    max_retries: int = 2,
    breaker_failure_threshold: int = 5,
    breaker_cooldown_seconds: float = 30.0,
    n_threads: int | None = None,
    fake_token_delay_seconds: float = 0.0,
) -> ChatBackend:
    """Build the backend for ``kind`` from plain values (the caller reads the settings).

    ``context_window`` is the embedded model's ``n_ctx`` (default 4096) or, for remote backends,
    the window to assume (OpenAI-compatible default 8192) or request (Ollama ``num_ctx``,
    default 4096). The embedded model is not loaded here: await ``warm_up()`` at startup.
    """
    if kind == "fake":
        return FakeBackend(
            model=model or "fake-echo",
            context_window=context_window or 8192,
            token_delay_seconds=fake_token_delay_seconds,
        )
    if kind == "embedded":
        return EmbeddedBackend(
            model_path=model_path,
            model=model,
            n_ctx=context_window or DEFAULT_N_CTX,
            n_threads=n_threads,
        )
    label = "Ollama backend" if kind == "ollama" else "OpenAI-compatible backend"
    breaker = CircuitBreaker(
        name=label,
        failure_threshold=breaker_failure_threshold,
        cooldown_seconds=breaker_cooldown_seconds,
    )
    if not model:
        raise ValueError(f"a model name is required for the {kind} backend")
    if kind == "ollama":
        return OllamaBackend(
            base_url or DEFAULT_OLLAMA_URL,
            model,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            max_retries=max_retries,
            breaker=breaker,
            context_window=context_window or 4096,
        )
    if kind == "openai":
        if not base_url:
            raise ValueError("a base URL is required for the openai backend")
        return OpenAICompatBackend(
            base_url,
            model,
            api_key,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            max_retries=max_retries,
            breaker=breaker,
            context_window=context_window or 8192,
        )
    raise ValueError(f"unknown backend kind: {kind!r}")
