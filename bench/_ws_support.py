"""The bare WebSocket baseline for ``bench/ws.py``: Starlette under uvicorn, nothing else.

- ``/ws?g=GROUP``: accept, send one ``ws.connected`` frame, then hold the socket (echoing any
  text it receives) until the peer leaves;
- ``POST /broadcast?g=GROUP``: one frame ``{"id", "type": "chat.message", "ts", "data"}``,
  ``ts`` stamped before the loop, sent with ``await websocket.send_text`` to every socket of
  the group, one after the other; answers ``{"sent": n}`` once the loop is done;
- ``GET /healthz``.

uvicorn is run as ``mongars serve`` runs it (same defaults: protocol auto-detection, access
log, WebSocket pings and permessage-deflate), so the two differ only in the application.

    python bench/_ws_support.py --port 8410
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

groups: defaultdict[str, set[WebSocket]] = defaultdict(set)


def frame(type_: str, data: dict[str, object]) -> str:
    ts = datetime.now(UTC).isoformat()
    return json.dumps({"id": uuid.uuid4().hex, "type": type_, "ts": ts, "data": data})


async def hold(websocket: WebSocket) -> None:
    group = websocket.query_params.get("g", "0")
    await websocket.accept()
    await websocket.send_text(frame("ws.connected", {"group": group}))
    groups[group].add(websocket)
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        groups[group].discard(websocket)


async def broadcast(request: Request) -> JSONResponse:
    text = frame("chat.message", {"message": {"role": "assistant", "content": "broadcast"}})
    sent = 0
    for websocket in list(groups[request.query_params.get("g", "0")]):
        try:
            await websocket.send_text(text)
            sent += 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
    return JSONResponse({"sent": sent})


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "sockets": sum(len(g) for g in groups.values())})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/broadcast", broadcast, methods=["POST"]),
        WebSocketRoute("/ws", hold),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, server_header=False)


if __name__ == "__main__":
    main()
