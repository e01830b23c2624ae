"""Rate limits: one interface (``RateLimiter``), two stores (memory, Redis), route classes with
their own settings, an escalating login lockout, and one place where refusals are recorded."""

from __future__ import annotations

from mongars.core.ratelimit.gcra import Decision, Rule
from mongars.core.ratelimit.limiter import (
    ROUTE_CLASSES,
    LoginThrottle,
    RateLimiter,
    RateLimitExceeded,
    RouteClass,
    build_limiter,
)
from mongars.core.ratelimit.rejects import RejectLog, SubjectHasher
from mongars.core.ratelimit.stores import FallbackStore, MemoryStore, RateLimitStore, RedisStore

__all__ = [
    "ROUTE_CLASSES",
    "Decision",
    "FallbackStore",
    "LoginThrottle",
    "MemoryStore",
    "RateLimitExceeded",
    "RateLimitStore",
    "RateLimiter",
    "RedisStore",
    "RejectLog",
    "RouteClass",
    "Rule",
    "SubjectHasher",
    "build_limiter",
]
