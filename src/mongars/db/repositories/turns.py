"""The writes of one chat turn, as a few prepared Core statements.

A chat turn writes the same rows every time: (a new conversation or its ``updated_at``,) the
question, an ``incomplete`` answer row; later the completed answer, ``updated_at`` again and the
day's usage. Through the ORM each of those cost a unit-of-work flush or an ORM-enabled
``UPDATE ... RETURNING`` plus a fresh cache key for statements built per call, which was most
of a turn's CPU time (``bench/turn_phases.py``). Here the statements are built once, at import,
and executed with parameters. The functions take a sync ``Connection``: callers run a whole
phase with ``database.commit_with``, so the async bridge is crossed once per phase instead of
once per statement (on SQLite, one call with the commit, usually on the event loop's thread).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.engine import Row

from mongars.db.base import new_id
from mongars.db.tables import Conversation, Message, MessageRole, MessageStatus

_conversations = cast(Table, Conversation.__table__)
_messages = cast(Table, Message.__table__)

_INSERT_CONVERSATION = insert(_conversations)
# Core fills a SET clause from the parameters' keys; only the key of the row is a bind here.
_TOUCH_CONVERSATION = update(_conversations).where(_conversations.c.id == bindparam("key"))
_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
# What ``StoredMessage`` shows of an answer, returned by the update that completes it.
STORED_COLUMNS = (
    *("id", "conversation_id", "role", "content", "status", "model", "backend"),
    *("prompt_tokens", "completion_tokens", "latency_ms", "created_at", "completed_at"),
)
_COMPLETE_ANSWER = (
    update(_messages)
    .where(_messages.c.id == bindparam("key"))
    .returning(*(_messages.c[name] for name in STORED_COLUMNS))
)


@dataclass(frozen=True, slots=True)
class OpenedTurn:
    conversation_id: uuid.UUID
    question_id: int
    reply_id: int


@dataclass(frozen=True, slots=True)
class NewQuestion:
    user_id: uuid.UUID
    # None: start a conversation titled ``title``. Otherwise its ownership is already checked.
    conversation_id: uuid.UUID | None
    title: str
    text: str
    backend: str
    model: str
    at: datetime


def open_turn(connection: Connection, question: NewQuestion) -> OpenedTurn:
    """Store the question and a pending answer row in the connection's transaction."""
    conversation_id = question.conversation_id
    if conversation_id is None:
        conversation_id = new_id()
        connection.execute(
            _INSERT_CONVERSATION,
            {
                "id": conversation_id,
                "user_id": question.user_id,
                "title": question.title,
                "created_at": question.at,
                "updated_at": question.at,
            },
        )
    else:
        _touch(connection, conversation_id, question.at)
    common = {"conversation_id": conversation_id, "user_id": question.user_id}
    question_id = connection.execute(
        _INSERT_MESSAGE,
        {
            **common,
            "role": MessageRole.USER,
            "content": question.text,
            "status": MessageStatus.COMPLETE,
            "reply_to_id": None,
            "backend": None,
            "model": None,
            "created_at": question.at,
        },
    ).scalar_one()
    reply_id = connection.execute(
        _INSERT_MESSAGE,
        {
            **common,
            "role": MessageRole.ASSISTANT,
            "content": "",
            "status": MessageStatus.INCOMPLETE,
            "reply_to_id": question_id,
            "backend": question.backend,
            "model": question.model,
            "created_at": question.at,
        },
    ).scalar_one()
    return OpenedTurn(conversation_id, question_id, reply_id)


def complete_answer(
    connection: Connection,
    conversation_id: uuid.UUID,
    reply_id: int,
    values: dict[str, Any],
    at: datetime,
) -> Row[Any] | None:
    """Write the answer's final ``values`` and touch its conversation; the stored row back
    (``STORED_COLUMNS``), or None if the row is gone (its conversation was deleted)."""
    row = connection.execute(_COMPLETE_ANSWER, {"key": reply_id, **values}).first()
    _touch(connection, conversation_id, at)
    return row


def _touch(connection: Connection, conversation_id: uuid.UUID, at: datetime) -> None:
    connection.execute(_TOUCH_CONVERSATION, {"key": conversation_id, "updated_at": at})
