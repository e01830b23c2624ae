"""Opaque secrets handed to clients (refresh tokens, API keys) and their stored digests.

Only an HMAC-SHA256 of each secret is stored, keyed with a server-side key: a stolen database
dump yields neither usable secrets nor anything to brute-force offline. Lookups go by digest
(an index hit), then the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "mg_"
API_KEY_DISPLAY_LENGTH = 11  # "mg_" + 8 characters: enough to tell keys apart, useless to guess


class OpaqueTokenDigester:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def matches(self, token: str, stored_digest: str) -> bool:
        return hmac.compare_digest(self.digest(token), stored_digest)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def is_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)
