"""Every Prometheus metric of monGARS, on one registry per app.

The registry (``Metrics.registry``, the app's ``PROMETHEUS_REGISTRY``) is created in the
lifespan, so tests can build many apps without their series colliding; ``GET /metrics`` exposes
it. Labels are bounded by construction: route *templates* (every unmatched path shares the label
value ``unmatched``), a fixed set of methods, status codes, backend kinds and the configured
model names, turn outcomes, route classes and reject reasons. Never a raw path, a user or a key.

Counts that already exist elsewhere are read at scrape time rather than counted twice: open
WebSockets and their sent/dropped frames (``ConnectionRegistry``), refusals (``RejectLog``, the
one place rejects are recorded) and circuit-breaker states (each backend's ``breaker``).

For RAG: time a search with ``with metrics.time_rag_search(): ...`` (or observe
``metrics.rag_search_seconds`` directly); ``observability.tracing.span("rag.search")`` adds the
matching trace span.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mongars import __version__

if TYPE_CHECKING:
    from mongars.core.chat.service import TurnFinished
    from mongars.core.model_roles import ModelRoles
    from mongars.core.ratelimit.rejects import RejectLog
    from mongars.core.ws_connections import ConnectionRegistry

UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TURN_OUTCOMES = ("complete", "incomplete", "error")
CIRCUIT_STATES = ("closed", "open", "half_open")

# Seconds. Chat answers and backend calls run far longer than ordinary requests.
_LONG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class Metrics:
    def __init__(self) -> None:
        # No "<name>_created" twin of every series: it doubles the series for nothing we use.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.build_info = Info(
            "mongars_build", "Version of this monGARS process.", registry=registry
        )
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.http_requests = Counter(
            "mongars_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "mongars_http_request_duration_seconds",
            "Time to answer an HTTP request (streams: until their last byte).",
            ["route", "method", "status"],
            buckets=_FAST_BUCKETS + _LONG_BUCKETS[6:],
            registry=registry,
        )
        self.chat_turns = Counter(
            "mongars_chat_turns",
            "Chat turns finished, by backend and outcome (complete, incomplete, error).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "mongars_chat_time_to_first_token_seconds",
            "From the turn's arrival to its first generated token.",
            ["backend", "model"],
            buckets=_FAST_BUCKETS[2:] + _LONG_BUCKETS[6:],
            registry=registry,
        )
        self.tokens = Counter(
            "mongars_chat_tokens",
            "Tokens of finished turns: in (prompt) and out (completion).",
            ["backend", "model", "direction"],
            registry=registry,
        )
        self.backend_duration = Histogram(
            "mongars_backend_request_duration_seconds",
            "One model-backend generation, from the call to its last token or failure.",
            ["backend", "model"],
            buckets=_LONG_BUCKETS,
            registry=registry,
        )
        self.backend_errors = Counter(
            "mongars_backend_errors",
            "Failed model-backend generations, by error code.",
            ["backend", "model", "code"],
            registry=registry,
        )
        self.stream_resumes = Counter(
            "mongars_stream_resumes",
            "Streams resumed by a client, by transport (sse, ws).",
            ["transport"],
            registry=registry,
        )
        self.rag_search_seconds = Histogram(
            "mongars_rag_search_duration_seconds",
            "One RAG retrieval (embedding the query and searching the chunks).",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        for transport in ("sse", "ws"):
            self.stream_resumes.labels(transport)
        self._live = _LiveCollector()
        registry.register(self._live)

    # -- wiring (open_resources) ----------------------------------------------------------------

    def watch(
        self,
        *,
        roles: ModelRoles | None = None,
        connections: ConnectionRegistry | None = None,
        rejects: RejectLog | None = None,
    ) -> None:
        """Read these objects' own state at every scrape."""
        if roles is not None:
            # Every outcome's series exists from the start, so rate() sees the first error.
            for backend in roles.backends():
                for outcome in TURN_OUTCOMES:
                    self.chat_turns.labels(backend.name, outcome)
        if roles is not None:
            self._live.roles = roles
        if connections is not None:
            self._live.connections = connections
        if rejects is not None:
            self._live.rejects = rejects

    # -- recording --------------------------------------------------------------------------

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method_label(method), str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)

    async def record_turn(self, finished: TurnFinished) -> None:
        """A ``ChatService`` listener: one finished turn's outcome, tokens and timings."""
        backend = finished.backend or "unknown"
        model = finished.model or "unknown"
        self.chat_turns.labels(backend, finished.status).inc()
        if finished.prompt_tokens:
            self.tokens.labels(backend, model, "in").inc(finished.prompt_tokens)
        if finished.completion_tokens:
            self.tokens.labels(backend, model, "out").inc(finished.completion_tokens)
        if finished.first_token_seconds is not None:
            self.time_to_first_token.labels(backend, model).observe(finished.first_token_seconds)
        if finished.backend_seconds is not None:
            self.backend_duration.labels(backend, model).observe(finished.backend_seconds)
        if finished.error_code is not None:
            self.backend_errors.labels(backend, model, finished.error_code).inc()

    @contextmanager
    def time_rag_search(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.rag_search_seconds.observe(time.perf_counter() - started)


class _LiveCollector(Collector):
    """Series computed from live objects when Prometheus scrapes."""

    def __init__(self) -> None:
        self.roles: ModelRoles | None = None
        self.connections: ConnectionRegistry | None = None
        self.rejects: RejectLog | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: no fixed description

    def collect(self) -> Iterable[Metric]:
        yield from self._circuits()
        yield from self._sockets()
        yield from self._rejects()

    def _circuits(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mongars_backend_circuit_state",
            "1 for the circuit breaker's current state (closed, open, half_open), else 0.",
            labels=["backend", "model", "state"],
        )
        if self.roles is not None:
            for backend in self.roles.backends():
                breaker = getattr(backend, "breaker", None)
                # Backends without a breaker (embedded, fake) are always reachable: closed.
                current = str(breaker.state) if breaker is not None else "closed"
                for state in CIRCUIT_STATES:
                    family.add_metric(
                        [backend.name, backend.model, state], 1.0 if state == current else 0.0
                    )
        yield family

    def _sockets(self) -> Iterator[Metric]:
        connections = self.connections
        open_sockets = GaugeMetricFamily(
            "mongars_ws_connections", "WebSocket connections open on this replica."
        )
        events = CounterMetricFamily(
            "mongars_ws_events",
            "Frames offered to WebSockets: sent (queued) or dropped (queue full, closed 1013).",
            labels=["outcome"],
        )
        if connections is not None:
            sent, dropped = connections.frame_totals()
            open_sockets.add_metric([], len(connections))
            events.add_metric(["sent"], sent)
            events.add_metric(["dropped"], dropped)
        yield open_sockets
        yield events

    def _rejects(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "mongars_rejects",
            "Requests refused by a rate limit, login lockout or daily quota.",
            labels=["route_class", "reason"],
        )
        if self.rejects is not None:
            for (route_class, reason), count in sorted(self.rejects.counts.items()):
                family.add_metric([route_class, reason], count)
        yield family
