"""The WebSocket channel with a real client (``websockets``) against a real uvicorn server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from mongars.config import QuotaSettings, RateLimitSettings
from mongars.core.llm import FakeBackend
from tests.conftest import (
    migrated_settings,
)
from tests.live_server import LiveServer, live_server
from tests.ws_client import close_code, get_ticket, open_socket, receive, receive_until, send
from tests.ws_fixtures import connected, login

WORDS = "one two three four five six seven eight nine ten"


class TestConnecting:
    async def test_greeting_then_a_snapshot_of_recent_turns(self, server: LiveServer) -> None:
        headers = login(server, "ada")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            await http.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "earlier"}
            )
        async with await open_socket(server, await get_ticket(server, headers)) as ws:
            hello = await receive(ws)
            assert hello["type"] == "ws.connected"
            assert set(hello) == {"id", "type", "ts", "data"}
            assert hello["data"]["user"]["username"] == "ada"
            snapshot = await receive(ws)
            assert snapshot["type"] == "history.snapshot"
            assert [t["query"] for t in snapshot["data"]["turns"]] == ["earlier"]
            assert snapshot["data"]["turns"][0]["response"] == "echo: earlier"

    async def test_an_allowed_browser_origin_connects(self, server: LiveServer) -> None:
        headers = login(server, "bob")
        ws = await connected(server, headers, origin="http://localhost:5173")
        await ws.close()


class TestChatting:
    async def test_a_streamed_answer_then_done(self, server: LiveServer) -> None:
        async with await connected(server, login(server, "carol")) as ws:
            await send(ws, "chat.send", {"message": WORDS}, id_="m1")
            ack = await receive(ws)
            assert ack["type"] == "ack"
            assert ack["data"]["ref"] == "m1"
            stream_id = ack["data"]["stream_id"]
            frames = await receive_until(ws, "chat.done")
        deltas = [f for f in frames if f["type"] == "chat.delta"]
        assert len(deltas) == 11
        seqs = [f["data"]["seq"] for f in frames]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert all(f["data"]["stream_id"] == stream_id for f in frames)
        done = frames[-1]["data"]
        assert (
            "".join(f["data"]["text"] for f in deltas)
            == done["message"]["content"]
            == f"echo: {WORDS}"
        )
        assert done["message"]["status"] == "complete"

    async def test_cancel_stops_the_answer(self, server: LiveServer) -> None:
        server.fake.token_delay_seconds = 0.1
        async with await connected(server, login(server, "dave")) as ws:
            await send(ws, "chat.send", {"message": WORDS})
            stream_id = (await receive(ws))["data"]["stream_id"]
            await receive_until(ws, "chat.delta")
            await send(ws, "chat.cancel", {"stream_id": stream_id}, id_="stop")
            frames = await receive_until(ws, "chat.done")
        acks = [f for f in frames if f["type"] == "ack"]
        assert acks[0]["data"] == {"ref": "stop", "cancelled": [stream_id]}
        assert frames[-1]["data"]["message"]["status"] == "incomplete"

    async def test_close_closes_at_once_with_1000(self, server: LiveServer) -> None:
        async with await connected(server, login(server, "erin")) as ws:
            started = time.monotonic()
            await send(ws, "close")
            assert await close_code(ws) == (1000, "client closed")
            assert time.monotonic() - started < 1.0

    async def test_resume_on_a_new_socket_continues_without_gap(self, server: LiveServer) -> None:
        server.fake.token_delay_seconds = 0.05
        headers = login(server, "frank")
        async with await connected(server, headers) as first:
            await send(first, "chat.send", {"message": WORDS})
            stream_id = (await receive(first))["data"]["stream_id"]
            seen = [await receive(first) for _ in range(3)]
        last = seen[-1]["data"]["seq"]
        async with await connected(server, headers) as second:
            await send(second, "resume", {"stream_id": stream_id, "after_seq": last})
            frames = await receive_until(second, "chat.done")
        rest = [f for f in frames if f["type"] != "ack"]
        seqs = [f["data"]["seq"] for f in seen + rest]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        text = "".join(f["data"]["text"] for f in seen + rest if f["type"] == "chat.delta")
        assert text == f"echo: {WORDS}"


class TestOtherSockets:
    async def test_a_turn_finished_anywhere_reaches_the_users_other_sockets(
        self, server: LiveServer
    ) -> None:
        headers, stranger = login(server, "grace"), login(server, "heidi")
        async with (
            await connected(server, headers) as sender,
            await connected(server, headers) as watcher,
            await connected(server, stranger) as other,
        ):
            await send(sender, "chat.send", {"message": "from a socket"})
            await receive_until(sender, "chat.done")
            message = await receive_until(watcher, "chat.message")
            assert message[-1]["data"]["message"]["content"] == "echo: from a socket"
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                await http.post(
                    "/api/v1/conversation/chat", headers=headers, json={"message": "over http"}
                )
            for ws in (sender, watcher):
                frames = await receive_until(ws, "chat.message")
                assert frames[-1]["data"]["message"]["content"] == "echo: over http"
            await send(other, "client.ping", id_="p")
            assert (await receive(other))["type"] == "ack"  # nothing of grace's arrived first


class TestBadFrames:
    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("{not json", "invalid_json"),
            ('{"type": "teleport"}', "unknown_type"),
            ('{"type": "chat.send", "data": {"message": "   "}}', "invalid_frame"),
            ('{"type": "resume", "data": {"after_seq": 1}}', "invalid_frame"),
            ('{"type": "chat.cancel", "data": {}}', "invalid_frame"),
            ("[1, 2, 3]", "invalid_frame"),
            ("x" * 70_000, "frame_too_large"),
        ],
    )
    async def test_get_an_error_frame_and_the_socket_lives(
        self, server: LiveServer, raw: str, code: str
    ) -> None:
        async with await connected(server, login(server, "ivan")) as ws:
            await ws.send(raw)
            error = await receive(ws)
            assert error["type"] == "error"
            assert error["data"]["code"] == code
            await send(ws, "client.ping", id_="still-there")
            assert (await receive(ws))["data"]["ref"] == "still-there"

    async def test_another_users_stream_cannot_be_resumed(self, server: LiveServer) -> None:
        owner, thief = login(server, "judy"), login(server, "mallory")
        async with await connected(server, owner) as ws:
            await send(ws, "chat.send", {"message": "private"})
            stream_id = (await receive(ws))["data"]["stream_id"]
        async with await connected(server, thief) as ws:
            await send(ws, "resume", {"stream_id": stream_id, "after_seq": 0}, id_="r")
            error = await receive(ws)
            assert (error["type"], error["data"]["code"], error["data"]["ref"]) == (
                "error",
                "stream_not_found",
                "r",
            )

    async def test_frames_beyond_the_bucket_are_refused(self, server: LiveServer) -> None:
        async with await connected(server, login(server, "niaj")) as ws:
            for n in range(40):
                await send(ws, "client.ping", id_=str(n))
            frames = [await receive(ws) for _ in range(40)]
        limited = [f for f in frames if f["type"] == "error"]
        assert 5 <= len(limited) <= 10
        assert all(f["data"]["code"] == "rate_limited" for f in limited)


class TestServerSettings:
    async def test_events_disabled(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path, ws_enable_events=False)
        with live_server(settings, FakeBackend()) as server:
            ticket = await get_ticket(server, login(server, "trent"))
            async with await open_socket(server, ticket) as ws:
                assert await close_code(ws) == (4503, "events_disabled")

    async def test_a_missing_origin_can_be_refused(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path, ws_allow_missing_origin=False)
        with live_server(settings, FakeBackend()) as server:
            ticket = await get_ticket(server, login(server, "uma"))
            async with await open_socket(server, ticket) as ws:
                assert await close_code(ws) == (4403, "origin_missing")

    async def test_a_silent_client_is_closed_after_the_heartbeat_timeout(
        self, tmp_path: Path
    ) -> None:
        settings = await migrated_settings(
            tmp_path, ws_heartbeat_interval_seconds=0.1, ws_heartbeat_timeout_seconds=0.3
        )
        with live_server(settings, FakeBackend()) as server:
            async with await connected(server, login(server, "victor")) as ws:
                started = time.monotonic()
                assert await close_code(ws) == (4408, "heartbeat_timeout")
                assert time.monotonic() - started < 2.0


class TestLimits:
    async def test_chat_send_shares_the_chat_budget_with_http(self, tmp_path: Path) -> None:
        settings = await migrated_settings(
            tmp_path, rate_limit=RateLimitSettings(chat_per_minute=2, register_per_hour=100)
        )
        with live_server(settings, FakeBackend()) as server:
            headers = login(server, "walter")
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                first = await http.post(
                    "/api/v1/conversation/chat", headers=headers, json={"message": "1"}
                )
                assert first.headers["ratelimit-remaining"] == "1"
            async with await connected(server, headers) as ws:
                await send(ws, "chat.send", {"message": "2"}, id_="two")
                assert (await receive(ws))["type"] == "ack"
                await receive_until(ws, "chat.done")
                await send(ws, "chat.send", {"message": "3"}, id_="three")
                refused = await receive(ws)
        assert refused["type"] == "chat.error"
        assert refused["data"]["ref"] == "three"
        assert refused["data"]["code"] == "rate_limited"
        assert refused["data"]["retry_after"] >= 1

    async def test_chat_send_is_refused_once_the_daily_quota_is_used_up(
        self, tmp_path: Path
    ) -> None:
        settings = await migrated_settings(tmp_path, quota=QuotaSettings(daily_messages=1))
        with live_server(settings, FakeBackend()) as server:
            async with await connected(server, login(server, "xena")) as ws:
                await send(ws, "chat.send", {"message": "1"}, id_="one")
                assert (await receive(ws))["type"] == "ack"
                await receive_until(ws, "chat.done")
                await send(ws, "chat.send", {"message": "2"}, id_="two")
                refused = await receive(ws)
        assert refused["type"] == "chat.error"
        assert refused["data"]["ref"] == "two"
        assert refused["data"]["code"] == "quota_exceeded"
        assert refused["data"]["retry_after"] >= 1

    async def test_tickets_are_rate_limited(self, tmp_path: Path) -> None:
        settings = await migrated_settings(
            tmp_path, rate_limit=RateLimitSettings(ws_ticket_per_minute=2, register_per_hour=100)
        )
        with live_server(settings, FakeBackend()) as server:
            headers = login(server, "xena")
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                statuses = [
                    (await http.post("/api/v1/auth/ws/ticket", headers=headers)).status_code
                    for _ in range(3)
                ]
                refused = await http.post("/api/v1/auth/ws/ticket", headers=headers)
        assert statuses == [200, 200, 429]
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
