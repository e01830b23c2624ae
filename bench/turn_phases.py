"""Where one chat turn's time goes, phase by phase (a diagnostic beside ``overhead.py``).

``overhead.py`` says how much a turn costs; this says where. One process, no network between
client and server: the app is called in-process (httpx's ASGI transport), the backend is the
instant mock (``mock_backend.py``, its own process on the other core), SQLite in a temporary
data dir, an API key, one fresh conversation per turn, exactly as ``overhead.py`` sends them.
The methods that make up a turn are wrapped with a timer; each phase's median over ``--turns``
turns is printed, with the SQL statements one turn runs and, as floors measured the same way,
``GET /healthz`` (the middleware stack) and ``GET /api/v1/user/me`` (the stack plus API-key
authentication).

Phases overlap (the request's phases run inside the turn; ``store answer`` inside
``generation``), and the timers and the in-process client add a little to each, so read them as
shares, not as a sum.

    .venv/bin/python bench/turn_phases.py               # about 20 seconds
    .venv/bin/python bench/turn_phases.py --turns 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import inspect
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mock_backend import MODEL

BENCH_DIR = Path(__file__).resolve().parent
PASSWORD = "bench-password-not-secret"  # noqa: S105 (a throwaway account in a temp dir)
MESSAGE = "What is the capital of France?"
WARMUP_TURNS = 100

timings: defaultdict[str, list[float]] = defaultdict(list)
# FastAPI's dependency solver calls, itself included: it recurses into each dependency's
# sub-tree every time a route names one, even when the value is cached for the request.
dependency_solves = [0]
# Calls run on aiosqlite's database thread: each is a hand-off there and back.
thread_trips = [0]


def timed(owner: type, method: str, label: str) -> None:
    """Replace ``owner.method`` by one that records its duration."""
    original: Callable[..., Any] = getattr(owner, method)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            timings[label].append(time.perf_counter() - started)

    @functools.wraps(original)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timings[label].append(time.perf_counter() - started)

    setattr(owner, method, wrapper if inspect.iscoroutinefunction(original) else sync_wrapper)


def instrument() -> list[str]:
    """Wrap the turn's phases; return the list that collects the SQL each statement runs."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncSession

    from mongars.core.authentication import Authenticator
    from mongars.core.chat.service import ChatService
    from mongars.core.llm._http import HttpCore
    from mongars.core.quotas import QuotaService
    from mongars.db.sqlite_driver import OneTripConnection

    timed(Authenticator, "authenticate", "authenticate (API key, 1 SELECT)")
    timed(QuotaService, "check_turn", "quota check (1 SELECT, in the write)")
    timed(ChatService, "prepare", "store question + build prompt")
    timed(AsyncSession, "commit", "session commit (each)")
    timed(OneTripConnection, "run_and_commit", "writes + commit, one call (each)")
    timed(HttpCore, "open", "backend: request to first byte")
    timed(ChatService, "_generate", "generation (backend + store answer)")
    timed(ChatService, "_store_answer", "store answer (+ usage, commit)")
    count_dependency_solves()
    count_thread_trips()
    statements: list[str] = []

    @event.listens_for(Engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split())[:100])

    return statements


def count_thread_trips() -> None:
    import aiosqlite

    original = aiosqlite.Connection._execute

    @functools.wraps(original)
    async def counting(*args: Any, **kwargs: Any) -> Any:
        thread_trips[0] += 1
        return await original(*args, **kwargs)

    aiosqlite.Connection._execute = counting  # type: ignore[method-assign]


def count_dependency_solves() -> None:
    import fastapi.routing
    from fastapi.dependencies import utils

    original = utils.solve_dependencies

    @functools.wraps(original)
    async def counting(*args: Any, **kwargs: Any) -> Any:
        dependency_solves[0] += 1
        return await original(*args, **kwargs)

    # Both names: the router calls it by its import, and it calls itself by its module's.
    utils.solve_dependencies = counting  # type: ignore[assignment]
    fastapi.routing.solve_dependencies = counting  # type: ignore[attr-defined]


@contextlib.contextmanager
def mock_backend(core: int | None) -> Iterator[int]:
    from mongars.devtools.cluster import free_port

    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "mock_backend.py"), "--port", str(port)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    process = subprocess.Popen(command)  # noqa: S603 (a fixed argv, no shell)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def configure(data_dir: Path, mock_port: int) -> None:
    for name in [name for name in os.environ if name.startswith("MONGARS_")]:
        del os.environ[name]
    os.environ |= {
        "MONGARS_ENV": "development",
        "MONGARS_DATA_DIR": str(data_dir),
        "MONGARS_WEB_ENABLED": "false",
        "MONGARS_LLM__BACKEND": "openai",
        "MONGARS_LLM__BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
        "MONGARS_LLM__MODEL": MODEL,
        # As in overhead.py: limits and quotas are checked on every turn but never refuse.
        "MONGARS_RATE_LIMIT__CHAT_PER_MINUTE": str(10**12),
        "MONGARS_QUOTA__DAILY_MESSAGES": str(10**12),
        "MONGARS_QUOTA__DAILY_TOKENS": str(10**12),
    }
    subprocess.run(
        [sys.executable, "-m", "mongars", "user", "create", "bench", "--password-stdin"],
        input=f"{PASSWORD}\n".encode(),
        cwd=data_dir,
        check=True,
        capture_output=True,
    )


