"""SQL metacharacters in every field, query parameter, path segment and header: stored or
refused exactly as ordinary text would be, never a 500, never a changed table (both engines;
every query is parameterised)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from mongars.core.llm import FakeBackend
from mongars.db.tables import Message, User
from mongars.resources import Resources
from tests.conftest import Accounts, Database

PAYLOADS = [
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1; SELECT pg_sleep(3) --",
    "admin'--",
    "%' OR 1=1 --",
    "') UNION SELECT username, password_hash FROM users --",
    "\\'; DELETE FROM messages WHERE 1=1; --",
    "*) OR (1=1) AND MATCH 'a*' NEAR/2 -\"x",
]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_sql_metacharacters_everywhere(
    client: httpx.AsyncClient,
    accounts: Accounts,
    resources: Resources,
    fake_backend: FakeBackend,
    payload: str,
) -> None:
    admin = await accounts.create("root", admin=True)
    user = await accounts.create("ordinary")
    auth = user.headers
    in_path = quote(payload, safe="")
    seen: list[httpx.Response] = []

    async def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code < 500, (method, url, response.text)
        seen.append(response)
        return response

    # Credentials: refused like any wrong value; accepted as a password, verbatim.
    login = await call(
        "POST", "/api/v1/auth/login", json={"username": payload, "password": payload}
    )
    assert login.json()["code"] == "invalid_credentials"
    form = await call("POST", "/token", data={"username": payload, "password": "x"})
    assert form.status_code == 401
    await call(
        "POST", "/api/v1/user/register", json={"username": payload, "password": "longenough"}
    )
    registered = await call(
        "POST",
        "/api/v1/user/register",
        json={"username": "withpayload", "password": payload + "!" * 8},
    )
    assert registered.status_code == 201
    assert (await accounts.login("withpayload", payload + "!" * 8)).access_token
    await call("POST", "/api/v1/auth/refresh", json={"refresh_token": payload})

    # Text that is stored comes back exactly as typed.
    chat = await call("POST", "/api/v1/conversation/chat", headers=auth, json={"message": payload})
    conversation_id = chat.json()["conversation_id"]
    renamed = await call(
        "PATCH", f"/api/v1/conversations/{conversation_id}", headers=auth, json={"title": payload}
    )
    assert renamed.json()["title"] == payload.strip()
    key = await call("POST", "/api/v1/api-keys", headers=auth, json={"name": payload})
    assert key.json()["name"] == payload
    await call("GET", "/api/v1/conversations/search", headers=auth, params={"q": payload})

    # Query parameters, path segments (ids, names) and headers.
    await call("GET", "/api/v1/conversation/history", headers=auth, params={"user_id": payload})
    for name in ("limit", "before", "conversation_id"):
        bad = await call(
            "GET", "/api/v1/conversation/history", headers=auth, params={name: payload}
        )
        assert bad.status_code == 422
    await call(
        "GET", f"/api/v1/conversations/{conversation_id}/export?format={in_path}", headers=auth
    )
    await call("GET", f"/api/v1/conversations/{in_path}", headers=auth)
    await call("GET", f"/api/v1/streams/{in_path}", headers=auth)
    await call("GET", "/api/v1/streams/x", headers={**auth, "Last-Event-ID": payload})
    for method in ("PATCH", "DELETE"):
        await call(
            method, f"/api/v1/users/{in_path}", headers=admin.headers, json={"disabled": True}
        )
    await call("GET", f"/api/v1/users/{in_path}/usage", headers=admin.headers)
    await call("GET", "/api/v1/user/me", headers={"Authorization": f"Bearer {payload}"})
    await call("GET", "/api/v1/user/me", headers={"Authorization": f"Bearer mg_{payload}"})
    echoed = await call(
        "GET",
        "/api/v1/user/me",
        headers={
            **auth,
            "X-Request-ID": payload,
            "User-Agent": payload,
            "Accept-Language": payload,
            "X-Forwarded-For": payload,
            "Cookie": f"session={payload}",
        },
    )
    assert echoed.status_code == 200
    assert echoed.headers["x-request-id"] != payload

    # Nothing was dropped, deleted or altered behind the scenes.
    async with resources.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(User)) == 3
        stored = list((await db.execute(select(Message.content).order_by(Message.id))).scalars())
    assert stored[0] == payload
    assert len(stored) == 2
    assert all(r.status_code != 500 for r in seen)


async def test_text_the_database_cannot_store_or_bytes_that_are_not_text(
    client: httpx.AsyncClient,
    accounts: Accounts,
    resources: Resources,
    fake_backend: FakeBackend,
    database: Database,
) -> None:
    account = await accounts.create()
    nul = await client.post(
        "/api/v1/conversation/chat", headers=account.headers, json={"message": "a\x00b"}
    )
    # A chat message with NUL is refused on every engine (PostgreSQL text cannot hold it).
    assert (nul.status_code, nul.json()["code"]) == (422, "validation_error")
    assert nul.json()["detail"][0]["loc"] == ["body", "message"]
    login = await client.post("/api/v1/auth/login", json={"username": "a\x00", "password": "x"})
    assert login.status_code in (401, 422)
    undecodable = await client.post(
        "/api/v1/api-keys",
        headers={**account.headers, "content-type": "application/json"},
        content=b'{"name": "\xff\xfe"}',
    )
    assert undecodable.status_code == 422
    assert undecodable.json()["detail"][0]["type"] == "body_unparsable"
