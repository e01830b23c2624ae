"""The two shapes of an error body, and sending one from middleware.

Everywhere: monGARS's envelope ``{"detail", "code", "request_id"}``. On the OpenAI-compatible
routes (``/v1/...``): OpenAI's ``{"error": {"message", "type", "param", "code"}}``, so that
OpenAI clients raise their own typed errors (they pick the class from the status and show the
message). The error handlers (``api.errors``) and the middleware that refuses requests before
they reach a route both build their bodies here.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from mongars.api.request_context import request_id_var

OPENAI_PREFIX = "/v1/"
_OPENAI_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def envelope(detail: Any, code: str) -> dict[str, Any]:
    return {"detail": detail, "code": code, "request_id": request_id_var.get()}


def openai_error(
    status_code: int, message: str, code: str, param: str | None = None
) -> dict[str, Any]:
    if code == "quota_exceeded":
        kind = "insufficient_quota"
    elif status_code >= 500:
        kind = "server_error"
    else:
        kind = _OPENAI_TYPE_BY_STATUS.get(status_code, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


async def send_error(
    send: Send,
    status: int,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    *,
    path: str | None = None,
) -> None:
    """An error response from middleware that runs outside the error handlers; in OpenAI's
    shape when ``path`` is one of the OpenAI-compatible routes'."""
    shape = (
        openai_error(status, detail, code)
        if path is not None and is_openai_path(path)
        else envelope(detail, code)
    )
    body = json.dumps(shape).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
