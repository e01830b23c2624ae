"""One error envelope everywhere: ``{"detail", "code", "request_id"}``.

Domain errors carry their status and code (the model backends' failures among them: 502
``backend_error``, 503 ``backend_unavailable`` with ``Retry-After`` when down or when the circuit
is open, 504 ``backend_timeout``); framework errors (404 route, 405, 422) are mapped here; a
database or a Redis that cannot be reached is a 503, never a 500, and a value the database
refuses to store (PostgreSQL and a NUL character) is a 422. Anything else is a bug: logged with
its request id and answered with a 500 envelope that reveals nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mongars.api.error_bodies import envelope, is_openai_path, openai_error
from mongars.api.middleware import REQUEST_ID_HEADER
from mongars.api.request_context import request_id_var
from mongars.api.schemas.common import is_unicode_text
from mongars.core.errors import DatabaseUnavailable, MongarsError, ServiceUnavailable

logger = logging.getLogger(__name__)

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ErrorEnvelope(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="A sentence for people; for 422, FastAPI's list of field errors."
    )
    code: str = Field(description="A stable machine-readable error code.")
    request_id: str | None = Field(description="Quote it when reporting a problem.")


def error_response(
    status_code: int,
    detail: Any,
    code: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    request_id = request_id_var.get()
    body = envelope(detail, code)
    response = JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorEnvelope(BaseModel):
    error: OpenAIError


def openai_error_response(
    status_code: int,
    message: str,
    code: str,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = openai_error(status_code, message, code, param)
    response = JSONResponse(body, status_code=status_code, headers=headers)
    request_id = request_id_var.get()
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _reply(
    request: Request,
    status_code: int,
    detail: Any,
    code: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    if not is_openai_path(request.url.path):
        return error_response(status_code, detail, code, headers)
    if isinstance(detail, list):
        # Field errors: OpenAI answers invalid parameters with 400 and names the first one.
        first = detail[0] if detail else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return openai_error_response(400, message, code, headers, param)
    return openai_error_response(status_code, str(detail), code, headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route's documented failures, all in the envelope."""
    return {status: {"model": ErrorEnvelope} for status in statuses}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MongarsError)
    return _reply(request, exc.status_code, exc.detail, exc.code, exc.headers)


# FastAPI's answer to a body it could not even decode (not UTF-8, a broken form). That is a
# payload error like malformed JSON, which FastAPI itself answers with 422: so do we.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY and exc.__cause__ is not None:
        error = {"type": "body_unparsable", "loc": ["body"], "msg": "The body could not be parsed."}
        return _reply(request, 422, [error], "validation_error")
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    return _reply(request, exc.status_code, exc.detail, code, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {key: value for key, value in error.items() if key in ("type", "loc", "msg", "input")}
        for error in exc.errors()
    ]
    for error in errors:
        if not _may_echo(error):
            error.pop("input", None)
    return _reply(request, 422, errors, "validation_error")


_SECRET_NAME = re.compile(r"password|secret|token|key", re.IGNORECASE)


def _may_echo(error: Mapping[str, Any]) -> bool:
    """Never echo a secret back, even a rejected one. A missing field's ``input`` is the whole
    object around it (the password beside a missing username), so objects and lists are never
    echoed either; a plain value only when its field is not named like a secret."""
    value = error.get("input")
    if isinstance(value, dict | list):
        return False
    if isinstance(value, str) and not is_unicode_text(value):
        return False  # a lone surrogate: no response could carry it back
    return not any(_SECRET_NAME.search(str(part)) for part in error.get("loc", ()))


def is_database_outage(exc: BaseException) -> bool:
    """Connection-level failures (server down, restarted, pool exhausted), not bad SQL."""
    if isinstance(exc, OperationalError | PoolTimeoutError | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_unstorable_value(exc: BaseException) -> bool:
    """The database refused a value, not the query: SQLSTATE class 22 ("data exception"), or
    class 54 ("program limit exceeded": PostgreSQL's full-text vector of a long text with many
    distinct words passes its 1 MB limit, where SQLite stores the same text)."""
    if isinstance(exc, DataError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(("22", "54"))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if is_unstorable_value(exc):
        # Input the validators let through but the database cannot hold (PostgreSQL refuses
        # NUL characters in text, for one): a payload error. Logged, as it may also reveal a
        # missing validator.
        logger.warning("database refused a value: %s", type(exc.__cause__ or exc).__name__)
        refusal = {
            "type": "value_unstorable",
            "loc": [],
            "msg": "A value cannot be stored (for example a NUL character in a text field).",
        }
        return _reply(request, 422, [refusal], "validation_error")
    if not is_database_outage(exc):
        return await _unexpected_error(request, exc)
    logger.warning("database unavailable: %s", type(exc).__name__)
    error = DatabaseUnavailable(retry_after_seconds=5)
    return _reply(request, error.status_code, error.detail, error.code, error.headers)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("redis unavailable: %s", type(exc).__name__)
    error = ServiceUnavailable(
        "A shared service (Redis) is unavailable; try again shortly.",
        code="redis_unavailable",
        retry_after_seconds=5,
    )
    return _reply(request, error.status_code, error.detail, error.code, error.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error (request %s)", request_id_var.get(), exc_info=exc)
    return _reply(request, 500, "The server hit an unexpected error.", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MongarsError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    # asyncpg raises the bare OSError when it cannot connect at all.
    app.add_exception_handler(ConnectionError, _database_error)
    # Features that need Redis (tickets, stream mirrors) when it is configured but down. The
    # rate limiter never gets here: it falls back to per-process limits instead.
    app.add_exception_handler(RedisConnectionError, _redis_error)
    app.add_exception_handler(RedisTimeoutError, _redis_error)
    app.add_exception_handler(Exception, _unexpected_error)
