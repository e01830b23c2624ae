"""Conversations and turns written straight into the database, as chat would store them.

History, listing, export and search only read what chat wrote; building the rows here keeps
their tests independent of a model backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.base import utcnow
from mongars.db.repositories.users import UserRepository
from mongars.db.tables import Conversation, Message, MessageRole, MessageStatus
from mongars.resources import Resources
from tests.conftest import Account

MODEL = "fake-model"


Row = TypeVar("Row", Conversation, Message)


async def stored(db: AsyncSession, row: Row) -> Row:
    """``row`` added and flushed: its generated id is set."""
    db.add(row)
    await db.flush()
    return row


@dataclass(frozen=True)
class TurnSpec:
    """A question and what became of its reply (``answer=None``: no reply row at all)."""

    question: str
    answer: str | None = "An answer."
    status: MessageStatus = MessageStatus.COMPLETE
    model: str = MODEL


@dataclass
class MadeTurn:
    question_id: int
    reply_id: int | None


@dataclass
class MadeConversation:
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    turns: list[MadeTurn] = field(default_factory=list)


class ConversationFactory:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    async def user_id(self, owner: Account) -> uuid.UUID:
        async with self.resources.sessions() as db:
            user = await UserRepository(db).get_by_username(owner.username)
            assert user is not None, owner.username
            return user.id

    async def create(
        self,
        owner: Account,
        *,
        title: str = "A conversation",
        turns: Sequence[TurnSpec | str] = (),
        updated_at: datetime | None = None,
    ) -> MadeConversation:
        """A conversation with ``turns`` (a plain string is a question answered normally)."""
        user_id = await self.user_id(owner)
        now = utcnow()
        async with self.resources.sessions() as db:
            conversation = await stored(
                db,
                Conversation(
                    user_id=user_id, title=title, created_at=now, updated_at=updated_at or now
                ),
            )
            made = MadeConversation(id=conversation.id, user_id=user_id, title=title)
            for spec in turns:
                made.turns.append(await self._turn(db, made, spec))
            await db.commit()
        return made

    async def add_turns(
        self, conversation: MadeConversation, *turns: TurnSpec | str
    ) -> list[MadeTurn]:
        async with self.resources.sessions() as db:
            made = [await self._turn(db, conversation, spec) for spec in turns]
            await db.execute(
                update(Conversation)
                .where(Conversation.id == conversation.id)
                .values(updated_at=utcnow())
            )
            await db.commit()
        conversation.turns.extend(made)
        return made

    async def _turn(
        self, db: AsyncSession, conversation: MadeConversation, spec: TurnSpec | str
    ) -> MadeTurn:
        if isinstance(spec, str):
            spec = TurnSpec(spec)
        now = utcnow()
        question = await stored(
            db,
            Message(
                conversation_id=conversation.id,
                user_id=conversation.user_id,
                role=MessageRole.USER,
                content=spec.question,
                status=MessageStatus.COMPLETE,
                created_at=now,
            ),
        )
        if spec.answer is None:
            return MadeTurn(question_id=question.id, reply_id=None)
        reply = await stored(
            db,
            Message(
                conversation_id=conversation.id,
                user_id=conversation.user_id,
                role=MessageRole.ASSISTANT,
                content=spec.answer,
                status=spec.status,
                reply_to_id=question.id,
                backend="fake",
                model=spec.model,
                prompt_tokens=len(spec.question.split()),
                completion_tokens=len(spec.answer.split()),
                created_at=now,
                completed_at=None if spec.status == MessageStatus.INCOMPLETE else now,
            ),
        )
        return MadeTurn(question_id=question.id, reply_id=reply.id)
