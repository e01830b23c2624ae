"""The release flow end to end: build the artifacts as ``make sdk-dist`` does, install them into
a clean virtualenv and a clean Node project, and use them against a live server."""

from __future__ import annotations

import os
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import anyio

from mongars.core.llm import FakeBackend
from tests.conftest import PASSWORD, migrated_settings
from tests.live_server import live_server, register_and_login
from tests.sdk.examples import compile_example, node_project
from tests.sdk.node import REPO, run, run_node

# Builds, two installs and two clients: bounded, as the release checklist runs it often.
BUDGET_SECONDS = 90

PYTHON_SMOKE = """
import os, sys
import mongars_sdk
from mongars_sdk import Client, NotFoundError

assert "site-packages" in mongars_sdk.__file__, mongars_sdk.__file__  # the wheel, not the tree
with Client(os.environ["MONGARS_URL"]) as client:
    client.login(os.environ["MONGARS_USERNAME"], os.environ["MONGARS_PASSWORD"])
    answer = client.chat("smoke")
    with client.chat_stream("smoke stream", conversation_id=answer.conversation_id) as stream:
        text = "".join(event.text for event in stream)
    with client.websocket() as ws:
        done = ws.chat("smoke socket")
    try:
        client.get_conversation("00000000-0000-0000-0000-000000000000")
    except NotFoundError as exc:
        code = exc.code
print(mongars_sdk.__version__, answer.response, text, done.data["message"]["content"], code)
"""


def artifacts(directory: Path) -> tuple[Path, Path, Path]:
    (wheel,) = directory.glob("mongars_sdk-*.whl")
    (sdist,) = directory.glob("mongars_sdk-*.tar.gz")
    (tarball,) = directory.glob("mongars-sdk-*.tgz")
    return wheel, sdist, tarball


class TestRelease:
    async def test_built_artifacts_install_cleanly_and_work(self, tmp_path: Path) -> None:
        started = time.monotonic()
        with anyio.fail_after(BUDGET_SECONDS):
            dist = tmp_path / "dist"
            built = await run(
                [str(REPO / "scripts" / "sdk_dist.sh"), str(dist)],
                cwd=REPO,
                env={**os.environ, "PYTHON": sys.executable},
            )
            assert built.returncode == 0, built.stdout + built.stderr
            assert "(dry-run)" in built.stdout + built.stderr  # npm's publish stopped short
            wheel, sdist, tarball = artifacts(dist)
            assert "mongars_sdk/py.typed" in zipfile.ZipFile(wheel).namelist()
            with tarfile.open(sdist) as archive:
                assert any(name.endswith("src/mongars_sdk/py.typed") for name in archive.getnames())
            with tarfile.open(tarball) as archive:
                packed = set(archive.getnames())
            assert {"package/dist/index.js", "package/dist/index.d.ts"} <= packed
            assert not any(name.startswith("package/src/") for name in packed)

            settings = await migrated_settings(tmp_path / "data")
            with live_server(settings, FakeBackend()) as server:
                register_and_login(server.base_url, "releaser", PASSWORD)
                env = {
                    "MONGARS_URL": server.base_url,
                    "MONGARS_USERNAME": "releaser",
                    "MONGARS_PASSWORD": PASSWORD,
                }

                # A clean virtualenv with the wheel (its dependencies from the package index).
                venv = tmp_path / "venv"
                created = await run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
                assert created.returncode == 0, created.stderr
                pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
                installed = await run([*pip, "install", "--quiet", str(wheel)], cwd=tmp_path)
                assert installed.returncode == 0, installed.stderr
                smoke = await run(
                    [str(venv / "bin" / "python"), "-c", PYTHON_SMOKE],
                    cwd=tmp_path,
                    env={**env, "PATH": os.environ["PATH"]},
                )
                assert smoke.returncode == 0, smoke.stderr
                assert smoke.stdout.split() == [
                    "0.1.0",
                    "echo:",
                    "smoke",
                    "echo:",
                    "smoke",
                    "stream",
                    "echo:",
                    "smoke",
                    "socket",
                    "conversation_not_found",
                ]

                # A clean Node project with the tarball (and ws, Node 20's WebSocket).
                project = node_project(tmp_path / "node")
                npm = ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"]
                added = await run([*npm, str(tarball), "ws@8"], cwd=project)
                assert added.returncode == 0, added.stderr
                assert not (project / "node_modules" / "@mongars" / "sdk").is_symlink()
                script = await compile_example(project)
                for flags in ([], ["--ws"]):
                    chat = await run_node(
                        [str(script), *flags], env=env, cwd=project, stdin="from the tarball\n"
                    )
                    assert chat.returncode == 0, chat.stderr
                    assert chat.stdout.splitlines() == ["echo: from the tarball"]
        assert time.monotonic() - started < BUDGET_SECONDS
