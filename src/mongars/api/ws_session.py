"""One WebSocket connection, from the greeting to the close.

Tasks per connection: a reader (client frames, in order), a sender (drains the bounded send
queue into the socket), and one follower per stream the socket watches; the heartbeat is a
timer, and so is the idle re-check of the socket's credential. The socket closes with 1000 at
once on a client ``close`` frame, 1013 when its send queue overflows (see
``core.ws_connections``), 4408 when the client stops answering pings, 4401 when the login or
API key it was opened with no longer holds: re-checked before every action, and while idle
every ``ws_recheck_interval_seconds`` (it receives the user's turns from elsewhere).

Every valid client frame is answered: by an ``ack`` naming it (for ``chat.send``, once the turn
is accepted, with its ids), or by an error frame naming it. Malformed input gets an ``error``
frame and the connection lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketDisconnect

from mongars.api.middleware import RAW_WEBSOCKET_SEND
from mongars.api.schemas.chat import ChatRequest
from mongars.api.schemas.history import HistoryItem
from mongars.api.schemas.ws import CancelData, ClientFrame, ResumeData
from mongars.core.authentication import CredentialsRevoked, Grant, Principal
from mongars.core.errors import MongarsError, NotFound
from mongars.core.streams import StreamReader
from mongars.core.ws_connections import OVERFLOW_CLOSE_CODE, OVERFLOW_REASON, Connection, frame
from mongars.db.tables import User
from mongars.resources import Resources

logger = logging.getLogger(__name__)

NORMAL_CLOSE = 1000
REVOKED_CLOSE = 4401
HEARTBEAT_CLOSE = 4408

STREAM_FRAME_TYPES = {"delta": "chat.delta", "done": "chat.done", "error": "chat.error"}


class WsSession:
    def __init__(
        self,
        websocket: WebSocket,
        resources: Resources,
        principal: Principal,
        connection: Connection,
    ) -> None:
        self.websocket = websocket
        self.resources = resources
        self.settings = resources.settings
        self.user = principal.user
        self.grant = Grant.of(principal)
        self.connection = connection
        self.last_seen = time.monotonic()
        self.close_with: tuple[int, str] = (NORMAL_CLOSE, "")
        self.peer_gone = False
        self._group: TaskGroup | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._recheck_timer: asyncio.TimerHandle | None = None
        self._recheck_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        # The heartbeat and the overflow policy are callbacks, not tasks: with thousands of
        # sockets open, each task per connection is kilobytes of memory (bench/ws.py).
        self.connection.on_overflow = lambda: self._stop(OVERFLOW_CLOSE_CODE, OVERFLOW_REASON)
        loop = asyncio.get_running_loop()
        self._heartbeat_timer = loop.call_later(
            self.settings.ws_heartbeat_interval_seconds, self._heartbeat
        )
        # Spread over the interval: sockets opened together must not all re-check at once.
        self._schedule_recheck(random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._send_loop)
                await self._greet()
                await self._read_loop()
                group.cancel_scope.cancel()
        finally:
            self._heartbeat_timer.cancel()
            if self._recheck_timer is not None:
                self._recheck_timer.cancel()
            if self._recheck_task is not None:
                self._recheck_task.cancel()
            self.connection.on_overflow = None
        if self.peer_gone:
            return
        code, reason = self.close_with
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code=code, reason=reason)  # unless the peer is gone

    def _stop(self, code: int, reason: str) -> None:
        self.close_with = (code, reason)
        if self._group is not None:
            self._group.cancel_scope.cancel()

    # -- outgoing -----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        # Frames go straight to the server's send (stashed by RequestIdMiddleware) rather than
        # through Starlette's WebSocket and every middleware's wrapper: once accepted, no
        # middleware acts on them, and at thousands of frames per fan-out the wrappers showed.
        send = self.websocket.scope.get(RAW_WEBSOCKET_SEND) or self.websocket.send
        try:
            async for message in self.connection.outbox:
                await send({"type": "websocket.send", "text": message})
        except (WebSocketDisconnect, OSError, RuntimeError):
            self.peer_gone = True
            self._stop(NORMAL_CLOSE, "")

    def _heartbeat(self) -> None:
        """Every interval: close a connection whose client went quiet, else ping it."""
        interval = self.settings.ws_heartbeat_interval_seconds
        if time.monotonic() - self.last_seen > self.settings.ws_heartbeat_timeout_seconds:
            self._stop(HEARTBEAT_CLOSE, "heartbeat_timeout")
            return
        self.connection.offer(frame("ping", {"interval": interval}))
        self._heartbeat_timer = asyncio.get_running_loop().call_later(interval, self._heartbeat)

    # -- the credential ------------------------------------------------------------------------

    async def _still_allowed(self, db: AsyncSession) -> User:
        """The socket's user, re-read in ``db``; ``CredentialsRevoked`` when its login or key
        is gone."""
        principal = await self.resources.authenticator.recheck(db, self.grant)
        self.user = principal.user
        return principal.user

    def _schedule_recheck(self, share: float = 1.0) -> None:
        delay = self.settings.ws_recheck_interval_seconds * share
        self._recheck_timer = asyncio.get_running_loop().call_later(delay, self._recheck_due)

    def _recheck_due(self) -> None:
        # A task only while it runs (a timer callback cannot start one in the task group: no
        # task is current there); cancelled with the connection.
        self._recheck_task = asyncio.get_running_loop().create_task(self._recheck_idle())

    async def _recheck_idle(self) -> None:
        try:
            async with self.resources.sessions() as db:
                await self._still_allowed(db)
        except CredentialsRevoked:
            self._stop(REVOKED_CLOSE, CredentialsRevoked.code)
            return
        except (SQLAlchemyError, OSError):
            # The database is unreachable: the next action fails with 503 anyway; try again at
            # the next interval rather than dropping every socket on a blip.
            logger.warning("could not re-check a WebSocket's credential", exc_info=True)
        self._schedule_recheck()

    def _send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        self.connection.offer(frame(type_, data))

    async def _greet(self) -> None:
        self._send(
            "ws.connected",
            {
                "connection_id": self.connection.id,
                "user": {"id": str(self.user.id), "username": self.user.username},
                "heartbeat_interval": self.settings.ws_heartbeat_interval_seconds,
                "max_frame_bytes": self.settings.ws_max_frame_bytes,
            },
        )
        turns = []
        if self.settings.ws_history_turns:
            async with self.resources.sessions() as db:
                page = await self.resources.history.history(
                    db, self.user, limit=self.settings.ws_history_turns
                )
            turns = page.turns
        self._send(
            "history.snapshot",
            {"turns": [HistoryItem.from_turn(t).model_dump(mode="json") for t in turns]},
        )

    # -- incoming -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.peer_gone = True
                return
            self.last_seen = time.monotonic()
            raw = message.get("text") or message.get("bytes") or ""
            limit = self.settings.ws_max_frame_bytes
            if len(raw) > limit:
                self._send(
                    "error",
                    {
                        "code": "frame_too_large",
                        "detail": f"Frames are limited to {limit} bytes.",
                    },
                )
                continue
            try:
                client = ClientFrame.model_validate_json(raw)
            except ValidationError as exc:
                code = (
                    "invalid_json" if exc.errors()[0]["type"] == "json_invalid" else "invalid_frame"
                )
                self._send("error", {"code": code, "detail": _first_error(exc)})
                continue
            if client.type == "close":
                self.close_with = (NORMAL_CLOSE, "client closed")
                return
            wait = self.resources.connections.throttle(self.user.id)
            if wait:
                self._send(
                    "error",
                    {
                        "ref": client.id,
                        "code": "rate_limited",
                        "detail": "Too many frames.",
                        "retry_after": round(wait, 3),
                    },
                )
                continue
            await self._handle(client)

    async def _handle(self, client: ClientFrame) -> None:
        handlers = {
            "chat.send": self._chat_send,
            "chat.cancel": self._chat_cancel,
            "resume": self._resume,
            "pong": self._pong,
            "client.ping": self._pong,
        }
        handler = handlers.get(client.type)
        if handler is None:
            self._send(
                "error",
                {
                    "ref": client.id,
                    "code": "unknown_type",
                    "detail": f"Unknown frame type {client.type!r}.",
                },
            )
            return
        try:
            await handler(client)
        except CredentialsRevoked:
            self._stop(REVOKED_CLOSE, CredentialsRevoked.code)
        except ValidationError as exc:
            self._send(
                "error", {"ref": client.id, "code": "invalid_frame", "detail": _first_error(exc)}
            )
        except MongarsError as exc:
            kind = "chat.error" if client.type == "chat.send" else "error"
            data: dict[str, Any] = {"ref": client.id, "code": exc.code, "detail": exc.detail}
            if "Retry-After" in exc.headers:
                data["retry_after"] = int(exc.headers["Retry-After"])
            self._send(kind, data)

    async def _pong(self, client: ClientFrame) -> None:
        self._send("ack", {"ref": client.id})

    async def _chat_send(self, client: ClientFrame) -> None:
        body = ChatRequest.model_validate(client.data)
        async with self.resources.sessions() as db:
            # As for HTTP: authenticated, then the chat budget shared with every route, then
            # ``prepare`` checks the daily quota and stores the turn (acknowledged).
            user = await self._still_allowed(db)
            await self.resources.limiter.enforce("chat", str(user.id))
            turn = await self.resources.chat.prepare(db, user, body.turn_request())
        stream = self.resources.chat.launch(turn)
        self._send(
            "ack",
            {
                "ref": client.id,
                "stream_id": stream.id,
                "conversation_id": str(turn.conversation_id),
                "user_message_id": turn.user_message_id,
                "message_id": turn.reply_id,
            },
        )
        self._follow(stream, after=0)

    async def _chat_cancel(self, client: ClientFrame) -> None:
        target = CancelData.model_validate(client.data)
        async with self.resources.sessions() as db:
            user = await self._still_allowed(db)
            conversation_id = target.conversation_id
            if conversation_id is None:
                assert target.stream_id is not None
                conversation_id = (
                    await self.resources.streams.get(target.stream_id, user.id)
                ).conversation_id
            if conversation_id is None:
                raise NotFound("No such stream.", code="stream_not_found")
            stopped = await self.resources.chat.cancel(db, user, conversation_id)
        self._send("ack", {"ref": client.id, "cancelled": stopped})

    async def _resume(self, client: ClientFrame) -> None:
        target = ResumeData.model_validate(client.data)
        async with self.resources.sessions() as db:
            user = await self._still_allowed(db)
        stream = await self.resources.streams.get(target.stream_id, user.id)
        await stream.ensure_resumable(target.after_seq)
        self.resources.metrics.stream_resumes.labels("ws").inc()
        self._send("ack", {"ref": client.id, "stream_id": stream.id, "after_seq": target.after_seq})
        self._follow(stream, after=target.after_seq)

    def _follow(self, stream: StreamReader, *, after: int) -> None:
        if self._group is None:
            raise NotFound("connection closing")
        self.connection.following.add(stream.id)
        self._group.start_soon(self._relay, stream, after)

    async def _relay(self, stream: StreamReader, after: int) -> None:
        async for event in stream.events(after=after):
            if event is None or event.type not in STREAM_FRAME_TYPES:
                continue
            data = {"stream_id": stream.id, "seq": event.seq, **event.data}
            if not self.connection.offer(frame(STREAM_FRAME_TYPES[event.type], data)):
                return


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else str(error["msg"])
