"""Where rate-limit state lives: in this process, or in Redis for every replica at once.

Both stores answer the same questions (a GCRA decision, a failure counter with a window, a
timed block); the Redis one does each in a single atomic round trip, using Redis's own clock
so that replicas with skewed clocks still share one bucket.

Redis down: ``FallbackStore`` answers from the in-process store instead (logged once per
outage, retried every few seconds). Limits then hold per replica rather than across them, so a
client can get at most N times its budget from N replicas for the length of the outage. We
prefer that to failing closed, which would turn an outage of an optional component into an
outage of chat and login for everybody, and to failing open, which would drop the login
throttle exactly when nothing else watches. /ready reports Redis as down meanwhile.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mongars.core.ratelimit.gcra import MICROSECONDS, Decision, Rule, decide

logger = logging.getLogger(__name__)

Clock = Callable[[], int]  # microseconds, monotonic


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class RateLimitStore(Protocol):
    async def acquire(self, key: str, rule: Rule) -> Decision:
        """Count one request against ``rule`` under ``key``, unless it is refused."""

    async def add_failure(self, key: str, window_seconds: float) -> int:
        """Count one failure; the count is forgotten ``window_seconds`` after the last one."""

    async def block(self, key: str, seconds: float) -> None:
        """Block ``key`` for ``seconds`` (extending never shortens an existing block)."""

    async def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` is unblocked; 0 when it is not blocked."""

    async def forget(self, *keys: str) -> None:
        """Drop whatever is stored under ``keys``."""


class MemoryStore:
    """One process's state. Expired entries are swept as the store is used."""

    SWEEP_EVERY = 1024

    def __init__(self, clock: Clock = monotonic_us) -> None:
        self.clock = clock
        self._tats: dict[str, int] = {}
        self._failures: dict[str, tuple[int, int]] = {}  # key -> (count, expires at)
        self._blocks: dict[str, int] = {}  # key -> blocked until
        self._operations = 0

    async def acquire(self, key: str, rule: Rule) -> Decision:
        now = self._tick()
        decision, new_tat = decide(rule, self._tats.get(key), now)
        if new_tat is not None:
            self._tats[key] = new_tat
        return decision

    async def add_failure(self, key: str, window_seconds: float) -> int:
        now = self._tick()
        count, expires = self._failures.get(key, (0, now))
        count = count + 1 if expires > now else 1
        self._failures[key] = (count, now + round(window_seconds * MICROSECONDS))
        return count

    async def block(self, key: str, seconds: float) -> None:
        until = self._tick() + round(seconds * MICROSECONDS)
        self._blocks[key] = max(until, self._blocks.get(key, 0))

    async def blocked_for(self, key: str) -> float:
        remaining = self._blocks.get(key, 0) - self._tick()
        return remaining / MICROSECONDS if remaining > 0 else 0.0

    async def forget(self, *keys: str) -> None:
        for key in keys:
            self._tats.pop(key, None)
            self._failures.pop(key, None)
            self._blocks.pop(key, None)

    def clear(self) -> None:
        self._tats.clear()
        self._failures.clear()
        self._blocks.clear()

    def __len__(self) -> int:
        return len(self._tats) + len(self._failures) + len(self._blocks)

    def _tick(self) -> int:
        now = self.clock()
        self._operations += 1
        if self._operations % self.SWEEP_EVERY == 0:
            self._sweep(now)
        return now

    def _sweep(self, now: int) -> None:
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        self._failures = {k: v for k, v in self._failures.items() if v[1] > now}
        self._blocks = {k: until for k, until in self._blocks.items() if until > now}


# KEYS[1]: the bucket. ARGV: emission interval (µs), limit. Returns
# {allowed, remaining, retry_after_us, reset_us}. Same arithmetic as gcra.decide; numbers stay
# below 2^53 so Lua's doubles are exact, and are written with %.0f (never in e-notation).
GCRA_SCRIPT = """
local emission = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * limit
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / emission), 0, new_tat - now}
"""

# KEYS[1]: the block. ARGV[1]: milliseconds. Never shortens a longer block already in place.
BLOCK_SCRIPT = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
"""


class RedisStore:
    """State shared by every replica. ``prefix`` namespaces the keys (deployment, test run)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._gcra = redis.register_script(GCRA_SCRIPT)
        self._block = redis.register_script(BLOCK_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def acquire(self, key: str, rule: Rule) -> Decision:
        allowed, remaining, retry_us, reset_us = await self._gcra(
            keys=[self._key(key)], args=[rule.emission_us, rule.limit]
        )
        return Decision(
            allowed=bool(allowed),
            limit=rule.limit,
            remaining=int(remaining),
            reset_seconds=int(reset_us) / MICROSECONDS,
            retry_after_seconds=int(retry_us) / MICROSECONDS,
        )

    async def add_failure(self, key: str, window_seconds: float) -> int:
        full_key = self._key(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(full_key)
            pipe.pexpire(full_key, max(1, math.ceil(window_seconds * 1000)))
            count, _ = await pipe.execute()
        return int(count)

    async def block(self, key: str, seconds: float) -> None:
        await self._block(keys=[self._key(key)], args=[max(1, math.ceil(seconds * 1000))])

    async def blocked_for(self, key: str) -> float:
        remaining_ms = int(await self.redis.pttl(self._key(key)))
        return remaining_ms / 1000 if remaining_ms > 0 else 0.0

    async def forget(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*(self._key(key) for key in keys))


REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class FallbackStore:
    """Redis while it answers; this process's memory while it does not (module docstring)."""

    RETRY_SECONDS = 5.0

    def __init__(
        self, primary: RateLimitStore, fallback: MemoryStore, clock: Clock = monotonic_us
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.clock = clock
        self._down_until: int | None = None

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    async def acquire(self, key: str, rule: Rule) -> Decision:
        if self._use_primary():
            try:
                decision = await self.primary.acquire(key, rule)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()
                return decision
        return await self.fallback.acquire(key, rule)

    async def add_failure(self, key: str, window_seconds: float) -> int:
        if self._use_primary():
            try:
                count = await self.primary.add_failure(key, window_seconds)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()
                return count
        return await self.fallback.add_failure(key, window_seconds)

    async def block(self, key: str, seconds: float) -> None:
        if self._use_primary():
            try:
                await self.primary.block(key, seconds)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()
                return
        await self.fallback.block(key, seconds)

    async def blocked_for(self, key: str) -> float:
        if self._use_primary():
            try:
                remaining = await self.primary.blocked_for(key)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()
                return remaining
        return await self.fallback.blocked_for(key)

    async def forget(self, *keys: str) -> None:
        # Both: a block recorded during an outage must not outlive a successful login.
        await self.fallback.forget(*keys)
        if self._use_primary():
            try:
                await self.primary.forget(*keys)
            except REDIS_FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()

    def _use_primary(self) -> bool:
        return self._down_until is None or self.clock() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self._down_until is None:
            logger.warning(
                "Redis is unavailable for rate limits (%s); limits now hold per process "
                "until it is back",
                type(exc).__name__,
            )
        self._down_until = self.clock() + round(self.RETRY_SECONDS * MICROSECONDS)

    def _recovered(self) -> None:
        if self._down_until is not None:
            logger.info("Redis is back; rate limits are shared across replicas again")
            self._down_until = None
