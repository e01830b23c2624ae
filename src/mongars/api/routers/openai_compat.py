"""The OpenAI-compatible API: ``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings``.

A chat completion is an ordinary monGARS turn: the same authentication (API keys or access
tokens), rate limit, quota, backend routing, metrics and, unless ``store: false``, history (the
last user message and the answer become a conversation). The ``model`` names a role (``general``,
``coding`` …) or a model a role is configured with. Errors come in OpenAI's shape
(``mongars.api.errors``), so OpenAI clients raise their own typed exceptions.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from mongars.api.dependencies import CurrentUser, ResourcesDep
from mongars.api.error_bodies import openai_error
from mongars.api.errors import OpenAIErrorEnvelope
from mongars.api.ratelimit import ChatAdmission, EmbeddingAdmission
from mongars.api.schemas.openai_compat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    MongarsTurn,
    Usage,
)
from mongars.api.sse import KEEPALIVE
from mongars.core.chat.results import TurnResult, UnstoredAnswer
from mongars.core.chat.service import TurnRequest
from mongars.core.errors import InvalidInput, MongarsError, NotFound, ServiceUnavailable
from mongars.core.llm import GenerationParams
from mongars.core.model_roles import ROLES, ModelRoles, Role
from mongars.core.streams import Stream, StreamGap
from mongars.resources import Resources

router = APIRouter(prefix="/v1", tags=["openai"])

# The embedding model RAG uses, under its usual name, and the role-style alias.
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_MODEL_NAMES = (EMBEDDING_MODEL, "embedding")
OWNER = "mongars"
# The roles a chat completion can name; the ``embedding`` role is served by /v1/embeddings.
CHAT_ROLES: tuple[Role, ...] = tuple(role for role in ROLES if role != "embedding")
# When this process started serving: the ``created`` of every model it lists.
_SERVING_SINCE = int(time.time())

_FAILURES: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorEnvelope} for status in (400, 401, 404, 413, 429, 502, 503, 504)
}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "With `stream: true`, a text/event-stream of `chat.completion.chunk` "
        "objects ending with `data: [DONE]`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
}


def resolve_role(roles: ModelRoles, name: str) -> Role:
    """A role by its name, or the first role configured with a model of that name."""
    for role in CHAT_ROLES:
        if role == name:
            return role
    for role in CHAT_ROLES:
        if roles.binding(role).backend.model == name:
            return role
    raise NotFound(
        f"The model {name!r} does not exist; GET /v1/models lists the models you can use.",
        code="model_not_found",
    )


def _turn_request(body: ChatCompletionRequest, roles: ModelRoles) -> TurnRequest:
    *earlier, last = body.messages
    if last.role != "user":
        raise InvalidInput(
            f"The last message must be the user's; it is {last.role!r}.", code="invalid_messages"
        )
    question = last.text()
    if not question.strip():
        raise InvalidInput("The last user message is empty.", code="invalid_messages")
    if any("\x00" in m.text() for m in body.messages):
        raise InvalidInput("Messages must not contain NUL characters.", code="invalid_messages")
    role = resolve_role(roles, body.model)
    configured = roles.binding(role).params
    params = GenerationParams(
        temperature=configured.temperature if body.temperature is None else body.temperature,
        top_p=configured.top_p if body.top_p is None else body.top_p,
        max_tokens=configured.max_tokens if body.max_tokens is None else body.max_tokens,
        stop=body.stop_sequences() or configured.stop,
    )
    return TurnRequest(
        message=question,
        context=tuple(m.to_chat_message() for m in earlier),
        role=role,
        params=params,
        store=body.store,
        use_rag=body.use_rag,
        collections=tuple(body.collections) if body.collections else None,
    )


@router.post(
    "/chat/completions",
    responses={**_STREAM_DOC, **_FAILURES},
    response_model=ChatCompletion,
)
async def create_chat_completion(
    body: ChatCompletionRequest, caller: ChatAdmission
) -> ChatCompletion | StreamingResponse:
    """Chat completion in OpenAI's format, optionally streamed (OpenAI-compatible)."""
    resources = caller.resources
    # Acknowledged: stored (unless store is false) and committed before generating, as on the
    # native routes.
    turn = await resources.chat.prepare(
        caller.db, caller.user, _turn_request(body, resources.roles)
    )
    # Not resumable: OpenAI clients cannot resume, so the stream is neither kept nor mirrored.
    stream = resources.chat.launch(turn, resumable=False, read=body.stream)
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(stream, created, include_usage, resources),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    outcome = await stream.wait()
    if isinstance(outcome, MongarsError):
        raise outcome
    return _completion(stream, created, outcome)


def _completion(stream: Stream, created: int, outcome: object) -> ChatCompletion:
    if isinstance(outcome, TurnResult):
        text, model = outcome.message.content, outcome.message.model or ""
        usage, finish = outcome.usage, outcome.finish_reason
        where = MongarsTurn(
            conversation_id=str(outcome.conversation_id),
            message_id=outcome.message.id,
            citations=outcome.citations,
        )
    elif isinstance(outcome, UnstoredAnswer):
        text, model = outcome.text, outcome.model
        usage, finish = outcome.usage, outcome.finish_reason
        where = MongarsTurn(conversation_id=None, message_id=None, citations=outcome.citations)
    else:  # pragma: no cover - the service always ends a stream with one of the above
        raise TypeError(f"unexpected turn outcome {outcome!r}")
    return ChatCompletion(
        id=_completion_id(stream),
        created=created,
        model=model,
        choices=[
            Choice(message=AssistantMessage(content=text), finish_reason=_finish_reason(finish))
        ],
        usage=Usage.model_validate(usage.model_dump()),
        mongars=where,
    )


