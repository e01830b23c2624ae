"""The OpenAI-compatible API through the official ``openai`` package, against a real server.

Everything here is what an existing OpenAI tool would do: point ``base_url`` at monGARS, use a
monGARS API key, and expect OpenAI's objects and OpenAI's typed errors back. Retries are off
(``max_retries=0``) so every error the server sends reaches the test.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from mongars.config import ChatSettings, RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.rag.embedder import Embedder
from mongars.db.tables import MessageStatus
from tests.conftest import migrated_settings
from tests.live_server import LiveServer, live_server
from tests.observability.test_metrics import has, parse
from tests.openai_api.conftest import OpenAIUser, new_user

pytestmark = pytest.mark.anyio


def sync_client(user: OpenAIUser, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=user.base_url, api_key=user.api_key, max_retries=0, **kwargs)  # type: ignore[arg-type]


def history(server: LiveServer, user: OpenAIUser) -> list[dict[str, object]]:
    response = httpx.get(f"{server.base_url}/api/v1/conversation/history", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def messages_used_today(server: LiveServer, user: OpenAIUser) -> int:
    response = httpx.get(f"{server.base_url}/api/v1/user/me/usage", headers=user.headers)
    return int(response.json()["messages"]["used"])


class TestChatCompletions:
    async def test_sync_completion_is_answered_and_stored(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            completion = client.chat.completions.create(
                model="general",
                messages=[
                    {"role": "system", "content": "Answer in one line."},
                    {"role": "user", "content": "hello there"},
                ],
                temperature=0.2,
                top_p=0.5,
                max_tokens=40,
                stop=["zzz"],
                user="end-user-7",
            )
        choice = completion.choices[0]
        assert choice.message.role == "assistant"
        assert choice.message.content == "echo: hello there"
        assert choice.finish_reason == "stop"
        assert completion.object == "chat.completion"
        assert completion.model == "fake-echo"
        assert completion.id.startswith("chatcmpl-")
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 3
        assert completion.usage.total_tokens == (
            completion.usage.prompt_tokens + completion.usage.completion_tokens
        )
        # The client's system message replaced the configured one; its parameters reached
        # the backend unchanged.
        prompt, params = server.fake.requests[-1]
        assert [m.role for m in prompt] == ["system", "user"]
        assert prompt[0].content == "Answer in one line."
        assert (params.temperature, params.top_p, params.max_tokens, params.stop) == (
            0.2,
            0.5,
            40,
            ["zzz"],
        )
        # Stored as a conversation, like any turn.
        [turn] = history(server, user)
        assert (turn["query"], turn["response"]) == ("hello there", "echo: hello there")
        assert messages_used_today(server, user) == 1

    async def test_earlier_messages_are_the_context(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            client.chat.completions.create(
                model="general",
                messages=[
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "first answer"},
                    {"role": "user", "content": [{"type": "text", "text": "second question"}]},
                ],
            )
        prompt, _ = server.fake.requests[-1]
        assert [(m.role, m.content) for m in prompt[1:]] == [
            ("user", "first question"),
            ("assistant", "first answer"),
            ("user", "second question"),
        ]
        # Without a system message of its own, the client gets the configured one.
        assert prompt[0].role == "system"
        assert prompt[0].content == server_system_prompt(server)

    async def test_a_configured_model_name_selects_its_role(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            completion = client.chat.completions.create(
                model="fake-echo", messages=[{"role": "user", "content": "by model name"}]
            )
        assert completion.choices[0].message.content == "echo: by model name"

    async def test_max_tokens_cuts_the_answer_with_finish_reason_length(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            completion = client.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "one two three four five"}],
                max_completion_tokens=2,
            )
        assert completion.choices[0].message.content == "echo: one"
        assert completion.choices[0].finish_reason == "length"

    async def test_store_false_keeps_no_history_but_counts_usage(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            completion = client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "forget me"}], store=False
            )
        assert completion.choices[0].message.content == "echo: forget me"
        assert history(server, user) == []
        assert messages_used_today(server, user) == 1

    async def test_access_tokens_work_as_well_as_api_keys(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        token = user.headers["Authorization"].removeprefix("Bearer ")
        with openai.OpenAI(base_url=user.base_url, api_key=token, max_retries=0) as client:
            completion = client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "with a token"}]
            )
        assert completion.choices[0].message.content == "echo: with a token"

    async def test_turns_are_counted_in_the_metrics(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        def complete_turns() -> float:
            text = httpx.get(f"{server.base_url}/metrics").text
            series = parse(text)
            return has(series, "mongars_chat_turns_total", backend="fake", outcome="complete") or 0

        before = complete_turns()
        with sync_client(user) as client:
            client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "count me"}], store=False
            )
        assert complete_turns() == before + 1

    async def test_use_rag_grounds_the_answer_in_the_users_documents(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        fact = "The Zorblax reactor on Deck 9 runs on pressurised seawater."
        uploaded = httpx.post(  # noqa: ASYNC210 - the server runs on its own thread
            f"{server.base_url}/api/v1/rag/documents",
            headers=user.headers,
            files={"file": ("reactor.md", f"# Reactor notes\n\n{fact}\n".encode())},
        )
        assert uploaded.status_code == 201, uploaded.text
        with sync_client(user) as client:
            completion = client.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "What does the Zorblax reactor run on?"}],
                extra_body={"use_rag": True},
            )
        citations = completion.model_extra["mongars"]["citations"]  # type: ignore[index]
        assert citations
        assert citations[0]["document_id"] == uploaded.json()["document"]["id"]
        prompt, _ = server.fake.requests[-1]
        assert fact in prompt[0].content


class TestAsyncAndStreaming:
    async def test_async_completion(self, server: LiveServer, user: OpenAIUser) -> None:
        async with openai.AsyncOpenAI(
            base_url=user.base_url, api_key=user.api_key, max_retries=0
        ) as client:
            completion = await client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "async hello"}]
            )
        assert completion.choices[0].message.content == "echo: async hello"

    async def test_streamed_answer_arrives_in_chunks_with_usage_last(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        server.fake.token_delay_seconds = 0.01
        async with openai.AsyncOpenAI(
            base_url=user.base_url, api_key=user.api_key, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "stream these five words"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
        texts = [p for p in pieces if p]
        assert len(texts) >= 5
        assert "".join(texts) == "echo: stream these five words"
        assert chunks[0].choices[0].delta.role == "assistant"
        finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
        # With include_usage: every chunk has a usage field, null except the last, which has
        # no choices.
        assert all(c.usage is None for c in chunks[:-1])
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 5
        assert len({c.id for c in chunks}) == 1
        [turn] = history(server, user)
        assert turn["response"] == "echo: stream these five words"

    async def test_sync_stream_without_usage(self, server: LiveServer, user: OpenAIUser) -> None:
        with sync_client(user) as client:
            stream = client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
            chunks = list(stream)
        assert all(c.usage is None for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c"

    async def test_a_backend_dying_mid_stream_raises_and_keeps_the_partial_answer(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        server.fake.fail_after_tokens = 2
        received: list[str] = []
        with sync_client(user) as client:
            stream = client.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "this will break"}],
                stream=True,
            )
            with pytest.raises(openai.APIError, match="died mid-answer"):
                received.extend(chunk.choices[0].delta.content or "" for chunk in stream)
        assert "".join(received) == "echo: this"
        [turn] = history(server, user)
        assert turn["response"] == "echo: this"
        assert turn["status"] == MessageStatus.INCOMPLETE


class TestEmbeddings:
    async def test_embeddings_are_the_embedded_minilm_vectors(
        self, server: LiveServer, user: OpenAIUser, embedder: Embedder
    ) -> None:
        texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent."]
        with sync_client(user) as client:
            # The client asks for base64 by default and decodes it itself.
            encoded = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
            plain = client.embeddings.create(
                model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float"
            )
        expected = embedder.embed(texts)
        assert [item.index for item in encoded.data] == [0, 1]
        got = np.array([item.embedding for item in encoded.data], dtype=np.float32)
        assert got.shape == (2, 384)
        assert np.allclose(got, expected, atol=1e-6)
        assert np.allclose(plain.data[0].embedding, expected[0], atol=1e-6)
        assert encoded.model == "all-MiniLM-L6-v2"
        assert encoded.usage.prompt_tokens > 0

    async def test_unknown_embedding_model_is_404(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client, pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="text-embedding-3-large", input="x")


class TestModels:
    async def test_models_lists_roles_and_their_models(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            ids = [model.id for model in client.models.list()]
        assert {"general", "coding", "reasoning", "fake-echo", "all-MiniLM-L6-v2"} <= set(ids)
        assert len(ids) == len(set(ids))

    async def test_a_listed_model_can_be_retrieved_and_an_unknown_one_is_not_found(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            assert client.models.retrieve("general").id == "general"
            with pytest.raises(openai.NotFoundError) as caught:
                client.models.retrieve("gpt-9-ultra")
        assert caught.value.code == "model_not_found"


class TestErrors:
    async def test_a_bad_key_is_an_authentication_error(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        client = openai.OpenAI(base_url=user.base_url, api_key="mg_not-a-key", max_retries=0)
        with client, pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 401
        assert caught.value.type == "authentication_error"

    async def test_an_unknown_model_is_not_found(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client, pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(
                model="gpt-9-ultra", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.code == "model_not_found"
        assert "gpt-9-ultra" in caught.value.message
        assert history(server, user) == []

    async def test_invalid_parameters_are_bad_requests_naming_the_parameter(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model="general",
                    messages=[{"role": "user", "content": "hi"}],
                    temperature=5,
                )
            assert caught.value.param == "temperature"
            with pytest.raises(openai.BadRequestError, match="last message must be the user"):
                client.chat.completions.create(
                    model="general", messages=[{"role": "assistant", "content": "hi"}]
                )
            with pytest.raises(openai.BadRequestError, match="image_url"):
                client.chat.completions.create(
                    model="general",
                    messages=[
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "data:,"}}],
                        }
                    ],
                )
            with pytest.raises(openai.BadRequestError, match="n"):
                client.chat.completions.create(
                    model="general", messages=[{"role": "user", "content": "hi"}], n=2
                )
        assert history(server, user) == []

    @pytest.mark.parametrize(
        "extra",
        [
            {"response_format": {"type": "json_object"}},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            {"logprobs": True},
            {"top_logprobs": 3},
            {"functions": [{"name": "f", "parameters": {"type": "object"}}]},
            {"function_call": {"name": "f"}},
            {"tool_choice": "required"},
        ],
    )
    async def test_parameters_that_would_change_the_answer_are_refused_not_ignored(
        self, server: LiveServer, user: OpenAIUser, extra: dict[str, object]
    ) -> None:
        hi = [{"role": "user", "content": "hi"}]
        with sync_client(user) as client:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model="general", messages=hi, **extra)  # type: ignore[call-overload]
            assert caught.value.param == next(iter(extra))
            # Their no-op values are accepted, as clients often send them.
            done = client.chat.completions.create(
                model="general",
                messages=hi,
                response_format={"type": "text"},
                logprobs=False,
                tool_choice="none",
            )
        assert done.choices[0].message.content == "echo: hi"

    async def test_text_with_a_lone_surrogate_is_a_bad_request(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        """Valid JSON, no character: it failed as a 500 deep in the turn, natively too."""
        lone = "a\ud800b"  # json.dumps writes it as the escape "\\ud800"
        bodies = {
            "/v1/chat/completions": {
                "model": "general",
                "messages": [{"role": "user", "content": lone}],
            },
            "/v1/embeddings": {"model": "all-MiniLM-L6-v2", "input": lone},
            "/api/v1/conversation/chat": {"message": lone},
        }
        headers = {"Authorization": f"Bearer {user.api_key}", "content-type": "application/json"}
        root = user.base_url.removesuffix("/v1")
        async with httpx.AsyncClient(base_url=root, headers=headers) as http:
            statuses = {
                path: (await http.post(path, content=json.dumps(body))).status_code
                for path, body in bodies.items()
            }
        assert statuses == {
            "/v1/chat/completions": 400,
            "/v1/embeddings": 400,
            "/api/v1/conversation/chat": 422,
        }
        assert history(server, user) == []

    async def test_oversized_messages_and_bodies_are_413_in_openai_shape(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with sync_client(user) as client:
            with pytest.raises(openai.APIStatusError) as message_too_large:
                client.chat.completions.create(
                    model="general", messages=[{"role": "user", "content": "x" * 40_000}]
                )
            with pytest.raises(openai.APIStatusError) as body_too_large:
                client.chat.completions.create(
                    model="general", messages=[{"role": "user", "content": "x" * 3_000_000}]
                )
        assert message_too_large.value.status_code == 413
        assert message_too_large.value.code == "message_too_large"
        assert body_too_large.value.status_code == 413
        assert body_too_large.value.code == "payload_too_large"
        assert history(server, user) == []

    async def test_a_backend_that_is_down_is_a_503(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        server.fake.fail_before_first_token = True
        with sync_client(user) as client, pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 503
        assert caught.value.code == "backend_unavailable"

    async def test_a_request_body_cannot_choose_the_backend(
        self, server: LiveServer, user: OpenAIUser
    ) -> None:
        with TrapServer() as trap, sync_client(user) as client:
            completion = client.chat.completions.create(
                model="general",
                messages=[{"role": "user", "content": "who answers"}],
                extra_body={
                    "base_url": trap.url,
                    "api_base": trap.url,
                    "api_key": "sk-stolen",
                    "backend": "openai",
                    "provider": {"base_url": trap.url},
                },
            )
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(
                    model=trap.url, messages=[{"role": "user", "content": "who answers"}]
                )
        assert completion.choices[0].message.content == "echo: who answers"
        assert trap.connections == 0


async def test_rate_limited_requests_raise_rate_limit_error(tmp_path: Path) -> None:
    """Its own server: two chats a minute, shared with the native chat routes."""
    settings = await migrated_settings(tmp_path, rate_limit=RateLimitSettings(chat_per_minute=2))
    with live_server(settings, FakeBackend()) as limited:
        user = new_user(limited, "grace")
        # Blocking calls are fine here: the server runs on its own thread and loop.
        native = httpx.post(  # noqa: ASYNC210
            f"{limited.base_url}/api/v1/conversation/chat",
            headers=user.headers,
            json={"message": "native turn"},
        )
        assert native.status_code == 200
        with sync_client(user) as client:
            client.chat.completions.create(
                model="general", messages=[{"role": "user", "content": "second"}]
            )
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(
                    model="general", messages=[{"role": "user", "content": "third"}]
                )
    assert caught.value.status_code == 429
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert caught.value.type == "rate_limit_error"


def server_system_prompt(server: LiveServer) -> str:
    return ChatSettings().system_prompt


class TrapServer:
    """A listening socket standing in for an attacker's backend: it counts who connects."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._socket.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def __enter__(self) -> TrapServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()
