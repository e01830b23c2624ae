"""Turn an uploaded file into text, or refuse it with an error that names the problem."""

from __future__ import annotations

import html.parser
import io
import logging
import re
from pathlib import PurePosixPath
from typing import ClassVar

from mongars.core.rag.errors import DocumentRejected, DocumentTooLarge, UnsupportedDocumentType

logger = logging.getLogger(__name__)

MIME_BY_SUFFIX = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".pdf": "application/pdf",
    ".html": "text/html",
    ".htm": "text/html",
}
SUPPORTED = ", ".join(sorted(MIME_BY_SUFFIX))
# A PDF's compressed streams expand: a crafted file of a few kilobytes can read as gigabytes of
# text (a 75 MB stream, the same page listed thousands of times). So its text is held to what a
# plain-text upload may be (``max_chars``), its page count to this, and a page whose drawing
# instructions alone are far beyond that is not even read.
MAX_PDF_PAGES = 10_000
CONTENT_BYTES_PER_TEXT_CHAR = 4
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def mime_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    mime = MIME_BY_SUFFIX.get(suffix)
    if mime is None:
        raise UnsupportedDocumentType(
            f"{filename!r}: unsupported file type {suffix or '(no extension)'!r}; "
            f"supported: {SUPPORTED}."
        )
    return mime


def extract_text(filename: str, data: bytes, max_chars: int) -> tuple[str, str]:
    """``(mime, text)`` of an uploaded file; a PDF whose text passes ``max_chars`` is refused."""
    mime = mime_for(filename)
    if not data:
        raise DocumentRejected(f"{filename!r} is empty.", code="document_empty")
    if mime == "application/pdf":
        text = _pdf_text(filename, data, max_chars)
    else:
        text = _decode(filename, data)
        if mime == "text/html":
            text = _html_text(text)
    # NUL and lone surrogates (a PDF font's raw codes can decode to them): no database takes
    # them, no tokenizer either.
    text = _LONE_SURROGATE.sub("\ufffd", text.replace("\x00", ""))
    if not text.strip():
        raise DocumentRejected(f"{filename!r} contains no text.", code="document_empty")
    return mime, text


def _decode(filename: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentRejected(
            f"{filename!r} looks like a binary file, not text.", code="document_binary"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentRejected(
            f"{filename!r} is not UTF-8 text (binary data or another encoding).",
            code="document_binary",
        ) from None


def _pdf_text(filename: str, data: bytes, max_chars: int) -> str:
    from pypdf import PdfReader

    if not data.startswith(b"%PDF-"):
        raise DocumentRejected(f"{filename!r} is not a PDF file.", code="document_corrupt")
    budget = max_chars
    too_large = DocumentTooLarge(f"{filename!r} holds more than {max_chars} characters of text.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentRejected(f"{filename!r} is an encrypted PDF.", code="document_encrypted")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentTooLarge(f"{filename!r} has more than {MAX_PDF_PAGES} pages.")
        pages: list[str] = []
        seen: set[object] = set()
        for page in reader.pages:
            reference = page.indirect_reference
            key = (reference.idnum, reference.generation) if reference else id(page)
            if key in seen:  # the same page object listed again: its text once
                continue
            seen.add(key)
            contents = page.get_contents()
            # Checked before extracting: extraction is the slow part (seconds per 10 MB).
            if (
                contents is not None
                and len(contents.get_data()) > CONTENT_BYTES_PER_TEXT_CHAR * max_chars
            ):
                raise too_large
            pages.append(page.extract_text() or "")
            budget -= len(pages[-1])
            if budget < 0:
                raise too_large
    except (DocumentRejected, DocumentTooLarge):
        raise
    # Untrusted input: whatever the parser raises on it (NotImplementedError for an unknown
    # filter, AttributeError for a broken xref seen in fuzzing) means the file is unreadable.
    except Exception as exc:
        logger.info("unreadable PDF %r: %s: %s", filename, type(exc).__name__, exc)
        raise DocumentRejected(
            f"{filename!r} is a corrupt or unreadable PDF.", code="document_corrupt"
        ) from None
    return "\n\n".join(pages)


class _HtmlText(html.parser.HTMLParser):
    """Visible text, with block elements as paragraph breaks and headings kept as Markdown."""

    BLOCKS = frozenset(
        {"p", "div", "section", "article", "li", "tr", "br", "pre", "blockquote", "table"}
    )
    HEADINGS: ClassVar[dict[str, str]] = {f"h{n}": "#" * n + " " for n in range(1, 7)}
    SKIP = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.HEADINGS:
            self.parts.append("\n\n" + self.HEADINGS[tag])
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.HEADINGS or tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)
