"""Daily usage counters and per-user quota overrides."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.sqlite_driver import inline
from mongars.db.tables import DailyUsage, User, UserQuota


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's overrides (None: the default applies) and what they used on one day."""

    daily_messages: int | None
    daily_tokens: int | None
    messages: int
    tokens: int


# Checked before every chat turn: built once, so its cache key is computed once.
_STANDING = inline(
    select(
        UserQuota.daily_messages,
        UserQuota.daily_tokens,
        DailyUsage.messages,
        DailyUsage.prompt_tokens,
        DailyUsage.completion_tokens,
    )
    .select_from(User)
    .outerjoin(UserQuota, UserQuota.user_id == User.id)
    .outerjoin(DailyUsage, and_(DailyUsage.user_id == User.id, DailyUsage.day == bindparam("day")))
    .where(User.id == bindparam("user_id"))
)


def standing_in(connection: Connection, user_id: uuid.UUID, day: date) -> Standing:
    """``UsageRepository.standing`` in the caller's transaction (a chat turn's question)."""
    return _standing(connection.execute(_STANDING, {"user_id": user_id, "day": day}).first())


def _standing(row: Any) -> Standing:
    if row is None:
        return Standing(None, None, 0, 0)
    daily_messages, daily_tokens, messages, prompt, completion = row
    return Standing(
        daily_messages=daily_messages,
        daily_tokens=daily_tokens,
        messages=messages or 0,
        tokens=(prompt or 0) + (completion or 0),
    )


class UsageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def standing(self, user_id: uuid.UUID, day: date) -> Standing:
        """Overrides and the day's usage in one round trip (zeros when nothing is stored)."""
        result = await self.session.execute(_STANDING, {"user_id": user_id, "day": day})
        return _standing(result.first())

    async def set_override(
        self,
        user_id: uuid.UUID,
        *,
        daily_messages: int | None,
        daily_tokens: int | None,
        now: datetime,
    ) -> None:
        """Set a user's overrides; both None removes the row (the defaults apply again)."""
        existing = await self.session.get(UserQuota, user_id)
        if daily_messages is None and daily_tokens is None:
            if existing is not None:
                await self.session.delete(existing)
        elif existing is None:
            self.session.add(
                UserQuota(
                    user_id=user_id,
                    daily_messages=daily_messages,
                    daily_tokens=daily_tokens,
                    updated_at=now,
                )
            )
        else:
            existing.daily_messages = daily_messages
            existing.daily_tokens = daily_tokens
            existing.updated_at = now
        await self.session.flush()


def add_usage(
    connection: Connection,
    user_id: uuid.UUID,
    day: date,
    *,
    messages: int,
    prompt_tokens: int,
    completion_tokens: int,
) -> None:
    """Add to the day's counters, creating the row on the day's first turn (atomic), in the
    connection's transaction (a chat turn's answer phase, ``database.commit_with``)."""
    connection.execute(
        _add_usage_statement(connection.dialect.name),
        {
            "user_id": user_id,
            "day": day,
            "messages": messages,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        },
    )


@functools.cache
def _add_usage_statement(dialect: str) -> Any:
    """The upsert, built once per dialect: building it costs more than running it (its
    ``excluded`` alias copies the table's columns), and it runs on every chat turn."""
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # On the table, not the mapped class: an ORM-enabled insert would go through the ORM's
    # bulk-insert path on every turn.
    table = DailyUsage.__table__
    statement = insert(table).values(
        user_id=bindparam("user_id"),
        day=bindparam("day"),
        messages=bindparam("messages"),
        prompt_tokens=bindparam("prompt_tokens"),
        completion_tokens=bindparam("completion_tokens"),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.day],
        set_={
            name: table.c[name] + statement.excluded[name]
            for name in ("messages", "prompt_tokens", "completion_tokens")
        },
    )
