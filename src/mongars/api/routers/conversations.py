"""The caller's conversations: list, read, rename, delete, export, and full-text search.

Another user's conversation answers exactly like a missing one (404 ``conversation_not_found``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import AfterValidator

from mongars.api.dependencies import CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.schemas.conversations import (
    ConversationDetail,
    ConversationExport,
    ConversationOut,
    ConversationPage,
    ConversationSummaryOut,
    ConversationUpdate,
    ExportFormat,
    SearchHitOut,
)
from mongars.core.history import export_filename, render_markdown
from mongars.db.base import utcnow

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])

ConversationIdPath = Annotated[uuid.UUID, Path(description="The conversation's id.")]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must contain something other than spaces")
    return text


SearchText = Annotated[
    str,
    Query(
        min_length=1,
        max_length=200,
        description='Words to find (all of them); "a phrase", -excluded, a or b.',
    ),
    AfterValidator(_not_blank),
]

_EXPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The conversation as Markdown (the default) or JSON, as an attachment.",
        "content": {"text/markdown": {"schema": {"type": "string"}}},
    }
}


@router.get("", responses=responses(401))
async def list_conversations(
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ConversationPage:
    """A page of your conversations, most recently active first."""
    summaries, total = await resources.history.list_conversations(
        db, user, limit=limit, offset=offset
    )
    return ConversationPage(
        items=[ConversationSummaryOut.from_summary(summary) for summary in summaries],
        total=total,
        limit=limit,
        offset=offset,
    )


# Declared before /{conversation_id}, which would otherwise capture "search".
@router.get("/search", responses=responses(401))
async def search_conversations(
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    q: SearchText,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> list[SearchHitOut]:
    """Full-text search over your messages (questions and answers), best matches first."""
    hits = await resources.history.search(db, user, q, limit=limit)
    return [SearchHitOut.from_hit(hit) for hit in hits]


@router.get("/{conversation_id}", responses=responses(401, 404))
async def read_conversation(
    conversation_id: ConversationIdPath, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> ConversationDetail:
    """One of your conversations with all its messages, oldest first."""
    found = await resources.history.get_conversation(db, user, conversation_id)
    return ConversationDetail.from_found(found)


@router.patch("/{conversation_id}", responses=responses(401, 404))
async def rename_conversation(
    conversation_id: ConversationIdPath,
    body: ConversationUpdate,
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
) -> ConversationOut:
    """Rename one of your conversations."""
    conversation = await resources.history.rename(db, user, conversation_id, title=body.title)
    return ConversationOut.model_validate(conversation)


@router.delete(
    "/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 404)
)
async def delete_conversation(
    conversation_id: ConversationIdPath, user: CurrentUser, db: DbSession, resources: ResourcesDep
) -> None:
    """Delete one of your conversations and all its messages, for good."""
    await resources.history.delete(db, user, conversation_id)


@router.get(
    "/{conversation_id}/export",
    response_model=ConversationExport,
    responses={**_EXPORT_CONTENT, **responses(401, 404)},
)
async def export_conversation(
    conversation_id: ConversationIdPath,
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    export_format: Annotated[ExportFormat, Query(alias="format")] = "markdown",
) -> Response:
    """Download one of your conversations as Markdown or JSON."""
    found = await resources.history.get_conversation(db, user, conversation_id)
    exported_at = utcnow()
    if export_format == "json":
        body = ConversationExport.from_found(found, exported_at=exported_at).model_dump_json()
        media_type, extension = "application/json", "json"
    else:
        body = render_markdown(found, exported_at)
        media_type, extension = "text/markdown; charset=utf-8", "md"
    filename = export_filename(found.conversation.title, extension)
    return Response(
        content=body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
