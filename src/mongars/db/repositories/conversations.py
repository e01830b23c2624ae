"""Conversations and their messages: the reads the chat pipeline runs (its writes are
``turns``).

Every read of a conversation goes through ``get_owned``: the owner is part of the query, so
another user's conversation is indistinguishable from one that does not exist.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.sqlite_driver import inline
from mongars.db.tables import Conversation, Message


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID
    ) -> Conversation | None:
        result = await self.session.execute(
            inline(
                select(Conversation).where(
                    Conversation.id == conversation_id, Conversation.user_id == user_id
                )
            )
        )
        return result.scalar_one_or_none()


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def recent(
        self, conversation_id: uuid.UUID, *, limit: int, before_id: int
    ) -> list[Message]:
        """The conversation's latest messages before ``before_id``, oldest first."""
        result = await self.session.execute(
            inline(  # an index range of at most ``limit`` rows
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.id < before_id)
                .order_by(Message.id.desc())
                .limit(limit)
            )
        )
        return list(reversed(result.scalars().all()))
