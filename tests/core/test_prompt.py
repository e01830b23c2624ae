from __future__ import annotations

import pytest

from mongars.core.chat.prompt import PER_MESSAGE_OVERHEAD_TOKENS, build_prompt
from mongars.core.errors import ContextLengthExceeded
from mongars.core.llm import ChatMessage


def words(text: str) -> int:
    return len(text.split())


def exchange(n: int, size: int) -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content=f"q{n} " * size),
        ChatMessage(role="assistant", content=f"a{n} " * size),
    ]


class TestBuildPrompt:
    def test_everything_fits(self) -> None:
        history = exchange(1, 5) + exchange(2, 5)
        prompt = build_prompt(
            system_prompt="be nice",
            history=history,
            message="now",
            context_window=1000,
            reserved_for_answer=100,
            count_tokens=words,
        )
        assert [m.role for m in prompt.messages] == [
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
        ]
        assert prompt.dropped_messages == 0

    def test_oldest_exchanges_go_first_and_pairs_stay_together(self) -> None:
        history = exchange(1, 50) + exchange(2, 50) + exchange(3, 50)
        overhead = PER_MESSAGE_OVERHEAD_TOKENS
        # room for the system prompt, the message and exactly two exchanges
        window = 100 + (2 + overhead) * 2 + (50 + overhead) * 4
        prompt = build_prompt(
            system_prompt="s s",
            history=history,
            message="m m",
            context_window=window,
            reserved_for_answer=100,
            count_tokens=words,
        )
        contents = [m.content.split()[0] for m in prompt.messages[1:-1]]
        assert contents == ["q2", "a2", "q3", "a3"]
        assert prompt.dropped_messages == 2

    def test_a_message_that_cannot_fit_is_refused(self) -> None:
        with pytest.raises(ContextLengthExceeded) as error:
            build_prompt(
                system_prompt="s",
                history=[],
                message="w " * 500,
                context_window=512,
                reserved_for_answer=100,
                count_tokens=words,
            )
        assert error.value.status_code == 413
        assert error.value.code == "prompt_too_large"
