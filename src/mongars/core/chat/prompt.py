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
    # How many of the given passages (RAG) fitted, in their order.
    passages_used: int = 0


PASSAGES_HEADER = (
    "Answer from the numbered passages below when they are relevant, and cite them as [1], "
    "[2] and so on. If they do not answer the question, say so."
)


def build_prompt(
    *,
    system_prompt: str,
    history: Sequence[ChatMessage],
    message: str,
    context_window: int,
    reserved_for_answer: int,
    count_tokens: Callable[[str], int],
    passages: Sequence[str] = (),
    passage_share: float = 0.5,
) -> Prompt:
    """``passages`` (retrieved documents, best first) join the system prompt, as many as fit
    in ``passage_share`` of the budget left after the question; history gets the rest."""

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
    passages_used = 0
    if passages:
        room = min(budget - used, int((budget - used) * passage_share))
        spent = count_tokens(PASSAGES_HEADER)
        blocks: list[str] = []
        for number, passage in enumerate(passages, start=1):
            block = f"[{number}] {passage}"
            cost_of_block = count_tokens(block) + 1
            if spent + cost_of_block > room:
                break
            spent += cost_of_block
            blocks.append(block)
        if blocks:
            passages_used = len(blocks)
            system_prompt = "\n\n".join([system_prompt, PASSAGES_HEADER, *blocks])
            used += spent
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
        passages_used=passages_used,
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
