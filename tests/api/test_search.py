"""GET /api/v1/conversations/search: full-text search over the caller's own messages.

The same tests run on SQLite (FTS5) and PostgreSQL (tsvector): the grammar and the answers
must agree on both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from mongars.core.history import parse_search_query, split_highlights
from mongars.db.repositories.history import HIGHLIGHT_END, HIGHLIGHT_START
from mongars.resources import Resources
from tests.conftest import Account, Accounts
from tests.factories import ConversationFactory, TurnSpec

SEARCH = "/api/v1/conversations/search"


@pytest.fixture
def conversations(resources: Resources) -> ConversationFactory:
    return ConversationFactory(resources)


async def search(
    client: httpx.AsyncClient, account: Account, q: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(SEARCH, params={"q": q, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


def field_errors(response: httpx.Response) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in response.json()["detail"]]


class TestFinding:
    async def test_a_word_of_a_question(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(
            ada,
            title="Pets",
            turns=[TurnSpec("How long do tortoises live?", "Often over a century.")],
        )
        await conversations.create(ada, turns=["Something unrelated"])

        hits = await search(client, ada, "tortoises")

        assert len(hits) == 1
        hit = hits[0]
        assert hit["message_id"] == made.turns[0].question_id
        assert hit["conversation_id"] == str(made.id)
        assert hit["conversation_title"] == "Pets"
        assert hit["role"] == "user"
        assert isinstance(datetime.fromisoformat(hit["created_at"]), datetime)
        assert isinstance(hit["rank"], float)
        assert hit["rank"] > 0
        assert "tortoises" in hit["snippet"]
        assert [hit["snippet"][start:end] for start, end in hit["highlights"]] == ["tortoises"]
        assert HIGHLIGHT_START not in hit["snippet"]

    async def test_a_word_of_an_answer(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        made = await conversations.create(
            ada, turns=[TurnSpec("Biggest planet?", "Jupiter, by far.")]
        )
        hits = await search(client, ada, "JUPITER")
        assert [(hit["message_id"], hit["role"]) for hit in hits] == [
            (made.turns[0].reply_id, "assistant")
        ]

    async def test_every_word_must_match_and_better_matches_come_first(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(
            ada,
            turns=[
                TurnSpec("red apple", answer=None),
                TurnSpec("red red red apple apple", answer=None),
                TurnSpec("green apple", answer=None),
                TurnSpec("red car", answer=None),
            ],
        )
        hits = await search(client, ada, "apple red")
        assert [hit["snippet"] for hit in hits] == ["red red red apple apple", "red apple"]
        assert hits[0]["rank"] >= hits[1]["rank"]

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ('"red apple"', ["red apple"]),
            ("apple -green", ["red apple", "apple red"]),
            ("car or green", ["green apple", "red car"]),
            ("-apple", []),
            ("apple -green -red", []),
        ],
    )
    async def test_phrases_exclusions_and_alternatives(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        q: str,
        expected: list[str],
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(
            ada,
            turns=[
                TurnSpec(text, answer=None)
                for text in ("red apple", "apple red", "green apple", "red car")
            ],
        )
        hits = await search(client, ada, q)
        assert sorted(hit["snippet"] for hit in hits) == sorted(expected)

    async def test_limit(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(
            ada, turns=[TurnSpec(f"banana {i}", f"more banana {i}") for i in range(5)]
        )
        assert len(await search(client, ada, "banana")) == 10
        assert len(await search(client, ada, "banana", limit=3)) == 3


class TestScope:
    async def test_nobody_finds_anyone_elses_messages(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        bob = await accounts.create("bob")
        await conversations.create(
            ada, turns=[TurnSpec("my xylophonist neighbour", "plays quietly")]
        )
        await conversations.create(bob, turns=[TurnSpec("bob asks", "quietly too")])

        assert await search(client, bob, "xylophonist") == []
        assert await search(client, bob, "xylophonist or quietly") != []
        assert {hit["snippet"] for hit in await search(client, bob, "quietly")} == {"quietly too"}
        assert len(await search(client, ada, "xylophonist")) == 1

    async def test_deleted_conversations_are_no_longer_found(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        doomed = await conversations.create(ada, turns=[TurnSpec("quokka facts", "quokka!")])
        kept = await conversations.create(ada, turns=[TurnSpec("more about quokka", "sure")])
        assert len(await search(client, ada, "quokka")) == 3

        response = await client.delete(f"/api/v1/conversations/{doomed.id}", headers=ada.headers)
        assert response.status_code == 204

        hits = await search(client, ada, "quokka")
        assert [hit["message_id"] for hit in hits] == [kept.turns[0].question_id]


class TestHostileInput:
    @pytest.mark.parametrize(
        "q",
        [
            '"',
            '"""',
            '"unbalanced',
            "*",
            "zebra*",
            "(",
            "zebra)",
            "NEAR",
            "NEAR(zebra lion)",
            "zebra NEAR/2 lion",
            "-",
            "--",
            "-zebra",
            "zebra -",
            "content:zebra",
            "messages_fts:zebra",
            "^zebra",
            "zebra AND OR NOT",
            "'; DROP TABLE messages; --",
            "\\",
            "%_",
            "zebra\x00lion",
            "\x00",
            "é" * 200,
            " ".join(["zebra"] * 100),
        ],
    )
    async def test_query_syntax_never_errors(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        conversations: ConversationFactory,
        q: str,
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(
            ada, turns=[TurnSpec("the zebra and the lion", "near the river content")]
        )
        hits = await search(client, ada, q[:200])
        assert isinstance(hits, list)
        # Nothing was dropped or changed, whatever the query said.
        everything = await search(client, ada, "zebra or river")
        assert len(everything) == 2

    async def test_syntax_characters_are_plain_text(
        self, client: httpx.AsyncClient, accounts: Accounts, conversations: ConversationFactory
    ) -> None:
        ada = await accounts.create("ada")
        await conversations.create(ada, turns=[TurnSpec("zebra lion", answer=None)])
        # Operators of FTS5 are words, not syntax: "zebra*" is the word zebra, "NEAR" a word.
        assert len(await search(client, ada, "zebra*")) == 1
        assert len(await search(client, ada, "zebra:lion")) == 1
        assert await search(client, ada, "zebra NEAR lion") == []


class TestValidation:
    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({}, "query.q"),
            ({"q": ""}, "query.q"),
            ({"q": "   "}, "query.q"),
            ({"q": "x" * 201}, "query.q"),
            ({"q": "x", "limit": "0"}, "query.limit"),
            ({"q": "x", "limit": "51"}, "query.limit"),
        ],
    )
    async def test_bad_parameters_name_the_field(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        params: dict[str, str],
        field: str,
    ) -> None:
        ada = await accounts.create("ada")
        response = await client.get(SEARCH, params=params, headers=ada.headers)
        assert response.status_code == 422
        assert field_errors(response) == [field]

    async def test_needs_a_credential(self, client: httpx.AsyncClient) -> None:
        response = await client.get(SEARCH, params={"q": "x"})
        assert response.status_code == 401


