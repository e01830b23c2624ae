"""History, conversation listings, exports and full-text search: the read side of chat.

Every query names the owner: a conversation or message of another user is indistinguishable
from one that does not exist.

History pages by keyset (``messages.id < before``), never by OFFSET: one query walks
``ix_messages_user_id_id`` backwards from the cursor and picks up each question's reply through
the unique index on ``reply_to_id``, so a page costs the same at the millionth message as at the
first.

Search runs on each engine's own full-text index (migration 0002). The user's text never
reaches either query language raw: ``SearchQuery`` holds plain terms, rendered here as quoted
FTS5 strings (SQLite) or as a ``websearch_to_tsquery`` input (PostgreSQL, a function that accepts
any text without a syntax error), and always sent as a bound parameter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from mongars.db.tables import Conversation, Message, MessageRole

# Highlight markers around matched words in snippets: private-use characters, which nobody
# types, so the service can turn them into offsets and clients never parse markup.
HIGHLIGHT_START = "\ue000"
HIGHLIGHT_END = "\ue001"
SNIPPET_ELLIPSIS = "…"
SNIPPET_WORDS = 16
PREVIEW_CHARS = 160

# The FTS5 external-content table of migration 0002 (SQLite only); rowid is messages.id.
_messages_fts = table("messages_fts", column("rowid", Integer))
_FTS_TABLE: ColumnElement[Any] = literal_column("messages_fts")
# A constant regconfig, written into the SQL: the same configuration as the stored
# ``messages.content_tsv`` column of migration 0002 (PostgreSQL only, not in the models).
_SIMPLE: ColumnElement[Any] = literal_column("'simple'")
_CONTENT_TSV: ColumnElement[Any] = literal_column("messages.content_tsv")
# Without MaxFragments: fragment mode cuts short messages down to the matched words alone.
_HEADLINE_OPTIONS = (
    f"StartSel={HIGHLIGHT_START}, StopSel={HIGHLIGHT_END}, "
    f"MaxWords={SNIPPET_WORDS + 8}, MinWords={SNIPPET_WORDS // 2}"
)


@dataclass(frozen=True, slots=True)
class SearchGroup:
    """Messages containing every ``include`` term and no ``exclude`` term.

    A term is one word or a phrase (words in order), as the user typed it, without ``"``.
    """

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Any one of the groups (OR). Never empty: a query with nothing to find is no query."""

    groups: tuple[SearchGroup, ...]

    def to_fts5(self) -> str:
        """FTS5 syntax in which every term is a string literal (``"..."``, ``""`` for ``"``).

        Inside a string FTS5 only tokenizes: ``*``, ``:``, ``^``, ``-``, ``(``, ``NEAR``, ``AND``
        are plain text there, so nothing the user typed acts as an operator or a column filter.
        """

        def quoted(term: str) -> str:
            return '"' + term.replace('"', '""') + '"'

        groups = []
        for group in self.groups:
            expression = "(" + " ".join(quoted(term) for term in group.include) + ")"
            for term in group.exclude:
                expression = f"({expression} NOT {quoted(term)})"
            groups.append(expression)
        return " OR ".join(groups)

    def to_websearch(self) -> str:
        """Input for ``websearch_to_tsquery`` with the same meaning as ``to_fts5``.

        Its grammar binds AND tighter than ``or``, so groups need no parentheses; each term is
        quoted so it is searched as a phrase.
        """

        def quoted(term: str) -> str:
            return '"' + term.replace('"', " ") + '"'

        return " or ".join(
            " ".join(
                [quoted(term) for term in group.include]
                + ["-" + quoted(term) for term in group.exclude]
            )
            for group in self.groups
        )


@dataclass(frozen=True, slots=True)
class ConversationStats:
    message_count: int
    # The start of the newest message, at most PREVIEW_CHARS + 1 characters (one more than
    # shown, so the caller knows whether it was cut).
    last_message_head: str | None


@dataclass(frozen=True, slots=True)
class SearchRow:
    message_id: int
    conversation_id: uuid.UUID
    conversation_title: str
    role: str
    created_at: datetime
    # The matched passage with HIGHLIGHT_START/END around each matched word.
    marked_snippet: str
    # Higher is more relevant; comparable within one result list only.
    rank: float


class HistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- history ----------------------------------------------------------------------------

    async def turns(
        self,
        user_id: uuid.UUID,
        *,
        limit: int,
        before_id: int | None = None,
        conversation_id: uuid.UUID | None = None,
    ) -> list[tuple[Message, Message | None]]:
        """The user's questions, newest first, each with its reply if there is one yet."""
        reply = aliased(Message, name="reply")
        statement = (
            select(Message, reply)
            .outerjoin(reply, reply.reply_to_id == Message.id)
            .where(Message.user_id == user_id, Message.role == MessageRole.USER.value)
            .order_by(Message.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            statement = statement.where(Message.id < before_id)
        if conversation_id is not None:
            statement = statement.where(Message.conversation_id == conversation_id)
        result = await self.session.execute(statement)
        return [(question, answer) for question, answer in result]

    # -- conversations ----------------------------------------------------------------------

    async def conversation_page(
        self, user_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[list[Conversation], int]:
        """The user's conversations, most recently active first, and how many there are."""
        total = await self.session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)
        )
        result = await self.session.execute(
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(result.scalars()), int(total or 0)

    async def conversation_stats(
        self, conversation_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, ConversationStats]:
        """Message count and newest message for each conversation, in one query.

        Conversations without messages are absent from the answer.
        """
        if not conversation_ids:
            return {}
        counts = (
            select(
                Message.conversation_id.label("conversation_id"),
                func.count().label("message_count"),
                func.max(Message.id).label("last_id"),
            )
            .where(Message.conversation_id.in_(conversation_ids))
            .group_by(Message.conversation_id)
            .subquery()
        )
        result = await self.session.execute(
            select(
                counts.c.conversation_id,
                counts.c.message_count,
                func.substr(Message.content, 1, PREVIEW_CHARS + 1, type_=String),
            ).join(Message, Message.id == counts.c.last_id)
        )
        return {
            conversation_id: ConversationStats(int(count), head)
            for conversation_id, count, head in result
        }

    async def messages(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> list[Message]:
        """Every message of a conversation, oldest first."""
        result = await self.session.execute(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.user_id == user_id)
            .order_by(Message.id)
        )
        return list(result.scalars())

    async def delete_conversation(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Delete an owned conversation; its messages go with it (``ON DELETE CASCADE``).

        On SQLite the cascade fires ``messages_fts_delete`` for each message, so the search
        index forgets them in the same transaction.
        """
        result = await self.session.execute(
            delete(Conversation).where(
                Conversation.id == conversation_id, Conversation.user_id == user_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- search -----------------------------------------------------------------------------

    async def search(
        self, user_id: uuid.UUID, query: SearchQuery, *, limit: int
    ) -> list[SearchRow]:
        """The user's messages (any role) matching ``query``, most relevant first."""
        if self.session.get_bind().dialect.name == "sqlite":
            return await self._search_sqlite(user_id, query, limit=limit)
        return await self._search_postgresql(user_id, query, limit=limit)

    async def _search_sqlite(
        self, user_id: uuid.UUID, query: SearchQuery, *, limit: int
    ) -> list[SearchRow]:
        # bm25() is lower for better matches; negated so "higher is better" on both engines.
        rank = (-func.bm25(_FTS_TABLE, type_=Float)).label("rank")
        snippet = func.snippet(
            _FTS_TABLE,
            -1,
            HIGHLIGHT_START,
            HIGHLIGHT_END,
            SNIPPET_ELLIPSIS,
            SNIPPET_WORDS,
            type_=String,
        )
        match: ColumnElement[bool] = _FTS_TABLE.op("MATCH", is_comparison=True)(
            bindparam("fts_query", query.to_fts5(), type_=String)
        )
        statement = (
            select(
                Message.id,
                Message.conversation_id,
                Conversation.title,
                Message.role,
                Message.created_at,
                snippet,
                rank,
            )
            .select_from(_messages_fts)
            .join(Message, Message.id == _messages_fts.c.rowid)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(match, Message.user_id == user_id)
            .order_by(rank.desc(), Message.id.desc())
            .limit(limit)
        )
        result = await self.session.execute(statement)
        return [SearchRow(*row) for row in result]

    async def _search_postgresql(
        self, user_id: uuid.UUID, query: SearchQuery, *, limit: int
    ) -> list[SearchRow]:
        tsquery = func.websearch_to_tsquery(
            _SIMPLE, bindparam("websearch", query.to_websearch(), type_=String)
        )
        tsvector = _CONTENT_TSV
        # Rank and cut first; ts_headline re-parses the whole message, so it runs on the
        # returned rows only.
        rank = func.ts_rank(tsvector, tsquery, type_=Float).label("rank")
        matches: ColumnElement[bool] = tsvector.op("@@", is_comparison=True)(tsquery)
        ranked = (
            select(Message.id.label("id"), rank)
            .where(Message.user_id == user_id, matches)
            .order_by(rank.desc(), Message.id.desc())
            .limit(limit)
            .subquery()
        )
        headline = func.ts_headline(
            _SIMPLE,
            Message.content,
            tsquery,
            bindparam("headline_options", _HEADLINE_OPTIONS, type_=String),
            type_=String,
        )
        statement = (
            select(
                Message.id,
                Message.conversation_id,
                Conversation.title,
                Message.role,
                Message.created_at,
                headline,
                ranked.c.rank,
            )
            .select_from(ranked)
            .join(Message, Message.id == ranked.c.id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .order_by(ranked.c.rank.desc(), Message.id.desc())
        )
        result = await self.session.execute(statement)
        return [SearchRow(*row) for row in result]
