"""Building the TypeScript reference client (examples/typescript/chat.ts) in a Node project
where ``@mongars/sdk`` is installed: linked to the source tree, or from the npm tarball."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.sdk.node import REPO, TS_SDK, run

EXAMPLE = REPO / "examples" / "typescript" / "chat.ts"


def node_project(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    package = {"name": "mongars-example", "private": True, "type": "module"}
    (directory / "package.json").write_text(json.dumps(package), encoding="utf-8")
    return directory


def link_sdk(project: Path) -> None:
    """``@mongars/sdk`` as the working tree's build (its own node_modules give it ``ws``)."""
    scope = project / "node_modules" / "@mongars"
    scope.mkdir(parents=True, exist_ok=True)
    (scope / "sdk").symlink_to(TS_SDK, target_is_directory=True)


async def compile_example(project: Path) -> Path:
    """Compile chat.ts with the SDK's TypeScript against the installed ``@mongars/sdk``."""
    shutil.copy(EXAMPLE, project / "chat.ts")
    tsc = TS_SDK / "node_modules" / ".bin" / "tsc"
    options = ["--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022"]
    options += ["--strict", "--skipLibCheck", "--types", "node"]
    options += ["--typeRoots", str(TS_SDK / "node_modules" / "@types")]
    result = await run([str(tsc), *options, "chat.ts"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project / "chat.js"
