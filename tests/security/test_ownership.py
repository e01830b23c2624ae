"""Another user's things answer exactly like things that do not exist."""

from __future__ import annotations

import uuid

import httpx

from mongars.core.llm import FakeBackend
from tests.conftest import Account, Accounts


def without_request_id(response: httpx.Response) -> tuple[int, dict[str, object]]:
    body = response.json()
    body.pop("request_id", None)
    return response.status_code, body


async def conversation_of(client: httpx.AsyncClient, owner: Account) -> str:
    response = await client.post(
        "/api/v1/conversation/chat", headers=owner.headers, json={"message": "private"}
    )
    assert response.status_code == 200
    return str(response.json()["conversation_id"])


class TestAnotherUsersConversation:
    async def test_every_route_answers_as_for_a_missing_one(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        owner, stranger = await accounts.create(), await accounts.create()
        theirs = await conversation_of(client, owner)
        missing = str(uuid.uuid4())
        calls = [
            ("GET", "/api/v1/conversations/{id}", None),
            ("PATCH", "/api/v1/conversations/{id}", {"title": "mine now"}),
            ("GET", "/api/v1/conversations/{id}/export", None),
            ("POST", "/api/v1/conversations/{id}/cancel", None),
            ("POST", "/api/v1/conversation/chat", {"message": "hi", "conversation_id": "{id}"}),
            ("GET", "/api/v1/conversation/history?conversation_id={id}", None),
            ("DELETE", "/api/v1/conversations/{id}", None),
        ]
        for method, path, body in calls:
            answers = []
            for target in (theirs, missing):
                json = (
                    {k: (target if v == "{id}" else v) for k, v in body.items()} if body else None
                )
                response = await client.request(
                    method, path.format(id=target), headers=stranger.headers, json=json
                )
                answers.append(without_request_id(response))
            assert answers[0] == answers[1], (method, path)
            assert answers[0][0] == 404, (method, path)
        still_there = await client.get(f"/api/v1/conversations/{theirs}", headers=owner.headers)
        assert still_there.status_code == 200
        assert still_there.json()["title"] == "private"


class TestAnotherUsersStream:
    async def test_cannot_be_resumed(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        owner, stranger = await accounts.create(), await accounts.create()
        started = await client.post(
            "/api/v1/conversation/chat/stream", headers=owner.headers, json={"message": "secret"}
        )
        stream_id = started.headers["x-stream-id"]
        theirs = await client.get(f"/api/v1/streams/{stream_id}", headers=stranger.headers)
        unknown = await client.get("/api/v1/streams/no-such-stream", headers=stranger.headers)
        assert without_request_id(theirs) == without_request_id(unknown)
        assert theirs.status_code == 404
        assert b"secret" not in theirs.content


class TestAnotherUsersApiKey:
    async def test_cannot_be_deleted_or_seen(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        owner, stranger = await accounts.create(), await accounts.create()
        created = await client.post("/api/v1/api-keys", headers=owner.headers, json={"name": "ci"})
        key_id, secret = created.json()["id"], created.json()["key"]
        theirs = await client.delete(f"/api/v1/api-keys/{key_id}", headers=stranger.headers)
        unknown = await client.delete(f"/api/v1/api-keys/{uuid.uuid4()}", headers=stranger.headers)
        assert without_request_id(theirs) == without_request_id(unknown)
        assert theirs.status_code == 404
        assert (await client.get("/api/v1/api-keys", headers=stranger.headers)).json() == []
        works = await client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {secret}"})
        assert works.json()["username"] == owner.username


class TestAnotherUsersHistory:
    async def test_is_forbidden_whether_or_not_the_user_exists(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        owner, stranger = await accounts.create(), await accounts.create()
        answers = [
            without_request_id(
                await client.get(
                    "/api/v1/conversation/history",
                    params={"user_id": name},
                    headers=stranger.headers,
                )
            )
            for name in (owner.username, "nobody-here")
        ]
        assert answers[0] == answers[1]
        assert answers[0][0] == 403