async def _chunks(
    stream: Stream, created: int, include_usage: bool, resources: Resources
) -> AsyncIterator[bytes]:
    """The stream's events as ``chat.completion.chunk`` objects, then ``[DONE]``."""
    model = ""
    keepalive = resources.settings.chat.stream_keepalive_seconds

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": _completion_id(stream),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage  # null on every chunk but the last
        return _sse(body)

    def choice(delta: dict[str, str], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish}]

    try:
        async for event in stream.events(after=0, keepalive_seconds=keepalive):
            if event is None:
                yield KEEPALIVE
            elif event.type == "start":
                model = event.data.get("model") or ""
                yield chunk(choice({"role": "assistant", "content": ""}))
            elif event.type == "delta":
                yield chunk(choice({"content": event.data["text"]}))
            elif event.type == "done":
                finish = event.data.get("finish_reason", "stop")
                yield chunk(choice({}, _finish_reason(finish)))
                if include_usage:
                    yield chunk([], event.data["usage"])
            elif event.type == "error":
                # OpenAI clients raise an APIError for an event carrying "error".
                detail = event.data.get("detail", "The generation failed.")
                yield _sse(openai_error(502, detail, event.data.get("code", "backend_error")))
    except StreamGap as gap:
        # The client read slower than the answer came, by more than the stream's buffer: say
        # so (the stored answer, if any, is whole) rather than end the response mid-answer.
        yield _sse(openai_error(gap.status_code, gap.detail, gap.code))
    yield b"data: [DONE]\n\n"


@router.get("/models", responses=_FAILURES)
async def list_openai_models(_user: CurrentUser, resources: ResourcesDep) -> ModelList:
    """The roles and the models behind them, as OpenAI model objects (OpenAI-compatible)."""
    return ModelList(data=[_card(name) for name in _model_names(resources)])


@router.get("/models/{model}", responses=_FAILURES)
async def retrieve_openai_model(
    model: Annotated[str, Path(max_length=256)], _user: CurrentUser, resources: ResourcesDep
) -> ModelCard:
    """One of the models ``/v1/models`` lists (OpenAI-compatible)."""
    if model not in _model_names(resources):
        raise NotFound(f"The model {model!r} does not exist.", code="model_not_found")
    return _card(model)


def _model_names(resources: Resources) -> list[str]:
    names: list[str] = list(CHAT_ROLES)
    for role in CHAT_ROLES:
        model = resources.roles.binding(role).backend.model
        if model not in names:
            names.append(model)
    if resources.rag is not None:
        names.extend(EMBEDDING_MODEL_NAMES)
    return names


def _card(name: str) -> ModelCard:
    return ModelCard(id=name, created=_SERVING_SINCE, owned_by=OWNER)


@router.post("/embeddings", responses=_FAILURES)
async def create_embeddings(body: EmbeddingRequest, caller: EmbeddingAdmission) -> EmbeddingList:
    """Embeddings from the embedded all-MiniLM-L6-v2 model (OpenAI-compatible)."""
    resources = caller.resources
    if body.model not in EMBEDDING_MODEL_NAMES:
        raise NotFound(
            f"The embedding model {body.model!r} does not exist; use {EMBEDDING_MODEL!r}.",
            code="model_not_found",
        )
    rag = resources.rag
    if rag is None:
        raise ServiceUnavailable(
            "Embeddings are off on this server (MONGARS_RAG__ENABLED=false).",
            code="embeddings_disabled",
        )
    dimensions = rag.embedder.dimensions
    if body.dimensions is not None and body.dimensions != dimensions:
        raise InvalidInput(
            f"{EMBEDDING_MODEL} makes {dimensions}-dimensional vectors; dimensions="
            f"{body.dimensions} cannot be served.",
            code="invalid_dimensions",
        )
    texts = body.texts()
    vectors = await rag.embedder_vectors(texts)
    tokens = sum(rag.embedder.count_tokens(text) for text in texts)
    return EmbeddingList(
        data=[
            Embedding(index=index, embedding=_encode(vector, body.encoding_format))
            for index, vector in enumerate(vectors)
        ],
        model=EMBEDDING_MODEL,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: np.ndarray[Any, Any], encoding: str) -> list[float] | str:
    if encoding == "base64":
        # What OpenAI clients ask for by default: little-endian float32 bytes.
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(x) for x in vector]


def _completion_id(stream: Stream) -> str:
    return f"chatcmpl-{stream.id}"


def _finish_reason(reason: str) -> Literal["stop", "length"]:
    # Backends say "stop" or "length"; anything else (a stop sequence named by some servers)
    # is a natural stop in OpenAI's vocabulary.
    return "length" if reason == "length" else "stop"


def _sse(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()
