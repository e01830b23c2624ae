"""Registration rules, the profile, and administration."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD, Accounts, in_process, migrated_settings


def field_errors(response: httpx.Response) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in response.json()["detail"]]


class TestRegistrationInput:
    @pytest.mark.parametrize(
        ("username", "password", "field"),
        [
            ("has spaces", PASSWORD, "body.username"),
            ("x" * 200, PASSWORD, "body.username"),
            ("ab", PASSWORD, "body.username"),
            ("_leading", PASSWORD, "body.username"),
            ("erin", "s" * 7, "body.password"),
            ("erin", "s" * 129, "body.password"),
        ],
    )
    async def test_bad_input_names_the_field(
        self, client: httpx.AsyncClient, username: str, password: str, field: str
    ) -> None:
        response = await client.post(
            "/api/v1/user/register", json={"username": username, "password": password}
        )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["request_id"]
        assert field_errors(response) == [field]
        assert "input" not in body["detail"][0] or field != "body.password"

    async def test_boundaries_are_accepted(self, client: httpx.AsyncClient) -> None:
        for username, password in (("abc", "s" * 8), ("y" * 32, "s" * 128)):
            response = await client.post(
                "/api/v1/user/register", json={"username": username, "password": password}
            )
            assert response.status_code == 201, response.text

    async def test_duplicate_username_is_a_conflict_whatever_the_case(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await client.post(
            "/api/v1/user/register", json={"username": "frank", "password": PASSWORD}
        )
        assert first.status_code == 201
        second = await client.post(
            "/api/v1/user/register", json={"username": "Frank", "password": PASSWORD}
        )
        assert second.status_code == 409
        assert second.json()["code"] == "username_taken"

    async def test_missing_body_fields(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/user/register", json={})
        assert response.status_code == 422
        assert set(field_errors(response)) == {"body.username", "body.password"}

    async def test_registration_never_makes_an_admin(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/user/register",
            json={"username": "grace", "password": PASSWORD, "is_admin": True},
        )
        assert response.status_code == 201
        assert response.json()["is_admin"] is False


class TestClosedRegistration:
    async def test_is_refused(self, tmp_path: Path) -> None:
        from mongars.app import create_app

        settings = await migrated_settings(tmp_path, registration_open=False)
        async with in_process(create_app(settings)) as served:
            response = await served.client.post(
                "/api/v1/user/register", json={"username": "heidi", "password": PASSWORD}
            )
        assert response.status_code == 403
        assert response.json()["code"] == "registration_closed"


class TestAdministration:
    async def test_non_admins_are_refused_everywhere(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        user = await accounts.create("ivan")
        await accounts.create("judy")
        for method, path, body in (
            ("GET", "/api/v1/users", None),
            ("GET", "/api/v1/user/list", None),
            ("PATCH", "/api/v1/users/judy", {"disabled": True}),
            ("DELETE", "/api/v1/users/judy", None),
        ):
            response = await client.request(method, path, headers=user.headers, json=body)
            assert response.status_code == 403, path
            assert response.json()["code"] == "admin_required"

    async def test_list_is_paginated(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        admin = await accounts.create("root", admin=True)
        for name in ("u1", "u2", "u3", "u4"):
            await accounts.create(name + "xx")
        first = (await client.get("/api/v1/users?limit=2", headers=admin.headers)).json()
        second = (await client.get("/api/v1/users?limit=2&offset=2", headers=admin.headers)).json()
        assert first["total"] == second["total"] == 5
        names = [u["username"] for u in first["items"] + second["items"]]
        assert len(set(names)) == 4
        assert "password_hash" not in first["items"][0]
        bad = await client.get("/api/v1/users?limit=0", headers=admin.headers)
        assert bad.status_code == 422
        charter = await client.get("/api/v1/user/list", headers=admin.headers)
        assert charter.json() == {"users": sorted(["root", "u1xx", "u2xx", "u3xx", "u4xx"])}

    async def test_promote_then_delete(self, client: httpx.AsyncClient, accounts: Accounts) -> None:
        admin = await accounts.create("root", admin=True)
        mallory = await accounts.create("mallory")
        promoted = await client.patch(
            "/api/v1/users/mallory", headers=admin.headers, json={"is_admin": True}
        )
        assert promoted.json()["is_admin"] is True
        assert (await client.get("/api/v1/users", headers=mallory.headers)).status_code == 200
        assert (
            await client.delete("/api/v1/users/mallory", headers=admin.headers)
        ).status_code == 204
        assert (await client.get("/api/v1/user/me", headers=mallory.headers)).status_code == 401
        missing = await client.delete("/api/v1/users/mallory", headers=admin.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "user_not_found"

    async def test_admins_cannot_lock_themselves_out(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create("root", admin=True)
        for method, body in (
            ("PATCH", {"disabled": True}),
            ("PATCH", {"is_admin": False}),
            ("DELETE", None),
        ):
            response = await client.request(
                method, "/api/v1/users/root", headers=admin.headers, json=body
            )
            assert response.status_code == 409
            assert response.json()["code"] == "cannot_modify_self"

    async def test_re_enabling_lets_the_user_log_in_again(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create("root", admin=True)
        await accounts.create("niaj")
        await client.patch("/api/v1/users/niaj", headers=admin.headers, json={"disabled": True})
        await client.patch("/api/v1/users/niaj", headers=admin.headers, json={"disabled": False})
        assert (await accounts.login("niaj")).access_token

    async def test_unknown_fields_are_refused(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create("root", admin=True)
        await accounts.create("olivia")
        response = await client.patch(
            "/api/v1/users/olivia", headers=admin.headers, json={"password": "x"}
        )
        assert response.status_code == 422
