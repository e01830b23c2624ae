"""Documents and chunks: every RAG query.

Access is part of every read: a document is visible to its owner, and to everyone when it is
shared. ``visible_to`` is that condition; no query here returns a document or a chunk without
it (except the owner-only writes, which filter on the owner instead).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.tables import Chunk, Document

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 32
# Words that match nearly every passage: in an OR query they only add noise to the ranking.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "it's",
        "me",
        "more",
        "most",
        "my",
        "no",
        "not",
        "of",
        "on",
        "one",
        "or",
        "our",
        "out",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "up",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_SQLITE_FULL_TEXT = (
    "SELECT c.id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
    "JOIN documents d ON d.id = c.document_id "
    "WHERE chunks_fts MATCH :match AND (d.owner_id = :user_id OR d.shared = 1) "
    "AND (:any_collection OR d.collection IN :collections) "
    "ORDER BY bm25(chunks_fts) LIMIT :limit"
)
_POSTGRES_FULL_TEXT = (
    "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
    "WHERE c.text_tsv @@ to_tsquery('simple', :tsquery) "
    "AND (d.owner_id = :user_id OR d.shared) "
    "AND (:any_collection OR d.collection IN :collections) "
    "ORDER BY ts_rank(c.text_tsv, to_tsquery('simple', :tsquery)) DESC, c.id LIMIT :limit"
)


def visible_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    return or_(Document.owner_id == user_id, Document.shared.is_(True))


@dataclass(frozen=True, slots=True)
class ChunkHit:
    chunk_id: int
    document_id: uuid.UUID
    ordinal: int
    text: str
    collection: str
    path: str
    title: str


@dataclass(frozen=True, slots=True)
class CorpusVersion:
    """Changes whenever a document is added, replaced or removed (on any replica)."""

    documents: int
    chunks: int
    last_update: str


class DocumentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, document: Document) -> Document:
        self.session.add(document)
        await self.session.flush()
        return document

    async def find_owned_by_path(
        self, owner_id: uuid.UUID, collection: str, path: str
    ) -> Document | None:
        result = await self.session.execute(
            select(Document).where(
                Document.owner_id == owner_id,
                Document.collection == collection,
                Document.path == path,
            )
        )
        return result.scalars().first()

    async def find_owned_by_hash(
        self, owner_id: uuid.UUID, collection: str, content_hash: str
    ) -> Document | None:
        result = await self.session.execute(
            select(Document).where(
                Document.owner_id == owner_id,
                Document.collection == collection,
                Document.content_hash == content_hash,
            )
        )
        return result.scalars().first()

    async def get_owned(self, document_id: uuid.UUID, owner_id: uuid.UUID) -> Document | None:
        result = await self.session.execute(
            select(Document).where(Document.id == document_id, Document.owner_id == owner_id)
        )
        return result.scalar_one_or_none()

    async def list_visible(
        self, user_id: uuid.UUID, collection: str | None, *, limit: int, offset: int
    ) -> list[Document]:
        query = select(Document).where(visible_to(user_id))
        if collection is not None:
            query = query.where(Document.collection == collection)
        result = await self.session.execute(
            query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
        )
        return list(result.scalars().all())

    async def delete(self, document: Document) -> None:
        await self.session.execute(delete(Chunk).where(Chunk.document_id == document.id))
        await self.session.execute(delete(Document).where(Document.id == document.id))

    async def replace_chunks(self, document_id: uuid.UUID, chunks: Sequence[Chunk]) -> None:
        await self.session.execute(delete(Chunk).where(Chunk.document_id == document_id))
        self.session.add_all(chunks)
        await self.session.flush()

    async def corpus_version(self) -> CorpusVersion:
        row = (
            await self.session.execute(
                select(
                    func.count(Document.id),
                    func.coalesce(func.sum(Document.chunk_count), 0),
                    func.max(Document.updated_at),
                )
            )
        ).one()
        return CorpusVersion(int(row[0]), int(row[1]), str(row[2]))

    async def all_embeddings(self) -> list[tuple[int, uuid.UUID, bytes]]:
        result = await self.session.execute(
            select(Chunk.id, Chunk.document_id, Chunk.embedding).order_by(Chunk.id)
        )
        return [(row[0], row[1], row[2]) for row in result.all()]

    async def visible_document_ids(
        self, user_id: uuid.UUID, collections: Sequence[str] | None
    ) -> list[uuid.UUID]:
        query = select(Document.id).where(visible_to(user_id))
        if collections:
            query = query.where(Document.collection.in_(collections))
        return list((await self.session.execute(query)).scalars().all())

    async def visible_chunks(
        self,
        user_id: uuid.UUID,
        chunk_ids: Sequence[int],
        collections: Sequence[str] | None,
    ) -> dict[int, ChunkHit]:
        """The chunks among ``chunk_ids`` that the user may read (checked again here)."""
        if not chunk_ids:
            return {}
        query = (
            select(
                Chunk.id,
                Chunk.document_id,
                Chunk.ordinal,
                Chunk.text,
                Document.collection,
                Document.path,
                Document.title,
            )
            .join(Document, Document.id == Chunk.document_id)
            .where(Chunk.id.in_(chunk_ids), visible_to(user_id))
        )
        if collections:
            query = query.where(Document.collection.in_(collections))
        return {row[0]: ChunkHit(*row) for row in (await self.session.execute(query)).all()}

    async def full_text(
        self,
        user_id: uuid.UUID,
        query_text: str,
        collections: Sequence[str] | None,
        *,
        limit: int,
    ) -> list[int]:
        """Chunk ids matching any of the query's words, best first (BM25 / ts_rank)."""
        words = [w for w in _WORD.findall(query_text.lower()) if w not in STOPWORDS]
        words = list(dict.fromkeys(words))[:MAX_QUERY_WORDS]
        if not words:
            return []
        params: dict[str, object] = {
            "user_id": user_id,
            "limit": limit,
            "any_collection": not collections,
            "collections": list(collections or [""]),
        }
        if self.session.get_bind().dialect.name == "sqlite":
            # Each word quoted: FTS5 operators in the query are plain text, never syntax.
            params["match"] = " OR ".join(f'"{word}"' for word in words)
            params["user_id"] = user_id.hex
            sql = text(_SQLITE_FULL_TEXT)
        else:
            # Words are \w+ only, so the tsquery holds no operator but the ORs we put in.
            params["tsquery"] = " | ".join(words)
            sql = text(_POSTGRES_FULL_TEXT)
        sql = sql.bindparams(bindparam("collections", expanding=True))
        result = await self.session.execute(sql, params)
        return [int(row[0]) for row in result.all()]
