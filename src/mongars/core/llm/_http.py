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

The client is an ``aiohttp.ClientSession``: it costs a fraction of the CPU that httpx's async
pool spends per request (DESIGN section 5). It is configured as the ``httpx.AsyncClient`` it
replaced was: connect and pool-wait timeouts, a read timeout per socket read, 100 connections
kept alive for 5 s, no redirects followed, the proxy and CA bundle httpx would have taken from
the environment, and the same JSON bytes on the wire.
"""

from __future__ import annotations

import codecs
import json
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

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


# httpx's defaults, kept: its pool held at most 100 connections and dropped idle ones after 5 s
# (aiohttp keeps them 15 s, past the 5 s after which llama.cpp's and uvicorn's servers close them,
# so a reused connection would often be found dead).
_POOL_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 5.0
_JSON_HEADERS = {"Content-Type": "application/json"}


def _retry_after(response: aiohttp.ClientResponse) -> int | None:
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


def encode_json(body: Any) -> bytes:
    """``body`` as httpx's ``json=`` sent it: compact, UTF-8, no NaN."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def iter_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines, decoded, without their ends: ``\\n``, ``\\r\\n`` or a lone ``\\r``, as
    httpx's ``aiter_lines`` split them (aiohttp's reader splits at ``\\n`` only, ends included).

    A line longer than twice aiohttp's read buffer (512 KiB) raises ``LineTooLong``, which
    ``HttpCore.reading()`` maps; httpx had no limit.
    """
    encoding = response.charset or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"  # httpx's fallback for a charset Python does not know
    async for raw in response.content:
        line = raw.decode(encoding, errors="replace").removesuffix("\n").removesuffix("\r")
        if "\r" in line:
            for part in line.split("\r"):
                yield part
        else:
            yield line


def _timeouts(connect_seconds: float, read_seconds: float) -> aiohttp.ClientTimeout:
    # connect: waiting for a pooled connection and opening one (httpx's pool and connect
    # timeouts); sock_read: the longest silence while waiting for or reading an answer.
    # aiohttp has no write timeout (httpx's was the read one).
    return aiohttp.ClientTimeout(
        total=None, connect=connect_seconds, sock_connect=connect_seconds, sock_read=read_seconds
    )


def _env_proxy(base_url: str) -> str | None:
    """The proxy httpx would have used for ``base_url``, from ``HTTP(S)_PROXY``, ``ALL_PROXY``
    and ``NO_PROXY``, read once as httpx read them when its client was built. (aiohttp's
    ``trust_env`` reads them, and ``~/.netrc``, in a worker thread on every request.)"""
    url = URL(base_url)
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """A health check's answer, read whole."""

    status: int
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class HttpCore:
    """An owned ``aiohttp.ClientSession`` plus the breaker, retry policy and error mapping."""

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
    ) -> None:
        self.label = label
        self.breaker = breaker
        self.retry = retry
        self._secrets = [secret for secret in secrets if secret]
        # Paths are appended to the base as httpx did ("http://h/prefix" + "/v1/x"); aiohttp's
        # own base_url would resolve "/v1/x" against the host and drop the prefix.
        self._base_url = base_url.rstrip("/")
        self._urls: dict[str, URL] = {}
        self._headers = headers
        self._timeout = _timeouts(connect_timeout_seconds, read_timeout_seconds)
        self._proxy = _env_proxy(self._base_url)
        # The CA bundle httpx verified with (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), rather
        # than the system store aiohttp would use, which a slim image may not have.
        self._ssl: ssl.SSLContext | bool = (
            httpx.create_ssl_context() if self._base_url.startswith("https:") else True
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use: aiohttp binds it to the running event loop,
        and backends are built before the app's loop runs."""
        session = self._session
        if session is None:
            if self._closed:
                raise RuntimeError(f"The {self.label}'s client has been closed.")
            session = self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                # One client serves every user: a cookie a backend set during one turn must
                # not ride along on the next (and matching cookies costs every request).
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(
                    limit=_POOL_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=self._ssl
                ),
            )
        return session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path)
        return url

    async def probe(self, path: str, *, timeout_seconds: float) -> ProbeAnswer | str:
        """GET for health checks: bypasses breaker and retries; returns the error text instead."""
        try:
            async with self.session.get(
                self.url(path),
                timeout=_timeouts(timeout_seconds, timeout_seconds),
                allow_redirects=False,
                proxy=self._proxy,
            ) as response:
                return ProbeAnswer(status=response.status, body=await response.read())
        except TimeoutError:
            return f"the {self.label} did not answer within {timeout_seconds:g} s"
        except aiohttp.ClientError as exc:
            return f"the {self.label} cannot be reached ({type(exc).__name__})"

    def excerpt(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"

    async def open(self, method: str, path: str, *, body: Any = None) -> aiohttp.ClientResponse:
        """Send a request and return the open 2xx response; the caller must ``release()`` it."""
        url = self.url(path)
        data = None if body is None else encode_json(body)
        return await call_with_retries(lambda: self._attempt(method, url, data), self.retry)

    async def request_json(self, method: str, path: str, *, body: Any = None) -> Any:
        response = await self.open(method, path, body=body)
        try:
            async with self.reading():
                raw = await response.read()
        finally:
            response.release()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BackendError(
                f"The {self.label} sent a response that is not JSON "
                f"(HTTP {response.status}): {self.excerpt(raw.decode(errors='replace'))}"
            ) from exc

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Map failures while reading a body that has started; these are never retried."""
        try:
            yield
        except aiohttp.ServerTimeoutError as exc:
            self.breaker.record_failure()
            raise BackendTimeout(
                f"The {self.label} stopped sending before the answer was complete."
            ) from exc
        except aiohttp.ClientError as exc:
            # The connection closed or reset, or a chunked body cut short or malformed.
            self.breaker.record_failure()
            raise BackendUnavailable(
                f"The connection to the {self.label} broke mid-answer ({type(exc).__name__})."
            ) from exc
        except LineTooLong as exc:
            raise BackendError(
                f"The {self.label} sent a line longer than {exc.args[1]} bytes."
            ) from exc

    async def _attempt(self, method: str, url: URL, data: bytes | None) -> aiohttp.ClientResponse:
        is_trial = self.breaker.before_call()
        try:
            response = await self.session.request(
                method,
                url,
                data=data,
                headers=_JSON_HEADERS if data is not None else None,
                allow_redirects=False,
                proxy=self._proxy,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            # No connection within the connect timeout: nothing was sent (httpx's ConnectTimeout).
            self.breaker.record_failure()
            raise RetryableBackendError(
                f"The {self.label} cannot be reached ({type(exc).__name__})."
            ) from exc
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise BackendTimeout(f"The {self.label} did not answer in time.") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError) as exc:
            # Nothing reached the model: refused, unreachable, or dropped (or garbled, which
            # aiohttp reports as a ClientResponseError) before any answer.
            self.breaker.record_failure()
            raise RetryableBackendError(
                f"The {self.label} cannot be reached ({type(exc).__name__})."
            ) from exc
        except aiohttp.ClientError as exc:
            self.breaker.record_failure()
            raise BackendUnavailable(
                f"The {self.label} connection failed ({type(exc).__name__})."
            ) from exc
        except BaseException:
            if is_trial:
                self.breaker.release()
            raise
        status = response.status
        if status == 503:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()  # any other answer proves the backend is up
        if 200 <= status < 300:
            return response
        try:
            async with self.reading():
                text = (await response.read()).decode(errors="replace")
        finally:
            response.release()
        raise self._status_error(response, text)

    def _status_error(self, response: aiohttp.ClientResponse, text: str) -> MongarsError:
        status = response.status
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
            status = result.status
            detail = f"GET {path} answered HTTP {status}"
            return BackendHealth(reachable=status < 500, model_present=None, detail=detail)
        try:
            listed = list(names(json.loads(result.body)))
        except (ValueError, KeyError, TypeError):
            detail = f"GET {path} sent an unexpected body"
            return BackendHealth(reachable=True, model_present=None, detail=detail)
        present = any(matches(name) for name in listed)
        return BackendHealth(reachable=True, model_present=present, detail=describe(present))
