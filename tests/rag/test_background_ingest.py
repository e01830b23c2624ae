"""Large documents are embedded in the background, with progress to poll."""

from __future__ import annotations

import anyio
import httpx

from mongars.core.rag.service import EMBED_BATCH_CHUNKS
from tests.conftest import Accounts
from tests.rag.helpers import DOCUMENTS, search, upload

LOGBOOK = "\n\n".join(
    f"Entry {n}: the lighthouse keeper of Skerryvore recorded gale number {n}, the barometer "
    f"falling and the lamp trimmed twice before dawn."
    for n in range(300)
)


async def wait_for_job(client: httpx.AsyncClient, headers: dict[str, str], location: str) -> dict:  # type: ignore[type-arg]
    with anyio.fail_after(120):
        while True:
            job = (await client.get(location, headers=headers)).json()
            if job["status"] != "running":
                return job  # type: ignore[no-any-return]
            await anyio.sleep(0.1)


class TestBackgroundIngest:
    async def test_a_large_document_is_accepted_then_embedded_with_progress(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        keeper = await accounts.create()
        response = await upload(client, keeper, "logbook.md", LOGBOOK, background=True)
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "running"
        assert accepted["chunks_total"] > EMBED_BATCH_CHUNKS  # progress over several batches
        location = response.headers["location"]
        assert location == f"/api/v1/rag/jobs/{accepted['job_id']}"
        job = await wait_for_job(client, keeper.headers, location)
        assert job["status"] == "done", job
        assert job["chunks_embedded"] == job["chunks_total"] == accepted["chunks_total"]
        assert job["document_id"]
        listed = (await client.get(DOCUMENTS, headers=keeper.headers)).json()
        assert [d["id"] for d in listed] == [job["document_id"]]
        found = (await search(client, keeper, "Who trimmed the lamp at Skerryvore?")).json()
        assert found["results"][0]["document_id"] == job["document_id"]

    async def test_bad_files_are_refused_at_once_even_when_background_is_asked(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        keeper = await accounts.create()
        for name, content in (("empty.txt", b""), ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64))):
            response = await upload(client, keeper, name, content, background=True)
            assert 400 <= response.status_code < 500, response.text
        assert (await client.get(DOCUMENTS, headers=keeper.headers)).json() == []

    async def test_small_files_stay_synchronous_and_jobs_are_private(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        owner, other = await accounts.create(), await accounts.create()
        assert (await upload(client, owner, "short.txt", "A short note.")).status_code == 201
        response = await upload(client, owner, "note.md", "Gale at dawn.", background=True)
        location = response.headers["location"]
        stolen = await client.get(location, headers=other.headers)
        assert stolen.status_code == 404
        assert stolen.json()["code"] == "ingest_job_not_found"
        await wait_for_job(client, owner.headers, location)
