"""Circuit breaker and retries for remote model backends.

The breaker protects users from waiting on a backend that is known to be down and gives them a
truthful ``Retry-After``:

- **closed**: calls go through; each availability failure (connection refused, 503, timeout)
  increments a counter that any answer from the backend resets.
- **open**: after ``failure_threshold`` consecutive failures every call fails at once with
  ``BackendUnavailable`` (no network I/O) until ``cooldown_seconds`` have passed.
- **half-open**: after the cooldown exactly one trial call is let through; its success closes the
  circuit, its failure re-opens it for another cooldown. Other callers keep failing fast while
  the trial is in flight. A trial that ends without a verdict (cancelled) frees the slot.

The breaker is used from one event loop and never awaits, so it needs no lock.

Retries are only for failures where the request certainly produced nothing: the connection was
refused or dropped before a response, or the backend answered 503. They happen before the first
token is yielded; a stream that fails midway is never retried, since that would repeat text the
user has already seen.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import anyio

from mongars.core.errors import BackendUnavailable

T = TypeVar("T")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class RetryableBackendError(BackendUnavailable):
    """A failure that provably produced no output, so the request may be sent again."""


class CircuitBreaker:
    def __init__(
        self,
        *,
        name: str = "model backend",
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._trial_in_flight or self._clock() - self._opened_at >= self.cooldown_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def retry_after_seconds(self) -> float:
        """Seconds until a call may go through again; 0 when one may go now."""
        if self._opened_at is None:
            return 0.0
        remaining = self._opened_at + self.cooldown_seconds - self._clock()
        if remaining <= 0 and self._trial_in_flight:
            # The trial's outcome is unknown; a full cooldown is the honest upper bound.
            return self.cooldown_seconds
        return max(0.0, remaining)

    def before_call(self) -> bool:
        """Let a call through or raise ``BackendUnavailable`` without touching the network.

        Returns ``True`` when this call is the half-open trial, which must end with
        ``record_success``, ``record_failure`` or ``release``.
        """
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        retry_after = max(1, math.ceil(self.retry_after_seconds))
        raise BackendUnavailable(
            f"The {self.name} is unavailable (circuit open); retry in {retry_after} s.",
            retry_after_seconds=retry_after,
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        if self._trial_in_flight:
            self._trial_in_flight = False
            self._opened_at = self._clock()
            return
        if self._opened_at is not None:
            # Stragglers that started before the circuit opened must not extend the cooldown.
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._opened_at = self._clock()

    def release(self) -> None:
        """End a trial call that gave no verdict (e.g. it was cancelled)."""
        self._trial_in_flight = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt ``n`` waits in ``[d/2, d]``, ``d = base * 2**n``.

    A ``Retry-After`` from the backend is honoured when it is within ``max_delay_seconds``; a
    longer one ends the retries at once so the caller can pass it on.
    """

    max_retries: int = 2
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 4.0

    def delay(self, retry_index: int, rand: float) -> float:
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0**retry_index)
        return ceiling / 2 + ceiling / 2 * rand


# What a client is told to wait once the retries are spent and the backend said nothing: a
# restarting model server is usually back within seconds; the circuit breaker gives its own,
# longer, figure once it opens.
GIVE_UP_RETRY_AFTER_SECONDS = 5


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``attempt`` again after each ``RetryableBackendError``, up to ``policy.max_retries``."""
    retry_index = 0
    while True:
        try:
            return await attempt()
        except RetryableBackendError as exc:
            if retry_index >= policy.max_retries:
                if exc.retry_after_seconds:
                    raise
                # Out of retries: tell the client when to come back, as the open circuit does.
                raise BackendUnavailable(
                    exc.detail, retry_after_seconds=GIVE_UP_RETRY_AFTER_SECONDS
                ) from exc
            delay = policy.delay(retry_index, rand())
            if exc.retry_after_seconds:
                if exc.retry_after_seconds > policy.max_delay_seconds:
                    raise
                delay = max(delay, float(exc.retry_after_seconds))
            retry_index += 1
            await sleep(delay)
