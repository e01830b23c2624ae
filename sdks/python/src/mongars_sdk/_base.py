"""What the sync and async clients share: credentials, the retry rule and request building.

Each API method is declared once here as a ``Call`` (what to send, how to read the answer);
``Client`` and ``AsyncClient`` only differ in how they send it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import httpx
from pydantic import BaseModel, TypeAdapter

from mongars_sdk._exceptions import APIStatusError, RateLimitError
from mongars_sdk._version import __version__

if TYPE_CHECKING:
    from mongars_sdk._models import TokenResponse

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# The lock each client takes to refresh its tokens once, whatever the number of callers. Two
# names in one module because scripts/sdk_unasync.py turns ``AsyncLock`` into ``Lock`` when it
# writes the sync client: it renames single names, not ``anyio.Lock`` into ``threading.Lock``.
AsyncLock = anyio.Lock
Lock = threading.Lock
# Refresh the access token this long before it expires, so a request never carries a dead one.
REFRESH_MARGIN_SECONDS = 30.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Statuses worth another try: the request was refused before anything happened (429), or the
# gateway or its backend is briefly unavailable (502/503/504, retried when idempotent only:
# a chat turn's question may already be stored).
RETRY_ALWAYS = frozenset({429})
RETRY_IF_IDEMPOTENT = frozenset({502, 503, 504})


@dataclass
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    authenticated: bool = True
    # Status codes that are answers rather than errors (GET /ready's 503 is a report).
    ok_statuses: frozenset[int] = frozenset()

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def model_list(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]
    return lambda response: adapter.validate_json(response.content)


def nothing(_response: httpx.Response) -> None:
    return None


def without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


@dataclass
class RetryPolicy:
    """Bounded retries: at most ``max_retries`` more tries, waiting what ``Retry-After`` asks
    (never more than ``max_wait`` seconds: a longer wait, such as a daily quota's, is raised at
    once) or an exponential backoff with jitter when the server names no wait."""

    max_retries: int = 2
    max_wait: float = 60.0
    backoff: float = 0.5

    def delay(self, attempt: int, error: Exception, *, idempotent: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up and raise ``error``."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, APIStatusError):
            retriable = error.status_code in RETRY_ALWAYS or (
                idempotent and error.status_code in RETRY_IF_IDEMPOTENT
            )
            if not retriable:
                return None
            if isinstance(error, RateLimitError) and error.code == "quota_exceeded":
                return None
            if error.retry_after is not None:
                return error.retry_after if error.retry_after <= self.max_wait else None
        return self.backoff_delay(attempt)

    def backoff_delay(self, attempt: int) -> float:
        base: float = min(self.backoff * 2**attempt, 8.0)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


@dataclass
class Credentials:
    """What the client authenticates with: an API key, or an access token (with the refresh
    token that renews it)."""

    api_key: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = field(default=None)  # time.monotonic() deadline

    def bearer(self) -> str | None:
        return self.api_key or self.access_token

    def store(self, tokens: TokenResponse) -> None:
        self.access_token = tokens.access_token
        self.refresh_token = tokens.refresh_token
        self.expires_at = time.monotonic() + tokens.expires_in

    def clear(self) -> None:
        self.access_token = self.refresh_token = self.expires_at = None

    def refresh_due(self) -> bool:
        if self.api_key or self.refresh_token is None or self.expires_at is None:
            return False
        return time.monotonic() >= self.expires_at - REFRESH_MARGIN_SECONDS

    def can_refresh(self) -> bool:
        return self.api_key is None and self.refresh_token is not None


def default_headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"User-Agent": f"mongars-sdk-python/{__version__}", "Accept": "application/json"}
    headers.update(extra or {})
    return headers


def build_request(
    http: httpx.Client | httpx.AsyncClient, call: Call[Any], credentials: Credentials
) -> httpx.Request:
    headers: dict[str, str] = {}
    bearer = credentials.bearer()
    if call.authenticated and bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return http.build_request(
        call.method,
        call.path,
        params=call.params,
        json=call.json,
        data=call.data,
        files=call.files,
        headers=headers,
    )


def is_expired_token(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    try:
        return bool(response.json().get("code") == "token_expired")
    except (ValueError, AttributeError):
        return False


def websocket_url(base_url: httpx.URL, ticket: str) -> str:
    scheme = "wss" if base_url.scheme == "https" else "ws"
    path = base_url.raw_path.decode().split("?")[0].rstrip("/")
    return str(base_url.copy_with(scheme=scheme, raw_path=f"{path}/ws/chat/".encode())) + (
        f"?t={ticket}"
    )
