"""Pure ASGI middleware (not BaseHTTPMiddleware, which breaks context variables and streaming)."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars.api.error_bodies import send_error
from mongars.api.request_context import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
RAW_WEBSOCKET_SEND = "mongars.raw_websocket_send"
# A caller's id is kept (to follow a request through a proxy chain) only if it is harmless.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = incoming if _ACCEPTABLE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(request_id)
        if scope["type"] == "websocket":
            # The server's own send, for the frames of an accepted socket: no middleware acts
            # on them, and a fan-out sends thousands (see api/ws_session.py).
            scope[RAW_WEBSOCKET_SEND] = send

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(HTTPException):
    # An HTTPException so that FastAPI's body parsing re-raises it as is instead of turning it
    # into "400 error parsing the body"; the error handlers then answer 413 in the envelope.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodySizeLimitMiddleware:
    """Refuse request bodies over the cap with 413, whether or not Content-Length is honest.

    ``route_limits`` gives exact paths (document uploads) a cap of their own instead.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, route_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.route_limits = route_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get(scope["path"], self.max_body_bytes)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, scope["path"])
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._refuse(send, limit, scope["path"])

    async def _refuse(self, send: Send, limit: int, path: str) -> None:
        await send_error(
            send,
            413,
            f"The request body is larger than {limit} bytes.",
            "payload_too_large",
            {"connection": "close"},
            path=path,
        )
