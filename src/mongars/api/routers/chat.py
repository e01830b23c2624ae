"""Chat turns over HTTP: whole answers, streamed answers (SSE), resume, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.sse import EventSourceResponse

from mongars.api.dependencies import CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.ratelimit import ChatAdmission, ChatCaller, rate_limited_response
from mongars.api.schemas.chat import CancelResponse, ChatRequest, ChatResponse
from mongars.api.sse import SSE_RESPONSE_DOC, parse_last_event_id, stream_response
from mongars.core.chat.results import TurnResult
from mongars.core.errors import MongarsError
from mongars.core.streams import Stream

router = APIRouter(tags=["chat"])

TURN_FAILURES = {**responses(401, 404, 413, 502, 503, 504), **rate_limited_response(quota=True)}


async def begin_turn(caller: ChatCaller, body: ChatRequest, *, streamed: bool) -> Stream:
    chat = caller.resources.chat
    # Stored and committed (acknowledged) before generating, so the generation's own
    # transaction can complete the answer row whatever happens to this request.
    turn = await chat.prepare(caller.db, caller.user, body.turn_request())
    return chat.launch(turn, resumable=streamed, read=streamed)


@router.post("/api/v1/conversation/chat", responses=TURN_FAILURES)
async def chat(body: ChatRequest, caller: ChatAdmission) -> ChatResponse:
    """Send a message and get the whole answer once it is generated and stored."""
    stream = await begin_turn(caller, body, streamed=False)
    outcome = await stream.wait()
    if isinstance(outcome, MongarsError):
        raise outcome
    assert isinstance(outcome, TurnResult)
    return ChatResponse.from_result(outcome)


@router.post(
    "/api/v1/conversation/chat/stream",
    # Not response_class=EventSourceResponse: that makes FastAPI expect a generator, and then
    # refusals (404, 413, 503) could no longer be plain HTTP errors sent before the stream.
    responses={**SSE_RESPONSE_DOC, **TURN_FAILURES},
)
async def chat_stream(body: ChatRequest, caller: ChatAdmission) -> EventSourceResponse:
    """Send a message and receive the answer as Server-Sent Events, token by token."""
    stream = await begin_turn(caller, body, streamed=True)
    keepalive = caller.resources.settings.chat.stream_keepalive_seconds
    return await stream_response(stream, after=0, keepalive_seconds=keepalive)


@router.get(
    "/api/v1/streams/{stream_id}",
    responses={**SSE_RESPONSE_DOC, **responses(401, 404, 410)},
)
async def resume_stream(
    stream_id: Annotated[str, Path(min_length=1, max_length=64)],
    user: CurrentUser,
    resources: ResourcesDep,
    after: Annotated[int | None, Query(ge=0, description="Last sequence number seen.")] = None,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> EventSourceResponse:
    """Resume a stream after the last event seen (`after` or `Last-Event-ID`), then follow it."""
    stream = await resources.streams.get(stream_id, user.id)
    if after is None:
        after = parse_last_event_id(last_event_id, stream.id) or 0
    resources.metrics.stream_resumes.labels("sse").inc()
    return await stream_response(
        stream, after=after, keepalive_seconds=resources.settings.chat.stream_keepalive_seconds
    )


@router.post("/api/v1/conversations/{conversation_id}/cancel", responses=responses(401, 404))
async def cancel_generation(
    conversation_id: uuid.UUID, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> CancelResponse:
    """Stop the answers being generated in a conversation; what was generated is kept."""
    return CancelResponse(cancelled=await resources.chat.cancel(db, user, conversation_id))
