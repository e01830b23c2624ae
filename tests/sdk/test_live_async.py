"""The asyncio Python SDK against a real uvicorn server (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from mongars_sdk import (
    AsyncClient,
    NotFoundError,
    StreamError,
    Ticket,
    WebSocketError,
    WsFrame,
)

from tests.conftest import PASSWORD
from tests.live_server import LiveServer
from tests.sdk.dropping_proxy import DroppingProxy

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa"


async def signed_up(base_url: str, username: str) -> AsyncClient:
    client = AsyncClient(base_url, timeout=20)
    await client.register(username, PASSWORD)
    await client.login(username, PASSWORD)
    return client


class TestAsyncClient:
    async def test_chat_history_and_errors(self, server: LiveServer, username: str) -> None:
        async with await signed_up(server.base_url, username) as client:
            first = await client.chat("q0")
            for n in range(1, 3):
                await client.chat(f"q{n}", conversation_id=first.conversation_id)
            queries = [turn.query async for turn in client.iter_history(page_size=1)]
            assert queries == ["q2", "q1", "q0"]
            detail = await client.get_conversation(first.conversation_id)
            assert len(detail.messages) == 6
            with pytest.raises(NotFoundError) as missing:
                await client.delete_conversation(uuid.uuid4())
            assert missing.value.status_code == 404

    async def test_a_dropped_stream_resumes_by_itself(
        self, server: LiveServer, proxy: DroppingProxy, username: str
    ) -> None:
        server.fake.token_delay_seconds = 0.03
        proxy.cut_after(b"event: delta", 4)
        async with await signed_up(proxy.base_url, username) as client:
            async with client.chat_stream(WORDS) as stream:
                events = [event async for event in stream]
            assert [event.seq for event in events] == list(range(1, len(events) + 1))
            assert stream.text == f"echo: {WORDS}"
            assert stream.progress.resumes == 1
            # The same stream can be read again from any point, by id.
            assert stream.stream_id is not None
            again = client.resume_stream(stream.stream_id, after=2)
            assert (await again.until_done()) == stream.result
        assert proxy.cuts == 1

    async def test_a_failed_generation_raises_stream_error(
        self, server: LiveServer, username: str
    ) -> None:
        server.fake.fail_after_tokens = 2
        async with await signed_up(server.base_url, username) as client:
            stream = client.chat_stream(WORDS)
            with pytest.raises(StreamError) as failed:
                async for _event in stream:
                    pass
            assert failed.value.code == "backend_unavailable"
            assert stream.text == "echo: alpha"


class TestAsyncWebSocket:
    async def test_the_session_resumes_after_a_drop(
        self, server: LiveServer, proxy: DroppingProxy, username: str
    ) -> None:
        server.fake.token_delay_seconds = 0.03
        proxy.cut_after(b"chat.delta", 3)
        client = await signed_up(proxy.base_url, username)
        async with client, client.websocket() as ws:
            done = await ws.chat(WORDS, timeout=10)
            assert done.data["message"]["content"] == f"echo: {WORDS}"
            assert ws.reconnects == 1
        assert proxy.cuts == 1

    async def test_resume_replays_a_stream_started_over_http(
        self, server: LiveServer, username: str
    ) -> None:
        async with await signed_up(server.base_url, username) as client:
            stream = client.chat_stream("replay me please")
            result = await stream.until_done()
            assert result is not None
            assert stream.stream_id is not None
            async with client.websocket() as ws:
                ref = await ws.resume(stream.stream_id, after_seq=2)
                frames: list[WsFrame] = []
                while not frames or frames[-1].type != "chat.done":
                    frame = await ws.recv(timeout=5)
                    if frame.type == "ack":
                        assert frame.data == {
                            "ref": ref,
                            "stream_id": stream.stream_id,
                            "after_seq": 2,
                        }
                    elif frame.stream_id == stream.stream_id:
                        frames.append(frame)
            assert [frame.seq for frame in frames] == list(range(3, 3 + len(frames)))
            assert "".join(frame.text for frame in frames) == " replay me please"
            assert frames[-1].data["message"]["id"] == result.message.id

    async def test_a_refused_ticket_raises_without_retrying(
        self, server: LiveServer, username: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def forged_ticket() -> Ticket:
            return Ticket(ticket="forged", ttl=30)

        async with await signed_up(server.base_url, username) as client:
            monkeypatch.setattr(client, "create_ws_ticket", forged_ticket)
            session = client.websocket()
            with pytest.raises(WebSocketError) as refused:
                await session.connect()
            assert (refused.value.close_code, refused.value.reason) == (4401, "ticket_invalid")
            assert session.reconnects == 0
