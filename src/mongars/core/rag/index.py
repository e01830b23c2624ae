"""Vector search: exact (numpy over a cached matrix) or pgvector's HNSW index.

Exact: every chunk's vector in one float32 matrix per process, reloaded when the corpus
changes. The check is one small query on ``documents`` per search (count, chunk total, last
update), so a write by any process or replica is seen by the next search. Vectors are unit
length: the dot product is the cosine similarity.

Access is decided by the database either way: the exact path scores only the chunks of the
documents a visibility query returns; the pgvector path filters in the same query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.core.rag.embedder import DIMENSIONS, Vectors
from mongars.db.repositories.documents import CorpusVersion, DocumentRepository

_PGVECTOR_SEARCH = (
    "SELECT c.id, 1 - (c.embedding_vec <=> CAST(:q AS vector)) AS score "
    "FROM chunks c JOIN documents d ON d.id = c.document_id "
    "WHERE (d.owner_id = :user_id OR d.shared) AND c.embedding_vec IS NOT NULL "
    "AND (:any_collection OR d.collection IN :collections) "
    "ORDER BY c.embedding_vec <=> CAST(:q AS vector) LIMIT :k"
)


@dataclass(frozen=True, slots=True)
class _Matrix:
    version: CorpusVersion
    vectors: Vectors
    chunk_ids: npt.NDArray[np.int64]
    doc_codes: npt.NDArray[np.int32]
    codes: dict[uuid.UUID, int]


def exact_top_k(
    vectors: Vectors, query: npt.NDArray[np.float32], k: int, mask: npt.NDArray[np.bool_] | None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Row indices and scores of the ``k`` best rows (only where ``mask``), best first."""
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, np.float32(-np.inf))
    k = min(k, int(scores.shape[0]))
    if k <= 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    return top, scores[top]


class VectorIndex:
    def __init__(self, *, ef_search: int = 100) -> None:
        self._ef_search = ef_search
        self._matrix: _Matrix | None = None
        self._lock = anyio.Lock()
        # None until the first search looks; PostgreSQL only.
        self._pgvector: bool | None = None
        self._iterative_scan = False

    async def uses_pgvector(self, db: AsyncSession) -> bool:
        if self._pgvector is None:
            if db.get_bind().dialect.name != "postgresql":
                self._pgvector = False
            else:
                found = await db.execute(
                    text(
                        "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                        "current_schema() AND table_name = 'chunks' "
                        "AND column_name = 'embedding_vec'"
                    )
                )
                self._pgvector = found.scalar() is not None
                if self._pgvector:
                    version = await db.scalar(
                        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                    )
                    self._iterative_scan = _version(str(version)) >= (0, 8)
        return self._pgvector

    async def store_vectors(
        self, db: AsyncSession, chunk_ids: Sequence[int], vectors: Vectors
    ) -> None:
        """Copy freshly stored vectors into the pgvector column, when there is one."""
        if not chunk_ids or not await self.uses_pgvector(db):
            return
        await db.execute(
            text("UPDATE chunks SET embedding_vec = CAST(:vec AS vector) WHERE id = :id"),
            [
                {"id": chunk_id, "vec": _vector_literal(vector)}
                for chunk_id, vector in zip(chunk_ids, vectors, strict=True)
            ],
        )

    async def search(
        self,
        db: AsyncSession,
        user_id: uuid.UUID,
        query: npt.NDArray[np.float32],
        collections: Sequence[str] | None,
        k: int,
    ) -> list[tuple[int, float]]:
        """``(chunk id, cosine similarity)`` of the best chunks the user may read."""
        if await self.uses_pgvector(db):
            return await self._search_pgvector(db, user_id, query, collections, k)
        repo = DocumentRepository(db)
        matrix = await self._current(repo)
        if matrix.vectors.shape[0] == 0:
            return []
        allowed = await repo.visible_document_ids(user_id, collections)
        codes = [matrix.codes[d] for d in allowed if d in matrix.codes]
        if not codes:
            return []

        def rank() -> list[tuple[int, float]]:
            mask = np.isin(matrix.doc_codes, np.asarray(codes, dtype=np.int32))
            rows, scores = exact_top_k(matrix.vectors, query, k, mask)
            return [(int(matrix.chunk_ids[r]), float(s)) for r, s in zip(rows, scores, strict=True)]

        return await anyio.to_thread.run_sync(rank)

    async def _current(self, repo: DocumentRepository) -> _Matrix:
        version = await repo.corpus_version()
        if self._matrix is not None and self._matrix.version == version:
            return self._matrix
        async with self._lock:
            if self._matrix is not None and self._matrix.version == version:
                return self._matrix
            rows = await repo.all_embeddings()
            self._matrix = await anyio.to_thread.run_sync(_build_matrix, version, rows)
            return self._matrix

    async def _search_pgvector(
        self,
        db: AsyncSession,
        user_id: uuid.UUID,
        query: npt.NDArray[np.float32],
        collections: Sequence[str] | None,
        k: int,
    ) -> list[tuple[int, float]]:
        params: dict[str, object] = {
            "user_id": user_id,
            "q": _vector_literal(query),
            "k": k,
            "any_collection": not collections,
            "collections": list(collections or [""]),
        }
        # The access filter applies to the index's candidates: a longer candidate list than
        # pgvector's default 40 and, from pgvector 0.8, iterative scans, so that a user who
        # owns few of the chunks still gets k of theirs. Both in one round trip:
        # set_config(..., true) is SET LOCAL, for this transaction only.
        await db.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef_search, true)"
                + (
                    ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
                    if self._iterative_scan
                    else ""
                )
            ),
            {"ef_search": str(self._ef_search)},
        )
        result = await db.execute(
            text(_PGVECTOR_SEARCH).bindparams(bindparam("collections", expanding=True)), params
        )
        # relaxed_order may return neighbours slightly out of order.
        found = [(int(row[0]), float(row[1])) for row in result.all()]
        return sorted(found, key=lambda hit: -hit[1])


def _build_matrix(version: CorpusVersion, rows: list[tuple[int, uuid.UUID, bytes]]) -> _Matrix:
    codes: dict[uuid.UUID, int] = {}
    vectors = np.empty((len(rows), DIMENSIONS), dtype=np.float32)
    chunk_ids = np.empty(len(rows), dtype=np.int64)
    doc_codes = np.empty(len(rows), dtype=np.int32)
    for i, (chunk_id, document_id, blob) in enumerate(rows):
        vectors[i] = np.frombuffer(blob, dtype="<f4")
        chunk_ids[i] = chunk_id
        doc_codes[i] = codes.setdefault(document_id, len(codes))
    return _Matrix(version, vectors, chunk_ids, doc_codes, codes)


def _version(text_version: str) -> tuple[int, ...]:
    parts = []
    for part in text_version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _vector_literal(vector: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def to_blob(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()
