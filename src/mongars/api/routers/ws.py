"""The WebSocket channel: tickets over HTTP, then ``/ws/chat/?t=TICKET``.

Refusals are told apart by the close code of an accepted-then-closed socket, because a browser
never sees the status or body of a refused handshake (every refusal would look the same):

- 4400 ``host_forbidden``: the Host header is not one of ours;
- 4403 ``origin_forbidden`` or ``origin_missing``: the page's Origin is not allowed;
- 4401 ``ticket_missing``, ``ticket_invalid``, ``ticket_expired``, ``ticket_used`` or
  ``ticket_revoked``: get a new ticket;
- 4503 ``events_disabled``: ``MONGARS_WS_ENABLE_EVENTS=false``.

Host and Origin are checked before anything else; nothing is read from the ticket or the
database for a refused origin.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from mongars.api.dependencies import CurrentPrincipal, ResourcesDep, resources_of
from mongars.api.errors import responses
from mongars.api.ratelimit import WsTicketRateLimit, rate_limited_response
from mongars.api.schemas.ws import TicketResponse
from mongars.api.ws_session import WsSession
from mongars.core.errors import MongarsError
from mongars.core.origins import host_allowed, origin_allowed
from mongars.resources import Resources

router = APIRouter(tags=["realtime"])

HOST_FORBIDDEN = 4400
TICKET_REFUSED = 4401
ORIGIN_FORBIDDEN = 4403
EVENTS_DISABLED = 4503


@router.post("/api/v1/auth/ws/ticket", responses={**responses(401), **rate_limited_response()})
async def issue_ws_ticket(
    principal: CurrentPrincipal, _limit: WsTicketRateLimit, resources: ResourcesDep
) -> TicketResponse:
    """A single-use ticket for opening the WebSocket, valid for a few seconds."""
    issued = resources.tickets.issue(principal)
    return TicketResponse(ticket=issued.ticket, ttl=issued.ttl)


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code=code, reason=reason)


def _refusal(websocket: WebSocket, resources: Resources) -> tuple[int, str] | None:
    settings = resources.settings
    host = websocket.headers.get("host")
    if not host_allowed(host, settings):
        return HOST_FORBIDDEN, "host_forbidden"
    origin = websocket.headers.get("origin")
    if origin is None:
        if not settings.ws_allow_missing_origin:
            return ORIGIN_FORBIDDEN, "origin_missing"
    elif not origin_allowed(origin, host, settings):
        return ORIGIN_FORBIDDEN, "origin_forbidden"
    if not settings.ws_enable_events:
        return EVENTS_DISABLED, "events_disabled"
    return None


async def chat_socket(websocket: WebSocket) -> None:
    resources = resources_of(websocket)
    refusal = _refusal(websocket, resources)
    if refusal is not None:
        await _refuse(websocket, *refusal)
        return
    try:
        async with resources.sessions() as db:
            principal = await resources.tickets.redeem(db, websocket.query_params.get("t"))
            await db.commit()
    except MongarsError as exc:
        await _refuse(websocket, TICKET_REFUSED, exc.code)
        return
    await websocket.accept()
    connection = resources.connections.open(principal.user.id)
    try:
        await WsSession(websocket, resources, principal, connection).run()
    finally:
        resources.connections.discard(connection)


# Both spellings: the charter's clients use the trailing slash.
router.add_api_websocket_route("/ws/chat/", chat_socket, name="chat_socket")
router.add_api_websocket_route("/ws/chat", chat_socket, name="chat_socket_no_slash")
