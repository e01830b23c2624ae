"""GCRA (the generic cell rate algorithm): a token bucket stored as one number per key.

A rule allows ``limit`` requests per ``period``: one every ``period / limit`` (the emission
interval), with bursts of up to ``limit``. The state is the theoretical arrival time (TAT):
when the bucket would be full again. A request is allowed when, after adding its own
interval, the TAT is no more than ``period`` ahead of now. Times are integer microseconds so
the Redis script and this module compute exactly the same answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MICROSECONDS = 1_000_000


@dataclass(frozen=True, slots=True)
class Rule:
    """``limit`` requests per ``period_seconds``; a limit of 0 means no limit."""

    limit: int
    period_seconds: float

    @property
    def unlimited(self) -> bool:
        return self.limit <= 0

    @property
    def emission_us(self) -> int:
        return max(1, round(self.period_seconds * MICROSECONDS / self.limit))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against one rule, and what clients are told about it."""

    allowed: bool
    limit: int
    remaining: int
    # Until the whole budget is available again.
    reset_seconds: float
    # Until the next request would be allowed (0 when this one was).
    retry_after_seconds: float
    # False for a class without a limit: nothing to report to the client.
    limited: bool = True

    @classmethod
    def unlimited(cls) -> Decision:
        return cls(
            allowed=True,
            limit=0,
            remaining=0,
            reset_seconds=0.0,
            retry_after_seconds=0.0,
            limited=False,
        )

    @classmethod
    def refused(cls, limit: int, wait_seconds: float) -> Decision:
        return cls(
            allowed=False,
            limit=limit,
            remaining=0,
            reset_seconds=wait_seconds,
            retry_after_seconds=wait_seconds,
        )

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` (IETF httpapi draft names), and ``Retry-After`` when refused."""
        if not self.limited:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_seconds)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return headers


def decide(rule: Rule, tat_us: int | None, now_us: int) -> tuple[Decision, int | None]:
    """The decision for one request at ``now_us``, and the TAT to store (None: unchanged)."""
    emission = rule.emission_us
    tat = max(tat_us if tat_us is not None else now_us, now_us)
    new_tat = tat + emission
    allow_at = new_tat - emission * rule.limit
    if now_us < allow_at:
        wait = (allow_at - now_us) / MICROSECONDS
        decision = Decision(
            allowed=False,
            limit=rule.limit,
            remaining=0,
            reset_seconds=(tat - now_us) / MICROSECONDS,
            retry_after_seconds=wait,
        )
        return decision, None
    decision = Decision(
        allowed=True,
        limit=rule.limit,
        remaining=(now_us - allow_at) // emission,
        reset_seconds=(new_tat - now_us) / MICROSECONDS,
        retry_after_seconds=0.0,
    )
    return decision, new_tat
