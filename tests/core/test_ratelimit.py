"""The limiter's algorithm and stores: GCRA in memory and in Redis (same answers), the login
lockout's escalation, the fallback while Redis is down, and how refusals are recorded."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mongars.config import RateLimitSettings
from mongars.core.errors import AuthenticationFailed
from mongars.core.ratelimit import (
    Decision,
    FallbackStore,
    LoginThrottle,
    MemoryStore,
    RateLimiter,
    RateLimitExceeded,
    RedisStore,
    RejectLog,
    Rule,
    SubjectHasher,
)
from tests.conftest import IN_CI
from tests.live_server import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
TEN_A_MINUTE = Rule(10, 60.0)


class Clock:
    """Microseconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        message = f"Redis at {REDIS_URL} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI needs it)")
        pytest.skip(message)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_store(redis: Redis) -> AsyncIterator[RedisStore]:
    prefix = f"mongars-test-{secrets.token_hex(4)}"
    yield RedisStore(redis, prefix)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


def limiter(store: object, **settings: object) -> RateLimiter:
    return RateLimiter(
        RateLimitSettings(**settings),  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        RejectLog(SubjectHasher(b"k" * 32)),
    )


class TestGcraInMemory:
    async def test_a_burst_of_the_limit_then_one_per_interval(self) -> None:
        clock = Clock()
        store = MemoryStore(clock)
        decisions = [await store.acquire("k", TEN_A_MINUTE) for _ in range(11)]
        assert [d.allowed for d in decisions] == [True] * 10 + [False]
        assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
        refused = decisions[-1]
        assert refused.retry_after_seconds == pytest.approx(6.0)
        assert refused.reset_seconds == pytest.approx(60.0)
        clock.advance(5.9)
        assert not (await store.acquire("k", TEN_A_MINUTE)).allowed
        clock.advance(0.1)
        assert (await store.acquire("k", TEN_A_MINUTE)).allowed
        assert not (await store.acquire("k", TEN_A_MINUTE)).allowed

    async def test_keys_are_independent_and_a_full_wait_restores_the_budget(self) -> None:
        clock = Clock()
        store = MemoryStore(clock)
        for _ in range(10):
            await store.acquire("a", TEN_A_MINUTE)
        assert (await store.acquire("b", TEN_A_MINUTE)).remaining == 9
        clock.advance(60)
        assert (await store.acquire("a", TEN_A_MINUTE)).remaining == 9

    async def test_expired_entries_are_swept(self) -> None:
        clock = Clock()
        store = MemoryStore(clock)
        for n in range(MemoryStore.SWEEP_EVERY - 1):
            await store.acquire(f"k{n}", TEN_A_MINUTE)
        clock.advance(61)
        assert len(store) == MemoryStore.SWEEP_EVERY - 1
        await store.acquire("last", TEN_A_MINUTE)  # the sweep runs on every 1024th operation
        assert len(store) == 1

    def test_headers(self) -> None:
        allowed = Decision(True, 10, 3, 41.2, 0.0)
        assert allowed.headers() == {
            "RateLimit-Limit": "10",
            "RateLimit-Remaining": "3",
            "RateLimit-Reset": "42",
        }
        refused = Decision(False, 10, 0, 60.0, 0.2)
        assert refused.headers()["Retry-After"] == "1"
        assert Decision.unlimited().headers() == {}


class TestGcraInRedis:
    async def test_same_answers_as_memory(self, redis_store: RedisStore) -> None:
        decisions = [await redis_store.acquire("k", TEN_A_MINUTE) for _ in range(11)]
        assert [d.allowed for d in decisions] == [True] * 10 + [False]
        assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
        assert 5.5 < decisions[-1].retry_after_seconds <= 6.0
        assert 59.0 < decisions[-1].reset_seconds <= 60.0

    async def test_concurrent_requests_get_exactly_the_limit(self, redis_store: RedisStore) -> None:
        results: list[Decision] = []

        async def hit() -> None:
            results.append(await redis_store.acquire("shared", TEN_A_MINUTE))

        async with anyio.create_task_group() as group:
            for _ in range(40):
                group.start_soon(hit)
        allowed = [d for d in results if d.allowed]
        assert len(allowed) == 10
        assert sorted(d.remaining for d in allowed) == list(range(10))

    async def test_keys_expire_with_the_bucket(self, redis_store: RedisStore, redis: Redis) -> None:
        await redis_store.acquire("k", TEN_A_MINUTE)
        ttl = await redis.pttl(f"{redis_store.prefix}:k")
        assert 0 < ttl <= 6000

    async def test_failures_blocks_and_forgetting(self, redis_store: RedisStore) -> None:
        assert await redis_store.add_failure("f", 60) == 1
        assert await redis_store.add_failure("f", 60) == 2
        await redis_store.block("b", 30)
        await redis_store.block("b", 1)  # a shorter block never cuts a longer one
        assert 29 < await redis_store.blocked_for("b") <= 30
        await redis_store.forget("f", "b")
        assert await redis_store.blocked_for("b") == 0
        assert await redis_store.add_failure("f", 60) == 1


