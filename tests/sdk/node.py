"""Running the TypeScript SDK's tools from the tests (built by `make test`: npm ci + tsc)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parents[2]
TS_SDK = REPO / "sdks" / "typescript"
NODE = shutil.which("node")


def require_built_sdk() -> str:
    assert NODE is not None, "node (20+) is not on PATH"
    assert (TS_SDK / "dist" / "index.js").exists(), (
        "the TypeScript SDK is not built: run `make test` (or `make sdk-ts`)"
    )
    return NODE


async def run(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str = "",
    within: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a process without blocking the test's event loop; its output as text."""
    with anyio.fail_after(within):
        result = await anyio.run_process(
            list(command),
            input=stdin.encode(),
            cwd=cwd,
            env=dict(env) if env else None,
            check=False,
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def run_node(
    args: list[str], *, env: dict[str, str], cwd: Path, within: float = 120, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    node = require_built_sdk()
    return await run([node, *args], cwd=cwd, env={**os.environ, **env}, stdin=stdin, within=within)
