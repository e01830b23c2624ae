"""API keys: shown once, stored hashed, accepted as bearer credentials, dead once deleted."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from mongars.db.tables import ApiKey
from mongars.resources import Resources
from tests.conftest import Accounts


class TestApiKeys:
    async def test_lifecycle(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        account = await accounts.create()
        created = await client.post(
            "/api/v1/api-keys", headers=account.headers, json={"name": "laptop script"}
        )
        assert created.status_code == 201
        body = created.json()
        secret = body["key"]
        assert secret.startswith("mg_")
        assert body["prefix"] == secret[:11]

        key_headers = {"Authorization": f"Bearer {secret}"}
        me = await client.get("/api/v1/user/me", headers=key_headers)
        assert me.status_code == 200
        assert me.json()["username"] == account.username

        listed = (await client.get("/api/v1/api-keys", headers=account.headers)).json()
        assert [k["name"] for k in listed] == ["laptop script"]
        assert "key" not in listed[0]
        assert listed[0]["last_used_at"] is not None

        async with resources.sessions() as db:
            stored = (await db.execute(select(ApiKey))).scalar_one()
        assert secret not in (stored.key_hash, stored.prefix)
        assert len(stored.key_hash) == 64

        deleted = await client.delete(f"/api/v1/api-keys/{body['id']}", headers=account.headers)
        assert deleted.status_code == 204
        after = await client.get("/api/v1/user/me", headers=key_headers)
        assert after.status_code == 401
        assert after.json()["code"] == "invalid_api_key"

    async def test_another_users_key_cannot_be_deleted(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        owner, other = await accounts.create(), await accounts.create()
        key = (
            await client.post("/api/v1/api-keys", headers=owner.headers, json={"name": "k"})
        ).json()
        response = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=other.headers)
        assert response.status_code == 404
        assert (
            await client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {key['key']}"})
        ).status_code == 200

    async def test_a_disabled_owner_makes_the_key_fail(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin, owner = await accounts.create("root", admin=True), await accounts.create("peggy")
        key = (
            await client.post("/api/v1/api-keys", headers=owner.headers, json={"name": "k"})
        ).json()["key"]
        await client.patch("/api/v1/users/peggy", headers=admin.headers, json={"disabled": True})
        response = await client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401
        assert response.json()["code"] == "account_disabled"

    async def test_a_key_cannot_make_keys(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        """Else a leaked key, deleted or expired, would live on in the keys it made."""
        account = await accounts.create()
        key = (
            await client.post(
                "/api/v1/api-keys",
                headers=account.headers,
                json={"name": "short-lived", "expires_in_days": 1},
            )
        ).json()["key"]
        made = await client.post(
            "/api/v1/api-keys", headers={"Authorization": f"Bearer {key}"}, json={"name": "k"}
        )
        assert made.status_code == 403
        assert made.json()["code"] == "login_session_required"
        names = (await client.get("/api/v1/api-keys", headers=account.headers)).json()
        assert [k["name"] for k in names] == ["short-lived"]

    async def test_forged_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/api/v1/user/me", headers={"Authorization": "Bearer mg_forged"}
        )
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"

    async def test_bad_input(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        account = await accounts.create()
        for body in ({"name": ""}, {"name": "x" * 101}, {"name": "k", "expires_in_days": 0}):
            response = await client.post("/api/v1/api-keys", headers=account.headers, json=body)
            assert response.status_code == 422
        not_a_uuid = await client.delete("/api/v1/api-keys/123", headers=account.headers)
        assert not_a_uuid.status_code == 422
