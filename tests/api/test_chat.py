"""Whole-answer chat turns through the API, against the deterministic fake backend."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mongars.app import create_app
from mongars.config import ChatSettings
from mongars.core.llm import FakeBackend, GenerationParams
from mongars.core.model_roles import ROLES, ModelRoles, RoleBinding
from mongars.db.tables import Message
from mongars.resources import Resources
from tests.conftest import Account, Accounts, in_process, migrated_settings


async def chat(
    client: httpx.AsyncClient, account: Account, message: str, **extra: object
) -> httpx.Response:
    return await client.post(
        "/api/v1/conversation/chat", headers=account.headers, json={"message": message, **extra}
    )


async def stored_messages(resources: Resources) -> list[Message]:
    async with resources.sessions() as db:
        return list((await db.execute(select(Message).order_by(Message.id))).scalars())


class TestAChatTurn:
    async def test_answers_with_the_charter_fields_and_stores_both_sides(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        fake_backend: FakeBackend,
        resources: Resources,
    ) -> None:
        account = await accounts.create()
        response = await chat(client, account, "Hello there, model")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["response"] == "echo: Hello there, model"
        assert isinstance(body["confidence"], float)
        assert 0.0 <= body["confidence"] <= 1.0
        assert body["confidence_source"] == "unavailable"
        assert isinstance(body["processing_time"], float)
        assert body["processing_time"] >= 0
        turn = body["speech_turn"]
        assert turn["text"] == body["response"]
        assert datetime.fromisoformat(turn["created_at"])
        assert [s["text"] for s in turn["segments"]] == ["echo: Hello there, model"]
        assert turn["segments"][0]["estimated_duration"] > 0
        assert body["status"] == "complete"
        assert body["finish_reason"] == "stop"
        assert body["model"] == "fake-echo"
        assert body["usage"]["completion_tokens"] == 4
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 4
        assert body["citations"] == []

        question, answer = await stored_messages(resources)
        assert (question.role, question.content, question.status) == (
            "user",
            "Hello there, model",
            "complete",
        )
        assert (answer.role, answer.status, answer.reply_to_id) == (
            "assistant",
            "complete",
            question.id,
        )
        assert answer.content == body["response"]
        assert answer.id == body["message_id"]
        assert str(answer.conversation_id) == body["conversation_id"]
        assert answer.latency_ms is not None
        assert answer.completion_tokens == 4

    async def test_confidence_comes_from_logprobs_when_the_backend_gives_them(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        fake_backend.confidence = 0.87
        body = (await chat(client, await accounts.create(), "hi")).json()
        assert body["confidence"] == 0.87
        assert body["confidence_source"] == "logprobs"

    async def test_the_message_is_stored_exactly_as_typed(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        typed = "  spaces kept\n\ttabs too  <b>and markup</b> 'quotes'; DROP TABLE users; --  "
        assert (await chat(client, await accounts.create(), typed)).status_code == 200
        assert (await stored_messages(resources))[0].content == typed


class TestConversations:
    async def test_a_follow_up_sees_the_earlier_exchange(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        first = (await chat(client, account, "my name is Ada")).json()
        second = await chat(
            client, account, "what is my name?", conversation_id=first["conversation_id"]
        )
        assert second.json()["conversation_id"] == first["conversation_id"]
        prompt, _params = fake_backend.requests[-1]
        assert [(m.role, m.content) for m in prompt[1:]] == [
            ("user", "my name is Ada"),
            ("assistant", "echo: my name is Ada"),
            ("user", "what is my name?"),
        ]
        assert prompt[0].role == "system"
        assert prompt[0].content

    async def test_session_id_is_accepted_for_older_clients(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        first = (await chat(client, account, "one")).json()
        second = await chat(client, account, "two", session_id=first["conversation_id"])
        assert second.json()["conversation_id"] == first["conversation_id"]

    async def test_without_an_id_each_turn_starts_a_new_conversation(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        ids = {
            (await chat(client, account, f"topic {n}")).json()["conversation_id"] for n in range(3)
        }
        assert len(ids) == 3


class TestBadInput:
    @pytest.mark.parametrize("message", ["", "   ", "\n\t "])
    async def test_empty_or_blank_message(
        self, client: httpx.AsyncClient, accounts: Accounts, message: str
    ) -> None:
        response = await chat(client, await accounts.create(), message)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "message"]

    async def test_a_message_over_32_kb(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        account = await accounts.create()
        at_limit = await chat(client, account, "é" * (16 * 1024))  # 2 bytes each: exactly 32 KiB
        assert at_limit.status_code == 200
        over = await chat(client, account, "x" * (32 * 1024 + 1))
        assert over.status_code == 413
        assert over.json()["code"] == "message_too_large"
        assert "message" in over.json()["detail"]
        assert len(await stored_messages(resources)) == 2  # only the accepted turn

    async def test_unknown_and_foreign_conversations_are_not_found(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        owner, stranger = await accounts.create(), await accounts.create()
        theirs = (await chat(client, owner, "private")).json()["conversation_id"]
        for conversation_id in (theirs, str(uuid.uuid4())):
            response = await chat(client, stranger, "let me in", conversation_id=conversation_id)
            assert response.status_code == 404
            assert response.json()["code"] == "conversation_not_found"
        assert len(await stored_messages(resources)) == 2
        malformed = await chat(client, stranger, "x", conversation_id="not-a-uuid")
        assert malformed.status_code == 422

    async def test_needs_a_credential(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/conversation/chat", json={"message": "hi"})
        assert response.status_code == 401


class TestBackendFailures:
    async def test_backend_down_is_a_503_and_the_turn_is_marked_error(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        fake_backend.fail_before_first_token = True
        response = await chat(client, await accounts.create(), "anyone there?")
        assert response.status_code == 503
        assert response.json()["code"] == "backend_unavailable"
        question, answer = await stored_messages(resources)
        assert question.content == "anyone there?"
        assert (answer.status, answer.content) == ("error", "")
        assert answer.error

    async def test_death_mid_answer_keeps_the_partial_answer_marked_incomplete(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        fake_backend.fail_after_tokens = 2
        response = await chat(client, await accounts.create(), "one two three four")
        assert response.status_code == 503
        question, answer = await stored_messages(resources)
        assert question.content == "one two three four"
        assert (answer.status, answer.content) == ("incomplete", "echo: one")


class TestPromptBudget:
    async def test_a_message_larger_than_the_context_window_is_refused(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        # The fake counts a token per word and has an 8192-token window, 512 kept for the answer.
        response = await chat(client, await accounts.create(), "w " * 8000)
        assert response.status_code == 413
        assert response.json()["code"] == "prompt_too_large"
        assert await stored_messages(resources) == []

    async def test_old_history_is_dropped_to_fit(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        first = (await chat(client, account, "old " * 2500)).json()
        for _ in range(2):
            await chat(client, account, "filler " * 2500, conversation_id=first["conversation_id"])
        await chat(client, account, "latest question", conversation_id=first["conversation_id"])
        prompt, _ = fake_backend.requests[-1]
        assert prompt[-1].content == "latest question"
        assert all("old old" not in m.content for m in prompt)
        assert sum(len(m.content.split()) for m in prompt) < 8192 - 512


class TestWhereThePromptIsBuilt:
    @pytest.mark.parametrize("blocks", [False, True])
    async def test_a_blocking_token_counter_runs_in_a_worker_thread(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        fake_backend: FakeBackend,
        blocks: bool,
    ) -> None:
        fake_backend.counting_blocks = blocks
        response = await chat(client, await accounts.create(), "count these words")
        assert response.status_code == 200, response.text
        on_the_loop = fake_backend.counting_threads == {threading.current_thread().name}
        assert on_the_loop is not blocks, fake_backend.counting_threads


class TestSilentBackend:
    """``token_timeout_seconds`` bounds each wait for the model's next token, not the answer."""

    @staticmethod
    async def turn(tmp_path: Path, backend: FakeBackend) -> tuple[httpx.Response, list[Any]]:
        settings = await migrated_settings(tmp_path, chat=ChatSettings(token_timeout_seconds=0.2))
        app = create_app(settings, roles=ModelRoles.single(backend))
        async with in_process(app) as served:
            account = await Accounts(served.client, served.resources).create("kim")
            response = await chat(served.client, account, "hello there, tell me more")
            history = await served.client.get(
                "/api/v1/conversation/history", headers=account.headers
            )
        return response, history.json()

    async def test_no_token_within_the_timeout_is_a_504_and_an_error_row(
        self, tmp_path: Path
    ) -> None:
        response, history = await self.turn(tmp_path, FakeBackend(hang_before_first_token=True))
        assert response.status_code == 504
        assert response.json()["code"] == "backend_timeout"
        assert [(turn["status"], turn["response"]) for turn in history] == [("error", "")]

    async def test_a_stall_mid_answer_keeps_the_partial_answer_as_incomplete(
        self, tmp_path: Path
    ) -> None:
        response, history = await self.turn(tmp_path, FakeBackend(hang_after_tokens=2))
        assert response.status_code == 504
        [turn] = history
        assert turn["status"] == "incomplete"
        assert turn["response"]  # the two tokens that came

    async def test_a_slow_answer_whose_tokens_keep_coming_completes(self, tmp_path: Path) -> None:
        # Six tokens 0.08 s apart: 0.48 s in all, more than twice the 0.2 s timeout.
        response, history = await self.turn(tmp_path, FakeBackend(token_delay_seconds=0.08))
        assert response.status_code == 200, response.text
        assert [turn["status"] for turn in history] == ["complete"]


class TestRoleRouting:
    async def test_code_goes_to_coding_and_reasoning_only_when_asked(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path)
        backends = {role: FakeBackend(model=f"{role}-model") for role in ROLES}
        roles = ModelRoles(
            {
                role: RoleBinding(role=role, backend=backend, params=GenerationParams())
                for role, backend in backends.items()
            }
        )
        app = create_app(settings, roles=roles)
        async with in_process(app) as served:
            account = await Accounts(served.client, served.resources).create("lin")

            async def model_for(message: str, **extra: object) -> str:
                response = await chat(served.client, account, message, **extra)
                assert response.status_code == 200, response.text
                return str(response.json()["model"])

            assert await model_for("Why is the sky blue?") == "general-model"
            assert await model_for("def f(x):\n    return x") == "coding-model"
            assert await model_for("Why is the sky blue?", role="reasoning") == "reasoning-model"
            refused = await chat(served.client, account, "hi", role="embedding")
            assert refused.status_code == 422
        assert backends["embedding"].requests == []