class TestQueryParsing:
    """The grammar, without a database: what reaches each engine is only quoted terms."""

    @pytest.mark.parametrize(
        ("q", "fts5", "websearch"),
        [
            ("red apple", '("red" "apple")', '"red" "apple"'),
            ('"red apple" pie', '("red apple" "pie")', '"red apple" "pie"'),
            ("a -b or c", '(("a") NOT "b") OR ("c")', '"a" -"b" or "c"'),
            ("NEAR(x) AND y*", '("NEAR(x)" "AND" "y*")', '"NEAR(x)" "AND" "y*"'),
            ("x'); --", """("x');")""", '''"x');"'''),
        ],
    )
    def test_rendering(self, q: str, fts5: str, websearch: str) -> None:
        query = parse_search_query(q)
        assert query is not None
        assert query.to_fts5() == fts5
        assert query.to_websearch() == websearch

    @pytest.mark.parametrize("q", ["", "   ", '"', "* ( ) -", "-only -exclusions", "or OR or"])
    def test_nothing_to_look_for(self, q: str) -> None:
        assert parse_search_query(q) is None

    def test_highlights_become_offsets(self) -> None:
        marked = f"the {HIGHLIGHT_START}red{HIGHLIGHT_END} {HIGHLIGHT_START}apple{HIGHLIGHT_END}"
        assert split_highlights(marked) == ("the red apple", [(4, 7), (8, 13)])
        assert split_highlights(f"stray {HIGHLIGHT_END}end") == ("stray end", [])
