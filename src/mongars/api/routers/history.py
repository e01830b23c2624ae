"""The charter's history route: the caller's turns, newest first, paged by a cursor.

The next page's address is in a ``Link: <...>; rel="next"`` header (RFC 8288), a path-relative
URL carrying ``before`` (the last item's ``id``), ``limit`` and any ``conversation_id``; it is
absent on the last page. Clients may equally build it themselves from the last item's ``id``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from mongars.api.dependencies import CurrentUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.schemas.history import HistoryItem

router = APIRouter(tags=["history"])

# Message ids are 64-bit signed integers on both engines; a larger cursor is a client error.
MAX_MESSAGE_ID = 2**63 - 1

_LINK_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Link": {
                "description": 'The next (older) page, as `<URL>; rel="next"`; absent on the last.',
                "schema": {"type": "string"},
            }
        }
    }
}


@router.get("/api/v1/conversation/history", responses={**_LINK_HEADER, **responses(401, 403, 404)})
async def read_history(
    request: Request,
    response: Response,
    user: CurrentUser,
    db: DbSession,
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Turns per page.")] = 20,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_MESSAGE_ID, description="Only turns older than this turn `id`."),
    ] = None,
    conversation_id: Annotated[
        uuid.UUID | None, Query(description="Only this conversation's turns.")
    ] = None,
    user_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="Charter compatibility: your own id or username; anyone else's is 403.",
        ),
    ] = None,
) -> list[HistoryItem]:
    """Your turns (question and reply), newest first; the `Link` header leads to older ones."""
    page = await resources.history.history(
        db,
        user,
        limit=limit,
        before=before,
        conversation_id=conversation_id,
        requested_user=user_id,
    )
    if page.next_before is not None:
        params: dict[str, str | int] = {"before": page.next_before, "limit": limit}
        if conversation_id is not None:
            params["conversation_id"] = str(conversation_id)
        response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return [HistoryItem.from_turn(turn) for turn in page.turns]
