"""What people can see of their past conversations: history, listings, export and search.

Ownership is never a separate check that a route could forget: every query here takes the
caller's id, and a conversation that is not theirs is reported exactly like one that does not
exist (``conversation_not_found``), so ids cannot be probed.

Search text is parsed here into plain terms (``SearchQuery``), with one grammar for both
engines, a subset of the familiar web-search one: words are ANDed, ``"a phrase"`` keeps words
together, ``-word`` excludes, ``or`` separates alternatives. Everything else the user types is
literal text. A query left with nothing to look for (only punctuation, only exclusions) finds
nothing without touching the database: a bare exclusion would otherwise scan every message.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.errors import NotFound, PermissionDenied
from mongars.db.repositories.conversations import ConversationRepository
from mongars.db.repositories.history import (
    HIGHLIGHT_END,
    HIGHLIGHT_START,
    PREVIEW_CHARS,
    HistoryRepository,
    SearchGroup,
    SearchQuery,
    SearchRow,
)
from mongars.db.tables import Conversation, Message, MessageRole, MessageStatus, User

MAX_SEARCH_TERMS = 32

# A quoted phrase (the closing quote may be missing), or a run of anything else but spaces.
_TOKEN = re.compile(r'(-?)"([^"]*)"?|([^\s"]+)')
# Something a full-text tokenizer would index: a letter or a digit.
_WORD = re.compile(r"[^\W_]")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def conversation_not_found() -> NotFound:
    return NotFound("No such conversation.", code="conversation_not_found")


@dataclass(frozen=True, slots=True)
class Turn:
    """A question and the assistant's reply to it, if there is one yet."""

    question: Message
    reply: Message | None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    turns: list[Turn]
    # The cursor for the next (older) page, or None on the last page.
    next_before: int | None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation: Conversation
    message_count: int
    # The start of the newest message, cut to PREVIEW_CHARS with an ellipsis; None if empty.
    preview: str | None


@dataclass(frozen=True, slots=True)
class ConversationWithMessages:
    conversation: Conversation
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: int
    conversation_id: uuid.UUID
    conversation_title: str
    role: str
    created_at: datetime
    snippet: str
    # [start, end) character offsets of the matched words in ``snippet``.
    highlights: list[tuple[int, int]]
    rank: float


class HistoryService:
    # -- history ----------------------------------------------------------------------------

    async def history(
        self,
        db: AsyncSession,
        user: User,
        *,
        limit: int,
        before: int | None = None,
        conversation_id: uuid.UUID | None = None,
        requested_user: str | None = None,
    ) -> HistoryPage:
        """The caller's turns, newest first, ``limit`` at a time, older than ``before``."""
        if requested_user is not None and not _is_self(user, requested_user):
            raise PermissionDenied("You can only read your own history.", code="forbidden")
        if conversation_id is not None:
            await self._owned(db, user, conversation_id)
        # One row more than asked for tells whether another page exists, without a COUNT.
        rows = await HistoryRepository(db).turns(
            user.id, limit=limit + 1, before_id=before, conversation_id=conversation_id
        )
        turns = [Turn(question, reply) for question, reply in rows[:limit]]
        next_before = turns[-1].question.id if len(rows) > limit else None
        return HistoryPage(turns=turns, next_before=next_before)

    # -- conversations ----------------------------------------------------------------------

    async def list_conversations(
        self, db: AsyncSession, user: User, *, limit: int, offset: int
    ) -> tuple[list[ConversationSummary], int]:
        repository = HistoryRepository(db)
        conversations, total = await repository.conversation_page(
            user.id, limit=limit, offset=offset
        )
        stats = await repository.conversation_stats([c.id for c in conversations])
        summaries = []
        for conversation in conversations:
            found = stats.get(conversation.id)
            summaries.append(
                ConversationSummary(
                    conversation=conversation,
                    message_count=found.message_count if found else 0,
                    preview=_preview(found.last_message_head) if found else None,
                )
            )
        return summaries, total

    async def get_conversation(
        self, db: AsyncSession, user: User, conversation_id: uuid.UUID
    ) -> ConversationWithMessages:
        conversation = await self._owned(db, user, conversation_id)
        messages = await HistoryRepository(db).messages(conversation.id, user.id)
        return ConversationWithMessages(conversation, messages)

    async def rename(
        self, db: AsyncSession, user: User, conversation_id: uuid.UUID, *, title: str
    ) -> Conversation:
        # Renaming is not activity: updated_at (the list's order) stays as it was.
        conversation = await self._owned(db, user, conversation_id)
        conversation.title = title
        await db.flush()
        return conversation

    async def delete(self, db: AsyncSession, user: User, conversation_id: uuid.UUID) -> None:
        """Delete a conversation with its messages (and so their search entries)."""
        if not await HistoryRepository(db).delete_conversation(conversation_id, user.id):
            raise conversation_not_found()

    async def _owned(
        self, db: AsyncSession, user: User, conversation_id: uuid.UUID
    ) -> Conversation:
        conversation = await ConversationRepository(db).get_owned(conversation_id, user.id)
        if conversation is None:
            raise conversation_not_found()
        return conversation

    # -- search -----------------------------------------------------------------------------

    async def search(
        self, db: AsyncSession, user: User, text: str, *, limit: int
    ) -> list[SearchHit]:
        """The caller's messages matching ``text``, most relevant first."""
        query = parse_search_query(text)
        if query is None:
            return []
        rows = await HistoryRepository(db).search(user.id, query, limit=limit)
        return [_hit(row) for row in rows]


