"""The answer phase of a turn under faults: the answer's write failing, slow, racing a cancel
or a deleted conversation, and a backend with a bug. Each gets its own status and code, the
answer is kept whenever it was generated, and one turn's failure never reaches the others
(every generation of the app runs in one task group).

The write is made to fail by replacing ``transact`` (the answer phase's one call to the
database) in the chat service: a fault injected at that seam, the rest of the app is real."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy import select

from mongars.app import create_app
from mongars.core.chat import service as chat_service
from mongars.core.llm import ChatMessage, FakeBackend, GenerationParams, StreamEvent
from mongars.core.model_roles import ModelRoles
from mongars.db.tables import Message
from mongars.resources import Resources
from tests.conftest import Account, Accounts, InProcess, in_process, migrated_settings

REAL_TRANSACT = chat_service.transact


async def answers(resources: Resources) -> list[tuple[str, str]]:
    async with resources.sessions() as db:
        found = await db.execute(select(Message).where(Message.role == "assistant"))
        return [(m.status, m.content) for m in found.scalars()]


async def chat(served: InProcess, account: Account, message: str, **extra: object) -> Any:
    return await served.client.post(
        "/api/v1/conversation/chat", headers=account.headers, json={"message": message, **extra}
    )


@asynccontextmanager
async def follow_up(
    served: InProcess, account: Account, conversation: str, message: str
) -> AsyncIterator[dict[str, httpx.Response]]:
    """A turn in ``conversation`` running while the block runs; its response under "turn"."""
    result: dict[str, httpx.Response] = {}

    async def turn() -> None:
        result["turn"] = await chat(served, account, message, conversation_id=conversation)

    async with anyio.create_task_group() as group:
        group.start_soon(turn)
        yield result


class TestTheAnswersWriteFails:
    async def test_a_database_down_at_the_write_is_a_503_with_retry_after(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def database_down(*_args: object) -> None:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, OSError("server closed"))

        settings = await migrated_settings(tmp_path)
        async with in_process(create_app(settings, roles=ModelRoles.single(FakeBackend()))) as s:
            account = await Accounts(s.client, s.resources).create("kim")
            monkeypatch.setattr(chat_service, "transact", database_down)
            response = await chat(s, account, "hello")
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "5"

    async def test_a_pool_timeout_fails_that_turn_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SQLAlchemy's pool timeout is no DBAPIError: it once escaped and ended the task group
        every generation runs in, cutting the answers in progress and refusing later turns."""
        failures = [sqlalchemy.exc.TimeoutError("QueuePool limit reached, timed out")] * 3

        async def exhausted_once(engine: object, work: Callable[..., object]) -> object:
            # Only kim's write (the partial's arguments: conversation, user, ...): ada's, in
            # between kim's retries, goes through.
            if failures and work.args[1] == kim_id:  # type: ignore[attr-defined]
                raise failures.pop()
            return await REAL_TRANSACT(engine, work)  # type: ignore[arg-type]

        settings = await migrated_settings(tmp_path)
        backend = FakeBackend(token_delay_seconds=0.02)
        async with in_process(create_app(settings, roles=ModelRoles.single(backend))) as s:
            kim = await Accounts(s.client, s.resources).create("kim")
            ada = await Accounts(s.client, s.resources).create("ada")
            me = await s.client.get("/api/v1/user/me", headers=kim.headers)
            kim_id = uuid.UUID(me.json()["id"])
            monkeypatch.setattr(chat_service, "transact", exhausted_once)
            results: dict[str, httpx.Response] = {}

            async def turn(name: str, account: Account, message: str) -> None:
                results[name] = await chat(s, account, message)

            async with anyio.create_task_group() as group:
                group.start_soon(turn, "ada", ada, "a b c d e f g h i j k l m n o p")
                await anyio.sleep(0.05)  # ada's answer is being generated
                group.start_soon(turn, "kim", kim, "x")
            later = await chat(s, ada, "later")
        assert results["kim"].status_code == 503
        assert results["ada"].status_code == 200
        assert results["ada"].json()["response"] == "echo: a b c d e f g h i j k l m n o p"
        assert later.status_code == 200


class TestRaces:
    async def test_a_cancel_during_the_write_keeps_the_generated_answer(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        writing = anyio.Event()

        async def slow_write(engine: object, work: Callable[..., object]) -> object:
            writing.set()
            await anyio.sleep(0.3)  # a slow commit, or SQLite's lock held elsewhere
            return await REAL_TRANSACT(engine, work)  # type: ignore[arg-type]

        settings = await migrated_settings(tmp_path)
        async with in_process(create_app(settings, roles=ModelRoles.single(FakeBackend()))) as s:
            account = await Accounts(s.client, s.resources).create("kim")
            conversation = (await chat(s, account, "first")).json()["conversation_id"]
            monkeypatch.setattr(chat_service, "transact", slow_write)
            async with follow_up(s, account, conversation, "hello there friend") as result:
                await writing.wait()
                cancel = await s.client.post(
                    f"/api/v1/conversations/{conversation}/cancel", headers=account.headers
                )
            stored = await answers(s.resources)
        assert cancel.status_code == 200
        assert result["turn"].status_code == 200
        assert stored[-1] == ("complete", "echo: hello there friend")

    async def test_a_conversation_deleted_during_the_answer_is_a_404(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path)
        backend = FakeBackend(token_delay_seconds=0.05)
        async with in_process(create_app(settings, roles=ModelRoles.single(backend))) as s:
            account = await Accounts(s.client, s.resources).create("kim")
            conversation = (await chat(s, account, "first")).json()["conversation_id"]
            async with follow_up(s, account, conversation, "one two three four five") as result:
                await anyio.sleep(0.15)
                deleted = await s.client.delete(
                    f"/api/v1/conversations/{conversation}", headers=account.headers
                )
        assert deleted.status_code == 204
        assert result["turn"].status_code == 404
        assert result["turn"].json()["code"] == "conversation_not_found"
        assert "retry-after" not in result["turn"].headers


class BuggyBackend(FakeBackend):
    """Raises something no backend is supposed to raise, after its first token."""

    async def stream(
        self, messages: list[ChatMessage], params: GenerationParams | None = None
    ) -> AsyncIterator[StreamEvent]:
        async for event in super().stream(messages, params):
            yield event
            raise RuntimeError("a bug in the backend")


class TestABackendBug:
    async def test_is_a_502_and_the_partial_answer_is_kept(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path)
        async with in_process(create_app(settings, roles=ModelRoles.single(BuggyBackend()))) as s:
            account = await Accounts(s.client, s.resources).create("kim")
            response = await chat(s, account, "hello there")
            stored = await answers(s.resources)
        assert response.status_code == 502
        assert response.json()["code"] == "backend_error"
        [(status, text)] = stored
        assert status == "incomplete"
        assert text
