"""Generations that outlive their connection, and the event log that lets clients resume.

Each generation is a *stream*: an id, an owner, and events numbered 1, 2, 3, ... with no gap.
The generation runs as a task of the app's task group, not of the request, so a client that
disconnects loses nothing: the answer is still generated and stored, and any client of the
owner can read the events again from any sequence number (``events(after=N)``) while the
stream is retained.

Memory is bounded twice: each stream keeps at most ``buffer_events`` events (older ones are
evicted, and resuming before them raises ``StreamGap``), and finished streams are dropped
``retention_seconds`` after they end.

With several replicas, the generation runs where the turn arrived, its events are mirrored to
Redis (``stream_mirror``), and ``StreamHub.get`` on any other replica returns a reader over the
mirror: a client whose connection dropped can resume on whichever replica it reaches next.
Cancelling reaches the generating replica through the event bus.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup

from mongars.core.errors import MongarsError, NotFound
from mongars.core.events import EventBus

if TYPE_CHECKING:
    from mongars.core.stream_mirror import RedisStreamMirror

logger = logging.getLogger(__name__)

EventType = Literal["start", "delta", "done", "error"]


TERMINAL_EVENTS = frozenset({"done", "error"})


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    type: EventType
    data: dict[str, Any]


class StreamReader(Protocol):
    """What resuming needs, whether the stream is generated here or on another replica."""

    id: str
    owner_id: uuid.UUID
    # None for a turn that is not stored (nothing to cancel by conversation).
    conversation_id: uuid.UUID | None

    async def ensure_resumable(self, after: int) -> None: ...

    def events(
        self, *, after: int = 0, keepalive_seconds: float | None = None
    ) -> AsyncIterator[StreamEvent | None]: ...


class StreamGap(MongarsError):
    status_code = 410
    code = "stream_events_expired"
    default_detail = (
        "The events after this point are no longer buffered; the stored answer is in the "
        "conversation."
    )


@dataclass(eq=False)
class Stream:
    id: str
    owner_id: uuid.UUID
    conversation_id: uuid.UUID | None
    buffer_events: int
    _events: deque[StreamEvent] = field(init=False)
    _next_seq: int = 1
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _finished: anyio.Event = field(default_factory=anyio.Event)
    finished_at: float | None = None
    cancel_scope: anyio.CancelScope | None = None
    # Set by the generation when it ends: the result object or the domain error, for callers
    # that wait for the whole answer rather than reading events.
    outcome: object = None
    # False when nobody will read the events (a whole-answer turn waits for the outcome only):
    # they are numbered, never kept, and the generation may skip building them.
    keeps_events: bool = True

    def __post_init__(self) -> None:
        self._events = deque(maxlen=self.buffer_events)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def publish(self, type_: EventType, data: dict[str, Any]) -> None:
        if self.finished:
            raise RuntimeError(f"stream {self.id} has finished")
        if not self.keeps_events:
            self._next_seq += 1
            return
        event = StreamEvent(seq=self._next_seq, type=type_, data=data)
        self._next_seq += 1
        self._events.append(event)
        self._wake()

    def fail(self, error: MongarsError, **extra: Any) -> None:
        """Set ``error`` as the outcome and publish it as the ``error`` event (with ``extra``)."""
        self.outcome = error
        self.publish("error", {"code": error.code, "detail": error.detail, **extra})

    def finish(self) -> None:
        if not self.finished:
            self.finished_at = time.monotonic()
            self._finished.set()
            self._wake()

    def cancel(self) -> bool:
        if self.finished or self.cancel_scope is None:
            return False
        self.cancel_scope.cancel()
        return True

    async def wait(self) -> object:
        await self._finished.wait()
        return self.outcome

    async def events(
        self, *, after: int = 0, keepalive_seconds: float | None = None
    ) -> AsyncIterator[StreamEvent | None]:
        """Events with ``seq > after``, live until the stream ends. ``None`` marks an idle
        ``keepalive_seconds`` so the transport can send a heartbeat."""
        cursor = after
        while True:
            # Take the waiter before reading, so an event published in between still wakes us.
            waiter = self._changed
            for event in self._since(cursor):
                cursor = event.seq
                yield event
            if self.finished and (cursor >= self.last_seq or not self.keeps_events):
                return
            if waiter is not self._changed:
                continue
            if keepalive_seconds is None:
                await waiter.wait()
                continue
            with anyio.move_on_after(keepalive_seconds) as idle:
                await waiter.wait()
            if idle.cancelled_caught:
                yield None

    async def ensure_resumable(self, after: int) -> None:
        """Raise ``StreamGap`` now, before a response starts, rather than mid-stream."""
        self._since(after)

    def available(self, after: int) -> list[StreamEvent]:
        """The buffered events after ``after``, without waiting (skipping any evicted)."""
        if self._events and after < self._events[0].seq - 1:
            after = self._events[0].seq - 1
        return self._since(after)

    async def changed(self, timeout_seconds: float) -> None:
        """Wait until something is published or the stream ends, at most ``timeout_seconds``."""
        with anyio.move_on_after(timeout_seconds):
            await self._changed.wait()

    def _since(self, cursor: int) -> list[StreamEvent]:
        if not self._events or cursor >= self.last_seq:
            return []
        first = self._events[0].seq
        if cursor < first - 1:
            raise StreamGap
        return list(self._events)[cursor - first + 1 :]

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class StreamHub:
    def __init__(
        self,
        task_group: TaskGroup,
        *,
        buffer_events: int,
        retention_seconds: float,
        bus: EventBus | None = None,
        mirror: RedisStreamMirror | None = None,
    ) -> None:
        self._task_group = task_group
        self._buffer_events = buffer_events
        self._retention_seconds = retention_seconds
        # Every retained stream; the running ones; finished ones in the order they ended, so
        # expiring them is a pop from the left rather than a scan of thousands.
        self._streams: dict[str, Stream] = {}
        self._running: dict[str, Stream] = {}
        self._ended: deque[tuple[float, str]] = deque()
        self._bus = bus or EventBus()
        self._mirror = mirror
        self.replica_id = uuid.uuid4().hex
        self._bus.on_control(self._on_control)

    def start(
        self,
        *,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID | None,
        run: Callable[[Stream], Awaitable[None]],
        resumable: bool = True,
        read: bool = True,
    ) -> Stream:
        """``resumable=False``: nobody can ask for this stream again (a whole-answer turn never
        tells its id), so it is neither retained after it ends nor mirrored to Redis.
        ``read=False`` (not resumable either): nobody reads its events, only its outcome."""
        self._sweep()
        stream = Stream(
            id=uuid.uuid4().hex,
            owner_id=owner_id,
            conversation_id=conversation_id,
            buffer_events=self._buffer_events,
            keeps_events=read or resumable,
        )
        self._running[stream.id] = stream
        if resumable:
            self._streams[stream.id] = stream
        if resumable and self._mirror is not None:
            self._task_group.start_soon(self._mirror_safely, stream, name=f"mirror {stream.id}")
        self._task_group.start_soon(self._run, stream, run, name=f"generation {stream.id}")
        return stream

    async def _run(self, stream: Stream, run: Callable[[Stream], Awaitable[None]]) -> None:
        # Every generation of the app runs in one task group: an exception escaping one would
        # cancel all the others, and the group would take no new ones. So none escapes.
        try:
            with anyio.CancelScope() as scope:
                stream.cancel_scope = scope
                await run(stream)
        except Exception:
            logger.exception("generation %s failed", stream.id)
            if not stream.finished:
                stream.fail(
                    MongarsError("The answer could not be completed.", code="internal_error")
                )
        finally:
            stream.finish()
            self._running.pop(stream.id, None)
            if stream.id in self._streams:
                self._ended.append((time.monotonic(), stream.id))

    async def _mirror_safely(self, stream: Stream) -> None:
        assert self._mirror is not None
        try:
            await self._mirror.copy(stream)
        except Exception:  # as for a generation: never the task group's end
            logger.exception("mirroring stream %s failed", stream.id)

    async def get(self, stream_id: str, owner_id: uuid.UUID) -> StreamReader:
        stream: StreamReader | None = self._streams.get(stream_id)
        if stream is None and self._mirror is not None:
            stream = await self._mirror.open(stream_id)
        # Another user's stream answers exactly like a missing one.
        if stream is None or stream.owner_id != owner_id:
            raise NotFound("No such stream, or it has expired.", code="stream_not_found")
        return stream

    async def cancel_in(self, conversation_id: uuid.UUID, owner_id: uuid.UUID) -> list[str]:
        """Stop the conversation's generations here, and ask the other replicas to do the same.
        Returns the ids stopped on this replica."""
        stopped = [s.id for s in self.active_in(conversation_id, owner_id) if s.cancel()]
        if self._bus.shared:
            await self._bus.publish_control(
                {
                    "type": "cancel",
                    "conversation_id": str(conversation_id),
                    "owner_id": str(owner_id),
                    "origin": self.replica_id,
                }
            )
        return stopped

    async def _on_control(self, message: dict[str, Any]) -> None:
        if message.get("type") != "cancel" or message.get("origin") == self.replica_id:
            return
        conversation_id = uuid.UUID(message["conversation_id"])
        owner_id = uuid.UUID(message["owner_id"])
        for stream in self.active_in(conversation_id, owner_id):
            stream.cancel()

    def active_in(self, conversation_id: uuid.UUID, owner_id: uuid.UUID) -> list[Stream]:
        return [
            stream
            for stream in self._running.values()
            if stream.conversation_id == conversation_id
            and stream.owner_id == owner_id
            and not stream.finished
        ]

    def __len__(self) -> int:
        return len(self._streams)

    def _sweep(self) -> None:
        horizon = time.monotonic() - self._retention_seconds
        while self._ended and self._ended[0][0] < horizon:
            self._streams.pop(self._ended.popleft()[1], None)