def _is_self(user: User, requested: str) -> bool:
    """The charter's ``user_id`` parameter: the caller's id, or (as old clients sent) name."""
    requested = requested.strip()
    try:
        return uuid.UUID(requested) == user.id
    except ValueError:
        return requested.lower() == user.username


def _preview(head: str | None) -> str | None:
    if head is None:
        return None
    return head if len(head) <= PREVIEW_CHARS else head[:PREVIEW_CHARS].rstrip() + "…"


# -- search text ------------------------------------------------------------------------------


def parse_search_query(text: str) -> SearchQuery | None:
    """Plain terms from what the user typed; None when there is nothing to look for."""
    groups: list[SearchGroup] = []
    include: list[str] = []
    exclude: list[str] = []
    terms = 0

    def close_group() -> None:
        # A group of exclusions alone would match almost everything: it is dropped.
        if include:
            groups.append(SearchGroup(tuple(include), tuple(exclude)))
        include.clear()
        exclude.clear()

    # NUL is the one character PostgreSQL text cannot hold; it separates words here.
    for match in _TOKEN.finditer(text.replace("\x00", " ")):
        negated, phrase, word = match.groups()
        if word is not None:
            if word.lower() == "or":
                close_group()
                continue
            negated = "-" if word.startswith("-") else ""
            term = word[1:] if negated else word
        else:
            term = " ".join(phrase.split())
        if not _WORD.search(term) or terms >= MAX_SEARCH_TERMS:
            continue
        terms += 1
        (exclude if negated else include).append(term)
    close_group()
    return SearchQuery(tuple(groups)) if groups else None


def split_highlights(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """Take the engine's highlight markers out of a snippet and return where they were."""
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for char in marked:
        if char == HIGHLIGHT_START:
            start = length
        elif char == HIGHLIGHT_END:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(char)
            length += 1
    return "".join(text), spans


def _hit(row: SearchRow) -> SearchHit:
    snippet, highlights = split_highlights(row.marked_snippet or "")
    return SearchHit(
        message_id=row.message_id,
        conversation_id=row.conversation_id,
        conversation_title=row.conversation_title,
        role=row.role,
        created_at=row.created_at,
        snippet=snippet,
        highlights=highlights,
        rank=float(row.rank),
    )


# -- export -----------------------------------------------------------------------------------

_ROLE_LABELS = {
    MessageRole.USER.value: "You",
    MessageRole.ASSISTANT.value: "Assistant",
    MessageRole.SYSTEM.value: "System",
}


def export_filename(title: str, extension: str) -> str:
    """An ASCII file name from the title: safe in a quoted ``Content-Disposition`` value."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    stem = _UNSAFE_FILENAME.sub("-", ascii_title).strip("-._")[:80].rstrip("-._")
    return f"{stem or 'conversation'}.{extension}"


def render_markdown(export: ConversationWithMessages, exported_at: datetime) -> str:
    """The conversation as a Markdown document: a title, then each message under a heading."""
    conversation = export.conversation
    title = " ".join(conversation.title.split()) or "Conversation"
    lines = [
        f"# {title}",
        "",
        f"*Conversation `{conversation.id}`, started {_when(conversation.created_at)}, "
        f"exported {_when(exported_at)}.*",
    ]
    for message in export.messages:
        label = _ROLE_LABELS.get(message.role, message.role.title())
        if message.role == MessageRole.ASSISTANT.value and message.model:
            label += f" ({message.model})"
        lines += ["", f"## {label} · {_when(message.created_at)}", "", message.content.rstrip()]
        if message.status == MessageStatus.INCOMPLETE.value:
            lines += ["", "*(This answer is incomplete.)*"]
        elif message.status == MessageStatus.ERROR.value:
            lines += ["", "*(No answer: the model failed.)*"]
    return "\n".join(lines) + "\n"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
