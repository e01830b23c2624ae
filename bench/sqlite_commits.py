"""SQLite commit latency with automatic WAL checkpoints and with the server's background ones.

Each run commits ``--commits`` small transactions (one row of 3 KB, about a page, as a chat
turn writes) through the server's engine (``database.create_engine``, aiosqlite), once with
SQLite's automatic checkpoints (every 1,000 pages, inside the commit that crosses the mark) and
once with them off and ``sqlite_checkpoints.run_checkpoints`` running beside, as ``mongars
serve`` does. Runs alternate, twice each. The commits that checkpoint show in the tail.

    .venv/bin/python bench/sqlite_commits.py      # about 20 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from mongars.config import Settings
from mongars.db.database import create_engine, sqlite_database_path
from mongars.db.sqlite_checkpoints import run_checkpoints

SLOW_MS = 5.0


async def commit_latencies(background: bool, commits: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="mongars-commits-") as scratch:
        settings = Settings(_env_file=None, data_dir=Path(scratch))  # type: ignore[call-arg]
        engine = create_engine(settings, background_checkpoints=background)
        database = sqlite_database_path(engine)
        assert database is not None
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE scratch (b BLOB)"))
        checkpoints = asyncio.create_task(run_checkpoints(database)) if background else None
        latencies = []
        try:
            for _ in range(commits):
                started = time.perf_counter()
                async with engine.begin() as connection:
                    await connection.execute(text("INSERT INTO scratch VALUES (randomblob(3000))"))
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            if checkpoints is not None:
                checkpoints.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checkpoints
            await engine.dispose()
    return sorted(latencies)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=4000)
    args = parser.parse_args()
    print(f"{args.commits} commits per run; ms")
    header = f"{'checkpoints':12} {'p50':>6} {'p99':>6} {'p99.9':>6} {'max':>6}"
    print(f"{header}  commits > {SLOW_MS:g} ms")
    for background in (False, True, False, True):
        latencies = await commit_latencies(background, args.commits)
        count = len(latencies)
        print(
            f"{'background' if background else 'automatic':12} {latencies[count // 2]:6.2f} "
            f"{latencies[int(count * 0.99)]:6.2f} {latencies[int(count * 0.999)]:6.2f} "
            f"{latencies[-1]:6.1f}  {sum(value > SLOW_MS for value in latencies)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
