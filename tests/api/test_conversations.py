"""/api/v1/conversations: list, read, rename, delete and export, for the owner only."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from mongars.db.base import utcnow
from mongars.db.tables import MessageStatus
from mongars.resources import Resources
from tests.conftest import Accounts
from tests.factories import ConversationFactory, MadeConversation, TurnSpec

CONVERSATIONS = "/api/v1/conversations"


@pytest.fixture
def conversations(resources: Resources) -> ConversationFactory:
    return ConversationFactory(resources)


def field_errors(response: httpx.Response) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in response.json()["detail"]]


class TestListing:
    async def test_most_recently_active_first_with_count_and_preview(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        now = utcnow()
        old = await conversations.create(
            ada, title="Old", turns=["hello"], updated_at=now - timedelta(days=2)
        )
        empty = await conversations.create(ada, title="Empty", updated_at=now - timedelta(days=1))
        long_answer = "word " * 100
        fresh = await conversations.create(
            ada, title="Fresh", turns=["one", TurnSpec("two", long_answer)], updated_at=now
        )

        response = await client.get(CONVERSATIONS, headers=ada.headers)

        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == 3
        assert (page["limit"], page["offset"]) == (20, 0)
        assert [item["id"] for item in page["items"]] == [
            str(fresh.id),
            str(empty.id),
            str(old.id),
        ]
        by_title = {item["title"]: item for item in page["items"]}
        assert by_title["Fresh"]["message_count"] == 4
        assert by_title["Fresh"]["preview"].endswith("…")
        assert len(by_title["Fresh"]["preview"]) <= 161
        assert by_title["Old"]["message_count"] == 2
        assert by_title["Old"]["preview"] == "An answer."
        assert by_title["Empty"]["message_count"] == 0
        assert by_title["Empty"]["preview"] is None
        assert {"created_at", "updated_at"} <= set(by_title["Old"])

    async def test_pages_by_limit_and_offset(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = [await conversations.create(ada, title=f"c{i}") for i in range(5)]
        first = (await client.get(f"{CONVERSATIONS}?limit=2", headers=ada.headers)).json()
        rest = (await client.get(f"{CONVERSATIONS}?limit=10&offset=2", headers=ada.headers)).json()
        assert first["total"] == rest["total"] == 5
        ids = [item["id"] for item in first["items"] + rest["items"]]
        assert sorted(ids) == sorted(str(c.id) for c in made)
        for bad in ("limit=0", "limit=101", "offset=-1"):
            response = await client.get(f"{CONVERSATIONS}?{bad}", headers=ada.headers)
            assert response.status_code == 422, bad

    async def test_lists_only_the_callers_conversations(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        await conversations.create(ada, title="Ada's")
        await conversations.create(bob, title="Bob's")
        page = (await client.get(CONVERSATIONS, headers=bob.headers)).json()
        assert [item["title"] for item in page["items"]] == ["Bob's"]
        assert page["total"] == 1


class TestReading:
    async def test_a_conversation_with_its_messages_oldest_first(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(
            ada,
            title="Maths",
            turns=[
                TurnSpec("What is 2+2?", "4"),
                TurnSpec("And 3+3?", "6 and then", status=MessageStatus.INCOMPLETE),
            ],
        )

        response = await client.get(f"{CONVERSATIONS}/{made.id}", headers=ada.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == str(made.id)
        assert body["title"] == "Maths"
        messages = body["messages"]
        assert [m["content"] for m in messages] == ["What is 2+2?", "4", "And 3+3?", "6 and then"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert [m["status"] for m in messages] == [
            "complete",
            "complete",
            "complete",
            "incomplete",
        ]
        answer = messages[1]
        assert answer["id"] == made.turns[0].reply_id
        assert answer["reply_to_id"] == made.turns[0].question_id
        assert answer["model"] == "fake-model"
        assert answer["prompt_tokens"] == 3
        assert answer["completion_tokens"] == 1
        assert answer["created_at"]


class TestRenaming:
    async def test_the_title_is_stripped_and_kept(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada, title="Old title")
        response = await client.patch(
            f"{CONVERSATIONS}/{made.id}",
            json={"title": "  New\n title  "},
            headers=ada.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "New title"
        again = await client.get(f"{CONVERSATIONS}/{made.id}", headers=ada.headers)
        assert again.json()["title"] == "New title"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"title": ""}, "body.title"),
            ({"title": "   "}, "body.title"),
            ({"title": "x" * 201}, "body.title"),
            ({"title": "nul\x00byte"}, "body.title"),
            ({}, "body.title"),
            ({"title": "ok", "user_id": "someone"}, "body.user_id"),
        ],
    )
    async def test_bad_titles_name_the_field(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        body: dict[str, str],
        field: str,
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada, title="Kept")
        response = await client.patch(f"{CONVERSATIONS}/{made.id}", json=body, headers=ada.headers)
        assert response.status_code == 422
        assert field_errors(response) == [field]

    async def test_two_hundred_characters_are_accepted(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada)
        response = await client.patch(
            f"{CONVERSATIONS}/{made.id}", json={"title": "é" * 200}, headers=ada.headers
        )
        assert response.status_code == 200
        assert response.json()["title"] == "é" * 200


class TestDeletion:
    async def test_the_conversation_and_its_messages_go(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        resources: Resources,
    ) -> None:
        ada = await accounts.create("ada")
        doomed = await conversations.create(ada, turns=["zebra question", "another"])
        kept = await conversations.create(ada, turns=["zebra kept"])

        response = await client.delete(f"{CONVERSATIONS}/{doomed.id}", headers=ada.headers)

        assert response.status_code == 204
        assert response.content == b""
        gone = await client.get(f"{CONVERSATIONS}/{doomed.id}", headers=ada.headers)
        assert gone.status_code == 404
        history = (await client.get("/api/v1/conversation/history", headers=ada.headers)).json()
        assert [item["query"] for item in history] == ["zebra kept"]
        async with resources.engine.connect() as connection:
            left = await connection.scalar(text("SELECT count(*) FROM messages"))
            assert left == 2
            if connection.dialect.name == "sqlite":
                # The search index forgot the deleted messages (the trigger fired on cascade)...
                indexed = await connection.execute(
                    text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'zebra'")
                )
                assert [row[0] for row in indexed] == [kept.turns[0].question_id]
                # ...and still agrees with the messages table entry for entry.
                await connection.execute(
                    text("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
                )
        again = await client.delete(f"{CONVERSATIONS}/{doomed.id}", headers=ada.headers)
        assert again.status_code == 404
        assert again.json()["code"] == "conversation_not_found"


class TestExport:
    async def test_markdown_is_a_download_with_questions_and_answers(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(
            ada,
            title="Trip to Montréal",
            turns=[
                TurnSpec("Where should I eat?", "Try the market."),
                TurnSpec("And then?", "", status=MessageStatus.ERROR),
            ],
        )

        for url in (
            f"{CONVERSATIONS}/{made.id}/export",
            f"{CONVERSATIONS}/{made.id}/export?format=markdown",
        ):
            response = await client.get(url, headers=ada.headers)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "text/markdown; charset=utf-8"
            assert (
                response.headers["content-disposition"]
                == 'attachment; filename="Trip-to-Montreal.md"'
            )
            document = response.text
            assert document.startswith("# Trip to Montréal\n")
            assert "Where should I eat?" in document
            assert "Try the market." in document
            assert "fake-model" in document
            assert document.index("Where should I eat?") < document.index("Try the market.")
            assert "No answer" in document

    async def test_json_is_the_typed_schema(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada, title="Notes", turns=[TurnSpec("Q?", "A!")])

        response = await client.get(
            f"{CONVERSATIONS}/{made.id}/export?format=json", headers=ada.headers
        )

        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-disposition"] == 'attachment; filename="Notes.json"'
        body = json.loads(response.content)
        assert body["id"] == str(made.id)
        assert body["title"] == "Notes"
        assert body["exported_at"]
        assert [(m["role"], m["content"]) for m in body["messages"]] == [
            ("user", "Q?"),
            ("assistant", "A!"),
        ]

    @pytest.mark.parametrize(
        ("title", "filename"),
        [
            ('Evil"; filename="x.exe', "Evil-filename-x.exe.md"),
            ("../../etc/passwd", "etc-passwd.md"),
            ("日本語", "conversation.md"),
            ("line\r\nbreak", "line-break.md"),
        ],
    )
    async def test_the_file_name_is_always_safe(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        title: str,
        filename: str,
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada, title=title)
        response = await client.get(f"{CONVERSATIONS}/{made.id}/export", headers=ada.headers)
        assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'

    async def test_an_unknown_format_is_refused(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada)
        response = await client.get(
            f"{CONVERSATIONS}/{made.id}/export?format=pdf", headers=ada.headers
        )
        assert response.status_code == 422
        assert field_errors(response) == ["query.format"]


def every_route(conversation_id: uuid.UUID | str) -> list[tuple[str, str, dict[str, str] | None]]:
    url = f"{CONVERSATIONS}/{conversation_id}"
    return [
        ("GET", url, None),
        ("PATCH", url, {"title": "Mine now"}),
        ("DELETE", url, None),
        ("GET", f"{url}/export", None),
        ("GET", f"{url}/export?format=json", None),
    ]


class TestOwnership:
    async def test_another_users_conversation_is_not_found_on_every_route(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        bobs: MadeConversation = await conversations.create(
            bob, title="Bob's", turns=["bob's secret"]
        )
        for conversation_id in (bobs.id, uuid.uuid4()):
            for method, url, body in every_route(conversation_id):
                response = await client.request(method, url, json=body, headers=ada.headers)
                assert response.status_code == 404, (method, url)
                assert response.json()["code"] == "conversation_not_found", (method, url)
        # Nothing happened to Bob's conversation.
        intact = await client.get(f"{CONVERSATIONS}/{bobs.id}", headers=bob.headers)
        assert intact.json()["title"] == "Bob's"
        assert len(intact.json()["messages"]) == 2

    async def test_a_malformed_id_is_a_validation_error(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create("ada")
        for method, url, body in every_route("not-a-uuid"):
            response = await client.request(method, url, json=body, headers=ada.headers)
            assert response.status_code == 422, (method, url)
            assert "path.conversation_id" in field_errors(response)

    async def test_every_route_needs_a_credential(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(ada)
        routes = [*every_route(made.id), ("GET", CONVERSATIONS, None)]
        for method, url, body in routes:
            response = await client.request(method, url, json=body)
            assert response.status_code == 401, (method, url)


class TestOpenApi:
    async def test_routes_are_documented_with_readable_ids_and_their_errors(
        self, client: httpx.AsyncClient
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        paths = schema["paths"]
        operations = {
            op["operationId"]: (path, method, op)
            for path, item in paths.items()
            for method, op in item.items()
        }
        assert {
            "read_history",
            "list_conversations",
            "search_conversations",
            "read_conversation",
            "rename_conversation",
            "delete_conversation",
            "export_conversation",
        } <= set(operations)
        for name in ("read_conversation", "rename_conversation", "delete_conversation"):
            assert {"401", "404", "422"} <= set(operations[name][2]["responses"]), name
        export = paths["/api/v1/conversations/{conversation_id}/export"]["get"]
        assert set(export["responses"]["200"]["content"]) == {"application/json", "text/markdown"}
        history = paths["/api/v1/conversation/history"]["get"]
        assert {"401", "403", "404", "422"} <= set(history["responses"])
        assert "Link" in history["responses"]["200"]["headers"]
