"""The thinnest proxy (DESIGN section 5's baseline): FastAPI under uvicorn, one shared aiohttp
client session, the request body passed through to the backend and its answer passed back.
No auth, no validation, no storage, no access log.

    python bench/thin_proxy.py --port 8402 --upstream http://127.0.0.1:8401
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from fastapi import FastAPI, Request, Response


def create_app(upstream: str) -> FastAPI:
    session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(base_url=upstream)
        yield
        await session.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        assert session is not None
        body = await request.body()
        headers = {"content-type": "application/json"}
        async with session.post("/v1/chat/completions", data=body, headers=headers) as answer:
            content = await answer.read()
            media_type = answer.headers.get("content-type", "application/json")
            return Response(content, status_code=answer.status, media_type=media_type)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="backend root, e.g. http://127.0.0.1:8401"
    )
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
