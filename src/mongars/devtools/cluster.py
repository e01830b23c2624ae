"""Several replicas on loopback sharing one PostgreSQL and one Redis: ``make cluster``.

Each replica is ``python -m mongars serve`` with its own port and the same database URL,
schema, Redis URL, key prefix and secret, so the replicas share exactly what production
replicas share and nothing else. ``tests/cluster`` and ``tests/faults`` start them through
this module too.

    python -m mongars.devtools.cluster               # two replicas, until Ctrl-C
    python -m mongars.devtools.cluster --replicas 3 --schema mytry --backend fake

The schema (and so the accounts and conversations) is kept between runs; the signing secret
is not, so log in again after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import httpx

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class Replica:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL: the replica gets no chance to finish or clean up anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_env(
    data_dir: Path,
    *,
    database_url: str,
    schema: str | None,
    redis_url: str | None,
    key_prefix: str | None = None,
    secret_key: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment every replica of one cluster gets (``extra``: more ``MONGARS_*``).

    The caller's own ``MONGARS_*`` variables are dropped so that a developer's ``.env`` or
    shell cannot make the replicas differ from what was asked for.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env = {
        **clean,
        "MONGARS_DATA_DIR": str(data_dir),
        # Every replica must sign and verify tokens and tickets with the same key.
        "MONGARS_SECRET_KEY": secret_key or secrets.token_urlsafe(48),
        "MONGARS_DATABASE_URL": database_url,
        "MONGARS_REDIS_KEY_PREFIX": key_prefix or f"mongars-cluster-{secrets.token_hex(4)}",
        **extra,
    }
    if schema is not None:
        env["MONGARS_DATABASE_SCHEMA"] = schema
    if redis_url is not None:
        env["MONGARS_REDIS_URL"] = redis_url
    return env


def migrate(env: dict[str, str]) -> None:
    """Migrate once, before any replica starts (``mongars migrate`` once per release)."""
    done = subprocess.run(
        [sys.executable, "-m", "mongars", "migrate"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mongars migrate failed:\n{done.stderr.decode(errors='replace')}")


@contextmanager
def replica(
    env: dict[str, str], name: str, log_dir: Path, port: int | None = None
) -> Iterator[Replica]:
    """One ``mongars serve`` process; terminated (then killed) on exit if still running."""
    port = port or free_port()
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mongars", "serve", "--port", str(port), "--no-migrate"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Replica(name, f"http://127.0.0.1:{port}", process, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def replicas(
    env: dict[str, str], count: int, log_dir: Path, first_port: int | None = None
) -> Iterator[list[Replica]]:
    """Migrate, start ``count`` replicas (on ``first_port``, ``first_port + 1`` ... or free
    ports), wait until each answers ``/ready``."""
    migrate(env)
    with ExitStack() as stack:
        started = [
            stack.enter_context(
                replica(env, f"replica-{index}", log_dir, first_port and first_port + index)
            )
            for index in range(count)
        ]
        for each in started:
            wait_ready(each)
        yield started


def wait_ready(replica: Replica, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(f"{replica.name} exited:\n{replica.log.read_text()}")
        try:
            if httpx.get(f"{replica.base_url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{replica.name} not ready after {timeout} s:\n{replica.log.read_text()}")


async def create_schema(postgres_url: str, schema: str) -> None:
    connection = await asyncpg.connect(postgres_url, timeout=5)
    try:
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await connection.close()


USAGE = """\
{count} replicas, sharing PostgreSQL and Redis:
{urls}

Create an account on one replica, log in on another, chat on either:
  curl -s {first}/api/v1/user/register -H 'content-type: application/json' \\
       -d '{{"username": "ada", "password": "correct horse battery"}}'
  TOKEN=$(curl -s {last}/token -d username=ada -d 'password=correct horse battery' \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s {last}/api/v1/conversation/chat -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"message": "hello"}}'

Ctrl-C stops every replica."""


def _usage(urls: list[str]) -> str:
    listed = "\n".join(f"  {url}" for url in urls)
    return USAGE.format(count=len(urls), urls=listed, first=urls[0], last=urls[-1])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--first-port", type=int, default=8001, help="replica n listens on this + n (0: any free)"
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--schema",
        default="mongars_cluster",
        help="PostgreSQL schema for the tables (created if missing, kept afterwards)",
    )
    parser.add_argument(
        "--backend",
        default="embedded",
        choices=["embedded", "ollama", "openai", "fake"],
        help="model backend (embedded: SmolLM2 in each replica; fake echoes the question)",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    return args


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    asyncio.run(create_schema(args.postgres_url, args.schema))
    with tempfile.TemporaryDirectory(prefix="mongars-cluster-") as scratch:
        data_dir = Path(scratch)
        env = cluster_env(
            data_dir,
            database_url=args.postgres_url,
            schema=args.schema,
            redis_url=args.redis_url,
            key_prefix=f"mongars-{args.schema}",
            MONGARS_LLM__BACKEND=args.backend,
        )
        try:
            with replicas(env, args.replicas, data_dir, args.first_port or None) as started:
                print(_usage([r.base_url for r in started]), flush=True)
                print(f"Logs: {data_dir}/replica-*.log", flush=True)
                while all(r.process.poll() is None for r in started):
                    time.sleep(0.5)
                gone = [r.name for r in started if r.process.poll() is not None]
                print(f"{', '.join(gone)} exited; stopping the others.", file=sys.stderr)
        except KeyboardInterrupt:
            print("\nStopping the replicas.", flush=True)


if __name__ == "__main__":
    main()
