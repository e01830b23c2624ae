"""HTTP plumbing shared by the Ollama and OpenAI-compatible adapters.

One place decides how a remote backend's failures become domain errors, feeds the circuit
breaker and retries, so both adapters behave the same:

- connection refused / dropped before any response, HTTP 503 -> ``BackendUnavailable``, retried
  with backoff, counted by the breaker;
- timeouts -> ``BackendTimeout``, counted by the breaker, not retried (the backend may still be
  generating, and a second request would only add load);
- any other answer proves the backend is alive (breaker success); non-2xx becomes
  ``BackendError`` (or ``ContextLengthExceeded`` / a non-retried ``BackendUnavailable`` for 429),
  with the status and a short excerpt of the body, scrubbed of the API key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from mongars.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    MongarsError,
)
from mongars.core.llm.base import BackendHealth, estimate_tokens
from mongars.core.llm.resilience import (
    CircuitBreaker,
    RetryableBackendError,
    RetryPolicy,
    call_with_retries,
)

_EXCERPT_CHARS = 200
_CONTEXT_OVERFLOW_MARKERS = (
    "exceed_context_size",
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "exceeds the available context",
)


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: rare from model servers, not worth parsing
    return max(1, int(seconds + 0.999)) if seconds > 0 else None


def error_message(body: str) -> str:
    """The human part of an error body: OpenAI's ``error.message``, Ollama's ``error``, or text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return body.strip()


def is_context_overflow(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _CONTEXT_OVERFLOW_MARKERS)


class HttpCore:
    """An owned ``httpx.AsyncClient`` plus the breaker, retry policy and error mapping."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        headers: dict[str, str],
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        secrets: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.label = label
        self.breaker = breaker
        self.retry = retry
        self._secrets = [secret for secret in secrets if secret]
        timeout = httpx.Timeout(
            connect=connect_timeout_seconds,
            read=read_timeout_seconds,
            write=read_timeout_seconds,
            pool=connect_timeout_seconds,
        )
        self.client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def probe(self, path: str, *, timeout_seconds: float) -> httpx.Response | str:
        """GET for health checks: bypasses breaker and retries; returns the error text instead."""
        try:
            return await self.client.get(path, timeout=timeout_seconds)
        except httpx.TimeoutException:
            return f"the {self.label} did not answer within {timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return f"the {self.label} cannot be reached ({type(exc).__name__})"

    def excerpt(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"

    async def open(self, method: str, path: str, *, body: Any = None) -> httpx.Response:
        """Send a request and return the open 2xx response; the caller must close it."""
        request = self.client.build_request(method, path, json=body)
        return await call_with_retries(lambda: self._attempt(request), self.retry)

    async def request_json(self, method: str, path: str, *, body: Any = None) -> Any:
        response = await self.open(method, path, body=body)
        try:
            async with self.reading():
                raw = await response.aread()
        finally:
            await response.aclose()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BackendError(
                f"The {self.label} sent a response that is not JSON "
                f"(HTTP {response.status_code}): {self.excerpt(raw.decode(errors='replace'))}"
            ) from exc

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Map failures while reading a body that has started; these are never retried."""
        try:
            yield
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise BackendTimeout(
                f"The {self.label} stopped sending before the answer was complete."
            ) from exc
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise BackendUnavailable(
                f"The connection to the {self.label} broke mid-answer ({type(exc).__name__})."
            ) from exc

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        is_trial = self.breaker.before_call()
        try:
            response = await self.client.send(request, stream=True)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
        ) as exc:
            # Nothing reached the model: refused, unreachable, or dropped before any answer.
            self.breaker.record_failure()
            raise RetryableBackendError(
                f"The {self.label} cannot be reached ({type(exc).__name__})."
            ) from exc
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise BackendTimeout(f"The {self.label} did not answer in time.") from exc
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise BackendUnavailable(
                f"The {self.label} connection failed ({type(exc).__name__})."
            ) from exc
        except BaseException:
            if is_trial:
                self.breaker.release()
            raise
        if response.status_code == 503:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()  # any other answer proves the backend is up
        if response.is_success:
            return response
        try:
            async with self.reading():
                text = (await response.aread()).decode(errors="replace")
        finally:
            await response.aclose()
        raise self._status_error(response, text)

    def _status_error(self, response: httpx.Response, text: str) -> MongarsError:
        status = response.status_code
        message = self.excerpt(error_message(text))
        detail = f"The {self.label} answered HTTP {status}: {message}"
        if status == 503:
            return RetryableBackendError(detail, retry_after_seconds=_retry_after(response))
        if status == 429:
            return BackendUnavailable(detail, retry_after_seconds=_retry_after(response))
        if status in (400, 413) and is_context_overflow(message):
            return ContextLengthExceeded(detail)
        return BackendError(detail)


class RemoteBackend:
    """What every HTTP backend shares: its model name, window, breaker, token estimate and
    client lifetime. Subclasses set ``_model``, ``_context_window`` and ``_http``."""

    _model: str
    _context_window: int
    _http: HttpCore
    _health_timeout_seconds: float

    @property
    def model(self) -> str:
        return self._model

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def breaker(self) -> CircuitBreaker:
        return self._http.breaker

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    @property
    def counting_blocks(self) -> bool:
        return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _health_from_listing(
        self,
        path: str,
        *,
        names: Callable[[Any], Iterable[str]],
        matches: Callable[[str], bool],
        describe: Callable[[bool], str],
    ) -> BackendHealth:
        """Health from the server's model listing at ``path``: reachable, and the model in it."""
        result = await self._http.probe(path, timeout_seconds=self._health_timeout_seconds)
        if isinstance(result, str):
            return BackendHealth(reachable=False, model_present=None, detail=result)
        if not result.is_success:
            status = result.status_code
            detail = f"GET {path} answered HTTP {status}"
            return BackendHealth(reachable=status < 500, model_present=None, detail=detail)
        try:
            listed = list(names(result.json()))
        except (ValueError, KeyError, TypeError):
            detail = f"GET {path} sent an unexpected body"
            return BackendHealth(reachable=True, model_present=None, detail=detail)
        present = any(matches(name) for name in listed)
        return BackendHealth(reachable=True, model_present=present, detail=describe(present))
