"""Server-Sent Events for a generation stream.

Event ids are ``<stream_id>:<seq>``: a browser's ``EventSource`` sends the last one back as
``Last-Event-ID`` when it reconnects, which is all the resume route needs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import EventSourceResponse, format_sse_event

from mongars.core.streams import StreamReader

KEEPALIVE = b": keepalive\n\n"

SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream of `start`, `delta`… then `done` or `error` events; "
        "each `id` is `<stream_id>:<seq>`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


async def stream_response(
    stream: StreamReader, *, after: int, keepalive_seconds: float
) -> EventSourceResponse:
    await stream.ensure_resumable(after)
    return EventSourceResponse(
        _encode(stream, after, keepalive_seconds),
        headers={
            "Cache-Control": "no-cache",
            # Reverse proxies (nginx) buffer responses by default, which would batch the tokens.
            "X-Accel-Buffering": "no",
            "X-Stream-ID": stream.id,
        },
    )


async def _encode(
    stream: StreamReader, after: int, keepalive_seconds: float
) -> AsyncIterator[bytes]:
    async for event in stream.events(after=after, keepalive_seconds=keepalive_seconds):
        if event is None:
            yield KEEPALIVE
            continue
        yield format_sse_event(
            data_str=json.dumps(event.data, separators=(",", ":")),
            event=event.type,
            id=f"{stream.id}:{event.seq}",
        )


def parse_last_event_id(value: str | None, stream_id: str) -> int | None:
    """``<stream_id>:<seq>`` (or a bare ``<seq>``) to ``seq``; None when absent or foreign."""
    if not value:
        return None
    prefix, _, seq = value.rpartition(":")
    if prefix and prefix != stream_id:
        return None
    # isascii: str.isdigit also accepts digits int() refuses ("²" is valid in a header).
    return int(seq) if seq.isascii() and seq.isdigit() else None
