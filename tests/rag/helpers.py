"""Uploading documents through the API, and files good and bad to upload."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Account

DOCUMENTS = "/api/v1/rag/documents"


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    filename: str,
    content: bytes | str,
    **form: Any,
) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    return await client.post(
        DOCUMENTS,
        headers=account.headers,
        files={"file": (filename, data)},
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
    )


async def search(
    client: httpx.AsyncClient, account: Account, query: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/rag/search", headers=account.headers, json={"query": query, **extra}
    )


def pdf_of(*objects: bytes) -> bytes:
    """A PDF of ``objects`` (numbered from 1; the first is the catalog), with a correct
    cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    return bytes(out + f"startxref\n{xref}\n%%EOF\n".encode())


def pdf_with_text(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` (Helvetica)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    return pdf_of(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    )
