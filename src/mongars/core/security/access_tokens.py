"""JWT access tokens (PyJWT, HS256).

Claims: ``sub`` (user id), ``sid`` (login session), ``ver`` (the user's token version), ``jti``,
``iat``, ``exp``. The token alone is never trusted: every request re-reads the account and the
session, so a password change (version bump), a disabled account or a logout (revoked session)
makes earlier tokens fail at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from mongars.core.errors import AuthenticationFailed

ALGORITHM = "HS256"
TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    token_version: int


class AccessTokenCodec:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

    def issue(self, *, user_id: uuid.UUID, session_id: uuid.UUID, token_version: int) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "ver": token_version,
            "typ": TOKEN_TYPE,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str) -> AccessClaims:
        try:
            # An explicit algorithm list: "alg: none" and algorithm confusion are refused here.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "sid", "ver", "jti", "iat", "exp", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(
                "The access token has expired.", code="token_expired"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthenticationFailed(
                "The access token is invalid.", code="invalid_token"
            ) from None
        try:
            if claims["typ"] != TOKEN_TYPE or not isinstance(claims["ver"], int):
                raise ValueError
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                token_version=claims["ver"],
            )
        except (ValueError, TypeError):
            raise AuthenticationFailed(
                "The access token is invalid.", code="invalid_token"
            ) from None
