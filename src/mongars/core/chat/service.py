"""One chat turn, from the stored question to the stored answer.

``prepare`` runs inside the request's unit of work: it checks the conversation belongs to the
caller, stores the question and an ``incomplete`` answer row, and builds the prompt. The caller
commits (the turn is now acknowledged) and ``launch``es the generation, which runs in the
stream hub, outside the request, and completes the answer row in its own transaction. Whatever
happens to the client, the answer row ends ``complete``, ``incomplete`` (cancelled or cut off
mid-answer; the partial text is kept) or ``error`` (no token at all), and a crash of the whole
process leaves it ``incomplete``.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import Connection
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from mongars.config import ChatSettings
from mongars.core.chat.prompt import Prompt, build_prompt
from mongars.core.chat.results import (
    Citation,
    StoredMessage,
    TokenUsage,
    TurnResult,
    UnstoredAnswer,
)
from mongars.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DatabaseUnavailable,
    MongarsError,
    NotFound,
    PayloadTooLarge,
)
from mongars.core.llm import ChatMessage, GenerationParams, StreamEnd, TextDelta
from mongars.core.model_roles import ModelRoles, Role, RoleBinding
from mongars.core.rag.errors import RagDisabled
from mongars.core.rag.service import RagService, SearchHit
from mongars.core.streams import Stream, StreamHub
from mongars.db.base import utcnow
from mongars.db.database import commit_with, transact
from mongars.db.repositories import turns
from mongars.db.repositories.conversations import ConversationRepository, MessageRepository
from mongars.db.tables import MessageRole, MessageStatus, User
from mongars.observability import tracing

logger = logging.getLogger(__name__)

TITLE_LENGTH = 80
SNIPPET_CHARS = 300
# Retries for the final write: SQLite may be briefly locked by another writer.
FINALIZE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """Announced to every listener once an answer row is final (whatever its status)."""

    user_id: uuid.UUID
    # None for a turn the caller asked not to store (the OpenAI-compatible ``store: false``).
    conversation_id: uuid.UUID | None
    user_message_id: int | None
    message: StoredMessage | None
    stream_id: str
    status: str
    backend: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    # For metrics: from the turn's arrival to its first token; the backend call's duration;
    # the domain error code when the generation failed.
    first_token_seconds: float | None = None
    backend_seconds: float | None = None
    error_code: str | None = None


TurnListener = Callable[[TurnFinished], Awaitable[None]]
# (connection, user id): raises a ``MongarsError`` to refuse the turn (quotas). Runs in the
# question's transaction before anything is written, possibly on the database's thread.
TurnAdmission = Callable[[Connection, uuid.UUID], None]
# (connection, user id, prompt tokens, completion tokens): runs with the answer's statements,
# before their commit, possibly on the database's thread (``database.commit_with``).
UsageAccounting = Callable[[Connection, uuid.UUID, int, int], None]


@dataclass(frozen=True, slots=True)
class TurnRequest:
    message: str
    conversation_id: uuid.UUID | None = None
    # Ground the answer in the user's documents (and shared ones), or in these collections.
    use_rag: bool = False
    collections: tuple[str, ...] | None = None
    # Set by clients that send the whole conversation each time (the OpenAI-compatible API):
    # the earlier messages, used instead of the stored history (system messages among them
    # replace the configured system prompt); the role to use instead of guessing it from the
    # message; sampling parameters instead of the role's; and whether to store the turn.
    context: tuple[ChatMessage, ...] | None = None
    role: Role | None = None
    params: GenerationParams | None = None
    store: bool = True


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    user_id: uuid.UUID
    # None, all three, when the turn is not stored.
    conversation_id: uuid.UUID | None
    user_message_id: int | None
    reply_id: int | None
    binding: RoleBinding
    prompt: Prompt
    started: float
    citations: list[Citation] = field(default_factory=list)


class ChatService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        roles: ModelRoles,
        streams: StreamHub,
        settings: ChatSettings,
    ) -> None:
        # The answer phase's transactions (no request, no session).
        self.engine = engine
        self.roles = roles
        self.streams = streams
        self.settings = settings
        # Counts a stored answer's usage inside the answer's own transaction (quotas).
        self.accounting: UsageAccounting | None = None
        # Checks a turn may run, in the transaction that stores its question (quotas).
        self.admission: TurnAdmission | None = None
        # Called after each turn is stored (usage accounting, fan-out to the user's other
        # sockets). A failing listener is logged and never affects the turn or the others.
        self.listeners: list[TurnListener] = []
        # Retrieval for turns with use_rag; None when RAG is off (such turns are refused).
        self.rag: RagService | None = None

    async def prepare(self, db: AsyncSession, user: User, request: TurnRequest) -> PreparedTurn:
        """Check the turn, build its prompt and store the question (unless ``store`` is false).

        Ends by committing ``db``'s unit of work: the question is then acknowledged, and the
        connection is not held while the answer is generated.
        """
        started = time.perf_counter()
        self.validate_message(request.message)
        binding = self._binding(request)
        _refuse_if_circuit_open(binding)
        history = await self._history(db, user, request)
        hits = await self._retrieve(db, user, request)
        build = functools.partial(
            self._build_prompt,
            binding,
            history,
            request.message,
            [_passage(h) for h in hits],
            _system_prompt(request.context) or self.settings.system_prompt,
        )
        # A real tokenizer may block; an estimate is cheaper than the hop to a thread.
        prompt = (
            await anyio.to_thread.run_sync(build) if binding.backend.counting_blocks else build()
        )
        citations = [
            Citation(
                document_id=str(hit.chunk.document_id),
                chunk_id=str(hit.chunk.chunk_id),
                score=hit.score,
                snippet=hit.chunk.text[:SNIPPET_CHARS],
            )
            for hit in hits[: prompt.passages_used]
        ]
        turn = PreparedTurn(
            user_id=user.id,
            conversation_id=None,
            user_message_id=None,
            reply_id=None,
            binding=binding,
            prompt=prompt,
            citations=citations,
            started=started,
        )
        if not request.store:
            # Nothing to write: the check alone, and the end of the unit of work.
            await commit_with(db, functools.partial(self._admit, user.id))
            return turn
        conversation_id, question_id, reply_id = await self._store_question(
            db, user, request, binding
        )
        return replace(
            turn,
            conversation_id=conversation_id,
            user_message_id=question_id,
            reply_id=reply_id,
        )

    def _binding(self, request: TurnRequest) -> RoleBinding:
        binding = (
            self.roles.binding(request.role)
            if request.role is not None
            else self.roles.for_message(request.message)
        )
        if request.params is not None:
            binding = replace(binding, params=request.params)
        return binding

    async def _history(
        self, db: AsyncSession, user: User, request: TurnRequest
    ) -> list[ChatMessage]:
        if request.conversation_id is None:
            found = None
        else:
            found = await ConversationRepository(db).get_owned(request.conversation_id, user.id)
            if found is None:
                raise NotFound("No such conversation.", code="conversation_not_found")
        if request.context is not None:
            return [m for m in request.context if m.role != "system"]
        if found is None:
            return []
        stored = await MessageRepository(db).recent(
            found.id, limit=self.settings.history_messages, before_id=2**62
        )
        return [
            ChatMessage(role=m.role, content=m.content)  # type: ignore[arg-type]
            for m in stored
            if m.role in (MessageRole.USER, MessageRole.ASSISTANT) and m.content
        ]

    async def _store_question(
        self, db: AsyncSession, user: User, request: TurnRequest, binding: RoleBinding
    ) -> tuple[uuid.UUID, int, int]:
        """The question and a pending answer row, committed: the turn is acknowledged."""
        question = turns.NewQuestion(
            user_id=user.id,
            # Ownership was checked when the history was read, in this transaction.
            conversation_id=request.conversation_id,
            title=_title(request.message),
            text=request.message,
            backend=binding.backend.name,
            model=binding.backend.model,
            at=utcnow(),
        )
        # On SQLite the statements run on a sync view of the connection (``commit_with``), out
        # of SQLAlchemy's async engine and its tracing: this span shows the write in the trace.
        with tracing.span("chat.store_question"):
            opened = await commit_with(db, functools.partial(self._open_turn, question))
        return opened.conversation_id, opened.question_id, opened.reply_id

    def _admit(self, user_id: uuid.UUID, connection: Connection) -> None:
        if self.admission is not None:
            self.admission(connection, user_id)

    def _open_turn(self, question: turns.NewQuestion, connection: Connection) -> turns.OpenedTurn:
        """The question's statements, after the admission check (possibly on the database's
        thread, possibly twice: no other state here; see ``commit_with``)."""
        self._admit(question.user_id, connection)
        return turns.open_turn(connection, question)

    async def _retrieve(
        self, db: AsyncSession, user: User, request: TurnRequest
    ) -> list[SearchHit]:
        if not request.use_rag and not request.collections:
            return []
        if self.rag is None:
            raise RagDisabled()
        return await self.rag.search(
            db,
            user,
            request.message,
            limit=self.rag.settings.chat_top_k,
            collections=request.collections,
        )

    def _build_prompt(
        self,
        binding: RoleBinding,
        history: list[ChatMessage],
        message: str,
        passages: list[str],
        system_prompt: str,
    ) -> Prompt:
        return build_prompt(
            system_prompt=system_prompt,
            history=history,
            message=message,
            context_window=binding.backend.context_window,
            reserved_for_answer=binding.params.max_tokens,
            count_tokens=binding.backend.count_tokens,
            passages=passages,
            passage_share=self.rag.settings.chat_context_share if self.rag else 0.5,
        )

    def launch(self, turn: PreparedTurn, *, resumable: bool = True, read: bool = True) -> Stream:
        """Start generating. ``read=False``: the caller only awaits ``stream.wait()``."""
        # The generation runs in the hub's task group: its spans join the request's trace.
        trace_parent = tracing.capture()
        return self.streams.start(
            owner_id=turn.user_id,
            conversation_id=turn.conversation_id,
            run=lambda stream: self._generate_traced(stream, turn, trace_parent),
            resumable=resumable,
            read=read,
        )

    async def _generate_traced(
        self, stream: Stream, turn: PreparedTurn, trace_parent: object | None
    ) -> None:
        backend = turn.binding.backend
        attributes = {"mongars.stream_id": stream.id, "mongars.backend": backend.name}
        with tracing.span("chat.turn", parent=trace_parent, attributes=attributes):
            await self._generate(stream, turn)

    async def cancel(self, db: AsyncSession, user: User, conversation_id: uuid.UUID) -> list[str]:
        """Stop the conversation's running generations; their partial answers are kept."""
        if await ConversationRepository(db).get_owned(conversation_id, user.id) is None:
            raise NotFound("No such conversation.", code="conversation_not_found")
        return await self.streams.cancel_in(conversation_id, user.id)

    def validate_message(self, message: str) -> None:
        size = len(message.encode())
        if size > self.settings.max_message_bytes:
            raise PayloadTooLarge(
                f"message is {size} bytes; the limit is {self.settings.max_message_bytes}.",
                code="message_too_large",
            )

    async def _generate(self, stream: Stream, turn: PreparedTurn) -> None:
        stream.publish(
            "start",
            {
                "stream_id": stream.id,
                "conversation_id": _str_or_none(turn.conversation_id),
                "user_message_id": turn.user_message_id,
                "message_id": turn.reply_id,
                "model": turn.binding.backend.model,
            },
        )
        parts: list[str] = []
        end: StreamEnd | None = None
        failure: MongarsError | None = None
        cancelled = False
        timeout = self.settings.token_timeout_seconds
        timing = _Timing(time.perf_counter())
        backend_span = tracing.span(
            "chat.backend", attributes={"gen_ai.request.model": turn.binding.backend.model}
        )
        try:
            stream_events = turn.binding.backend.stream(turn.prompt.messages, turn.binding.params)
            async with aclosing(stream_events) as events, backend_span:
                # One watchdog for the whole answer, pushed back at each event, rather than a
                # timeout scope around each (anyio's cost about 20 us apiece, every token).
                with anyio.CancelScope(deadline=anyio.current_time() + timeout) as watchdog:
                    async for event in events:
                        watchdog.deadline = anyio.current_time() + timeout
                        if isinstance(event, TextDelta):
                            if event.text:
                                timing.first_token = timing.first_token or time.perf_counter()
                                parts.append(event.text)
                                stream.publish("delta", {"text": event.text})
                        else:
                            end = event
                if watchdog.cancelled_caught:
                    raise BackendTimeout(f"The model produced no token for {timeout:g} seconds.")
        except anyio.get_cancelled_exc_class():
            cancelled = True
            # Finish the bookkeeping even though we were cancelled, then re-raise.
            with anyio.CancelScope(shield=True):
                await self._finish(stream, turn, parts, end, None, cancelled, timing)
            raise
        except MongarsError as exc:
            failure = exc
        except Exception as exc:  # a backend bug must not leave the row hanging
            logger.exception("generation %s failed", stream.id)
            failure = BackendError("The model backend failed unexpectedly.")
            failure.__cause__ = exc
        # Shielded, as above: the answer is generated; a cancel or a shutdown arriving now must
        # not stop its write half-way and lose it.
        with anyio.CancelScope(shield=True):
            await self._finish(stream, turn, parts, end, failure, cancelled, timing)

    async def _finish(
        self,
        stream: Stream,
        turn: PreparedTurn,
        parts: list[str],
        end: StreamEnd | None,
        failure: MongarsError | None,
        cancelled: bool,
        timing: _Timing,
    ) -> None:
        backend_seconds = time.perf_counter() - timing.backend_started
        text = "".join(parts)
        if end is not None and failure is None and not cancelled:
            status, finish_reason = MessageStatus.COMPLETE, end.finish_reason
        elif parts or cancelled:
            status, finish_reason = MessageStatus.INCOMPLETE, "cancelled" if cancelled else "error"
        else:
            status, finish_reason = MessageStatus.ERROR, "error"
        usage = end.usage if end else None
        prompt_tokens = usage.prompt_tokens if usage else turn.prompt.prompt_tokens_estimate
        completion_tokens = (
            usage.completion_tokens if usage else sum(map(turn.binding.backend.count_tokens, parts))
        )
        elapsed = time.perf_counter() - turn.started
        values = {
            "content": text,
            "status": status,
            "model": end.model if end else turn.binding.backend.model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": round(elapsed * 1000),
            "confidence": end.confidence if end else None,
            "error": (failure.detail[:500] if failure else None),
            "completed_at": utcnow(),
        }
        outcome = _Outcome(
            text=text,
            status=status,
            model=str(values["model"]),
            end=end,
            failure=failure,
            usage=TokenUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
            finish_reason=finish_reason,
            elapsed=elapsed,
        )
        stored: StoredMessage | MongarsError | None = None
        if turn.reply_id is None:
            await self._count_unstored(turn, outcome)
        else:
            stored = await self._store_answer(turn, turn.reply_id, values)
        try:
            self._publish(stream, turn, stored, outcome)
        finally:
            # Listeners (usage accounting, fan-out) run after the caller has its answer. A turn
            # whose answer could not be written is not announced: as far as anyone can see, it
            # has not finished.
            stream.finish()
            if not isinstance(stored, MongarsError):
                await self._announce(
                    TurnFinished(
                        user_id=turn.user_id,
                        conversation_id=turn.conversation_id,
                        user_message_id=turn.user_message_id,
                        message=stored,
                        stream_id=stream.id,
                        status=status,
                        backend=turn.binding.backend.name,
                        model=outcome.model,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        first_token_seconds=(
                            timing.first_token - turn.started if timing.first_token else None
                        ),
                        backend_seconds=backend_seconds,
                        error_code=failure.code if failure else None,
                    )
                )

    def _publish(
        self,
        stream: Stream,
        turn: PreparedTurn,
        stored: StoredMessage | MongarsError | None,
        outcome: _Outcome,
    ) -> None:
        """End the stream with ``done`` (the result) or ``error``, and set its outcome."""
        if isinstance(stored, MongarsError):  # the answer could not be written
            stream.fail(stored)
            return
        failure = outcome.failure
        if failure is not None:
            if stored is None:
                stream.fail(failure)
            else:
                stream.fail(failure, message=stored.model_dump(mode="json"))
            return
        result: TurnResult | UnstoredAnswer
        if stored is None:
            result = UnstoredAnswer(
                text=outcome.text,
                model=outcome.model,
                usage=outcome.usage,
                finish_reason=outcome.finish_reason,
                processing_time=round(outcome.elapsed, 4),
                citations=turn.citations,
            )
        else:
            assert turn.conversation_id is not None
            assert turn.user_message_id is not None
            confidence = outcome.end.confidence if outcome.end else None
            result = TurnResult(
                conversation_id=turn.conversation_id,
                user_message_id=turn.user_message_id,
                message=stored,
                usage=outcome.usage,
                confidence=confidence if confidence is not None else 0.5,
                confidence_source="logprobs" if confidence is not None else "unavailable",
                finish_reason=outcome.finish_reason,
                processing_time=round(outcome.elapsed, 4),
                citations=turn.citations,
            )
        stream.outcome = result
        if stream.keeps_events:
            stream.publish("done", result.model_dump(mode="json"))

    async def _count_unstored(self, turn: PreparedTurn, outcome: _Outcome) -> None:
        """An unstored turn still counts against the user's quota (its own small commit)."""
        if self.accounting is None or outcome.status == MessageStatus.ERROR:
            return
        accounting, usage = self.accounting, outcome.usage

        def count(connection: Connection) -> None:
            accounting(connection, turn.user_id, usage.prompt_tokens, usage.completion_tokens)

        try:
            await transact(self.engine, count)
        except (SQLAlchemyError, OSError):
            # The answer was generated and is delivered; only its count is lost. Logged loudly
            # because quotas then under-count.
            logger.error("usage of an unstored turn could not be counted for %s", turn.user_id)

    async def _announce(self, finished: TurnFinished) -> None:
        for listener in self.listeners:
            try:
                await listener(finished)
            except Exception:
                logger.exception("turn listener %r failed", listener)

    async def _store_answer(
        self, turn: PreparedTurn, reply_id: int, values: dict[str, object]
    ) -> StoredMessage | MongarsError:
        """The stored answer, or why it could not be stored."""
        assert turn.conversation_id is not None
        write = functools.partial(
            self._write_answer, turn.conversation_id, turn.user_id, reply_id, values, utcnow()
        )
        for attempt in range(1, FINALIZE_ATTEMPTS + 1):
            try:
                with tracing.span("chat.store_answer"):
                    row = await transact(self.engine, write)
            except (SQLAlchemyError, OSError):  # the pool's timeout is not a DBAPIError
                logger.warning("storing answer %s failed (attempt %s)", reply_id, attempt)
                await anyio.sleep(0.2 * attempt)
                continue
            if row is None:
                return NotFound(
                    "The conversation was deleted while its answer was being generated.",
                    code="conversation_not_found",
                )
            return StoredMessage.of(row)
        logger.error("answer %s could not be stored; it stays incomplete", reply_id)
        return DatabaseUnavailable(
            "The answer could not be stored; the database is unavailable.",
            retry_after_seconds=5,
        )

    def _write_answer(
        self,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        reply_id: int,
        values: dict[str, Any],
        at: datetime,
        connection: Connection,
    ) -> Row[Any] | None:
        """The answer's statements (possibly on the database's thread, possibly twice: no other
        state here; see ``commit_with``)."""
        row = turns.complete_answer(connection, conversation_id, reply_id, values, at)
        if self.accounting is not None and values["status"] != MessageStatus.ERROR:
            # Usage is counted with the answer, in one commit: a client that reads its usage
            # after the answer sees it, and a turn costs one write less.
            self.accounting(
                connection,
                user_id,
                int(values["prompt_tokens"] or 0),
                int(values["completion_tokens"] or 0),
            )
        return row


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a generation ended, before it is stored and announced."""

    text: str
    status: MessageStatus
    model: str
    end: StreamEnd | None
    failure: MongarsError | None
    usage: TokenUsage
    finish_reason: str
    elapsed: float


@dataclass(slots=True)
class _Timing:
    backend_started: float
    first_token: float | None = None


def _refuse_if_circuit_open(binding: RoleBinding) -> None:
    """Fail before storing anything when the backend is known to be down."""
    breaker = getattr(binding.backend, "breaker", None)
    if breaker is not None and breaker.state == "open":
        raise BackendUnavailable(
            f"The {binding.role} model backend is unavailable; try again shortly.",
            retry_after_seconds=max(1, math.ceil(breaker.retry_after_seconds)),
        )


def _system_prompt(context: tuple[ChatMessage, ...] | None) -> str | None:
    """The client's own system messages, joined, when it sends any."""
    parts = [m.content for m in context or () if m.role == "system" and m.content.strip()]
    return "\n\n".join(parts) or None


def _str_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _title(message: str) -> str:
    first_line = " ".join(message.split())
    return first_line if len(first_line) <= TITLE_LENGTH else first_line[: TITLE_LENGTH - 1] + "…"


def _passage(hit: SearchHit) -> str:
    # Labelled with its document's title, unless the passage starts with it anyway.
    title, text = hit.chunk.title, hit.chunk.text
    return text if text.lstrip("# ").startswith(title) else f"({title}) {text}"
