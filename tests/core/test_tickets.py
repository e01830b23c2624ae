from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from mongars.core.tickets import MemoryReplayStore, RedisReplayStore, ReplayStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ReplayStore]:
    if request.param == "memory":
        yield MemoryReplayStore()
        return
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        yield RedisReplayStore(redis, f"mongars-test-{secrets.token_hex(4)}:ws-ticket")
    finally:
        await redis.aclose()


class TestReplayStore:
    async def test_a_ticket_id_is_claimed_once(self, store: ReplayStore) -> None:
        assert await store.claim("t1", 5) is True
        assert await store.claim("t1", 5) is False
        assert await store.claim("t2", 5) is True

    async def test_concurrent_claims_have_one_winner(self, store: ReplayStore) -> None:
        results: list[bool] = []

        async def claim() -> None:
            results.append(await store.claim("race", 5))

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(claim)
        assert results.count(True) == 1


class TestMemoryReplayStoreExpiry:
    async def test_expired_claims_are_forgotten_in_order(self) -> None:
        store = MemoryReplayStore()
        assert await store.claim("old", 0) is True
        assert await store.claim("old", 60) is True  # the zero-TTL claim has expired
        assert await store.claim("old", 60) is False
        for n in range(5000):
            assert await store.claim(f"t{n}", 60) is True
