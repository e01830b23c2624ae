"""Credentials that must not work: forged, expired, revoked, deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from mongars.core.security.secret_key import derive_key
from mongars.resources import Resources
from tests.conftest import PASSWORD, Accounts


async def me(client: httpx.AsyncClient, credential: str) -> httpx.Response:
    return await client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {credential}"})


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def server_key(resources: Resources) -> bytes:
    assert resources.settings.secret_key is not None
    return derive_key(resources.settings.secret_key.get_secret_value().encode(), "jwt")


class TestForgedTokens:
    async def test_alg_none(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        claims = claims_of((await accounts.create()).access_token)
        response = await me(client, jwt.encode(claims, None, algorithm="none"))
        assert (response.status_code, response.json()["code"]) == (401, "invalid_token")

    async def test_signed_with_another_key(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        claims = claims_of((await accounts.create()).access_token)
        forged = jwt.encode(claims, "not the server's key, but long enough", algorithm="HS256")
        assert (await me(client, forged)).status_code == 401

    async def test_expired(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        claims = claims_of((await accounts.create()).access_token)
        past = datetime.now(UTC) - timedelta(hours=2)
        expired = jwt.encode(
            {**claims, "iat": past, "exp": past + timedelta(minutes=15)},
            server_key(resources),
            algorithm="HS256",
        )
        response = await me(client, expired)
        assert (response.status_code, response.json()["code"]) == (401, "token_expired")


class TestRevokedTokens:
    async def test_by_logout(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        account = await accounts.create()
        assert (
            await client.post("/api/v1/auth/logout", headers=account.headers)
        ).status_code == 204
        assert (await me(client, account.access_token)).json()["code"] == "token_revoked"

    async def test_by_password_change(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        account = await accounts.create()
        changed = await client.post(
            "/api/v1/user/change-password",
            headers=account.headers,
            json={"old_password": PASSWORD, "new_password": "another long secret"},
        )
        assert changed.status_code == 200
        assert (await me(client, account.access_token)).json()["code"] == "token_revoked"

    @pytest.mark.parametrize("credential", ["access token", "api key"])
    async def test_by_disabling_the_account(
        self, client: httpx.AsyncClient, accounts: Accounts, credential: str
    ) -> None:
        admin, account = await accounts.create("root", admin=True), await accounts.create()
        key = (
            await client.post("/api/v1/api-keys", headers=account.headers, json={"name": "k"})
        ).json()["key"]
        disabled = await client.patch(
            f"/api/v1/users/{account.username}", headers=admin.headers, json={"disabled": True}
        )
        assert disabled.status_code == 200
        secret = account.access_token if credential == "access token" else key
        response = await me(client, secret)
        assert (response.status_code, response.json()["code"]) == (401, "account_disabled")


class TestDeletedApiKey:
    async def test_stops_working_at_once(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        created = (
            await client.post("/api/v1/api-keys", headers=account.headers, json={"name": "k"})
        ).json()
        assert (await me(client, created["key"])).status_code == 200
        deleted = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=account.headers)
        assert deleted.status_code == 204
        response = await me(client, created["key"])
        assert (response.status_code, response.json()["code"]) == (401, "invalid_api_key")
