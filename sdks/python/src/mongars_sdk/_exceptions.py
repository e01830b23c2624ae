"""The exception tree: one class per HTTP status, each carrying the server's error envelope.

```
MongarsError
├── APIConnectionError          the server could not be reached (or the connection dropped)
│   └── APITimeoutError
├── APIStatusError              the server answered with an error status
│   ├── BadRequestError            400
│   ├── AuthenticationError        401
│   ├── PermissionDeniedError      403
│   ├── NotFoundError              404
│   ├── ConflictError              409
│   ├── GoneError                  410  (a stream no longer kept)
│   ├── PayloadTooLargeError       413
│   ├── UnsupportedMediaTypeError  415
│   ├── ValidationError            422  (``errors``: the field errors)
│   ├── RateLimitError             429  (``retry_after``)
│   ├── InternalServerError        500 and any other 5xx
│   ├── BadGatewayError            502
│   ├── ServiceUnavailableError    503  (``retry_after``)
│   └── GatewayTimeoutError        504
├── StreamError                 a streamed answer ended with an ``error`` event
└── WebSocketError              the WebSocket was refused or closed (``close_code``)
```
"""

from __future__ import annotations

from typing import Any

import httpx


class MongarsError(Exception):
    """Base of every error this SDK raises."""


class APIConnectionError(MongarsError):
    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    pass


class APIStatusError(MongarsError):
    """The server answered with an error status and (normally) its envelope
    ``{"detail", "code", "request_id"}``."""

    status_code: int

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        envelope = body if isinstance(body, dict) else {}
        self.detail: Any = envelope.get("detail", response.text or response.reason_phrase)
        self.code: str = str(envelope.get("code") or "http_error")
        self.request_id: str | None = envelope.get("request_id") or response.headers.get(
            "x-request-id"
        )
        self.retry_after: float | None = parse_retry_after(response.headers.get("retry-after"))
        message = self.detail if isinstance(self.detail, str) else "invalid request"
        super().__init__(
            f"{self.status_code} {self.code}: {message} (request id {self.request_id})"
        )


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class GoneError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class UnsupportedMediaTypeError(APIStatusError):
    pass


class ValidationError(APIStatusError):
    """422: ``errors`` is the server's list of ``{"type", "loc", "msg"}`` field errors."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.detail if isinstance(self.detail, list) else []


class RateLimitError(APIStatusError):
    """429: ``retry_after`` says how many seconds to wait (``quota_exceeded``: until midnight
    UTC)."""


class InternalServerError(APIStatusError):
    pass


class BadGatewayError(InternalServerError):
    pass


class ServiceUnavailableError(InternalServerError):
    """503: the model backend, database or Redis is unavailable; see ``retry_after``."""


class GatewayTimeoutError(InternalServerError):
    pass


class StreamError(MongarsError):
    """A streamed answer ended with an ``error`` event (the answer is stored as ``error`` or
    ``incomplete``)."""

    def __init__(self, code: str, detail: str, *, stream_id: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.stream_id = stream_id


class WebSocketError(MongarsError):
    """The WebSocket was refused or closed. ``close_code`` tells why: 4401 a bad, expired or
    used ticket, 4403 a forbidden origin, 4400 a forbidden host, 4503 the channel is off,
    4408 heartbeat timeout, 1013 the send queue overflowed."""

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(f"WebSocket closed ({close_code}): {reason or 'no reason given'}")
        self.close_code = close_code
        self.reason = reason


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    429: RateLimitError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}


def error_for(response: httpx.Response) -> APIStatusError:
    """The exception for an error response (its body must have been read)."""
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(response)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the server sends delta-seconds; dates are not used here)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0)
