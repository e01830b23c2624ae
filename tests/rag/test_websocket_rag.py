"""``use_rag`` over the WebSocket ``chat.send``: citations in ``chat.done``, and only one's own."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest

from mongars.config import RagSettings
from mongars.core.llm import FakeBackend
from tests.conftest import PASSWORD, migrated_settings
from tests.live_server import LiveServer, live_server, register_and_login
from tests.ws_client import get_ticket, open_socket, receive, receive_until, send

SECRET = "Project Nightingale: the vault code of the orbital greenhouse is PERSIMMON-42."
QUESTION = "What is the vault code of the orbital greenhouse?"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # A server of its own with RAG on (it loads its own embedder).
    # On a loop of its own: the session's loop may be running in this thread.
    with ThreadPoolExecutor(1) as pool:
        settings = pool.submit(
            anyio.run, lambda: migrated_settings(tmp_path, rag=RagSettings(enabled=True))
        ).result()
    with live_server(settings, FakeBackend()) as live:
        yield live


async def ask_over_websocket(server: LiveServer, headers: dict[str, str]) -> dict[str, object]:
    async with await open_socket(server, await get_ticket(server, headers)) as ws:
        await receive(ws)  # ws.connected
        await receive(ws)  # history.snapshot
        await send(ws, "chat.send", {"message": QUESTION, "use_rag": True}, id_="q")
        frames = await receive_until(ws, "chat.done")
    return dict(frames[-1]["data"])


async def test_citations_arrive_in_chat_done_and_never_cross_users(server: LiveServer) -> None:
    ada = register_and_login(server.base_url, "ada", PASSWORD)
    bob = register_and_login(server.base_url, "bob", PASSWORD)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        uploaded = await http.post(
            "/api/v1/rag/documents", headers=ada, files={"file": ("vault.txt", SECRET.encode())}
        )
        assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["document"]["id"]

    done = await ask_over_websocket(server, ada)
    citations = done["citations"]
    assert isinstance(citations, list)
    assert citations[0]["document_id"] == document_id

    done = await ask_over_websocket(server, bob)
    assert done["citations"] == []
    ada_prompt, bob_prompt = (
        " ".join(m.content for m in messages) for messages, _ in server.fake.requests
    )
    assert "PERSIMMON-42" in ada_prompt
    assert "PERSIMMON-42" not in bob_prompt
