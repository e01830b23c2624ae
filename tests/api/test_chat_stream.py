"""Streamed answers over SSE against a real uvicorn server: framing, resume, disconnects,
cancellation and a backend that dies mid-answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from sqlalchemy import select

from mongars.api.sse import parse_last_event_id
from mongars.core.llm import FakeBackend
from mongars.db.tables import Message
from mongars.resources import Resources
from tests.conftest import PASSWORD, Database, RunningApp, empty_all_tables, reset_fake
from tests.live_server import LiveServer, live_server, register_and_login
from tests.sse_client import Event, read_events

TEN_WORDS = "one two three four five six seven eight nine ten"


@pytest.fixture(scope="session")
def live(database: Database) -> Iterator[LiveServer]:
    with live_server(database.settings, FakeBackend()) as server:
        yield server


@pytest.fixture
async def server(live: LiveServer, running_app: RunningApp) -> AsyncIterator[LiveServer]:
    yield live
    reset_fake(live.fake)
    await empty_all_tables(running_app.resources)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as client:
        yield client


def login(server: LiveServer, name: str) -> dict[str, str]:
    return register_and_login(server.base_url, name, PASSWORD)


async def collect(
    source: httpx.Response | AsyncIterator[Event], limit: int | None = None
) -> list[Event]:
    """Events from a response (or from an event iterator already being read), up to ``limit``."""
    iterator = read_events(source) if isinstance(source, httpx.Response) else source
    events: list[Event] = []
    while limit is None or len(events) < limit:
        event = await anext(iterator, None)
        if event is None:
            break
        events.append(event)
    return events


async def answer_row(resources: Resources, message_id: int) -> Message:
    async with resources.sessions() as db:
        message = (await db.execute(select(Message).where(Message.id == message_id))).scalar_one()
        return message


def text_of(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "delta")


class TestFraming:
    async def test_start_deltas_then_one_done_with_gap_free_ids(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        headers = login(server, "ada")
        async with http.stream(
            "POST", "/api/v1/conversation/chat/stream", headers=headers, json={"message": TEN_WORDS}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream_id = response.headers["x-stream-id"]
            events = await collect(response)
        assert [e.type for e in events] == ["start", *["delta"] * 11, "done"]
        assert [e.id for e in events] == [f"{stream_id}:{n}" for n in range(1, 14)]
        done = events[-1].data
        assert text_of(events) == done["message"]["content"] == f"echo: {TEN_WORDS}"
        assert done["message"]["status"] == "complete"
        assert events[0].data["message_id"] == done["message"]["id"]

    async def test_refusals_come_before_the_stream_as_plain_http_errors(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        headers = login(server, "bob")
        response = await http.post(
            "/api/v1/conversation/chat/stream",
            headers=headers,
            json={"message": "hi", "conversation_id": str(uuid.uuid4())},
        )
        assert response.status_code == 404
        assert response.json()["code"] == "conversation_not_found"
        blank = await http.post(
            "/api/v1/conversation/chat/stream", headers=headers, json={"message": " "}
        )
        assert blank.status_code == 422


class TestResume:
    @pytest.mark.parametrize("how", ["after", "last-event-id"])
    async def test_read_three_drop_resume_gets_the_rest_exactly_once(
        self, server: LiveServer, http: httpx.AsyncClient, how: str
    ) -> None:
        server.fake.token_delay_seconds = 0.05
        headers = login(server, "carol")
        async with http.stream(
            "POST", "/api/v1/conversation/chat/stream", headers=headers, json={"message": TEN_WORDS}
        ) as response:
            stream_id = response.headers["x-stream-id"]
            first = await collect(response, limit=3)
        # The connection is gone; the generation is not.
        assert [e.seq for e in first] == [1, 2, 3]
        if how == "after":
            request = {"params": {"after": 3}}
        else:
            request = {"headers": {"Last-Event-ID": first[-1].id}}
        async with http.stream(
            "GET",
            f"/api/v1/streams/{stream_id}",
            headers={**headers, **request.get("headers", {})},
            params=request.get("params"),
        ) as resumed:
            assert resumed.status_code == 200
            rest = await collect(resumed)
        seqs = [e.seq for e in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1].type == "done"
        assert text_of(first + rest) == f"echo: {TEN_WORDS}"

    def test_a_last_event_id_that_is_not_ascii_digits_is_ignored(self) -> None:
        # "²" passes str.isdigit and is valid in a (latin-1) header, but int() refuses it.
        assert parse_last_event_id("s1:\xb2", "s1") is None
        assert parse_last_event_id("s1:7", "s1") == 7
        assert parse_last_event_id("other:7", "s1") is None

    async def test_another_user_cannot_resume_someone_elses_stream(
        self, server: LiveServer, http: httpx.AsyncClient
    ) -> None:
        owner, other = login(server, "dave"), login(server, "eve")
        async with http.stream(
            "POST",
            "/api/v1/conversation/chat/stream",
            headers=owner,
            json={"message": "secret plans"},
        ) as response:
            stream_id = response.headers["x-stream-id"]
            await collect(response)
        stolen = await http.get(f"/api/v1/streams/{stream_id}", headers=other)
        assert stolen.status_code == 404
        assert stolen.json()["code"] == "stream_not_found"
        assert (await http.get("/api/v1/streams/nope", headers=owner)).status_code == 404
        negative = await http.get(
            f"/api/v1/streams/{stream_id}", headers=owner, params={"after": -1}
        )
        assert negative.status_code == 422


class TestDisconnects:
    async def test_a_dropped_client_does_not_lose_the_answer(
        self, server: LiveServer, http: httpx.AsyncClient, resources: Resources
    ) -> None:
        server.fake.token_delay_seconds = 0.03
        headers = login(server, "frank")
        async with http.stream(
            "POST", "/api/v1/conversation/chat/stream", headers=headers, json={"message": TEN_WORDS}
        ) as response:
            start = (await collect(response, limit=2))[0]
        message_id = start.data["message_id"]
        with anyio.fail_after(10):
            while (row := await answer_row(resources, message_id)).status == "incomplete":  # noqa: ASYNC110 - polling the database, not an event
                await anyio.sleep(0.05)
        assert row.status == "complete"
        assert row.content == f"echo: {TEN_WORDS}"

    async def test_cancel_stops_the_answer_and_keeps_what_was_said(
        self, server: LiveServer, http: httpx.AsyncClient, resources: Resources
    ) -> None:
        server.fake.token_delay_seconds = 0.1
        headers = login(server, "grace")
        async with http.stream(
            "POST", "/api/v1/conversation/chat/stream", headers=headers, json={"message": TEN_WORDS}
        ) as response:
            reader = read_events(response)
            events = await collect(reader, limit=3)
            conversation_id = events[0].data["conversation_id"]
            cancelled = await http.post(
                f"/api/v1/conversations/{conversation_id}/cancel", headers=headers
            )
            assert cancelled.status_code == 200
            assert cancelled.json()["cancelled"] == [response.headers["x-stream-id"]]
            events += await collect(reader)
        done = events[-1]
        assert done.type == "done"
        assert done.data["message"]["status"] == "incomplete"
        assert done.data["finish_reason"] == "cancelled"
        row = await answer_row(resources, done.data["message"]["id"])
        assert row.status == "incomplete"
        assert row.content == text_of(events)
        assert 0 < len(row.content) < len(f"echo: {TEN_WORDS}")

    async def test_cancel_is_owner_only(self, server: LiveServer, http: httpx.AsyncClient) -> None:
        owner, other = login(server, "heidi"), login(server, "ivan")
        body = (
            await http.post("/api/v1/conversation/chat", headers=owner, json={"message": "x"})
        ).json()
        response = await http.post(
            f"/api/v1/conversations/{body['conversation_id']}/cancel", headers=other
        )
        assert response.status_code == 404


class TestBackendDeath:
    async def test_mid_stream_leaves_the_question_stored_and_the_answer_incomplete(
        self, server: LiveServer, http: httpx.AsyncClient, resources: Resources
    ) -> None:
        server.fake.fail_after_tokens = 3
        headers = login(server, "judy")
        async with http.stream(
            "POST", "/api/v1/conversation/chat/stream", headers=headers, json={"message": TEN_WORDS}
        ) as response:
            events = await collect(response)
        assert [e.type for e in events] == ["start", "delta", "delta", "delta", "error"]
        error = events[-1].data
        assert error["code"] == "backend_unavailable"
        assert error["message"]["status"] == "incomplete"
        row = await answer_row(resources, error["message"]["id"])
        assert (row.status, row.content) == ("incomplete", "echo: one two")
        question = await answer_row(resources, events[0].data["user_message_id"])
        assert question.content == TEN_WORDS
