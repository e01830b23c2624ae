"""A protocol fake of Ollama's model store: ``GET /api/tags`` and the streaming ``POST /api/pull``.

No real Ollama can run here (see tests/core/llm/test_ollama.py), so a small real HTTP server on
127.0.0.1 speaks the wire format of a pull as Ollama 0.5+ sends it: chunked NDJSON status lines,
``{"status": "pulling manifest"}``, then per layer ``{"status": "pulling <digest prefix>",
"digest": "sha256:…", "total": N, "completed": M}`` growing to ``total``, then ``"verifying sha256
digest"``, ``"writing manifest"``, ``"success"``; a failure is a line ``{"error": "…"}``. The
model name picks the behaviour:

- ``*:broken`` fails halfway through its first layer (``{"error": …}`` mid-stream);
- ``*:unknown`` fails right after the manifest, as Ollama does for a name it cannot find;
- anything else succeeds and is listed by ``/api/tags`` afterwards.

``gate`` (cleared) holds every pull after its first layer line until a test sets it, so a test
can look at a pull in flight; ``pulls`` counts the pulls each model received.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LAYERS = (("sha256:" + "a1" * 32, 3_000_000), ("sha256:" + "b2" * 32, 1_000_000))
STEPS = 5


class FakeOllamaStore(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, step_delay_seconds: float = 0.01) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.step_delay_seconds = step_delay_seconds
        self.pulled: set[str] = set()
        self.pulls: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-pull is part of the tests

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in LAYERS)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOllamaStore

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/api/tags":
            self._json(404, {"error": "not found"})
            return
        models = [{"name": name, "model": name} for name in sorted(self.server.pulled)]
        self._json(200, {"models": models})

    def do_POST(self) -> None:
        if self.path != "/api/pull":
            self._json(404, {"error": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = str(body["model"])
        self.server.pulls[model] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._line({"status": "pulling manifest"})
        if model.endswith(":unknown"):
            self._line({"error": "pull model manifest: file does not exist"})
            self._end()
            return
        for index, (digest, size) in enumerate(LAYERS):
            for step in range(STEPS + 1):
                completed = size * step // STEPS
                line = {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": size,
                    "completed": completed,
                }
                self._line(line)
                if index == 0 and step == 0:
                    self.server.gate.wait(timeout=30)
                if model.endswith(":broken") and index == 0 and step == STEPS // 2:
                    self._line({"error": "max retries exceeded: unexpected EOF"})
                    self._end()
                    return
                time.sleep(self.server.step_delay_seconds)
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            self._line({"status": status})
        self.server.pulled.add(model)
        self._end()

    def _line(self, payload: dict[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def fake_ollama_store(**kwargs: Any) -> Iterator[FakeOllamaStore]:
    server = FakeOllamaStore(**kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()
