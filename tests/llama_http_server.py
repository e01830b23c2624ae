"""Serve a GGUF model with llama.cpp's HTTP server, as embedded in xllamacpp, until stdin closes.

Run as a child process by the OpenAI-compatible backend tests: it reads one JSON line of
settings from stdin, prints ``{"url": ...}`` once the model is loaded, and exits when the parent
closes its stdin. ``xllamacpp.Server`` starts the HTTP listener on a thread of its own; keeping
it in a separate process leaves the test process with a single in-process model.
"""

from __future__ import annotations

import json
import sys

import xllamacpp  # type: ignore[import-untyped]


def main() -> None:
    settings = json.loads(sys.stdin.readline())
    params = xllamacpp.CommonParams()
    params.model.path = settings["model_path"]
    params.model_alias = {settings["alias"]}
    params.n_ctx = settings["n_ctx"]
    params.cpuparams.n_threads = settings["n_threads"]
    params.cpuparams_batch.n_threads = settings["n_threads"]
    params.api_keys = [settings["api_key"]]
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; we report it
    params.verbosity = -1
    params.ui = False
    server = xllamacpp.Server(params)
    print(json.dumps({"url": server.listening_address}), flush=True)
    sys.stdin.read()
    del server  # stops llama.cpp's loop and HTTP threads


if __name__ == "__main__":
    main()
