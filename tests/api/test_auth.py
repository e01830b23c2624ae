"""Logging in, refreshing, logging out, and every way a token must stop working."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from mongars.core.security.secret_key import derive_key
from mongars.resources import Resources
from tests.conftest import PASSWORD, Accounts


async def register(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/api/v1/user/register", json={"username": username, "password": password}
    )


class TestTheFullJourney:
    async def test_register_login_me_refresh_logout(self, client: httpx.AsyncClient) -> None:
        created = await register(client, "Alice")
        assert created.status_code == 201
        assert created.json()["username"] == "alice"
        assert created.json()["is_admin"] is False

        form = await client.post("/token", data={"username": "alice", "password": PASSWORD})
        assert form.status_code == 200
        assert form.json()["token_type"] == "bearer"

        login = await client.post(
            "/api/v1/auth/login", json={"username": "ALICE", "password": PASSWORD}
        )
        assert login.status_code == 200
        tokens = login.json()
        assert tokens["expires_in"] == 900

        me = await client.get(
            "/api/v1/user/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200
        assert me.json()["username"] == "alice"
        assert me.json()["last_login_at"] is not None

        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        new = refreshed.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        headers = {"Authorization": f"Bearer {new['access_token']}"}

        assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
        after = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}
        )
        assert after.status_code == 401
        assert after.json()["code"] == "invalid_refresh_token"
        assert (await client.get("/api/v1/user/me", headers=headers)).json()[
            "code"
        ] == "token_revoked"

    async def test_logout_leaves_other_logins_alone(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        laptop = await accounts.create("carol")
        phone = await accounts.login("carol")
        assert (await client.post("/api/v1/auth/logout", headers=laptop.headers)).status_code == 204
        assert (await client.get("/api/v1/user/me", headers=phone.headers)).status_code == 200


class TestRefreshRotation:
    async def test_a_rotated_refresh_token_is_refused_and_ends_the_login(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        first = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert first.status_code == 200
        replay = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert replay.status_code == 401
        # The replay looks like theft: the legitimate holder's newer tokens die too.
        newer = first.json()
        again = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": newer["refresh_token"]}
        )
        assert again.status_code == 401
        me = await client.get(
            "/api/v1/user/me", headers={"Authorization": f"Bearer {newer['access_token']}"}
        )
        assert me.status_code == 401

    async def test_unknown_refresh_token(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_refresh_token"


class TestTokensStopWorking:
    async def test_after_a_password_change(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        other_login = await accounts.login(account.username)
        changed = await client.post(
            "/api/v1/user/change-password",
            headers=account.headers,
            json={"old_password": PASSWORD, "new_password": "a brand new secret"},
        )
        assert changed.status_code == 200
        for old in (account, other_login):
            response = await client.get("/api/v1/user/me", headers=old.headers)
            assert response.status_code == 401
            assert response.json()["code"] == "token_revoked"
        stale_refresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": other_login.refresh_token}
        )
        assert stale_refresh.status_code == 401
        fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
        assert (await client.get("/api/v1/user/me", headers=fresh)).status_code == 200
        assert (await accounts.login(account.username, "a brand new secret")).access_token

    async def test_change_password_needs_the_current_one(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        response = await client.post(
            "/api/v1/user/change-password",
            headers=account.headers,
            json={"old_password": "not my password", "new_password": "a brand new secret"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "wrong_password"
        assert (await client.get("/api/v1/user/me", headers=account.headers)).status_code == 200

    async def test_when_the_account_is_disabled(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create("admin", admin=True)
        victim = await accounts.create("bob")
        assert (await client.get("/api/v1/user/me", headers=victim.headers)).status_code == 200
        disabled = await client.patch(
            "/api/v1/users/bob", headers=admin.headers, json={"disabled": True}
        )
        assert disabled.status_code == 200
        assert disabled.json()["is_disabled"] is True
        response = await client.get("/api/v1/user/me", headers=victim.headers)
        assert response.status_code == 401
        assert response.json()["code"] == "account_disabled"
        refresh = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": victim.refresh_token}
        )
        assert refresh.status_code == 401
        login = await client.post(
            "/api/v1/auth/login", json={"username": "bob", "password": PASSWORD}
        )
        assert login.json()["code"] == "account_disabled"


class TestMalformedTokens:
    @pytest.fixture
    async def account_claims(self, accounts: Accounts) -> dict[str, object]:
        account = await accounts.create()
        return jwt.decode(account.access_token, options={"verify_signature": False})

    async def _me(self, client: httpx.AsyncClient, token: str) -> httpx.Response:
        return await client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {token}"})

    async def test_garbage(self, client: httpx.AsyncClient) -> None:
        response = await self._me(client, "not.a.jwt")
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_missing(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/user/me")
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"

    async def test_expired(
        self, client: httpx.AsyncClient, resources: Resources, account_claims: dict[str, object]
    ) -> None:
        key = derive_key(resources.settings.secret_key.get_secret_value().encode(), "jwt")  # type: ignore[union-attr]
        past = datetime.now(UTC) - timedelta(hours=1)
        token = jwt.encode(
            {**account_claims, "iat": past, "exp": past + timedelta(minutes=15)}, key, "HS256"
        )
        response = await self._me(client, token)
        assert response.status_code == 401
        assert response.json()["code"] == "token_expired"

    async def test_signed_with_another_key(
        self, client: httpx.AsyncClient, account_claims: dict[str, object]
    ) -> None:
        token = jwt.encode(account_claims, "another key entirely, 32 bytes+!", "HS256")
        assert (await self._me(client, token)).json()["code"] == "invalid_token"

    async def test_alg_none(
        self, client: httpx.AsyncClient, account_claims: dict[str, object]
    ) -> None:
        token = jwt.encode(account_claims, None, algorithm="none")
        response = await self._me(client, token)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"

    async def test_valid_signature_for_an_unknown_session(
        self, client: httpx.AsyncClient, resources: Resources, account_claims: dict[str, object]
    ) -> None:
        key = derive_key(resources.settings.secret_key.get_secret_value().encode(), "jwt")  # type: ignore[union-attr]
        token = jwt.encode({**account_claims, "sid": str(uuid.uuid4())}, key, "HS256")
        assert (await self._me(client, token)).json()["code"] == "token_revoked"


class TestLoginFailures:
    async def test_unknown_user_and_wrong_password_look_the_same(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        await accounts.create("dave")
        unknown = await client.post(
            "/api/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
        )
        wrong = await client.post(
            "/api/v1/auth/login", json={"username": "dave", "password": "wrong password"}
        )
        odd = await client.post(
            "/api/v1/auth/login", json={"username": "has spaces", "password": PASSWORD}
        )
        for response in (unknown, wrong, odd):
            assert response.status_code == 401
        bodies = [
            {k: v for k, v in r.json().items() if k != "request_id"} for r in (unknown, wrong, odd)
        ]
        assert bodies[0] == bodies[1] == bodies[2]
        form = await client.post("/token", data={"username": "nobody", "password": PASSWORD})
        assert form.status_code == 401
        assert form.json()["detail"] == unknown.json()["detail"]

    async def test_logout_with_an_api_key_is_refused(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        account = await accounts.create()
        key = (
            await client.post("/api/v1/api-keys", headers=account.headers, json={"name": "ci"})
        ).json()["key"]
        response = await client.post(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "not_a_session"
