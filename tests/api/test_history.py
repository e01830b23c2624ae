"""GET /api/v1/conversation/history: the charter's list of turns, newest first, by cursor."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from mongars.db.tables import MessageStatus
from mongars.resources import Resources
from tests.conftest import Accounts
from tests.factories import ConversationFactory, TurnSpec

HISTORY = "/api/v1/conversation/history"


@pytest.fixture
def conversations(resources: Resources) -> ConversationFactory:
    return ConversationFactory(resources)


def next_link(response: httpx.Response) -> str | None:
    header = response.headers.get("link")
    if header is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', header)
    assert match, header
    return match.group(1)


def field_errors(response: httpx.Response) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in response.json()["detail"]]


class TestHistoryShape:
    async def test_newest_first_with_the_charter_fields(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        first = await conversations.create(ada, turns=[TurnSpec("first question", "first answer")])
        second = await conversations.create(ada, turns=["second question", "third question"])

        response = await client.get(HISTORY, headers=ada.headers)

        assert response.status_code == 200, response.text
        items = response.json()
        assert [item["query"] for item in items] == [
            "third question",
            "second question",
            "first question",
        ]
        assert "link" not in response.headers
        oldest = items[-1]
        assert set(oldest) == {
            "user_id",
            "query",
            "response",
            "timestamp",
            "id",
            "conversation_id",
            "response_id",
            "status",
            "model",
        }
        assert oldest["user_id"] == str(first.user_id)
        assert oldest["response"] == "first answer"
        assert isinstance(datetime.fromisoformat(oldest["timestamp"]), datetime)
        assert oldest["id"] == first.turns[0].question_id
        assert oldest["response_id"] == first.turns[0].reply_id
        assert oldest["conversation_id"] == str(first.id)
        assert oldest["status"] == "complete"
        assert oldest["model"] == "fake-model"
        assert items[0]["conversation_id"] == str(second.id)
        assert all(isinstance(item["id"], int) for item in items)

    async def test_unanswered_turns_show_what_became_of_the_reply(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(
            ada,
            turns=[
                TurnSpec("never answered", answer=None),
                TurnSpec("cut short", "half an ans", status=MessageStatus.INCOMPLETE),
                TurnSpec("backend died", "", status=MessageStatus.ERROR),
            ],
        )

        items = (await client.get(HISTORY, headers=ada.headers)).json()

        by_query = {item["query"]: item for item in items}
        assert by_query["never answered"]["status"] == "pending"
        assert by_query["never answered"]["response"] == ""
        assert by_query["never answered"]["response_id"] is None
        assert by_query["never answered"]["model"] is None
        assert by_query["cut short"]["status"] == "incomplete"
        assert by_query["cut short"]["response"] == "half an ans"
        assert by_query["backend died"]["status"] == "error"

    async def test_needs_a_credential(self, client: httpx.AsyncClient) -> None:
        response = await client.get(HISTORY)
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


class TestHistoryPagination:
    async def test_the_cursor_walks_every_turn_once(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        one = await conversations.create(ada, turns=[f"q{i}" for i in range(4)])
        two = await conversations.create(ada, turns=[f"q{i}" for i in range(4, 7)])
        await conversations.add_turns(one, "q7")
        expected = sorted((turn.question_id for c in (one, two) for turn in c.turns), reverse=True)

        seen: list[int] = []
        url: str | None = f"{HISTORY}?limit=3"
        pages = 0
        while url is not None:
            response = await client.get(url, headers=ada.headers)
            assert response.status_code == 200, response.text
            page = [item["id"] for item in response.json()]
            assert 0 < len(page) <= 3
            seen += page
            pages += 1
            url = next_link(response)
            if url is not None:
                assert url.startswith(HISTORY + "?")
                assert f"before={page[-1]}" in url
                assert "limit=3" in url

        assert seen == expected
        assert pages == 3

    async def test_an_exact_last_page_has_no_next_link(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(ada, turns=["a", "b", "c", "d"])
        first = await client.get(f"{HISTORY}?limit=2", headers=ada.headers)
        link = next_link(first)
        assert link is not None
        second = await client.get(link, headers=ada.headers)
        assert len(second.json()) == 2
        assert next_link(second) is None

    async def test_the_link_keeps_the_conversation_filter(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        chosen = await conversations.create(ada, turns=["a", "b", "c"])
        await conversations.create(ada, turns=["elsewhere"])
        first = await client.get(
            f"{HISTORY}?limit=2&conversation_id={chosen.id}", headers=ada.headers
        )
        link = next_link(first)
        assert link is not None
        assert f"conversation_id={chosen.id}" in link
        rest = (await client.get(link, headers=ada.headers)).json()
        assert [item["query"] for item in first.json() + rest] == ["c", "b", "a"]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("limit=0", "query.limit"),
            ("limit=1000", "query.limit"),
            ("limit=ten", "query.limit"),
            ("before=0", "query.before"),
            ("before=99999999999999999999", "query.before"),
            ("conversation_id=not-a-uuid", "query.conversation_id"),
        ],
    )
    async def test_bad_parameters_name_the_field(
        self, client: httpx.AsyncClient, accounts: Accounts, query: str, field: str
    ) -> None:
        ada = await accounts.create("ada")
        response = await client.get(f"{HISTORY}?{query}", headers=ada.headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert field_errors(response) == [field]

    async def test_limit_boundaries_are_accepted(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create("ada")
        for limit in (1, 100):
            response = await client.get(f"{HISTORY}?limit={limit}", headers=ada.headers)
            assert response.status_code == 200


class TestHistoryFilters:
    async def test_by_conversation(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        chosen = await conversations.create(ada, turns=["in one", "also in one"])
        await conversations.create(ada, turns=["in two"])
        response = await client.get(
            HISTORY, params={"conversation_id": str(chosen.id)}, headers=ada.headers
        )
        assert [item["query"] for item in response.json()] == ["also in one", "in one"]

    async def test_another_users_conversation_is_not_found(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        bobs = await conversations.create(bob, turns=["bob's secret"])
        for conversation_id in (bobs.id, uuid.uuid4()):
            response = await client.get(
                HISTORY, params={"conversation_id": str(conversation_id)}, headers=ada.headers
            )
            assert response.status_code == 404
            assert response.json()["code"] == "conversation_not_found"

    async def test_the_charters_user_id_must_be_the_callers(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        await conversations.create(bob, turns=["bob's secret"])
        ada_id = await conversations.user_id(ada)
        bob_id = await conversations.user_id(bob)

        for someone_else in (str(bob_id), "bob", str(uuid.uuid4())):
            response = await client.get(
                HISTORY, params={"user_id": someone_else}, headers=ada.headers
            )
            assert response.status_code == 403, someone_else
            assert response.json()["code"] == "forbidden"
        for myself in (str(ada_id), "ada", "Ada"):
            response = await client.get(HISTORY, params={"user_id": myself}, headers=ada.headers)
            assert response.status_code == 200, myself


class TestHistoryIsolation:
    async def test_users_only_ever_see_their_own_turns(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        for i in range(3):
            await conversations.create(ada, turns=[f"ada {i}"])
            await conversations.create(bob, turns=[f"bob {i}"])
        ada_items = (await client.get(HISTORY, headers=ada.headers)).json()
        bob_items = (await client.get(HISTORY, headers=bob.headers)).json()
        assert [i["query"] for i in ada_items] == ["ada 2", "ada 1", "ada 0"]
        assert [i["query"] for i in bob_items] == ["bob 2", "bob 1", "bob 0"]
        # A cursor is only a bound: it never reaches into another user's turns.
        bob_cursor = max(i["id"] for i in bob_items) + 1
        paged = await client.get(f"{HISTORY}?before={bob_cursor}", headers=ada.headers)
        assert {i["query"] for i in paged.json()} <= {"ada 0", "ada 1", "ada 2"}


@contextmanager
def recorded_statements(resources: Resources) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _many = args
        statements.append((statement, parameters))

    engine = resources.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


class TestHistoryCost:
    """History must stay fast at a million messages: keyset on an index, no N+1, no OFFSET."""

    async def test_a_page_costs_the_same_queries_whatever_its_size(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        resources: Resources,
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(ada, turns=[f"q{i}" for i in range(30)])
        counts = []
        for limit in (2, 25):
            with recorded_statements(resources) as statements:
                response = await client.get(f"{HISTORY}?limit={limit}", headers=ada.headers)
            assert len(response.json()) == limit
            counts.append(len(statements))
        assert counts[0] == counts[1]

    async def test_the_page_walks_the_users_message_index(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        resources: Resources,
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(ada, turns=["q1", "q2", "q3"])
        with recorded_statements(resources) as statements:
            await client.get(f"{HISTORY}?limit=2&before=1000000", headers=ada.headers)
        (sql, parameters), *_ = [s for s in statements if "reply_to_id" in s[0]]

        async with resources.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                rows = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
                plan = "\n".join(str(row[-1]) for row in rows)
                assert "ix_messages_user_id_id" in plan, plan
                # The reply comes through the unique index on reply_to_id.
                assert re.search(r"SEARCH reply USING INDEX \w+ \(reply_to_id=\?\)", plan), plan
                assert "TEMP B-TREE" not in plan, plan
            else:
                # A handful of rows would make any plan cheap: forbid the alternatives so the
                # planner shows whether the index can serve the filter and the order.
                for setting in ("enable_seqscan", "enable_sort", "enable_bitmapscan"):
                    await connection.exec_driver_sql(f"SET LOCAL {setting} = off")
                rows = await connection.exec_driver_sql("EXPLAIN " + sql, parameters)
                plan = "\n".join(str(row[0]) for row in rows)
                assert "Index Scan Backward using ix_messages_user_id_id" in plan, plan
                assert "uq_messages_reply_to_id" in plan, plan
                assert "Sort" not in plan, plan
