"""Ingest, list, delete and search documents; retrieval for chat.

Ingest runs inside the request's unit of work: the document row and all its chunks are
written in one transaction, so a failure (a bad file, the embedder, the database) stores
nothing. The same content in the same collection is stored once (sha256 of the bytes);
ingesting a changed file under a path already stored replaces that document's chunks.

Search is hybrid: the vector ranking and the full-text ranking are fused by reciprocal rank
fusion (score = sum of 1 / (60 + rank)), which needs no score calibration between the two.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import anyio.to_thread
import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.config import RagSettings
from mongars.core.errors import NotFound, PermissionDenied
from mongars.core.rag.chunking import TextChunk, chunk_text
from mongars.core.rag.embedder import TextEmbedder, Vectors
from mongars.core.rag.errors import DocumentRejected, DocumentTooLarge
from mongars.core.rag.extract import extract_text
from mongars.core.rag.index import VectorIndex, to_blob
from mongars.db.base import utcnow
from mongars.db.repositories.documents import ChunkHit, DocumentRepository
from mongars.db.tables import Chunk, Document, DocumentStatus, User

RRF_K = 60
DEFAULT_COLLECTION = "default"
MAX_PATH_CHARS = 1000


@dataclass(frozen=True, slots=True)
class IngestResult:
    document: Document
    deduplicated: bool
    replaced: bool


@dataclass(frozen=True, slots=True)
class PreparedIngest:
    """A checked, extracted and chunked file, ready to embed and store."""

    filename: str
    data_size: int
    mime: str
    content: str
    digest: str
    collection: str
    shared: bool
    chunks: list[TextChunk]


# Called with (chunks embedded so far, chunks in all) while a document is embedded.
IngestProgress = Callable[[int, int], None]
EMBED_BATCH_CHUNKS = 32


@dataclass(frozen=True, slots=True)
class SearchHit:
    chunk: ChunkHit
    score: float
    similarity: float | None


class RagService:
    def __init__(self, embedder: TextEmbedder, settings: RagSettings) -> None:
        self.embedder = embedder
        self.settings = settings
        self.index = VectorIndex(ef_search=settings.hnsw_ef_search)

    async def ingest(
        self,
        db: AsyncSession,
        user: User,
        *,
        filename: str,
        data: bytes,
        collection: str = DEFAULT_COLLECTION,
        shared: bool = False,
    ) -> IngestResult:
        prepared = await self.prepare_ingest(
            db, user, filename=filename, data=data, collection=collection, shared=shared
        )
        if isinstance(prepared, IngestResult):
            return prepared
        return await self.store_ingest(db, user, prepared)

    async def prepare_ingest(
        self,
        db: AsyncSession,
        user: User,
        *,
        filename: str,
        data: bytes,
        collection: str = DEFAULT_COLLECTION,
        shared: bool = False,
    ) -> PreparedIngest | IngestResult:
        """Check, extract and chunk; an ``IngestResult`` when the same bytes are stored already.
        Every problem with the file is raised here, before anything is stored or queued."""
        if len(data) > self.settings.max_upload_bytes:
            raise DocumentTooLarge(
                f"{filename!r} is {len(data)} bytes; the limit is {self.settings.max_upload_bytes}."
            )
        if not filename.strip() or len(filename) > MAX_PATH_CHARS or not filename.isprintable():
            raise DocumentRejected(
                f"The file name must be 1 to {MAX_PATH_CHARS} printable characters.",
                code="document_name_invalid",
            )
        if shared and not user.is_admin:
            raise PermissionDenied(
                "Only administrators can publish shared documents.", code="admin_required"
            )
        # Text is held to the upload's own cap: a PDF may not expand beyond a text file.
        mime, content = await anyio.to_thread.run_sync(
            extract_text, filename, data, self.settings.max_upload_bytes
        )
        digest = hashlib.sha256(data).hexdigest()
        repo = DocumentRepository(db)
        at_path = await repo.find_owned_by_path(user.id, collection, filename)
        if at_path is not None and at_path.content_hash == digest:
            # The same file again: nothing to read, but its sharing may be what changed.
            if at_path.shared != shared:
                at_path.shared = shared
                at_path.updated_at = utcnow()
            return IngestResult(at_path, deduplicated=True, replaced=False)
        if at_path is None:
            # A new path: bytes stored under another name are that document. (Other bytes at
            # a path already stored replace its document, whatever else holds them.)
            same = await repo.find_owned_by_hash(user.id, collection, digest)
            if same is not None:
                return IngestResult(same, deduplicated=True, replaced=False)
        chunks = await anyio.to_thread.run_sync(self._chunk, content)
        return PreparedIngest(
            filename=filename,
            data_size=len(data),
            mime=mime,
            content=content,
            digest=digest,
            collection=collection,
            shared=shared,
            chunks=chunks,
        )

    async def store_ingest(
        self,
        db: AsyncSession,
        user: User,
        prepared: PreparedIngest,
        progress: IngestProgress | None = None,
    ) -> IngestResult:
        """Embed (in batches, reporting progress) and store a prepared document."""
        chunks, filename, collection = prepared.chunks, prepared.filename, prepared.collection
        content, digest, mime, shared = (
            prepared.content,
            prepared.digest,
            prepared.mime,
            prepared.shared,
        )
        vectors = await self._embed_with_progress([c.text for c in chunks], progress)
        repo = DocumentRepository(db)
        now = utcnow()
        document = await repo.find_owned_by_path(user.id, collection, filename)
        replaced = document is not None
        if document is None:
            document = await repo.add(
                Document(
                    owner_id=user.id,
                    collection=collection,
                    path=filename,
                    title=_title(filename, content),
                    content_hash=digest,
                    mime=mime,
                    size_bytes=prepared.data_size,
                    status=DocumentStatus.READY,
                    chunk_count=len(chunks),
                    shared=shared,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            document.title = _title(filename, content)
            document.content_hash = digest
            document.mime = mime
            document.size_bytes = prepared.data_size
            document.chunk_count = len(chunks)
            document.shared = shared
            document.updated_at = now
        rows = [
            Chunk(
                document_id=document.id,
                ordinal=c.ordinal,
                text=c.text,
                token_count=c.token_count,
                embedding=to_blob(vector),
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        await repo.replace_chunks(document.id, rows)
        await self.index.store_vectors(db, [r.id for r in rows], vectors)
        return IngestResult(document, deduplicated=False, replaced=replaced)

    async def embedder_vectors(self, texts: Sequence[str]) -> Vectors:
        return await anyio.to_thread.run_sync(self.embedder.embed, texts)

    async def _embed_with_progress(
        self, texts: list[str], progress: IngestProgress | None
    ) -> Vectors:
        if progress is None or len(texts) <= EMBED_BATCH_CHUNKS:
            vectors = await self.embedder_vectors(texts)
            if progress is not None:
                progress(len(texts), len(texts))
            return vectors
        parts = []
        for start in range(0, len(texts), EMBED_BATCH_CHUNKS):
            parts.append(await self.embedder_vectors(texts[start : start + EMBED_BATCH_CHUNKS]))
            progress(min(start + EMBED_BATCH_CHUNKS, len(texts)), len(texts))
        return np.concatenate(parts)

    def _chunk(self, content: str) -> list[TextChunk]:
        return chunk_text(
            content,
            max_tokens=self.settings.chunk_tokens,
            overlap_tokens=self.settings.chunk_overlap_tokens,
            count_tokens=self.embedder.count_tokens,
        )

    async def list_documents(
        self, db: AsyncSession, user: User, collection: str | None, *, limit: int, offset: int
    ) -> list[Document]:
        return await DocumentRepository(db).list_visible(
            user.id, collection, limit=limit, offset=offset
        )

    async def delete(self, db: AsyncSession, user: User, document_id: uuid.UUID) -> None:
        """Only the owner deletes; anyone else's document is a 404, shared or not."""
        repo = DocumentRepository(db)
        document = await repo.get_owned(document_id, user.id)
        if document is None:
            raise NotFound("No such document.", code="document_not_found")
        await repo.delete(document)

    async def search(
        self,
        db: AsyncSession,
        user: User,
        query: str,
        *,
        limit: int,
        collections: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        candidates = max(limit * 4, 20)
        vector = (await anyio.to_thread.run_sync(self.embedder.embed, [query]))[0]
        by_vector = await self.index.search(db, user.id, vector, collections, candidates)
        repo = DocumentRepository(db)
        by_text = await repo.full_text(user.id, query, collections, limit=candidates)
        fused: dict[int, float] = {}
        for rank, (chunk_id, _) in enumerate(by_vector):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        for rank, chunk_id in enumerate(by_text):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        similarity = dict(by_vector)
        best = sorted(fused, key=lambda c: (-fused[c], -similarity.get(c, -1.0)))[:limit]
        # Read back through the access filter once more.
        found = await repo.visible_chunks(user.id, best, collections)
        return [
            SearchHit(found[c], round(fused[c], 6), similarity.get(c)) for c in best if c in found
        ]


def _title(filename: str, content: str) -> str:
    for line in content.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:300]
    return PurePosixPath(filename).name[:300]
