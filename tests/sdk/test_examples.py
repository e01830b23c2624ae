"""The reference clients, driven through stdin against a live server (SSE and WebSocket)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mongars_sdk import Client

from tests.conftest import PASSWORD
from tests.live_server import LiveServer, register_and_login
from tests.sdk.examples import compile_example, link_sdk, node_project
from tests.sdk.node import REPO, run, run_node

CHAT_CLI = REPO / "examples" / "python" / "chat_cli.py"


class TestPythonChatCli:
    @pytest.mark.parametrize("transport", ["sse", "ws"])
    async def test_an_interactive_session_streams_answers(
        self, server: LiveServer, username: str, transport: str
    ) -> None:
        register_and_login(server.base_url, username, PASSWORD)
        typed = "hello there\nand again\n/history\n/new\nfresh start\n/quit\nnever sent\n"
        command = [sys.executable, str(CHAT_CLI), "--url", server.base_url]
        command += ["--username", username, "--transport", transport]
        env = {"MONGARS_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
        result = await run(command, cwd=REPO, env=env, stdin=typed, within=60)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "echo: hello there" in lines
        assert "echo: and again" in lines
        assert "and again -> echo: and again" in lines  # /history, newest first
        assert "echo: fresh start" in lines
        assert "never sent" not in result.stdout
        assert turns_per_question(server, username) == {
            "hello there": 2,
            "and again": 2,
            "fresh start": 1,
        }


def turns_per_question(server: LiveServer, username: str) -> dict[str, int]:
    """Each question and how many turns its conversation had (continued, then /new)."""
    with Client(server.base_url) as client:
        client.login(username, PASSWORD)
        turns = list(client.iter_history())
    sizes: dict[str, int] = {}
    for turn in turns:
        sizes[turn.query] = sum(t.conversation_id == turn.conversation_id for t in turns)
    return sizes


class TestTypeScriptChat:
    @pytest.mark.parametrize("flags", [[], ["--ws"]], ids=["sse", "ws"])
    async def test_the_example_streams_answers_from_stdin(
        self, server: LiveServer, username: str, tmp_path: Path, flags: list[str]
    ) -> None:
        register_and_login(server.base_url, username, PASSWORD)
        project = node_project(tmp_path / "example")
        link_sdk(project)
        script = await compile_example(project)
        env = {
            "MONGARS_URL": server.base_url,
            "MONGARS_USERNAME": username,
            "MONGARS_PASSWORD": PASSWORD,
        }
        result = await run_node(
            [str(script), *flags], env=env, cwd=project, stdin="first words\nsecond words\n/quit\n"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["echo: first words", "echo: second words"]
