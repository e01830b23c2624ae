"""Build the prompt: system prompt, as much recent history as fits, the new message.

The budget is the model's context window minus the tokens reserved for the answer. History is
dropped oldest first, whole messages at a time, and never splits a question from its answer
(an orphaned answer confuses small models more than a missing pair does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mongars.core.errors import ContextLengthExceeded
from mongars.core.llm import ChatMessage

# Chat templates wrap each message in role markers; a few tokens each on every model we serve.
PER_MESSAGE_OVERHEAD_TOKENS = 8


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: list[ChatMessage]
    prompt_tokens_estimate: int
    dropped_messages: int


def build_prompt(
    *,
    system_prompt: str,
    history: Sequence[ChatMessage],
    message: str,
    context_window: int,
    reserved_for_answer: int,
    count_tokens: Callable[[str], int],
) -> Prompt:
    def cost(text: str) -> int:
        return count_tokens(text) + PER_MESSAGE_OVERHEAD_TOKENS

    budget = context_window - reserved_for_answer
    used = cost(system_prompt) + cost(message)
    if used > budget:
        raise ContextLengthExceeded(
            f"The message needs about {used} tokens but the model has room for {budget} "
            f"(context window {context_window}, {reserved_for_answer} kept for the answer). "
            "Shorten the message.",
            code="prompt_too_large",
        )
    kept: list[ChatMessage] = []
    for pair in reversed(_pairs(history)):
        pair_cost = sum(cost(m.content) for m in pair)
        if used + pair_cost > budget:
            break
        used += pair_cost
        kept[:0] = pair
    return Prompt(
        messages=[
            ChatMessage(role="system", content=system_prompt),
            *kept,
            ChatMessage(role="user", content=message),
        ],
        prompt_tokens_estimate=used,
        dropped_messages=len(history) - len(kept),
    )


def _pairs(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """Group history into [user, assistant] exchanges (a lone message is its own group)."""
    groups: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "assistant" and groups and groups[-1][-1].role == "user":
            groups[-1].append(message)
        else:
            groups.append([message])
    return groups
