"""build_backend: plain settings values in, the right adapter out, nothing loaded or opened."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mongars.core.llm import (
    BackendHealth,
    ChatBackend,
    EmbeddedBackend,
    FakeBackend,
    OllamaBackend,
    OpenAICompatBackend,
    build_backend,
)
from mongars.devtools.cluster import free_port

pytestmark = pytest.mark.anyio


class TestBuildBackend:
    @pytest.mark.parametrize(
        ("kind", "kwargs", "expected"),
        [
            ("fake", {}, FakeBackend),
            ("ollama", {"model": "llama3.2"}, OllamaBackend),
            ("openai", {"base_url": "http://127.0.0.1:9/v1", "model": "m"}, OpenAICompatBackend),
            ("embedded", {"context_window": 1024}, EmbeddedBackend),
        ],
    )
    async def test_builds_each_kind(
        self, kind: Any, kwargs: dict[str, Any], expected: type
    ) -> None:
        backend = build_backend(kind, **kwargs)
        try:
            assert isinstance(backend, expected)
            assert isinstance(backend, ChatBackend)
            assert backend.name == kind
        finally:
            if not isinstance(backend, EmbeddedBackend):  # never loaded: nothing to free
                await backend.aclose()

    def test_embedded_is_built_without_loading(self) -> None:
        backend = build_backend("embedded", context_window=1024)

        assert isinstance(backend, EmbeddedBackend)
        assert not backend.loaded
        assert backend.context_window == 1024

    @pytest.mark.parametrize("kind", ["openai", "ollama"])
    def test_a_remote_backend_built_outside_an_event_loop_works_in_one(self, kind: Any) -> None:
        # Settings are read and backends built before the app's event loop runs.
        backend = build_backend(kind, base_url=f"http://127.0.0.1:{free_port()}", model="m")

        async def check() -> BackendHealth:
            try:
                return await backend.health()
            finally:
                await backend.aclose()

        health = asyncio.run(check())

        assert not health.reachable
        assert "cannot be reached" in health.detail

    async def test_remote_settings_reach_the_adapter(self) -> None:
        backend = build_backend(
            "openai",
            base_url="http://127.0.0.1:9",
            model="gpt-x",
            api_key="sk-test",
            context_window=32000,
            breaker_failure_threshold=7,
        )
        try:
            assert isinstance(backend, OpenAICompatBackend)
            assert backend.model == "gpt-x"
            assert backend.context_window == 32000
            assert backend.breaker.failure_threshold == 7
        finally:
            await backend.aclose()

    @pytest.mark.parametrize(
        ("kind", "kwargs", "message"),
        [
            ("openai", {"model": "m"}, "base URL"),
            ("ollama", {}, "model name"),
            ("openai", {"base_url": "http://127.0.0.1:9"}, "model name"),
        ],
    )
    def test_missing_settings_are_refused(
        self, kind: Any, kwargs: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            build_backend(kind, **kwargs)
