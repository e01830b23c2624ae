"""Two replicas (two server processes) sharing PostgreSQL and Redis: the WebSocket channel
behaves as one service whichever replica a client reaches."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.harness import Replica, cluster_env, replicas
from tests.conftest import PASSWORD
from tests.live_server import LiveServer, register_and_login
from tests.sse_client import read_events
from tests.ws_client import close_code, get_ticket, open_socket, receive, receive_until, send

WORDS = " ".join(f"w{n}" for n in range(30))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, cluster_schema: str) -> Iterator[list[Replica]]:
    tmp_path = tmp_path_factory.mktemp("replicas")
    env = cluster_env(tmp_path, cluster_schema, MONGARS_LLM__FAKE_TOKEN_DELAY_SECONDS="0.05")
    with replicas(env, 2, tmp_path) as started:
        yield started


def live(replica: Replica) -> LiveServer:
    return LiveServer(base_url=replica.base_url, fake=None)  # type: ignore[arg-type]


class TestTwoReplicas:
    async def test_a_socket_on_a_hears_a_turn_made_through_b(self, pair: list[Replica]) -> None:
        a, b = pair
        headers = register_and_login(a.base_url, f"u{uuid.uuid4().hex[:8]}", PASSWORD)
        async with await open_socket(live(a), await get_ticket(live(a), headers)) as ws:
            await receive_until(ws, "history.snapshot")
            async with httpx.AsyncClient(base_url=b.base_url, timeout=20) as http:
                answer = await http.post(
                    "/api/v1/conversation/chat", headers=headers, json={"message": "via b"}
                )
                assert answer.status_code == 200
            frames = await receive_until(ws, "chat.message")
        assert frames[-1]["data"]["message"]["content"] == "echo: via b"
        assert frames[-1]["data"]["message"]["id"] == answer.json()["message_id"]

    async def test_a_ticket_from_a_works_once_on_b_and_never_again(
        self, pair: list[Replica]
    ) -> None:
        a, b = pair
        headers = register_and_login(a.base_url, f"u{uuid.uuid4().hex[:8]}", PASSWORD)
        ticket = await get_ticket(live(a), headers)
        async with await open_socket(live(b), ticket) as ws:
            assert (await receive(ws))["type"] == "ws.connected"
        for replica in (a, b):
            async with await open_socket(live(replica), ticket) as ws:
                assert await close_code(ws) == (4401, "ticket_used")

    async def test_a_stream_started_on_a_resumes_on_b_without_gap(
        self, pair: list[Replica]
    ) -> None:
        a, b = pair
        headers = register_and_login(a.base_url, f"u{uuid.uuid4().hex[:8]}", PASSWORD)
        async with await open_socket(live(a), await get_ticket(live(a), headers)) as ws:
            await receive_until(ws, "history.snapshot")
            await send(ws, "chat.send", {"message": WORDS})
            stream_id = (await receive(ws))["data"]["stream_id"]
            seen = [await receive(ws) for _ in range(4)]
        # Interrupted: that socket is gone. Resume on the other replica.
        async with await open_socket(live(b), await get_ticket(live(b), headers)) as ws:
            await receive_until(ws, "history.snapshot")
            await send(ws, "resume", {"stream_id": stream_id, "after_seq": seen[-1]["data"]["seq"]})
            rest = [f for f in await receive_until(ws, "chat.done") if f["type"] != "ack"]
        frames = seen + rest
        seqs = [f["data"]["seq"] for f in frames]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert (
            "".join(f["data"]["text"] for f in frames if f["type"] == "chat.delta")
            == f"echo: {WORDS}"
        )

    async def test_sse_resume_on_b_and_a_cancel_through_b_reach_the_generating_replica(
        self, pair: list[Replica]
    ) -> None:
        a, b = pair
        headers = register_and_login(a.base_url, f"u{uuid.uuid4().hex[:8]}", PASSWORD)
        async with httpx.AsyncClient(timeout=20) as http:
            async with http.stream(
                "POST",
                f"{a.base_url}/api/v1/conversation/chat/stream",
                headers=headers,
                json={"message": WORDS},
            ) as response:
                stream_id = response.headers["x-stream-id"]
                events = read_events(response)
                start = await anext(events)
                conversation_id = start.data["conversation_id"]
                cancel = await http.post(
                    f"{b.base_url}/api/v1/conversations/{conversation_id}/cancel", headers=headers
                )
                assert cancel.status_code == 200
                rest = [event async for event in events]
            assert rest[-1].type == "done"
            assert rest[-1].data["message"]["status"] == "incomplete"
            assert rest[-1].data["finish_reason"] == "cancelled"
            resumed = await http.get(
                f"{b.base_url}/api/v1/streams/{stream_id}", headers=headers, params={"after": 1}
            )
        assert resumed.status_code == 200
        assert resumed.text.count("event: done") == 1
        assert f"id: {stream_id}:{rest[-1].seq}" in resumed.text
