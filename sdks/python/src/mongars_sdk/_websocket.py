"""Sessions on the real-time channel (``/ws/chat/``), synchronous and asyncio.

A session gets a single-use ticket with the client's credentials, connects, answers the
server's pings, and tracks every generation it follows (its ``stream_id`` and the last ``seq``
seen). If the connection drops, it reconnects with a fresh ticket and sends ``resume`` for each
unfinished stream, so ``recv()`` carries on with the next event: nothing lost, nothing twice.
Refusals (close codes 4400, 4401, 4403, 4503) are never retried; they raise ``WebSocketError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Self

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from mongars_sdk._base import websocket_url
from mongars_sdk._exceptions import StreamError, WebSocketError
from mongars_sdk._models import WsFrame

if TYPE_CHECKING:
    from mongars_sdk._async_client import AsyncClient
    from mongars_sdk._client import Client

# Close codes that mean "you may not connect": retrying cannot help.
REFUSALS = frozenset({4400, 4401, 4403, 4503})
STREAM_END = frozenset({"chat.done", "chat.error"})
OPEN_TIMEOUT_SECONDS = 10.0


def _close_of(exc: ConnectionClosed) -> tuple[int | None, str]:
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    return None, "connection lost"


class _Tracker:
    """Which streams the session follows and how far; the frames held back for ``recv``."""

    def __init__(self) -> None:
        self.following: dict[str, int] = {}
        self.backlog: deque[WsFrame] = deque()
        self._ids = itertools.count(1)
        self.connected: WsFrame | None = None
        self.history: list[dict[str, Any]] = []

    def next_id(self) -> str:
        return f"c{next(self._ids)}"

    def accept(self, frame: WsFrame) -> bool:
        """Record ``frame``; False for a stream event already delivered."""
        stream_id, seq = frame.stream_id, frame.seq
        if frame.type == "ack" and stream_id is not None:
            self.following.setdefault(stream_id, int(frame.data.get("after_seq", 0)))
        elif frame.type.startswith("chat.") and stream_id is not None and seq is not None:
            if seq <= self.following.get(stream_id, 0):
                return False
            self.following[stream_id] = seq
            if frame.type in STREAM_END:
                self.following.pop(stream_id, None)
        return True

    def greeted(self, hello: WsFrame, snapshot: WsFrame) -> None:
        self.connected = hello
        self.history = list(snapshot.data.get("turns", []))


def _answer(frame: WsFrame, ref: str, stream_id: str | None) -> str | None:
    """How ``frame`` bears on the turn sent as ``ref``: its stream id from the ack, "end" when
    the turn finished, or None when it is about something else."""
    if frame.type == "ack" and frame.data.get("ref") == ref:
        return str(frame.data["stream_id"])
    if frame.type == "chat.error" and frame.data.get("ref") == ref:
        raise StreamError(str(frame.data.get("code")), str(frame.data.get("detail", "")))
    if stream_id is not None and frame.stream_id == stream_id and frame.type in STREAM_END:
        if frame.type == "chat.error":
            raise StreamError(
                str(frame.data.get("code")), str(frame.data.get("detail", "")), stream_id=stream_id
            )
        return "end"
    return None


def _chat_data(
    message: str, conversation_id: Any, use_rag: bool, collections: list[str] | None
) -> dict[str, Any]:
    data: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        data["conversation_id"] = str(conversation_id)
    if use_rag:
        data["use_rag"] = True
    if collections is not None:
        data["collections"] = collections
    return data


class WebSocketSession:
    """``with client.websocket() as ws: ws.send("Hi"); for frame in ws: ...``"""

    def __init__(self, client: Client, *, auto_resume: bool, max_reconnects: int) -> None:
        self._client = client
        self.auto_resume = auto_resume
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self._ws: SyncConnection | None = None
        # websockets wants its sync connections used as context managers; this holds it.
        self._connection_scope = ExitStack()
        self._closing = False
        self._state = _Tracker()

    @property
    def connected(self) -> WsFrame | None:
        """The ``ws.connected`` frame of the current connection."""
        return self._state.connected

    @property
    def history(self) -> list[dict[str, Any]]:
        """The ``history.snapshot`` turns sent on connecting, newest first."""
        return self._state.history

    @property
    def following(self) -> dict[str, int]:
        """Unfinished streams and the last ``seq`` seen of each."""
        return dict(self._state.following)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        ticket = self._client.create_ws_ticket().ticket
        url = websocket_url(self._client.base_url, ticket)
        try:
            self._ws = self._connection_scope.enter_context(
                sync_connect(url, open_timeout=OPEN_TIMEOUT_SECONDS, compression=None)
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise WebSocketError(None, f"could not connect: {exc}") from exc
        self._state.greeted(self._recv_raw(), self._recv_raw())

    def _recv_raw(self, timeout: float | None = None) -> WsFrame:
        if self._ws is None:
            raise WebSocketError(None, "not connected")
        try:
            raw = self._ws.recv(timeout)
        except ConnectionClosed as exc:
            raise WebSocketError(*_close_of(exc)) from exc
        return WsFrame.model_validate_json(raw)

    def send_frame(self, type_: str, data: dict[str, Any] | None = None) -> str:
        """Send any client frame; its id (echoed as ``ref`` in the ``ack``)."""
        assert self._ws is not None, "not connected"
        frame_id = self._state.next_id()
        message = WsFrame(id=frame_id, type=type_, data=data or {}).model_dump_json()
        try:
            self._ws.send(message)
        except ConnectionClosed as exc:
            raise WebSocketError(*_close_of(exc)) from exc
        return frame_id

    def send(
        self,
        message: str,
        *,
        conversation_id: Any = None,
        use_rag: bool = False,
        collections: list[str] | None = None,
    ) -> str:
        """Start a turn (``chat.send``); the frame id its ``ack`` names as ``ref``."""
        return self.send_frame(
            "chat.send", _chat_data(message, conversation_id, use_rag, collections)
        )

    def cancel(self, *, conversation_id: Any = None, stream_id: str | None = None) -> str:
        data = {"conversation_id": str(conversation_id)} if conversation_id else {}
        if stream_id is not None:
            data["stream_id"] = stream_id
        return self.send_frame("chat.cancel", data)

    def resume(self, stream_id: str, after_seq: int | None = None) -> str:
        """Follow ``stream_id`` from after ``after_seq`` (default: the last event seen)."""
        after = after_seq if after_seq is not None else self._state.following.get(stream_id, 0)
        return self.send_frame("resume", {"stream_id": stream_id, "after_seq": after})

    def recv(self, timeout: float | None = None) -> WsFrame:
        """The next frame (pings are answered, replays already seen skipped); raises
        ``TimeoutError`` after ``timeout`` seconds and ``WebSocketError`` once closed."""
        if self._state.backlog:
            return self._state.backlog.popleft()
        while True:
            try:
                frame = self._recv_raw(timeout)
            except WebSocketError as closed:
                self._recover(closed)
                continue
            if frame.type == "ping":
                self.send_frame("pong")
                continue
            if self._state.accept(frame):
                return frame

    def _recover(self, closed: WebSocketError) -> None:
        if (
            self._closing
            or closed.close_code in REFUSALS
            or not self.auto_resume
            or self.reconnects >= self.max_reconnects
        ):
            raise closed
        self.reconnects += 1
        self._close_quietly()
        self.connect()
        for stream_id, after in list(self._state.following.items()):
            self.send_frame("resume", {"stream_id": stream_id, "after_seq": after})

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> WsFrame:
        try:
            return self.recv()
        except WebSocketError as closed:
            if self._closing or closed.close_code == 1000:
                raise StopIteration from None
            raise

    def chat(self, message: str, *, timeout: float = 120.0, **options: Any) -> WsFrame:
        """Send a turn and wait for its ``chat.done`` frame (``StreamError`` on ``chat.error``).
        Frames about anything else are kept for later ``recv()`` calls."""
        ref = self.send(message, **options)
        stream_id: str | None = None
        held: list[WsFrame] = []
        try:
            while True:
                frame = self.recv(timeout)
                outcome = _answer(frame, ref, stream_id)
                if outcome == "end":
                    return frame
                if outcome is not None:
                    stream_id = outcome
                elif frame.stream_id != stream_id or stream_id is None:
                    held.append(frame)
        finally:
            self._state.backlog.extend(held)

    def _close_quietly(self) -> None:
        if self._ws is not None:
            self._connection_scope.close()
            self._ws = None

    def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(WebSocketError):
                self.send_frame("close")
            self._close_quietly()


class AsyncWebSocketSession:
    """``async with client.websocket() as ws: await ws.send("Hi"); async for frame in ws: ...``"""

    def __init__(self, client: AsyncClient, *, auto_resume: bool, max_reconnects: int) -> None:
        self._client = client
        self.auto_resume = auto_resume
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self._ws: AsyncConnection | None = None
        self._closing = False
        self._state = _Tracker()

    @property
    def connected(self) -> WsFrame | None:
        return self._state.connected

    @property
    def history(self) -> list[dict[str, Any]]:
        return self._state.history

    @property
    def following(self) -> dict[str, int]:
        return dict(self._state.following)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        ticket = (await self._client.create_ws_ticket()).ticket
        url = websocket_url(self._client.base_url, ticket)
        try:
            self._ws = await async_connect(url, open_timeout=OPEN_TIMEOUT_SECONDS, compression=None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise WebSocketError(None, f"could not connect: {exc}") from exc
        self._state.greeted(await self._recv_raw(), await self._recv_raw())

    async def _recv_raw(self, timeout: float | None = None) -> WsFrame:  # noqa: ASYNC109
        if self._ws is None:
            raise WebSocketError(None, "not connected")
        try:
            if timeout is None:
                raw = await self._ws.recv()
            else:
                async with asyncio.timeout(timeout):
                    raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise WebSocketError(*_close_of(exc)) from exc
        return WsFrame.model_validate_json(raw)

    async def send_frame(self, type_: str, data: dict[str, Any] | None = None) -> str:
        assert self._ws is not None, "not connected"
        frame_id = self._state.next_id()
        message = WsFrame(id=frame_id, type=type_, data=data or {}).model_dump_json()
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise WebSocketError(*_close_of(exc)) from exc
        return frame_id

    async def send(
        self,
        message: str,
        *,
        conversation_id: Any = None,
        use_rag: bool = False,
        collections: list[str] | None = None,
    ) -> str:
        return await self.send_frame(
            "chat.send", _chat_data(message, conversation_id, use_rag, collections)
        )

    async def cancel(self, *, conversation_id: Any = None, stream_id: str | None = None) -> str:
        data = {"conversation_id": str(conversation_id)} if conversation_id else {}
        if stream_id is not None:
            data["stream_id"] = stream_id
        return await self.send_frame("chat.cancel", data)

    async def resume(self, stream_id: str, after_seq: int | None = None) -> str:
        after = after_seq if after_seq is not None else self._state.following.get(stream_id, 0)
        return await self.send_frame("resume", {"stream_id": stream_id, "after_seq": after})

    # The timeout parameters mirror the sync session's signatures on purpose (ASYNC109).
    async def recv(self, timeout: float | None = None) -> WsFrame:  # noqa: ASYNC109
        if self._state.backlog:
            return self._state.backlog.popleft()
        while True:
            try:
                frame = await self._recv_raw(timeout)
            except WebSocketError as closed:
                await self._recover(closed)
                continue
            if frame.type == "ping":
                await self.send_frame("pong")
                continue
            if self._state.accept(frame):
                return frame

    async def _recover(self, closed: WebSocketError) -> None:
        if (
            self._closing
            or closed.close_code in REFUSALS
            or not self.auto_resume
            or self.reconnects >= self.max_reconnects
        ):
            raise closed
        self.reconnects += 1
        await self._close_quietly()
        await self.connect()
        for stream_id, after in list(self._state.following.items()):
            await self.send_frame("resume", {"stream_id": stream_id, "after_seq": after})

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WsFrame:
        try:
            return await self.recv()
        except WebSocketError as closed:
            if self._closing or closed.close_code == 1000:
                raise StopAsyncIteration from None
            raise

    async def chat(
        self,
        message: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109
        **options: Any,
    ) -> WsFrame:
        ref = await self.send(message, **options)
        stream_id: str | None = None
        held: list[WsFrame] = []
        try:
            while True:
                frame = await self.recv(timeout)
                outcome = _answer(frame, ref, stream_id)
                if outcome == "end":
                    return frame
                if outcome is not None:
                    stream_id = outcome
                elif frame.stream_id != stream_id or stream_id is None:
                    held.append(frame)
        finally:
            self._state.backlog.extend(held)

    async def _close_quietly(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(WebSocketError):
                await self.send_frame("close")
            await self._close_quietly()
