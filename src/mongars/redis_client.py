"""The optional shared Redis connection (several replicas share limits, tickets, streams and
events through it). Absent when ``MONGARS_REDIS_URL`` is unset: one process keeps that state
in memory instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from mongars.config import Settings

# Fail fast instead of hanging a request when Redis is down; the callers degrade or answer 503.
SOCKET_TIMEOUT_SECONDS = 2.0


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis | None]:
    if not settings.redis_url:
        yield None
        return
    client = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
    try:
        yield client
    finally:
        await client.aclose()


def key(settings: Settings, *parts: str) -> str:
    return ":".join((settings.redis_key_prefix, *parts))
