"""Who sees which document, on every route; chat grounded in documents, with citations."""

from __future__ import annotations

import httpx

from mongars.core.llm import FakeBackend
from tests.conftest import Accounts
from tests.rag.helpers import DOCUMENTS, search, upload
from tests.sse_client import read_events

SECRET = (
    "Project Nightingale: the launch code for the orbital greenhouse is PERSIMMON-42, "
    "kept by the botany team."
)
PUBLIC = "The cafeteria serves lentil soup every Tuesday in the orbital greenhouse."
BREAD = "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in the starter."
QUESTION = "What is the launch code for the orbital greenhouse?"


class TestPrivacy:
    async def test_another_user_never_sees_searches_or_gets_cited_a_private_document(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        ada, bob = await accounts.create("ada"), await accounts.create("bob")
        secret = (await upload(client, ada, "nightingale.txt", SECRET)).json()["document"]
        await upload(client, bob, "bread.txt", BREAD)

        listed = (await client.get(DOCUMENTS, headers=bob.headers)).json()
        assert [d["path"] for d in listed] == ["bread.txt"]
        for collections in (None, ["default"]):
            extra = {"collections": collections} if collections else {}
            hits = (await search(client, bob, QUESTION, limit=50, **extra)).json()["results"]
            assert all(h["document_id"] != secret["id"] for h in hits)
            assert all("PERSIMMON" not in h["text"] for h in hits)
        context = await client.post(
            "/api/v1/review/rag-context",
            headers=bob.headers,
            json={"query": QUESTION, "max_results": 50},
        )
        assert all("PERSIMMON" not in r["summary"] for r in context.json()["references"])
        deleted = await client.delete(f"{DOCUMENTS}/{secret['id']}", headers=bob.headers)
        assert deleted.status_code == 404
        # Uploading the same bytes does not reveal (or reuse) ada's copy.
        copy = await upload(client, bob, "mine.txt", SECRET)
        assert copy.status_code == 201
        assert copy.json()["document"]["id"] != secret["id"]
        await client.delete(f"{DOCUMENTS}/{copy.json()['document']['id']}", headers=bob.headers)

        answer = await client.post(
            "/api/v1/conversation/chat",
            headers=bob.headers,
            json={"message": QUESTION, "use_rag": True},
        )
        assert answer.status_code == 200, answer.text
        assert all(c["document_id"] != secret["id"] for c in answer.json()["citations"])
        prompt = " ".join(m.content for m in fake_backend.requests[-1][0])
        assert "PERSIMMON" not in prompt

        # ada still finds her own.
        hits = (await search(client, ada, QUESTION)).json()["results"]
        assert hits[0]["document_id"] == secret["id"]

    async def test_shared_documents_are_published_by_admins_and_read_by_all(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        root = await accounts.create("root", admin=True)
        bob = await accounts.create("bob")
        refused = await upload(client, bob, "p.txt", PUBLIC, shared=True)
        assert refused.status_code == 403
        published = await upload(
            client, root, "menu.txt", PUBLIC, collection="handbook", shared=True
        )
        assert published.status_code == 201, published.text
        document = published.json()["document"]
        assert document["shared"] is True
        listed = (await client.get(DOCUMENTS, headers=bob.headers)).json()
        assert [d["id"] for d in listed] == [document["id"]]
        hits = (await search(client, bob, "what soup on Tuesday", collections=["handbook"])).json()[
            "results"
        ]
        assert hits[0]["document_id"] == document["id"]
        # Readable, not deletable, by others.
        deleted = await client.delete(f"{DOCUMENTS}/{document['id']}", headers=bob.headers)
        assert deleted.status_code == 404


class TestGroundedChat:
    async def test_use_rag_puts_the_passage_in_the_prompt_and_cites_its_document(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        ada = await accounts.create()
        secret = (await upload(client, ada, "nightingale.txt", SECRET)).json()["document"]
        await upload(client, ada, "bread.txt", BREAD)
        answer = await client.post(
            "/api/v1/conversation/chat",
            headers=ada.headers,
            json={"message": QUESTION, "use_rag": True},
        )
        assert answer.status_code == 200, answer.text
        citations = answer.json()["citations"]
        assert citations[0]["document_id"] == secret["id"]
        assert "PERSIMMON-42" in citations[0]["snippet"]
        assert citations[0]["score"] > 0
        system = fake_backend.requests[-1][0][0]
        assert system.role == "system"
        assert "[1]" in system.content
        assert "PERSIMMON-42" in system.content

    async def test_without_use_rag_nothing_is_retrieved(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        ada = await accounts.create()
        await upload(client, ada, "nightingale.txt", SECRET)
        answer = await client.post(
            "/api/v1/conversation/chat", headers=ada.headers, json={"message": QUESTION}
        )
        assert answer.json()["citations"] == []
        assert "PERSIMMON" not in fake_backend.requests[-1][0][0].content

    async def test_the_streams_done_event_carries_the_citations(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        secret = (await upload(client, ada, "n.txt", SECRET, collection="space")).json()
        async with client.stream(
            "POST",
            "/api/v1/conversation/chat/stream",
            headers=ada.headers,
            json={"message": QUESTION, "collections": ["space"]},
        ) as response:
            assert response.status_code == 200
            events = [event async for event in read_events(response)]
        done = [e for e in events if e.type == "done"]
        assert len(done) == 1
        assert done[0].data["citations"][0]["document_id"] == secret["document"]["id"]
