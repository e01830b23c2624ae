"""Short-lived, single-use WebSocket tickets.

Browsers cannot put an ``Authorization`` header on a WebSocket upgrade, and a long-lived token
in a URL ends up in logs. So a client trades its credential for a ticket (a JWT signed with a
key of its own, valid ``ws_ticket_ttl_seconds``, no leeway) and connects with ``?t=TICKET``.

Single use: redeeming a ticket claims its ``jti`` in a replay store (in memory, or ``SET NX``
in Redis so every replica agrees) for as long as the ticket could still be valid. The ticket
names the user and the login or API key it came from; redeeming it re-checks them
(``Authenticator.recheck``), so a ticket dies with a logout, a password change, a deleted key
or a disabled account like any other credential.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import jwt
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.authentication import Authenticator, CredentialsRevoked, Grant, Principal
from mongars.core.errors import AuthenticationFailed

ALGORITHM = "HS256"
AUDIENCE = "mongars-ws"


class TicketRefused(AuthenticationFailed):
    """Why a ticket cannot be redeemed; ``code`` says which (the WebSocket close reason)."""


class ReplayStore(Protocol):
    async def claim(self, ticket_id: str, ttl_seconds: int) -> bool:
        """True the first time ``ticket_id`` is claimed within ``ttl_seconds``."""
        ...


class MemoryReplayStore:
    def __init__(self) -> None:
        self._claimed: dict[str, float] = {}
        # Claims in the order they expire (one TTL for all), so forgetting expired ones is a
        # pop from the left, not a rebuild of the whole table on every claim.
        self._expiry: deque[tuple[float, str]] = deque()

    async def claim(self, ticket_id: str, ttl_seconds: int) -> bool:
        now = time.monotonic()
        while self._expiry and self._expiry[0][0] <= now:
            self._claimed.pop(self._expiry.popleft()[1], None)
        if ticket_id in self._claimed:
            return False
        self._claimed[ticket_id] = now + ttl_seconds
        self._expiry.append((now + ttl_seconds, ticket_id))
        return True


class RedisReplayStore:
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    async def claim(self, ticket_id: str, ttl_seconds: int) -> bool:
        claimed = await self._redis.set(
            f"{self._prefix}:{ticket_id}", b"1", nx=True, ex=ttl_seconds
        )
        return bool(claimed)


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    ticket: str
    ttl: int


class TicketService:
    def __init__(
        self, key: bytes, ttl_seconds: int, replay: ReplayStore, authenticator: Authenticator
    ) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._replay = replay
        self._authenticator = authenticator

    def issue(self, principal: Principal) -> IssuedTicket:
        now = datetime.now(UTC)
        claims = {
            "sub": str(principal.user.id),
            "sid": str(principal.session_id) if principal.session_id else None,
            "kid": str(principal.api_key_id) if principal.api_key_id else None,
            "ver": principal.user.token_version,
            "aud": AUDIENCE,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
        }
        return IssuedTicket(jwt.encode(claims, self._key, algorithm=ALGORITHM), self.ttl_seconds)

    async def redeem(self, db: AsyncSession, ticket: str | None) -> Principal:
        if not ticket:
            raise TicketRefused("A ticket is required (?t=...).", code="ticket_missing")
        try:
            # PyJWT compares signatures with hmac.compare_digest; leeway stays at 0.
            claims = jwt.decode(
                ticket,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["sub", "ver", "jti", "exp", "iat", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TicketRefused("The ticket has expired.", code="ticket_expired") from None
        except jwt.InvalidTokenError:
            raise TicketRefused("The ticket is invalid.", code="ticket_invalid") from None
        if not await self._replay.claim(claims["jti"], self.ttl_seconds + 1):
            raise TicketRefused("The ticket has already been used.", code="ticket_used")
        return await self._principal(db, claims)

    async def _principal(self, db: AsyncSession, claims: dict[str, object]) -> Principal:
        try:
            grant = Grant(
                user_id=uuid.UUID(str(claims["sub"])),
                token_version=int(str(claims["ver"])),
                session_id=_optional_id(claims.get("sid")),
                api_key_id=_optional_id(claims.get("kid")),
            )
        except ValueError:
            raise TicketRefused("The ticket is invalid.", code="ticket_invalid") from None
        try:
            return await self._authenticator.recheck(db, grant)
        except CredentialsRevoked:
            raise TicketRefused("The ticket is no longer valid.", code="ticket_revoked") from None


def _optional_id(claim: object) -> uuid.UUID | None:
    return uuid.UUID(str(claim)) if claim else None
