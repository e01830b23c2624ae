"""FakeBackend: deterministic answers and scripted failures for other tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from mongars.core.errors import BackendUnavailable
from mongars.core.llm import (
    ChatBackend,
    ChatMessage,
    FakeBackend,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

pytestmark = pytest.mark.anyio

MESSAGES = [
    ChatMessage(role="system", content="Be nice."),
    ChatMessage(role="user", content="first question"),
    ChatMessage(role="assistant", content="first answer"),
    ChatMessage(role="user", content="hello there   world"),
]


async def _drain(events: AsyncIterator[StreamEvent], received: list[str]) -> None:
    async for event in events:
        assert isinstance(event, TextDelta)
        received.append(event.text)


class TestFakeBackend:
    async def test_echoes_the_last_user_message_deterministically(self) -> None:
        backend = FakeBackend()

        first = await backend.complete(MESSAGES)
        second = await backend.complete(MESSAGES)

        assert first == second
        assert first.text == "echo: hello there world"
        assert first.usage.prompt_tokens == 2 + 2 + 2 + 3
        assert first.usage.completion_tokens == 4
        assert first.finish_reason == "stop"
        assert first.model == "fake-echo"
        assert len(backend.requests) == 2

    async def test_streams_one_word_per_token(self) -> None:
        events = [event async for event in FakeBackend().stream(MESSAGES)]

        assert events[:-1] == [
            TextDelta("echo:"),
            TextDelta(" hello"),
            TextDelta(" there"),
            TextDelta(" world"),
        ]
        assert isinstance(events[-1], StreamEnd)
        assert events[-1].usage.completion_tokens == 4

    async def test_max_tokens_truncates_with_length(self) -> None:
        completion = await FakeBackend().complete(MESSAGES, GenerationParams(max_tokens=2))

        assert completion.text == "echo: hello"
        assert completion.finish_reason == "length"

    async def test_fails_before_the_first_token(self) -> None:
        backend = FakeBackend(fail_before_first_token=True)

        with pytest.raises(BackendUnavailable):
            await anext(backend.stream(MESSAGES))
        assert not (await backend.health()).reachable

    async def test_dies_mid_stream_after_n_deltas(self) -> None:
        received: list[str] = []

        with pytest.raises(BackendUnavailable):
            await _drain(FakeBackend(fail_after_tokens=2).stream(MESSAGES), received)

        assert received == ["echo:", " hello"]

    async def test_hangs_until_the_caller_times_out(self) -> None:
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await FakeBackend(hang_before_first_token=True).complete(MESSAGES)

    async def test_paces_tokens(self) -> None:
        backend = FakeBackend(token_delay_seconds=0.005)
        started = anyio.current_time()

        await backend.complete(MESSAGES)

        assert anyio.current_time() - started >= 0.02

    async def test_counts_tokens_by_whitespace_and_fits_the_protocol(self) -> None:
        backend = FakeBackend(confidence=0.5)

        assert backend.count_tokens("  one two\tthree\n") == 3
        assert backend.count_tokens("") == 0
        assert isinstance(backend, ChatBackend)
        assert (await backend.complete(MESSAGES)).confidence == 0.5
        await backend.aclose()
        assert backend.closed
