"""A replica killed with SIGKILL in the middle of a streamed answer. The client resumes on the
other replica: it gets every event it missed that the dead replica had already published,
without a gap, then a clear ``stream_interrupted`` error once the dead replica's lease lapses,
instead of waiting forever. The history stays consistent: the question stored once, the
answer stored once and marked incomplete (its text a prefix of the real answer), and the
conversation goes on from the surviving replica."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from mongars.core.stream_mirror import LEASE_SECONDS
from mongars.devtools.cluster import Replica
from tests.cluster.harness import cluster_env, replicas
from tests.faults.support import fetch_messages, sign_up
from tests.live_server import LiveServer
from tests.sse_client import read_events
from tests.ws_client import get_ticket, open_socket, receive, receive_until, send

WORDS = " ".join(f"w{n}" for n in range(60))
TOKEN_DELAY_SECONDS = 0.1  # 60 words: about 6 s of answer, ample time to kill mid-stream
EVENTS_BEFORE_KILL = 6


# The survivor waits for the dead replica's next events with short blocking XREADs (under the
# Redis client's socket timeout) whatever the keep-alive interval: both the default (15 s)
# and a short one must end with stream_interrupted, not a broken response.


@pytest.fixture(
    params=[
        pytest.param("1", id="keepalive-1s"),
        pytest.param(
            None,
            id="keepalive-default",
        ),
    ]
)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cluster_schema: str
) -> Iterator[list[Replica]]:
    tmp_path = tmp_path_factory.mktemp("replica-killed")
    keepalive = {"MONGARS_CHAT__STREAM_KEEPALIVE_SECONDS": request.param} if request.param else {}
    env = cluster_env(
        tmp_path,
        cluster_schema,
        MONGARS_LLM__FAKE_TOKEN_DELAY_SECONDS=str(TOKEN_DELAY_SECONDS),
        MONGARS_RAG__ENABLED="false",
        **keepalive,
    )
    with replicas(env, 2, tmp_path) as started:
        yield started


class TestReplicaKilledMidStream:
    async def test_resume_on_the_survivor_ends_clearly_and_history_is_consistent(
        self, pair: list[Replica], cluster_schema: str
    ) -> None:
        doomed, survivor = pair
        username = f"u{uuid.uuid4().hex[:8]}"
        headers = sign_up(survivor, username)
        async with httpx.AsyncClient(headers=headers, timeout=LEASE_SECONDS + 20) as client:
            async with client.stream(
                "POST",
                f"{doomed.base_url}/api/v1/conversation/chat/stream",
                json={"message": WORDS},
            ) as response:
                assert response.status_code == 200
                stream_id = response.headers["x-stream-id"]
                events = read_events(response)
                seen = [await anext(events) for _ in range(EVENTS_BEFORE_KILL)]
                doomed.kill()
                with pytest.raises(httpx.TransportError):  # the connection dies with it
                    async for _ in events:
                        pass
            conversation_id = seen[0].data["conversation_id"]
            assert [e.type for e in seen[1:]] == ["delta"] * (EVENTS_BEFORE_KILL - 1)

            resumed = await client.get(
                f"{survivor.base_url}/api/v1/streams/{stream_id}", params={"after": seen[-1].seq}
            )
            assert resumed.status_code == 200
            rest = [event async for event in read_events(resumed)]

            # Nothing missed, nothing repeated, and an end that says what happened.
            seqs = [e.seq for e in seen + rest]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert rest[-1].type == "error"
            assert rest[-1].data["code"] == "stream_interrupted"
            assert all(e.type == "delta" for e in rest[:-1])
            shown = "".join(e.data["text"] for e in seen + rest if e.type == "delta")
            assert f"echo: {WORDS}".startswith(shown)
            assert len(shown) < len(f"echo: {WORDS}")

            # The conversation goes on from the survivor, with the interrupted turn in it.
            follow_up = await client.post(
                f"{survivor.base_url}/api/v1/conversation/chat",
                json={"message": "still there?", "conversation_id": conversation_id},
            )
            assert follow_up.status_code == 200, follow_up.text
            history = await client.get(
                f"{survivor.base_url}/api/v1/conversations/{conversation_id}"
            )
            assert history.status_code == 200, history.text

        rows = await fetch_messages(cluster_schema, username)
        assert [(r.role, r.status) for r in rows] == [
            ("user", "complete"),
            ("assistant", "incomplete"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert rows[0].content == WORDS
        assert f"echo: {WORDS}".startswith(rows[1].content)
        assert rows[3].content == "echo: still there?"
        listed = history.json()
        assert "incomplete" in str(listed)


@pytest.fixture
def ws_pair(
    tmp_path_factory: pytest.TempPathFactory, cluster_schema: str
) -> Iterator[list[Replica]]:
    tmp_path = tmp_path_factory.mktemp("replica-killed-ws")
    env = cluster_env(
        tmp_path,
        cluster_schema,
        MONGARS_LLM__FAKE_TOKEN_DELAY_SECONDS=str(TOKEN_DELAY_SECONDS),
        MONGARS_RAG__ENABLED="false",
    )
    with replicas(env, 2, tmp_path) as started:
        yield started


def live(replica: Replica) -> LiveServer:
    return LiveServer(base_url=replica.base_url, fake=None)  # type: ignore[arg-type]


class TestReplicaKilledMidWebSocketStream:
    async def test_resume_on_the_survivor_ends_with_stream_interrupted(
        self, ws_pair: list[Replica], cluster_schema: str
    ) -> None:
        doomed, survivor = ws_pair
        username = f"u{uuid.uuid4().hex[:8]}"
        headers = sign_up(survivor, username)
        async with await open_socket(live(doomed), await get_ticket(live(doomed), headers)) as ws:
            await receive_until(ws, "history.snapshot")
            await send(ws, "chat.send", {"message": WORDS})
            stream_id = (await receive(ws))["data"]["stream_id"]
            seen = [await receive(ws) for _ in range(EVENTS_BEFORE_KILL)]
            doomed.kill()
        async with await open_socket(
            live(survivor), await get_ticket(live(survivor), headers)
        ) as ws:
            await receive_until(ws, "history.snapshot")
            await send(ws, "resume", {"stream_id": stream_id, "after_seq": seen[-1]["data"]["seq"]})
            rest = [
                f
                for f in await receive_until(ws, "chat.error", within=LEASE_SECONDS + 10)
                if f["type"] != "ack"
            ]
        seqs = [f["data"]["seq"] for f in seen + rest]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert rest[-1]["data"]["code"] == "stream_interrupted"
        rows = await fetch_messages(cluster_schema, username)
        assert [(r.role, r.status) for r in rows] == [
            ("user", "complete"),
            ("assistant", "incomplete"),
        ]
