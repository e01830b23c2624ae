"""Server-Sent Events, and the bookkeeping that lets a streamed answer resume by itself.

Every event's id is ``<stream_id>:<seq>`` with a gap-free ``seq``. When the connection drops
before ``done`` or ``error``, the client asks ``GET /api/v1/streams/{id}?after=<last seq>``
and carries on: the caller sees every event exactly once, in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from mongars_sdk._exceptions import APIConnectionError, StreamError
from mongars_sdk._models import StreamEvent, TurnResult

TERMINAL = frozenset({"done", "error"})
# Transport failures that mean "the stream was cut", as opposed to a refusal.
DROPPED = (httpx.TransportError,)


class SSEDecoder:
    """The event-stream parsing rules of the HTML standard, one line at a time."""

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}

    def feed(self, line: str) -> StreamEvent | None:
        if line == "":
            fields, self._fields = self._fields, {}
            if "data" not in fields:
                return None
            event_id = fields.get("id", [""])[-1]
            stream_id, _, seq = event_id.rpartition(":")
            return StreamEvent(
                stream_id=stream_id,
                seq=int(seq) if seq.isdigit() else 0,
                type=fields.get("event", ["message"])[-1],
                data=json.loads("\n".join(fields["data"])),
            )
        if line.startswith(":"):  # a comment: the server's keep-alive
            return None
        name, _, value = line.partition(":")
        self._fields.setdefault(name, []).append(value.removeprefix(" "))
        return None


@dataclass
class StreamProgress:
    """Where a stream stands: its id, the last event seen, whether it ended, its text."""

    max_resumes: int
    stream_id: str | None = None
    last_seq: int = 0
    resumes: int = 0
    finished: bool = False
    result: TurnResult | None = None
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def opened(self, response: httpx.Response) -> None:
        self.stream_id = self.stream_id or response.headers.get("x-stream-id")

    def accept(self, event: StreamEvent) -> bool:
        """Record ``event``; False for one already seen (never handed out twice)."""
        if self.stream_id is None:
            self.stream_id = event.stream_id
        if event.seq and event.seq <= self.last_seq:
            return False
        self.last_seq = event.seq or self.last_seq
        if event.type == "delta":
            self.text_parts.append(event.text)
        elif event.type == "done":
            self.finished = True
            self.result = event.result() if "message" in event.data else None
        elif event.type == "error":
            self.finished = True
            raise StreamError(
                str(event.data.get("code", "stream_error")),
                str(event.data.get("detail", "")),
                stream_id=self.stream_id,
            )
        return True

    def dropped(self, cause: Exception | None) -> None:
        """The connection ended early: allow another resume, or give up."""
        if self.stream_id is None:
            raise APIConnectionError(f"the stream could not be started: {cause}") from cause
        self.resumes += 1
        if self.resumes > self.max_resumes:
            raise APIConnectionError(
                f"stream {self.stream_id} dropped {self.resumes} times; giving up"
            ) from cause