class TestRedisDown:
    async def test_falls_back_to_memory_logs_once_and_retries_later(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        clock = Clock()
        store = FallbackStore(RedisStore(dead, "x"), MemoryStore(clock), clock)
        try:
            with caplog.at_level(logging.WARNING, logger="mongars.core.ratelimit.stores"):
                decisions = [await store.acquire("k", Rule(2, 60)) for _ in range(3)]
                assert [d.allowed for d in decisions] == [True, True, False]
                assert store.degraded
                await store.block("b", 10)
                assert await store.blocked_for("b") == pytest.approx(10)
            outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(outage_logs) == 1
            clock.advance(FallbackStore.RETRY_SECONDS)
            assert not (await store.acquire("k", Rule(2, 60))).allowed  # tried Redis again
            assert store.degraded
        finally:
            await dead.aclose()

    async def test_recovers_when_redis_answers_again(
        self, redis_store: RedisStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = Clock()
        store = FallbackStore(redis_store, MemoryStore(clock), clock)
        store._failed(ConnectionError("simulated outage"))
        await store.acquire("k", TEN_A_MINUTE)  # from memory
        clock.advance(FallbackStore.RETRY_SECONDS)
        with caplog.at_level(logging.INFO, logger="mongars.core.ratelimit.stores"):
            assert (await store.acquire("k", TEN_A_MINUTE)).remaining == 9  # from Redis
        assert not store.degraded
        assert any("back" in r.getMessage() for r in caplog.records)


class TestLimiter:
    async def test_a_zero_limit_means_no_limit_and_no_headers(self) -> None:
        unlimited = limiter(MemoryStore(), chat_per_minute=0)
        for _ in range(100):
            decision = await unlimited.check("chat", "user")
            assert decision.allowed
            assert not decision.limited

    async def test_refusals_are_counted_and_logged_with_the_subject_hashed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        limited = limiter(MemoryStore(), chat_per_minute=1)
        subject = "0b8c1a1e-9a84-4a37-9d0e-3c0f0ac9e7a1"
        await limited.enforce("chat", subject)
        with (
            caplog.at_level(logging.INFO, logger="mongars.rejects"),
            pytest.raises(RateLimitExceeded) as refused,
        ):
            await limited.enforce("chat", subject)
        assert refused.value.status_code == 429
        assert refused.value.code == "rate_limited"
        assert refused.value.headers["Retry-After"] == "60"
        assert limited.rejects.counts[("chat", "rate_limited")] == 1
        (record,) = caplog.records
        assert subject not in record.getMessage()
        assert limited.rejects.hash(subject) in record.getMessage()

    async def test_classes_do_not_share_budgets(self) -> None:
        limited = limiter(MemoryStore(), chat_per_minute=1, ws_ticket_per_minute=1)
        assert (await limited.check("chat", "u")).allowed
        assert (await limited.check("ws_ticket", "u")).allowed
        assert not (await limited.check("chat", "u")).allowed


class TestLoginLockout:
    async def test_escalates_after_the_free_failures_and_a_success_clears_it(self) -> None:
        clock = Clock()
        throttle = LoginThrottle(
            limiter(
                MemoryStore(clock),
                login_per_minute=0,
                login_free_failures=2,
                login_backoff_base_seconds=1,
                login_backoff_max_seconds=5,
            )
        )
        locks = [await throttle.failed("10.0.0.1", "ada") for _ in range(6)]
        assert locks == [0, 0, 1, 2, 4, 5]
        with pytest.raises(RateLimitExceeded) as locked:
            await throttle.admit("10.0.0.1", "ADA ")  # the same account, however typed
        assert locked.value.headers["Retry-After"] == "5"
        await throttle.admit("10.0.0.2", "ada")  # the real user's own address is not locked
        await throttle.admit("10.0.0.1", "bob")
        clock.advance(5)
        async with throttle.attempt("10.0.0.1", "ada"):
            pass  # a success
        assert await throttle.failed("10.0.0.1", "ada") == 0

    async def test_only_wrong_passwords_count(self) -> None:
        throttle = LoginThrottle(limiter(MemoryStore(), login_free_failures=0))
        with pytest.raises(AuthenticationFailed):
            async with throttle.attempt("ip", "eve"):
                raise AuthenticationFailed("disabled", code="account_disabled")
        await throttle.admit("ip", "eve")
        with pytest.raises(AuthenticationFailed):
            async with throttle.attempt("ip", "eve"):
                raise AuthenticationFailed("no", code="invalid_credentials")
        with pytest.raises(RateLimitExceeded):
            await throttle.admit("ip", "eve")
