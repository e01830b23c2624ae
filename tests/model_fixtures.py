"""Real models shared by the whole test session (a pytest plugin, see tests/conftest.py).

One embedded llama.cpp model per process is the backend's rule, so every test that needs it,
at any level, asks for the session's ``embedded`` fixture. llama.cpp runs with ONE thread in
tests: with as many threads as cores its threads wait for each other at every step, so any
other busy process (a parallel test run, a build) stalls generation about twentyfold
(measured: 90 -> 4 tokens/s on two cores); one thread degrades gracefully.

``llama_server`` is llama.cpp's own OpenAI-compatible HTTP server (shipped in the xllamacpp
wheel) serving the same GGUF from a child process on 127.0.0.1: a real server for the
``openai`` backend.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mongars.core.llm import EmbeddedBackend, default_model_path

SERVER_SCRIPT = Path(__file__).with_name("llama_http_server.py")
ALIAS = "smollm2-test"


@pytest.fixture(scope="session")
async def embedded() -> AsyncIterator[EmbeddedBackend]:
    backend = EmbeddedBackend(n_ctx=2048, n_threads=1)
    await backend.warm_up()
    yield backend
    await backend.aclose()


@dataclass(frozen=True)
class LlamaServer:
    url: str
    api_key: str


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    api_key = secrets.token_urlsafe(16)
    settings = {
        "model_path": str(default_model_path()),
        "alias": ALIAS,
        "n_ctx": 1024,
        "n_threads": 1,  # why one thread: see the module docstring
        "api_key": api_key,
    }
    process = subprocess.Popen(  # noqa: S603 -- our own script, run by this interpreter
        [sys.executable, str(SERVER_SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(json.dumps(settings) + "\n")
        process.stdin.flush()
        ready = process.stdout.readline()
        if not ready:
            pytest.fail(f"llama.cpp server exited before listening (code {process.wait(5)})")
        url = json.loads(ready)["url"]
        _wait_until_healthy(url)
        yield LlamaServer(url=url, api_key=api_key)
    finally:
        process.stdin.close()  # the child exits when its stdin closes
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _wait_until_healthy(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail("llama.cpp server did not become healthy")
