"""Documents for retrieval: ingest, list, delete, search, and the charter's rag-context."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from mongars.api.dependencies import CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.schemas.rag import (
    CollectionName,
    DocumentOut,
    IngestJobOut,
    IngestResponse,
    RagContextRequest,
    RagContextResponse,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from mongars.core.rag.errors import DocumentTooLarge, RagDisabled
from mongars.core.rag.service import DEFAULT_COLLECTION, IngestResult, RagService
from mongars.resources import Resources

router = APIRouter(tags=["rag"])

DOCUMENTS_PATH = "/api/v1/rag/documents"


def _rag(resources: Resources) -> RagService:
    if resources.rag is None:
        raise RagDisabled()
    return resources.rag


@router.post(
    DOCUMENTS_PATH,
    status_code=201,
    responses={
        202: {"model": IngestJobOut, "description": "Accepted: embedding in the background."},
        **responses(401, 403, 413, 415, 422, 503),
    },
)
async def ingest_document(
    file: Annotated[UploadFile, File(description="A .txt, .md, .pdf or .html file.")],
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    response: Response,
    collection: Annotated[CollectionName, Form()] = DEFAULT_COLLECTION,
    shared: Annotated[bool, Form(description="Readable by everyone (admins only).")] = False,
    background: Annotated[
        bool | None,
        Form(description="Embed in the background (202 + a job). Default: for large files."),
    ] = None,
) -> IngestResponse | IngestJobOut:
    """Ingest a document: extract, chunk, embed and store it (same content: stored once)."""
    rag = _rag(resources)
    limit = resources.settings.rag.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise DocumentTooLarge(f"{file.filename!r} is larger than {limit} bytes.")
    prepared = await rag.prepare_ingest(
        db,
        user,
        filename=file.filename or "upload.txt",
        data=data,
        collection=collection,
        shared=shared,
    )
    if isinstance(prepared, IngestResult):
        response.status_code = 200
        return IngestResponse.of(prepared)
    if background is None:
        background = len(data) > resources.settings.rag.background_threshold_bytes
    if background and resources.rag_jobs is not None:
        job = resources.rag_jobs.start(user, prepared)
        response.status_code = 202
        response.headers["Location"] = f"/api/v1/rag/jobs/{job.id}"
        return IngestJobOut.of(job)
    return IngestResponse.of(await rag.store_ingest(db, user, prepared))


@router.get("/api/v1/rag/jobs/{job_id}", responses=responses(401, 404, 503))
async def read_ingest_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)],
    user: CurrentUser,
    resources: ResourcesDep,
) -> IngestJobOut:
    """Progress of a background ingest: chunks embedded out of all, then the document."""
    _rag(resources)
    assert resources.rag_jobs is not None
    return IngestJobOut.of(resources.rag_jobs.get(job_id, user.id))


@router.get(DOCUMENTS_PATH, responses=responses(401, 503))
async def list_documents(
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    collection: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[DocumentOut]:
    """Your documents and the shared ones, newest first."""
    documents = await _rag(resources).list_documents(
        db, user, collection, limit=limit, offset=offset
    )
    return [DocumentOut.model_validate(d) for d in documents]


@router.delete(
    DOCUMENTS_PATH + "/{document_id}", status_code=204, responses=responses(401, 404, 503)
)
async def delete_document(
    document_id: uuid.UUID, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> Response:
    """Delete one of your documents with its chunks and vectors."""
    await _rag(resources).delete(db, user, document_id)
    return Response(status_code=204)


@router.post("/api/v1/rag/search", responses=responses(401, 503))
async def search_documents(
    body: SearchRequest, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> SearchResponse:
    """The passages of your documents (and shared ones) that best match the query."""
    hits = await _rag(resources).search(
        db, user, body.query, limit=body.limit, collections=body.collections
    )
    return SearchResponse(results=[SearchResult.of(hit) for hit in hits])


@router.post("/api/v1/review/rag-context", responses=responses(401))
async def rag_context(
    body: RagContextRequest, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> RagContextResponse:
    """The charter's context for a review: passages of your and shared documents."""
    if resources.rag is None:
        return RagContextResponse(enabled=False, focus_areas=[], references=[])
    hits = await resources.rag.search(
        db, user, body.query, limit=body.max_results, collections=body.repositories
    )
    return RagContextResponse.of(hits)
