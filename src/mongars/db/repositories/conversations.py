"""Conversations and their messages: the queries the chat pipeline runs.

Every read of a conversation goes through ``get_owned``: the owner is part of the query, so
another user's conversation is indistinguishable from one that does not exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.tables import Conversation, Message


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID
    ) -> Conversation | None:
        result = await self.session.execute(
            select(Conversation).where(
                Conversation.id == conversation_id, Conversation.user_id == user_id
            )
        )
        return result.scalar_one_or_none()

    async def add(self, conversation: Conversation) -> Conversation:
        self.session.add(conversation)
        await self.session.flush()
        return conversation

    async def touch(self, conversation_id: uuid.UUID, when: datetime) -> None:
        await self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(updated_at=when)
            .execution_options(synchronize_session=False)
        )


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, message: Message) -> Message:
        self.session.add(message)
        await self.session.flush()
        return message

    async def get(self, message_id: int) -> Message | None:
        return await self.session.get(Message, message_id)

    async def recent(
        self, conversation_id: uuid.UUID, *, limit: int, before_id: int
    ) -> list[Message]:
        """The conversation's latest messages before ``before_id``, oldest first."""
        result = await self.session.execute(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id < before_id)
            .order_by(Message.id.desc())
            .limit(limit)
        )
        return list(reversed(result.scalars().all()))
