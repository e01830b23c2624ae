"""The rate limiter: route classes, each with its own rule, over one store.

``check`` is the plain entry point (the WebSocket handler calls it for ``chat.send``);
``enforce`` raises ``RateLimitExceeded`` (429 ``rate_limited`` with ``Retry-After`` and the
``RateLimit-*`` headers) instead of returning a refusal. Subjects are hashed before they become
keys, so Redis never holds a raw IP address or username.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from redis.asyncio import Redis

from mongars.config import RateLimitSettings, Settings
from mongars.core.errors import MongarsError, RateLimited
from mongars.core.ratelimit.gcra import Decision, Rule
from mongars.core.ratelimit.rejects import RejectLog, SubjectHasher
from mongars.core.ratelimit.stores import FallbackStore, MemoryStore, RateLimitStore, RedisStore
from mongars.redis_client import key as redis_key

# The errors that mean "a wrong password was tried": a failed login, a wrong current password.
WRONG_PASSWORD_CODES = frozenset({"invalid_credentials", "wrong_password"})

RouteClass = Literal["chat", "login", "register", "ws_ticket"]
ROUTE_CLASSES: tuple[RouteClass, ...] = ("chat", "login", "register", "ws_ticket")


class RateLimitExceeded(RateLimited):
    def __init__(self, decision: Decision, detail: str | None = None) -> None:
        wait = max(1, math.ceil(decision.retry_after_seconds))
        super().__init__(
            detail or f"Too many requests; try again in {wait} s.", headers=decision.headers()
        )
        self.decision = decision


def rules_from(settings: RateLimitSettings) -> dict[RouteClass, Rule]:
    return {
        "chat": Rule(settings.chat_per_minute, 60.0),
        "login": Rule(settings.login_per_minute, 60.0),
        "register": Rule(settings.register_per_hour, 3600.0),
        "ws_ticket": Rule(settings.ws_ticket_per_minute, 60.0),
    }


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, store: RateLimitStore, rejects: RejectLog):
        self.settings = settings
        self.rules = rules_from(settings)
        self.store = store
        self.rejects = rejects

    async def check(self, route_class: RouteClass, subject: str) -> Decision:
        """Count a request by ``subject`` (a user id, a client IP...) and say if it may run."""
        rule = self.rules[route_class]
        if rule.unlimited:
            return Decision.unlimited()
        decision = await self.store.acquire(self.key(route_class, subject), rule)
        if not decision.allowed:
            self.rejects.record(route_class, "rate_limited", subject, decision.retry_after_seconds)
        return decision

    async def enforce(self, route_class: RouteClass, subject: str) -> Decision:
        decision = await self.check(route_class, subject)
        if not decision.allowed:
            raise RateLimitExceeded(decision)
        return decision

    def key(self, route_class: str, subject: str) -> str:
        return f"{route_class}:{self.rejects.hash(subject)}"


class LoginThrottle:
    """Logins per client IP and username: the ``login`` rate, and an escalating lockout.

    After ``login_free_failures`` wrong passwords for one (IP, username) pair, each further one
    blocks the pair for base, 2 x base, 4 x base ... seconds (at most the maximum). A success
    clears the pair's record; it is forgotten anyway after the failure window. Keyed by the
    pair, so a guesser elsewhere cannot lock the real user out of their own address, and an
    unknown username is throttled exactly like a known one (nothing tells them apart).
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.settings = limiter.settings

    @staticmethod
    def subject(client_ip: str, username: str) -> str:
        return f"{client_ip}\n{username.strip().lower()}"

    async def admit(self, client_ip: str, username: str) -> Decision:
        subject = self.subject(client_ip, username)
        locked_for = await self.limiter.store.blocked_for(self._key("lock", subject))
        if locked_for > 0:
            self.limiter.rejects.record("login", "login_locked", subject, locked_for)
            decision = Decision.refused(self.limiter.rules["login"].limit, locked_for)
            raise RateLimitExceeded(
                decision,
                "Too many failed logins for this account from your address; "
                f"try again in {max(1, math.ceil(locked_for))} s.",
            )
        return await self.limiter.enforce("login", subject)

    async def failed(self, client_ip: str, username: str) -> float:
        """Record a wrong password; returns how long the pair is now locked out (seconds)."""
        subject = self.subject(client_ip, username)
        failures = await self.limiter.store.add_failure(
            self._key("fail", subject), self.settings.login_failure_window_seconds
        )
        over = failures - self.settings.login_free_failures
        if over <= 0:
            return 0.0
        seconds = min(
            self.settings.login_backoff_base_seconds * (1 << min(over - 1, 30)),
            self.settings.login_backoff_max_seconds,
        )
        await self.limiter.store.block(self._key("lock", subject), seconds)
        return seconds

    async def succeeded(self, client_ip: str, username: str) -> None:
        subject = self.subject(client_ip, username)
        await self.limiter.store.forget(self._key("fail", subject), self._key("lock", subject))

    @asynccontextmanager
    async def attempt(self, client_ip: str, username: str) -> AsyncIterator[Decision]:
        """Admit an attempt at ``username``'s password (a login, or the current password a
        password change asks for), then record how the block inside it ended."""
        decision = await self.admit(client_ip, username)
        try:
            yield decision
        except MongarsError as exc:
            if exc.code in WRONG_PASSWORD_CODES:
                await self.failed(client_ip, username)
            raise
        await self.succeeded(client_ip, username)

    def _key(self, kind: str, subject: str) -> str:
        return self.limiter.key(f"login-{kind}", subject)


def build_limiter(settings: Settings, redis: Redis | None, subject_key: bytes) -> RateLimiter:
    """The limiter for one app: shared through Redis when there is one (falling back to this
    process's memory while Redis is down), in memory otherwise."""
    memory = MemoryStore()
    store: RateLimitStore = (
        memory
        if redis is None
        else FallbackStore(RedisStore(redis, redis_key(settings, "ratelimit")), memory)
    )
    return RateLimiter(settings.rate_limit, store, RejectLog(SubjectHasher(subject_key)))
