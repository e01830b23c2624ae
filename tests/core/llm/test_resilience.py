"""Circuit breaker and retry policy, driven by an injected clock and sleep (no real waiting)."""

from __future__ import annotations

import pytest

from mongars.core.errors import BackendTimeout, BackendUnavailable
from mongars.core.llm import (
    CircuitBreaker,
    CircuitState,
    RetryableBackendError,
    RetryPolicy,
    call_with_retries,
)
from mongars.core.llm.resilience import GIVE_UP_RETRY_AFTER_SECONDS

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.before_call()
        breaker.record_failure()


class TestCircuitBreaker:
    def test_stays_closed_below_the_threshold_and_success_resets(
        self, breaker: CircuitBreaker
    ) -> None:
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        breaker.record_failure()

        assert breaker.state is CircuitState.CLOSED
        assert breaker.consecutive_failures == 2
        assert breaker.before_call() is False
        assert breaker.retry_after_seconds == 0

    def test_opens_after_consecutive_failures_and_fails_fast(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 2.5

        assert breaker.state is CircuitState.OPEN
        assert breaker.retry_after_seconds == pytest.approx(7.5)
        with pytest.raises(BackendUnavailable) as caught:
            breaker.before_call()
        assert caught.value.retry_after_seconds == 8
        assert caught.value.headers == {"Retry-After": "8"}

    def test_half_open_after_cooldown_lets_exactly_one_trial_through(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 10

        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.before_call() is True
        with pytest.raises(BackendUnavailable):
            breaker.before_call()

    def test_successful_trial_closes_the_circuit(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 10
        breaker.before_call()

        breaker.record_success()

        assert breaker.state is CircuitState.CLOSED
        assert breaker.consecutive_failures == 0
        assert breaker.before_call() is False

    def test_failed_trial_reopens_for_a_full_cooldown(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 10
        breaker.before_call()

        breaker.record_failure()

        assert breaker.state is CircuitState.OPEN
        assert breaker.retry_after_seconds == pytest.approx(10)

    def test_released_trial_lets_the_next_caller_try(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 10
        assert breaker.before_call() is True

        breaker.release()

        assert breaker.before_call() is True

    def test_late_failures_do_not_extend_an_open_circuit(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        _open(breaker)
        clock.now += 6

        breaker.record_failure()

        assert breaker.retry_after_seconds == pytest.approx(4)

    def test_rejects_nonsense_settings(self) -> None:
        with pytest.raises(ValueError, match="failure_threshold"):
            CircuitBreaker(failure_threshold=0)
        with pytest.raises(ValueError, match="cooldown"):
            CircuitBreaker(cooldown_seconds=0)


class Attempts:
    """An operation failing with the given errors, then returning ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _transient(retry_after: int | None = None) -> RetryableBackendError:
    return RetryableBackendError("refused", retry_after_seconds=retry_after)


class TestRetries:
    async def test_transient_failures_are_retried_with_exponential_backoff(self) -> None:
        attempts = Attempts(_transient(), _transient(), _transient())
        sleep = SleepRecorder()
        policy = RetryPolicy(max_retries=3, base_delay_seconds=0.1, max_delay_seconds=0.3)

        result = await call_with_retries(attempts, policy, sleep=sleep, rand=lambda: 1.0)

        assert result == "ok"
        assert attempts.calls == 4
        assert sleep.delays == pytest.approx([0.1, 0.2, 0.3])  # capped at max_delay

    async def test_jitter_keeps_at_least_half_the_backoff(self) -> None:
        sleep = SleepRecorder()
        policy = RetryPolicy(max_retries=2, base_delay_seconds=0.1)

        await call_with_retries(
            Attempts(_transient(), _transient()), policy, sleep=sleep, rand=lambda: 0.0
        )

        assert sleep.delays == pytest.approx([0.05, 0.1])

    async def test_gives_up_after_max_retries_with_the_last_error(self) -> None:
        attempts = Attempts(*(_transient() for _ in range(5)))

        with pytest.raises(BackendUnavailable) as caught:
            await call_with_retries(attempts, RetryPolicy(max_retries=2), sleep=SleepRecorder())

        assert attempts.calls == 3
        # The last error, now telling the client when to try again.
        assert isinstance(caught.value.__cause__, RetryableBackendError)
        assert caught.value.detail == caught.value.__cause__.detail
        assert caught.value.headers == {"Retry-After": str(GIVE_UP_RETRY_AFTER_SECONDS)}

    @pytest.mark.parametrize(
        "error",
        [BackendUnavailable("circuit open", retry_after_seconds=5), BackendTimeout()],
        ids=["circuit-open", "timeout"],
    )
    async def test_other_failures_are_not_retried(self, error: Exception) -> None:
        attempts = Attempts(error)

        with pytest.raises(type(error)):
            await call_with_retries(attempts, RetryPolicy(max_retries=3), sleep=SleepRecorder())

        assert attempts.calls == 1

    async def test_short_retry_after_is_honoured(self) -> None:
        sleep = SleepRecorder()
        policy = RetryPolicy(max_retries=1, base_delay_seconds=0.1, max_delay_seconds=4)

        await call_with_retries(Attempts(_transient(retry_after=2)), policy, sleep=sleep)

        assert sleep.delays == [2.0]

    async def test_long_retry_after_ends_retries_at_once(self) -> None:
        attempts = Attempts(_transient(retry_after=30))

        with pytest.raises(RetryableBackendError):
            await call_with_retries(attempts, RetryPolicy(max_retries=3), sleep=SleepRecorder())

        assert attempts.calls == 1

    async def test_real_sleep_is_short(self) -> None:
        policy = RetryPolicy(max_retries=1, base_delay_seconds=0.01)

        assert await call_with_retries(Attempts(_transient()), policy) == "ok"
