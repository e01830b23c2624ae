"""Ingest, list, delete and search documents through the API (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from mongars.app import create_app
from mongars.config import HttpSettings, RagSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.core.rag.embedder import Embedder
from mongars.db.tables import Chunk, Document
from mongars.resources import Resources
from tests.conftest import Accounts, in_process, migrated_settings
from tests.rag.helpers import DOCUMENTS, pdf_with_text, search, upload

VOLCANO = (
    "# Volcanoes\n\nA volcano is a rupture in the crust of a planet where lava, ash and gases "
    "escape from a magma chamber below the surface.\n\nMount Etna in Sicily is one of the most "
    "active volcanoes in Europe."
)
BREAD = "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in the starter."


async def counts(resources: Resources) -> tuple[int, int]:
    async with resources.sessions() as db:
        documents = (await db.execute(select(func.count(Document.id)))).scalar_one()
        chunks = (await db.execute(select(func.count(Chunk.id)))).scalar_one()
        return documents, chunks


class TestIngest:
    async def test_a_text_file_is_stored_chunked_and_searchable(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        response = await upload(client, ada, "notes/volcano.md", VOLCANO, collection="geo")
        assert response.status_code == 201, response.text
        body = response.json()
        document = body["document"]
        assert (body["deduplicated"], body["replaced"]) == (False, False)
        assert document["collection"] == "geo"
        assert document["path"] == "notes/volcano.md"
        assert document["title"] == "Volcanoes"
        assert document["mime"] == "text/markdown"
        assert document["chunk_count"] >= 1
        assert await counts(resources) == (1, document["chunk_count"])

        found = await search(client, ada, "Which European mountain erupts often?")
        assert found.status_code == 200, found.text
        first = found.json()["results"][0]
        assert first["document_id"] == document["id"]
        assert "Etna" in first["text"]
        assert first["similarity"] > 0.3

        listed = await client.get(DOCUMENTS, headers=ada.headers)
        assert [d["id"] for d in listed.json()] == [document["id"]]

    async def test_the_same_content_is_stored_once(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        first = await upload(client, ada, "a.txt", BREAD)
        again = await upload(client, ada, "copy-of-a.txt", BREAD)
        assert again.status_code == 200
        assert again.json()["deduplicated"] is True
        assert again.json()["document"]["id"] == first.json()["document"]["id"]
        assert (await counts(resources))[0] == 1

    async def test_a_changed_file_replaces_its_chunks(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        first = (await upload(client, ada, "kb.txt", BREAD)).json()["document"]
        second = await upload(client, ada, "kb.txt", VOLCANO)
        assert second.status_code == 201
        assert second.json()["replaced"] is True
        assert second.json()["document"]["id"] == first["id"]
        hits = (await search(client, ada, "sourdough starter yeast")).json()["results"]
        assert all("Sourdough" not in hit["text"] for hit in hits)
        assert (await counts(resources))[0] == 1

    async def test_a_file_changed_to_another_files_content_is_still_replaced(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        """Its path is what identifies it: the same bytes stored under another name once
        made the upload a no-op, and the path went on serving its old text."""
        ada = await accounts.create()
        await upload(client, ada, "a.txt", BREAD)
        await upload(client, ada, "b.txt", VOLCANO)
        again = await upload(client, ada, "b.txt", BREAD)
        assert again.status_code == 201
        assert again.json()["replaced"] is True
        hits = (await search(client, ada, "volcano lava")).json()["results"]
        assert hits
        assert [hit for hit in hits if "olcano" in hit["text"]] == []

    async def test_the_same_file_again_can_change_its_sharing(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        root = await accounts.create("root", admin=True)
        private = await upload(client, root, "handbook.txt", BREAD)
        assert private.json()["document"]["shared"] is False
        shared = await upload(client, root, "handbook.txt", BREAD, shared=True)
        assert shared.json()["deduplicated"] is True
        assert shared.json()["document"]["shared"] is True
        listed = (await client.get(DOCUMENTS, headers=root.headers)).json()
        assert [d["shared"] for d in listed] == [True]

    async def test_delete_removes_the_document_and_its_chunks(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        document = (await upload(client, ada, "v.md", VOLCANO)).json()["document"]
        deleted = await client.delete(f"{DOCUMENTS}/{document['id']}", headers=ada.headers)
        assert deleted.status_code == 204
        assert await counts(resources) == (0, 0)
        assert (await search(client, ada, "volcano")).json()["results"] == []
        again = await client.delete(f"{DOCUMENTS}/{document['id']}", headers=ada.headers)
        assert again.status_code == 404
        assert again.json()["code"] == "document_not_found"

    async def test_pdf_and_html_are_read_as_text(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        pdf = await upload(client, ada, "paper.pdf", pdf_with_text("Photosynthesis makes sugar"))
        assert pdf.status_code == 201, pdf.text
        assert pdf.json()["document"]["mime"] == "application/pdf"
        page = "<html><head><script>var secret = 1;</script></head><body><h1>Tides</h1>"
        page += "<p>Tides are caused by the Moon's gravity.</p></body></html>"
        html = await upload(client, ada, "tides.html", page)
        assert html.status_code == 201, html.text
        assert html.json()["document"]["title"] == "Tides"
        hits = (await search(client, ada, "what makes sugar in plants")).json()["results"]
        assert hits[0]["path"] == "paper.pdf"
        texts = " ".join(
            h["text"] for h in (await search(client, ada, "tides moon")).json()["results"]
        )
        assert "secret" not in texts


class TestBadFiles:
    async def test_each_is_refused_with_a_clear_error_and_nothing_is_stored(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        cases = [
            ("empty.txt", b"", 422, "document_empty"),
            ("blank.md", b"  \n\n ", 422, "document_empty"),
            ("blob.txt", bytes(range(256)) * 4, 422, "document_binary"),
            ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), 422, "document_binary"),
            (
                "broken.pdf",
                b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage",
                422,
                "document_corrupt",
            ),
            ("fake.pdf", b"this is not a pdf at all", 422, "document_corrupt"),
            ("program.exe", b"MZ\x90\x00", 415, "unsupported_document_type"),
            ("noextension", b"hello", 415, "unsupported_document_type"),
        ]
        for filename, content, status, code in cases:
            response = await upload(client, ada, filename, content)
            assert response.status_code == status, (filename, response.text)
            body = response.json()
            assert body["code"] == code, filename
            assert filename in body["detail"], body["detail"]
        assert await counts(resources) == (0, 0)

    async def test_a_bad_file_name_is_refused(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        ada = await accounts.create()
        for name in ("x" * 1001 + ".txt", " "):
            response = await upload(client, ada, name, BREAD)
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "document_name_invalid"
        assert await counts(resources) == (0, 0)

    async def test_a_missing_file_field_is_a_422(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        response = await client.post(DOCUMENTS, headers=ada.headers, data={"collection": "x"})
        assert response.status_code == 422

    async def test_a_bad_collection_name_is_a_422(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        response = await upload(client, ada, "a.txt", BREAD, collection="no spaces/allowed")
        assert response.status_code == 422


class TestUploadCap:
    async def test_uploads_have_their_own_cap_and_other_routes_keep_theirs(
        self, tmp_path: Path, embedder: Embedder
    ) -> None:
        settings = await migrated_settings(
            tmp_path,
            http=HttpSettings(max_body_bytes=2048, allowed_hosts=["testserver"]),
            rag=RagSettings(max_upload_bytes=16 * 1024),
        )
        app = create_app(settings, roles=ModelRoles.single(FakeBackend()), embedder=embedder)
        async with in_process(app) as served:
            c = served.client
            ada = await Accounts(c, served.resources).create()
            text = "Plain words about rivers and lakes. " * 200  # ~7 KB
            ok = await upload(c, ada, "rivers.txt", text)
            assert ok.status_code == 201, ok.text
            chat = await c.post(
                "/api/v1/conversation/chat", headers=ada.headers, json={"message": text}
            )
            assert chat.status_code == 413
            too_big = await upload(c, ada, "huge.txt", "x " * 10_000)
            assert too_big.status_code == 413
            assert too_big.json()["code"] == "payload_too_large"
            documents = (await c.get(DOCUMENTS, headers=ada.headers)).json()
            assert [d["path"] for d in documents] == ["rivers.txt"]


class TestValidation:
    async def test_search_and_rag_context_bounds(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        assert (await search(client, ada, "")).status_code == 422
        assert (await search(client, ada, "x" * 4001)).status_code == 422
        assert (await search(client, ada, "ok", limit=51)).status_code == 422
        for payload in (
            {"query": ""},
            {"query": "x" * 4001},
            {"query": "ok", "max_results": 0},
            {"query": "ok", "max_results": 51},
        ):
            response = await client.post(
                "/api/v1/review/rag-context", headers=ada.headers, json=payload
            )
            assert response.status_code == 422, payload

    async def test_every_route_needs_a_login(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(DOCUMENTS)).status_code == 401
        assert (await client.post("/api/v1/rag/search", json={"query": "x"})).status_code == 401
        response = await client.post("/api/v1/review/rag-context", json={"query": "x"})
        assert response.status_code == 401


class TestRagContext:
    async def test_keeps_the_charter_shape(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        ada = await accounts.create()
        await upload(client, ada, "src/volcano.md", VOLCANO, collection="geology")
        response = await client.post(
            "/api/v1/review/rag-context",
            headers=ada.headers,
            json={"query": "active volcano in Sicily", "max_results": 3},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["enabled"] is True
        assert body["focus_areas"] == ["Volcanoes"]
        reference = body["references"][0]
        assert set(reference) == {"repository", "file_path", "summary", "score", "url"}
        assert reference["repository"] == "geology"
        assert reference["file_path"] == "src/volcano.md"
        assert "Etna" in reference["summary"]