async def measure(turns: int, statements: list[str], gc_thresholds: tuple[int, ...] | None) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    from mongars.app import create_app

    app = create_app()
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            login = {"username": "bench", "password": PASSWORD}
            token = (await client.post("/api/v1/auth/login", json=login)).json()["access_token"]
            created = await client.post(
                "/api/v1/api-keys",
                json={"name": "phases"},
                headers={"Authorization": f"Bearer {token}"},
            )
            headers = {"Authorization": f"Bearer {created.json()['key']}"}

            async def turn() -> float:
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/conversation/chat", json={"message": MESSAGE}, headers=headers
                )
                if response.status_code != 200:
                    raise SystemExit(f"a turn answered {response.status_code}: {response.text}")
                return time.perf_counter() - started

            for _ in range(WARMUP_TURNS):
                await turn()
            await asyncio.sleep(0.1)  # the last turn's listeners
            statements.clear()
            dependency_solves[0] = thread_trips[0] = 0
            await turn()
            solves, trips = dependency_solves[0], thread_trips[0]
            await asyncio.sleep(0.1)
            one_turn = list(statements)
            floors = {}
            for path in ("/healthz", "/api/v1/user/me"):
                durations = []
                for _ in range(turns):
                    started = time.perf_counter()
                    await client.get(path, headers=headers)
                    durations.append(time.perf_counter() - started)
                floors[path] = statistics.median(durations)
            if gc_thresholds:  # instead of the app's own (set in its lifespan)
                gc.set_threshold(*gc_thresholds)
            pauses = CollectorPauses()
            gc.callbacks.append(pauses.observe)
            timings.clear()
            cpu = time.process_time()
            whole = [await turn() for _ in range(turns)]
            cpu = (time.process_time() - cpu) / turns
            gc.callbacks.remove(pauses.observe)
            thresholds = gc.get_threshold()
    print(f"one chat turn, {turns} turns after {WARMUP_TURNS} of warm-up (medians, ms):")
    print(f"  {'whole turn, as the client sees it':40} {statistics.median(whole) * 1000:7.3f}")
    print(f"  {'  this process CPU per turn':40} {cpu * 1000:7.3f}")
    for label, values in timings.items():
        count = len(values) / turns
        per = f"  ({count:g} per turn)" if count != 1 else ""
        print(f"  {label:40} {statistics.median(values) * 1000:7.3f}{per}")
    print(f"garbage collector, thresholds {thresholds}, during the measured turns:")
    for generation, durations in sorted(pauses.by_generation.items()):
        print(
            f"  generation {generation}: {len(durations)} collections, pause max "
            f"{max(durations) * 1000:.1f} ms, mean {statistics.mean(durations) * 1000:.2f} ms"
        )
    print(
        f"  objects freed per turn (cyclic garbage, client's included): {pauses.freed / turns:.0f}"
    )
    print("floors, the same client:")
    print(f"  {'GET /healthz (middleware only)':40} {floors['/healthz'] * 1000:7.3f}")
    print(f"  {'GET /api/v1/user/me (+ API-key auth)':40} {floors['/api/v1/user/me'] * 1000:7.3f}")
    print(f"FastAPI dependency solver calls in one turn: {solves}")
    print(f"trips to SQLite's thread in one turn: {trips}")
    print(f"SQL statements in one turn: {len(one_turn)}")
    for statement in one_turn:
        print(f"  {statement}")


class CollectorPauses:
    """Each garbage collection's pause, by generation, and the objects it freed."""

    def __init__(self) -> None:
        self.by_generation: defaultdict[int, list[float]] = defaultdict(list)
        self.freed = 0
        self._started = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.by_generation[info["generation"]].append(time.perf_counter() - self._started)
        self.freed += info["collected"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=500, help="measured turns (default 500)")
    parser.add_argument("--core", type=int, default=0, help="core for this process (default 0)")
    parser.add_argument("--mock-core", type=int, default=1, help="core for the mock (default 1)")
    parser.add_argument(
        "--gc-thresholds",
        help="collector thresholds to measure instead of the app's, e.g. 50000,20,20 or 700,10,10",
    )
    args = parser.parse_args()
    pinning = len(os.sched_getaffinity(0)) >= 2
    if pinning:
        os.sched_setaffinity(0, {args.core})
    statements = instrument()
    with (
        tempfile.TemporaryDirectory(prefix="mongars-phases-") as scratch,
        mock_backend(args.mock_core if pinning else None) as port,
    ):
        configure(Path(scratch), port)
        thresholds = (
            tuple(int(v) for v in args.gc_thresholds.split(",")) if args.gc_thresholds else None
        )
        asyncio.run(measure(args.turns, statements, thresholds))


if __name__ == "__main__":
    main()
