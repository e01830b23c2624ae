"""An instant OpenAI-compatible backend for benchmarks.

A raw asyncio protocol with httptools' parser on uvloop (when installed): no framework, no
logging, answers prepared once as bytes. ``POST /v1/chat/completions`` returns a small fixed
completion with usage, as one JSON body or, when the request asks ``"stream": true``, as
server-sent events (role and text chunks, finish, usage, ``[DONE]``). ``GET /v1/models`` lists
the model; ``GET /stats`` counts the completions served and connections accepted, for
cross-checks.

    python bench/mock_backend.py --port 8401
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any, cast

import httptools

MODEL = "bench-model"
ANSWER = "Hello from the mock backend."
USAGE = {"prompt_tokens": 24, "completion_tokens": 6, "total_tokens": 30}


def _http(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    return {**base, "choices": [choice]}


COMPLETION = _http(
    "200 OK",
    "application/json",
    _json(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ),
)
_EVENTS = [
    _chunk({"role": "assistant", "content": ANSWER[:5]}, None),
    _chunk({"content": ANSWER[5:]}, None),
    _chunk({}, "stop"),
    {**_chunk({}, None), "choices": [], "usage": USAGE},
]
STREAM = _http(
    "200 OK",
    "text/event-stream",
    b"".join(b"data: " + _json(event) + b"\n\n" for event in _EVENTS) + b"data: [DONE]\n\n",
)
MODELS = _http(
    "200 OK",
    "application/json",
    _json({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}),
)
NOT_FOUND = _http("404 Not Found", "application/json", b'{"error":{"message":"not found"}}')

stats: Counter[str] = Counter()


class MockProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body.clear()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        method, path = self.parser.get_method(), self.url.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            body = b"".join(self.body)
            streamed = b'"stream":true' in body or b'"stream": true' in body
            stats["stream" if streamed else "plain"] += 1
            self.transport.write(STREAM if streamed else COMPLETION)
        elif method == b"GET" and path == b"/v1/models":
            self.transport.write(MODELS)
        elif method == b"GET" and path == b"/stats":
            self.transport.write(_http("200 OK", "application/json", _json(dict(stats))))
        else:
            self.transport.write(NOT_FOUND)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
