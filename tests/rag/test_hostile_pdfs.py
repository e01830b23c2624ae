"""PDFs built to hurt the extractor: each is refused with a clear 4xx or read safely, never a
500, and a tiny file cannot expand into unbounded text. The files are written here by hand,
object by object, so each test says exactly what it sends."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from mongars.core.rag.errors import DocumentTooLarge
from mongars.core.rag.extract import extract_text
from tests.conftest import Accounts, RunningApp
from tests.rag.helpers import pdf_of, upload

CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
ONE_PAGE = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
LIMIT = 100_000  # characters of text, for the extractor's own tests


def stream(data: bytes, *, flate: bool = False, filter_: bytes | None = None) -> bytes:
    if flate:
        data, filter_ = zlib.compress(data, 9), b"/FlateDecode"
    named = b" /Filter " + filter_ if filter_ else b""
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), named, data)


def page(font: bytes = b"5 0 R") -> bytes:
    return (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 " + font + b" >> >> >>"
    )


def text_operators(text: bytes) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET"


def unknown_filter() -> bytes:
    return pdf_of(CATALOG, ONE_PAGE, page(), stream(b"abcde", filter_=b"/FooDecode"), HELVETICA)


def broken_cross_reference() -> bytes:
    good = pdf_of(CATALOG, ONE_PAGE, page(), stream(text_operators(b"Hello there")), HELVETICA)
    head, _, _ = good.partition(b"xref\n")
    return head + b"xref\n0 6\n0000000000 65535 f \n000000\ntrailer\n<< /Size 6 /Root 1 0 R >>\n"


def lone_surrogate() -> bytes:
    # A Type0 font with Identity-H: the string's bytes read as UTF-16BE; D800 pairs with nothing.
    raw = "Lighthouse maintenance report".encode("utf-16-be") + b"\xd8\x00"
    content = b"BT /F1 12 Tf 72 720 Td <" + raw.hex().encode() + b"> Tj ET"
    type0 = b"<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H"
    cid = b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /X /CIDSystemInfo"
    return pdf_of(
        CATALOG,
        ONE_PAGE,
        page(),
        stream(content),
        type0 + b" /DescendantFonts [6 0 R] >>",
        cid + b" << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> >>",
    )


def expanding(page_listings: int, words: int) -> bytes:
    """One page of ``words`` repeated words in a compressed stream, listed ``page_listings``
    times: a few kilobytes that read as megabytes of text."""
    kids = b" ".join([b"3 0 R"] * page_listings)
    pages = b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % page_listings
    content = stream(text_operators(b"lorem ipsum dolor sit amet " * words), flate=True)
    return pdf_of(CATALOG, pages, page(), content, HELVETICA)


@pytest.fixture
async def server_like(running_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets a 500 response for an unhandled exception, as from a real server."""
    transport = httpx.ASGITransport(app=running_app.asgi, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class TestMalformedPdfs:
    async def test_are_refused_as_corrupt_not_a_500(
        self, accounts: Accounts, server_like: httpx.AsyncClient
    ) -> None:
        ada = await accounts.create()
        refusals = {
            name: (await upload(server_like, ada, name, data)).json().get("code")
            for name, data in (
                ("unknown-filter.pdf", unknown_filter()),
                ("broken-xref.pdf", broken_cross_reference()),
            )
        }
        assert refusals == {
            "unknown-filter.pdf": "document_corrupt",
            "broken-xref.pdf": "document_corrupt",
        }

    async def test_a_lone_surrogate_in_the_text_is_replaced_and_the_rest_stored(
        self, accounts: Accounts, server_like: httpx.AsyncClient
    ) -> None:
        ada = await accounts.create()
        response = await upload(server_like, ada, "report.pdf", lone_surrogate())
        assert response.status_code == 201, response.text
        _, text = extract_text("report.pdf", lone_surrogate(), LIMIT)
        assert text.startswith("Lighthouse maintenance report")
        assert "\ufffd" in text


class TestExpandingPdfs:
    def test_a_page_listed_again_is_read_once(self) -> None:
        once = extract_text("once.pdf", expanding(1, 200), LIMIT)[1]
        assert extract_text("listed.pdf", expanding(50, 200), LIMIT)[1] == once

    def test_text_beyond_the_limit_is_refused(self) -> None:
        data = expanding(1, 40_000)  # about 4 KB of file, a megabyte of text
        assert len(data) < 10_000
        with pytest.raises(DocumentTooLarge, match=r"bomb\.pdf"):
            extract_text("bomb.pdf", data, LIMIT)
