"""The domain error family.

Services raise these; one handler in ``mongars.api.errors`` turns them into the HTTP envelope
``{"detail", "code", "request_id"}``. Each class carries the HTTP status it maps to and a stable
machine ``code`` so clients (and both SDKs) can branch on it without parsing sentences.
"""

from __future__ import annotations


class MongarsError(Exception):
    """Base of every expected failure. Never surfaces as a 500."""

    status_code: int = 500
    code: str = "internal_error"
    default_detail: str = "The server could not complete the request."
    # The request fails, yet what it wrote must persist (a revocation triggered by a replayed
    # refresh token, say). The unit of work commits instead of rolling back.
    keep_changes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        if code is not None:
            self.code = code
        self.headers = headers or {}
        super().__init__(self.detail)


class InvalidInput(MongarsError):
    """The request is well-formed but asks for something that cannot be done."""

    status_code = 400
    code = "invalid_input"
    default_detail = "The request is invalid."


class AuthenticationFailed(MongarsError):
    """No credentials, or credentials that do not identify an enabled account."""

    status_code = 401
    code = "not_authenticated"
    default_detail = "Authentication is required."

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(MongarsError):
    status_code = 403
    code = "forbidden"
    default_detail = "You are not allowed to do this."


class NotFound(MongarsError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class Conflict(MongarsError):
    status_code = 409
    code = "conflict"
    default_detail = "The request conflicts with the current state."


class PayloadTooLarge(MongarsError):
    status_code = 413
    code = "payload_too_large"
    default_detail = "The request is too large."


class RateLimited(MongarsError):
    status_code = 429
    code = "rate_limited"
    default_detail = "Too many requests."


class ServiceUnavailable(MongarsError):
    """A dependency (database, Redis, model backend) cannot serve right now."""

    status_code = 503
    code = "service_unavailable"
    default_detail = "The service is temporarily unavailable."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after_seconds)} if retry_after_seconds else None
        super().__init__(detail, code=code, headers=headers)
        self.retry_after_seconds = retry_after_seconds


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    default_detail = "The database is unavailable; try again shortly."


class BackendUnavailable(ServiceUnavailable):
    """The model backend is down, refusing, or its circuit breaker is open."""

    code = "backend_unavailable"
    default_detail = "The model backend is unavailable; try again shortly."


class BackendTimeout(MongarsError):
    status_code = 504
    code = "backend_timeout"
    default_detail = "The model backend did not answer in time."


class BackendError(MongarsError):
    """The backend answered, but with something we cannot use (a bad gateway)."""

    status_code = 502
    code = "backend_error"
    default_detail = "The model backend returned an invalid response."


class ContextLengthExceeded(PayloadTooLarge):
    """The conversation does not fit the model's context window, even after trimming."""

    code = "context_length_exceeded"
    default_detail = "The message is too long for the model's context window."


class ModelChoiceRefused(MongarsError):
    """A role cannot be switched to the requested backend and model (reason in ``detail``)."""

    status_code = 422
    code = "model_unavailable"
    default_detail = "The requested model cannot serve this role."
