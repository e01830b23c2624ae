"""RAG payloads: documents, search, and the charter's review/rag-context shape."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from mongars.core.rag.jobs import IngestJob
from mongars.core.rag.service import IngestResult, SearchHit


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


CollectionName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$"),
    Field(description="1 to 100 letters, digits, `_`, `.`, `:` or `-`."),
]
Query = Annotated[str, StringConstraints(min_length=1, max_length=4000), AfterValidator(_no_nul)]


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    collection: str
    path: str
    title: str
    content_hash: str = Field(description="sha256 of the uploaded bytes, hex.")
    mime: str
    size_bytes: int
    status: str
    chunk_count: int
    shared: bool
    created_at: datetime
    updated_at: datetime


class IngestResponse(BaseModel):
    document: DocumentOut
    deduplicated: bool = Field(
        description="The same content was already stored in this collection: nothing changed."
    )
    replaced: bool = Field(
        description="A document with this path existed; its chunks were replaced."
    )

    @classmethod
    def of(cls, result: IngestResult) -> IngestResponse:
        return cls(
            document=DocumentOut.model_validate(result.document),
            deduplicated=result.deduplicated,
            replaced=result.replaced,
        )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Query
    limit: int = Field(default=5, ge=1, le=50)
    collections: list[CollectionName] | None = Field(
        default=None, max_length=20, description="Only these collections; omit for all."
    )


class SearchResult(BaseModel):
    chunk_id: int
    document_id: uuid.UUID
    collection: str
    path: str
    title: str
    ordinal: int = Field(description="The chunk's position in its document, from 0.")
    text: str
    score: float = Field(description="Reciprocal-rank-fusion score of the vector and text ranks.")
    similarity: float | None = Field(
        description="Cosine similarity to the query, when the vector search found the chunk."
    )

    @classmethod
    def of(cls, hit: SearchHit) -> SearchResult:
        chunk = hit.chunk
        return cls(
            chunk_id=chunk.chunk_id,
            document_id=chunk.document_id,
            collection=chunk.collection,
            path=chunk.path,
            title=chunk.title,
            ordinal=chunk.ordinal,
            text=chunk.text,
            score=hit.score,
            similarity=None if hit.similarity is None else round(hit.similarity, 6),
        )


class SearchResponse(BaseModel):
    results: list[SearchResult]


class RagContextRequest(BaseModel):
    query: Query
    max_results: int = Field(default=5, ge=1, le=50)
    repositories: list[CollectionName] | None = Field(
        default=None, max_length=20, description="Collections to search; omit for all."
    )


class RagReference(BaseModel):
    repository: str = Field(description="The document's collection.")
    file_path: str = Field(description="The document's path as ingested.")
    summary: str = Field(description="The passage.")
    score: float
    url: str | None = Field(description="Where the document can be read, when it has one.")


class RagContextResponse(BaseModel):
    enabled: bool
    focus_areas: list[str] = Field(description="Titles of the documents referenced.")
    references: list[RagReference]

    @classmethod
    def of(cls, hits: list[SearchHit]) -> RagContextResponse:
        titles = list(dict.fromkeys(hit.chunk.title for hit in hits))
        return cls(
            enabled=True,
            focus_areas=titles,
            references=[
                RagReference(
                    repository=hit.chunk.collection,
                    file_path=hit.chunk.path,
                    summary=hit.chunk.text,
                    score=hit.score,
                    url=None,
                )
                for hit in hits
            ],
        )


class IngestJobOut(BaseModel):
    """A background ingest. Poll it until ``status`` is ``done`` (``document_id`` set) or
    ``failed`` (``error`` says why)."""

    job_id: str
    status: Literal["running", "done", "failed"]
    filename: str
    collection: str
    chunks_embedded: int
    chunks_total: int
    document_id: uuid.UUID | None
    replaced: bool
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: IngestJob) -> IngestJobOut:
        return cls(
            job_id=job.id,
            status=job.status,
            filename=job.filename,
            collection=job.collection,
            chunks_embedded=job.chunks_embedded,
            chunks_total=job.chunks_total,
            document_id=job.document_id,
            replaced=job.replaced,
            error=job.error,
            created_at=job.created_at,
            finished_at=job.finished_at,
        )
