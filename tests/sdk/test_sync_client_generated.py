"""The sync client (``_client.py``) is generated from the async one by scripts/sdk_unasync.py:
the committed file must be exactly what the script writes, so that editing one client without
regenerating the other fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.sdk.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sdk_unasync.py"
PACKAGE = REPO / "sdks" / "python" / "src" / "mongars_sdk"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("sdk_unasync")


@pytest.fixture(scope="module")
def async_source() -> str:
    return (PACKAGE / "_async_client.py").read_text(encoding="utf-8")


def _with_method(source: str, method: str) -> str:
    """``source`` with ``method`` added at the end of ``AsyncClient``."""
    anchor = "\n\nclass AsyncChatStream:"
    assert anchor in source
    return source.replace(anchor, f"\n{method}{anchor}")


def test_the_committed_sync_client_is_what_the_script_generates() -> None:
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_an_async_method_becomes_a_blocking_one(script: ModuleType, async_source: str) -> None:
    method = '''
    async def ready_twice(self) -> AsyncIterator[m.Readiness]:
        """Readiness, asked twice (``async for state in client.ready_twice()``)."""
        for _ in range(2):
            yield await self._run(ep.ready())
'''
    generated = script.generate(_with_method(async_source, method))

    assert (
        '''
    def ready_twice(self) -> Iterator[m.Readiness]:
        """Readiness, asked twice (``for state in client.ready_twice()``)."""
        for _ in range(2):
            yield self._run(ep.ready())
'''
        in generated
    )
    assert generated.startswith("# Generated from _async_client.py by scripts/sdk_unasync.py")


def test_the_check_fails_when_only_the_async_client_was_edited(
    script: ModuleType,
    async_source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edited = tmp_path / "_async_client.py"
    edited.write_text(
        _with_method(
            async_source,
            "\n    async def me_again(self) -> m.User:\n        return await self.me()\n",
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(script, "SOURCE", edited)

    assert script.main(["--check"]) == 1
    report = capsys.readouterr().err
    assert "+    def me_again(self) -> m.User:" in report
    assert "make sdk-sync" in report


@pytest.mark.parametrize(
    ("snippet", "named"),
    [
        # unasync would write SyncExitStack, which does not exist.
        ("        stack = contextlib.AsyncExitStack()\n", "SyncExitStack"),
        ("        await anyio.wait_all_tasks_blocked()\n", "anyio.wait_all_tasks_blocked"),
    ],
)
def test_an_asyncio_name_without_a_rename_is_refused(
    script: ModuleType, async_source: str, snippet: str, named: str
) -> None:
    method = f"\n    async def odd(self) -> None:\n{snippet}"
    with pytest.raises(script.GenerationError, match=named):
        script.generate(_with_method(async_source, method))


def test_the_source_must_keep_its_module_docstring(script: ModuleType, async_source: str) -> None:
    without = async_source[async_source.index("from __future__") :]
    with pytest.raises(script.GenerationError, match="module docstring"):
        script.generate(without)
