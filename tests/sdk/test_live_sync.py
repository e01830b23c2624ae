"""The synchronous Python SDK against a real uvicorn server (SQLite and PostgreSQL).

Blocking SDK calls run in a worker thread: the test's own event loop stays free.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from mongars_sdk import (
    AuthenticationError,
    Client,
    IngestResponse,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
    ValidationError,
    WsFrame,
)

from mongars.config import RagSettings
from mongars.core.llm import FakeBackend
from mongars.core.rag.embedder import Embedder
from tests.conftest import PASSWORD, Accounts, migrated_settings
from tests.live_server import LiveServer, live_server
from tests.sdk.dropping_proxy import DroppingProxy

T = TypeVar("T")
WORDS = "one two three four five six seven eight nine ten eleven twelve"


async def blocking(function: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(function)


def signed_up(base_url: str, username: str) -> Client:
    client = Client(base_url, timeout=20)
    client.register(username, PASSWORD)
    client.login(username, PASSWORD)
    return client


class TestChatAndHistory:
    async def test_whole_answers_and_history_pages_follow_the_link_header(
        self, server: LiveServer, username: str
    ) -> None:
        def scenario() -> None:
            with signed_up(server.base_url, username) as client:
                first = client.chat("question 0")
                for n in range(1, 5):
                    client.chat(f"question {n}", conversation_id=first.conversation_id)
                assert first.response == "echo: question 0"
                page = client.history(limit=2)
                assert len(page.items) == 2
                assert page.next_url is not None
                queries = [turn.query for turn in client.iter_history(page_size=2)]
                assert queries == [f"question {n}" for n in range(4, -1, -1)]

        await blocking(scenario)


class TestStreamResume:
    async def test_a_dropped_stream_resumes_by_itself_with_every_event_once(
        self, server: LiveServer, proxy: DroppingProxy, username: str
    ) -> None:
        server.fake.token_delay_seconds = 0.03
        proxy.cut_after(b"event: delta", 3)

        def scenario() -> None:
            with signed_up(proxy.base_url, username) as client:
                with client.chat_stream(WORDS) as stream:
                    events = list(stream)
                deltas = [event for event in events if event.type == "delta"]
                seqs = [event.seq for event in events]
                assert seqs == list(range(1, len(events) + 1))  # gap-free, none twice
                assert [events[0].type, events[-1].type] == ["start", "done"]
                assert "".join(event.text for event in deltas) == f"echo: {WORDS}"
                assert stream.progress.resumes == 1
                assert stream.result is not None
                assert stream.result.message.content == f"echo: {WORDS}"

        await blocking(scenario)
        assert proxy.cuts == 1


class TestWebSocketSession:
    async def test_the_session_reconnects_and_resumes_a_dropped_socket(
        self, server: LiveServer, proxy: DroppingProxy, username: str
    ) -> None:
        server.fake.token_delay_seconds = 0.03
        proxy.cut_after(b"chat.delta", 2)

        def scenario() -> None:
            with signed_up(proxy.base_url, username) as client, client.websocket() as ws:
                assert ws.connected is not None
                assert ws.connected.type == "ws.connected"
                ref = ws.send(WORDS)
                frames: list[WsFrame] = []
                while not frames or frames[-1].type != "chat.done":
                    frame = ws.recv(timeout=10)
                    if frame.type != "ack" or frame.data.get("ref") == ref:
                        frames.append(frame)
                assert frames[0].type == "ack"
                assert frames[0].data["ref"] == ref
                stream_frames = [f for f in frames if f.type.startswith("chat.")]
                seqs = [frame.seq or 0 for frame in stream_frames]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                text = "".join(frame.text for frame in stream_frames)
                assert text == f"echo: {WORDS}"
                assert ws.reconnects == 1
                assert ws.following == {}

        await blocking(scenario)
        assert proxy.cuts == 1

    async def test_chat_waits_for_its_answer_and_cancel_is_acknowledged(
        self, server: LiveServer, username: str
    ) -> None:
        def scenario() -> None:
            with signed_up(server.base_url, username) as client, client.websocket() as ws:
                done = ws.chat("hello socket")
                assert done.data["message"]["content"] == "echo: hello socket"
                conversation_id = done.data["conversation_id"]
                ref = ws.cancel(conversation_id=conversation_id)
                ack = ws.recv(timeout=5)
                while ack.type != "ack":
                    ack = ws.recv(timeout=5)
                assert ack.data == {"ref": ref, "cancelled": []}

        await blocking(scenario)


class TestErrors:
    async def test_each_refusal_raises_its_class_with_the_servers_code(
        self, server: LiveServer, username: str
    ) -> None:
        def scenario() -> None:
            with signed_up(server.base_url, username) as client:
                with pytest.raises(NotFoundError) as missing:
                    client.get_conversation(uuid.uuid4())
                assert missing.value.code == "conversation_not_found"
                assert missing.value.request_id
                with pytest.raises(ValidationError) as invalid:
                    client.chat("   ")
                assert invalid.value.errors[0]["loc"] == ["body", "message"]
                with pytest.raises(PermissionDeniedError) as denied:
                    client.list_users()
                assert denied.value.code == "admin_required"
                with pytest.raises(ServiceUnavailableError) as off:
                    client.search_documents("anything")  # RAG is off in the test settings
                assert off.value.code == "rag_disabled"
                with Client(server.base_url) as stranger, pytest.raises(AuthenticationError) as e:
                    stranger.login(username, "not the password")
                assert e.value.code == "invalid_credentials"

        await blocking(scenario)


class TestAccountsKeysAndConversations:
    async def test_api_keys_conversations_and_sessions(
        self, server: LiveServer, username: str
    ) -> None:
        def scenario() -> None:
            with signed_up(server.base_url, username) as client:
                created = client.create_api_key("ci")
                with Client(server.base_url, api_key=created.key) as by_key:
                    assert by_key.me().username == username
                    answer = by_key.chat("a searchable zebra")
                conversation_id = answer.conversation_id
                page = client.list_conversations()
                assert [c.id for c in page.items] == [conversation_id]
                renamed = client.rename_conversation(conversation_id, "Zebras")
                assert renamed.title == "Zebras"
                exported = client.export_conversation(conversation_id)
                assert [m.content for m in exported.messages] == [
                    "a searchable zebra",
                    "echo: a searchable zebra",
                ]
                assert "# Zebras" in client.export_conversation_markdown(conversation_id)
                assert client.search_conversations("zebra")[0].conversation_id == conversation_id
                assert client.cancel(conversation_id).cancelled == []
                assert client.my_usage().messages.used == 1
                assert client.rag_context("zebra").enabled is False
                client.delete_conversation(conversation_id)
                assert client.list_conversations().total == 0

                client.delete_api_key(created.id)
                with (
                    Client(server.base_url, api_key=created.key) as revoked,
                    pytest.raises(AuthenticationError),
                ):
                    revoked.me()

                old_refresh = client.credentials.refresh_token
                client.refresh()
                assert client.credentials.refresh_token != old_refresh
                assert client.me().username == username
                client.logout()
                assert client.credentials.access_token is None

        await blocking(scenario)

    async def test_admin_routes(
        self, server: LiveServer, accounts: Accounts, username: str
    ) -> None:
        admin_name = f"{username}admin"
        await accounts.create(admin_name, admin=True)

        def scenario() -> None:
            with signed_up(server.base_url, username) as user:
                user.chat("count me")
            with Client(server.base_url) as admin:
                admin.login(admin_name, PASSWORD)
                assert {admin_name, username} <= set(admin.list_usernames())
                assert admin.list_users(limit=100).total >= 2
                assert admin.update_user(username, disabled=True).is_disabled
                assert admin.user_usage(username).usage.messages.used == 1
                quota = admin.set_user_quota(username, daily_messages=7, daily_tokens=None)
                assert quota.overrides.daily_messages == 7
                roles = admin.list_models().roles
                assert {role.backend for role in roles} == {"fake"}
                admin.delete_user(username)
                with pytest.raises(NotFoundError):
                    admin.user_usage(username)

        await blocking(scenario)


class TestDocuments:
    async def test_upload_search_ground_and_delete_with_the_real_embedder(
        self, tmp_path: Path, embedder: Embedder
    ) -> None:
        settings = await migrated_settings(tmp_path / "data", rag=RagSettings(enabled=True))
        notes = tmp_path / "review.md"
        notes.write_text("# Review\n\nThe quarterly review happens on Friday in room 4.\n")
        with live_server(settings, FakeBackend(), embedder=embedder) as rag_server:

            def scenario() -> None:
                with signed_up(rag_server.base_url, "reader") as client:
                    stored = client.upload_document(notes, collection="team")
                    assert isinstance(stored, IngestResponse)
                    assert stored.document.chunk_count >= 1
                    again = client.upload_document(notes, collection="team")
                    assert isinstance(again, IngestResponse)
                    assert again.deduplicated
                    assert [d.path for d in client.list_documents()] == ["review.md"]
                    found = client.search_documents("when is the review?", limit=3)
                    assert found.results[0].document_id == stored.document.id
                    assert "Friday" in found.results[0].text
                    context = client.rag_context("quarterly review", repositories=["team"])
                    assert context.enabled
                    assert context.references[0].file_path == "review.md"
                    answer = client.chat("When is the review?", use_rag=True)
                    assert answer.citations[0].document_id == str(stored.document.id)
                    client.delete_document(stored.document.id)
                    assert client.list_documents() == []

            await blocking(scenario)
