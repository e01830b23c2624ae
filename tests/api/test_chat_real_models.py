"""Chat through the whole API with real models: the embedded SmolLM2 (llama.cpp in-process)
and the ``openai`` backend against llama.cpp's own OpenAI-compatible HTTP server.

Answers from a 135M-parameter model are not checked for wisdom, only for being real: non-empty
text, token counts from the model's own tokenizer, a stored turn, streamed in several pieces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from mongars.app import create_app
from mongars.config import LLMSettings
from mongars.core.llm import EmbeddedBackend, GenerationParams
from mongars.core.model_roles import ModelRoles
from tests.conftest import PASSWORD, in_process, migrated_settings
from tests.model_fixtures import ALIAS, LlamaServer

QUESTION = "Name three colours of the rainbow."


async def open_client(
    app_settings: object, roles: ModelRoles | None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings, roles=roles)  # type: ignore[arg-type]
    async with in_process(app, timeout=60) as served:
        yield served.client


async def login(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    assert (
        await client.post("/api/v1/user/register", json={"username": name, "password": PASSWORD})
    ).status_code == 201
    token = (
        await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    ).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def parse_sse(body: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
async def embedded_client(
    embedded: EmbeddedBackend, tmp_path: object
) -> AsyncIterator[httpx.AsyncClient]:
    # SQLite only: the storage paths are covered on both engines by the fake-backend tests.
    roles = ModelRoles.single(embedded, GenerationParams(temperature=0.2, max_tokens=48))
    async for client in open_client(await migrated_settings(tmp_path), roles):  # type: ignore[arg-type]
        yield client


class TestEmbeddedModel:
    async def test_answers_counts_tokens_and_stores_the_turn(
        self, embedded_client: httpx.AsyncClient
    ) -> None:
        headers = await login(embedded_client, "ada")
        response = await embedded_client.post(
            "/api/v1/conversation/chat", headers=headers, json={"message": QUESTION}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["response"].strip()
        assert body["status"] == "complete"
        assert body["model"]
        assert body["model"] != "fake-echo"
        assert 0 < body["usage"]["completion_tokens"] <= 48
        assert body["usage"]["prompt_tokens"] > len(QUESTION.split())  # system prompt + template
        assert 0.0 <= body["confidence"] <= 1.0

        history = (
            await embedded_client.get("/api/v1/conversation/history", headers=headers)
        ).json()
        assert history[0]["query"] == QUESTION
        assert history[0]["response"] == body["response"]
        assert history[0]["status"] == "complete"

    async def test_streams_in_several_deltas_then_one_done(
        self, embedded_client: httpx.AsyncClient
    ) -> None:
        headers = await login(embedded_client, "bob")
        response = await embedded_client.post(
            "/api/v1/conversation/chat/stream", headers=headers, json={"message": QUESTION}
        )
        assert response.status_code == 200
        events = parse_sse(response.text)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "start"
        assert kinds[-1] == "done"
        assert kinds.count("delta") >= 3
        assert kinds.count("done") == 1
        text = "".join(str(data["text"]) for kind, data in events if kind == "delta")
        done = events[-1][1]
        assert text == done["message"]["content"]  # type: ignore[index]
        assert done["usage"]["completion_tokens"] > 0  # type: ignore[index]


class TestOpenAICompatibleBackend:
    async def test_a_turn_through_llama_cpp_server(
        self, llama_server: LlamaServer, tmp_path: object
    ) -> None:
        llm = LLMSettings(
            backend="openai",
            base_url=llama_server.url + "/v1",
            model=ALIAS,
            api_key=llama_server.api_key,
            max_tokens=32,
            temperature=0.0,
        )
        settings = await migrated_settings(tmp_path, llm=llm)  # type: ignore[arg-type]
        async for client in open_client(settings, None):
            headers = await login(client, "carol")
            response = await client.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": QUESTION}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["response"].strip()
            assert body["model"] == ALIAS
            assert body["usage"]["completion_tokens"] > 0
            assert body["confidence_source"] in ("logprobs", "unavailable")

    async def test_a_server_that_is_down_gives_503_then_fast_503s_with_retry_after(
        self, tmp_path: object
    ) -> None:
        from tests.live_server import free_port

        llm = LLMSettings(
            backend="openai",
            base_url=f"http://127.0.0.1:{free_port()}/v1",
            model="m",
            max_retries=0,
            breaker_failure_threshold=2,
            breaker_cooldown_seconds=30,
        )
        async for client in open_client(await migrated_settings(tmp_path, llm=llm), None):  # type: ignore[arg-type]
            headers = await login(client, "dave")
            for _ in range(2):
                failing = await client.post(
                    "/api/v1/conversation/chat", headers=headers, json={"message": "hi"}
                )
                assert failing.status_code == 503
                assert failing.json()["code"] == "backend_unavailable"
            open_circuit = await client.post(
                "/api/v1/conversation/chat", headers=headers, json={"message": "hi"}
            )
            assert open_circuit.status_code == 503
            assert 1 <= int(open_circuit.headers["retry-after"]) <= 30
            history = (await client.get("/api/v1/conversation/history", headers=headers)).json()
            # the two attempts that reached the backend are recorded as failed turns; the
            # refused one was never stored
            assert [turn["status"] for turn in history] == ["error", "error"]
