"""OpenTelemetry traces, only when ``MONGARS_OTEL_ENABLED=true``.

Off (the default), nothing of the OpenTelemetry SDK, exporters or instrumentations is imported
and ``span()`` is a no-op context manager: the call sites cost a function call. (FastAPI itself
imports the small ``opentelemetry`` API package; the SDK is what stays out.)

On, ``setup_tracing`` builds a tracer provider exporting over OTLP/HTTP to
``MONGARS_OTEL_ENDPOINT`` and instruments the app (one server span per request), aiohttp's client
(calls to Ollama and OpenAI-compatible backends), httpx (the web UI's calls to a remote API) and,
from the lifespan, the SQLAlchemy engine. The chat service adds ``chat.turn`` and
``chat.backend`` spans; RAG adds ``rag.search`` through ``span()``. Because a generation runs in
the stream hub's task group rather than in the request's task, ``launch`` captures the request's
trace context (``capture()``) and the generation's spans name it as their parent.

The instrumentations patch process-wide objects (httpx's client classes, aiohttp's
``ClientSession``), so the tracer is process state: the last app set up with tracing on owns it
until its ``shutdown_tracing``. aiohttp's is patched at session creation: a backend's session
opens on its first request, after ``setup_tracing``, so backends the app is given are traced too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

    from mongars.config import Settings

logger = logging.getLogger(__name__)

_provider: TracerProvider | None = None
_tracer: Tracer | None = None

AttributeValue = str | int | float | bool


def enabled() -> bool:
    return _tracer is not None


def setup_tracing(
    app: FastAPI, settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Build the tracer provider and instrument ``app``, aiohttp's client and httpx.
    ``exporter`` replaces the OTLP exporter (tests pass an in-memory one)."""
    global _provider, _tracer
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from mongars import __version__

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": __version__,
                "deployment.environment": settings.env,
            }
        )
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otel_endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    # /metrics is scraped every few seconds: a span each time would drown the traces.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="/metrics")
    for instrumentor in (AioHttpClientInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    _provider = provider
    _tracer = provider.get_tracer("mongars")
    logger.info("OpenTelemetry traces go to %s", settings.otel_endpoint)
    return provider


def instrument_engine(engine: AsyncEngine) -> None:
    """SQL statements as spans (no-op when tracing is off)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # skip_dep_check: the instrumentation declares "sqlalchemy < 2.1" but works with 2.1's
    # unchanged event API (tests/observability/test_tracing.py checks the SQL spans).
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
    )


def shutdown_tracing() -> None:
    """Flush the spans still queued and forget the tracer (end of the lifespan)."""
    global _provider, _tracer
    if _provider is None:
        return
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    AioHttpClientInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
        SQLAlchemyInstrumentor().uninstrument()
    _provider.shutdown()
    _provider = _tracer = None


def capture() -> object | None:
    """The current trace context, to parent spans started in another task; None when off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def span(
    name: str,
    *,
    parent: object | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Span:
    """A span named ``name`` around a ``with`` or ``async with`` block.

    ``parent`` is a context from ``capture()``; by default the current span is the parent.
    Exceptions leaving the block are recorded on the span and re-raised. When tracing is off
    the block runs as is and the ``as`` target is ``None``.
    """
    return Span(name, parent, attributes)


class Span:
    __slots__ = ("_attributes", "_manager", "_name", "_parent")

    def __init__(
        self, name: str, parent: object | None, attributes: Mapping[str, AttributeValue] | None
    ) -> None:
        self._name = name
        self._parent = parent
        self._attributes = attributes
        self._manager: AbstractContextManager[Any] | None = None

    def __enter__(self) -> Any:
        if _tracer is None:
            return None
        self._manager = _tracer.start_as_current_span(
            self._name,
            context=self._parent,  # type: ignore[arg-type]
            attributes=dict(self._attributes or {}),
        )
        return self._manager.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._manager is not None:
            manager, self._manager = self._manager, None
            manager.__exit__(exc_type, exc, traceback)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
