"""Model roles at run time: GET /api/v1/models and PUT /api/v1/models/roles/{role} (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from mongars.app import create_app
from mongars.config import LLMSettings, Settings
from mongars.db.tables import ModelRoleChoice
from mongars.devtools.cluster import free_port
from mongars.resources import Resources
from tests.conftest import Account, Accounts, in_process, migrated_settings


@asynccontextmanager
async def own_app(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Resources]]:
    """An app that builds its roles from the settings (and applies stored choices)."""
    async with in_process(create_app(settings)) as served:
        yield served.client, served.resources


async def admin_of(client: httpx.AsyncClient, resources: Resources) -> Account:
    accounts = Accounts(client, resources)
    try:
        return await accounts.create("boss", admin=True)
    except Exception:  # the account exists already (a restarted app on the same database)
        return await accounts.login("boss")


async def chat_model(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(
        "/api/v1/conversation/chat", headers=account.headers, json={"message": "Hello there"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model"])


def roles_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["role"]: item for item in body["roles"]}


class TestAccess:
    async def test_non_admins_get_403_on_both_routes(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        user = await accounts.create()
        listed = await client.get("/api/v1/models", headers=user.headers)
        assert listed.status_code == 403, listed.text
        switched = await client.put(
            "/api/v1/models/roles/general",
            headers=user.headers,
            json={"backend": "fake", "model": "fake-two"},
        )
        assert switched.status_code == 403, switched.text

    async def test_anonymous_gets_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/api/v1/models")).status_code == 401


class TestListing:
    async def test_each_role_with_backend_model_parameters_and_availability(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.get("/api/v1/models", headers=admin.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["active_profile"] == "settings"
        assert [p["name"] for p in body["profiles"]] == ["settings"]
        roles = roles_of(body)
        assert list(roles) == ["general", "coding", "reasoning", "embedding"]
        general = roles["general"]
        assert (general["backend"], general["model"]) == ("fake", "fake-echo")
        assert set(general["parameters"]) == {"temperature", "top_p", "max_tokens"}
        assert general["availability"] == {
            "reachable": True,
            "model_present": True,
            "detail": "fake backend",
            "circuit": None,
        }


class TestRefusals:
    async def test_unknown_role_is_422_naming_it(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.put(
            "/api/v1/models/roles/poetry",
            headers=admin.headers,
            json={"backend": "fake", "model": "fake-two"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "unknown_role"
        assert "'poetry'" in response.json()["detail"]

    async def test_a_base_url_the_settings_do_not_name_is_refused(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.put(
            "/api/v1/models/roles/general",
            headers=admin.headers,
            json={"backend": "openai", "model": "m", "base_url": "http://evil.example/v1"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "base_url_not_configured"


class TestSwitching:
    async def test_switching_general_changes_the_next_answer_and_survives_a_restart(
        self, tmp_path: Path
    ) -> None:
        settings = await migrated_settings(tmp_path, llm=LLMSettings(backend="fake"))
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            assert await chat_model(client, admin) == "fake-echo"
            response = await client.put(
                "/api/v1/models/roles/general",
                headers=admin.headers,
                json={"backend": "fake", "model": "fake-two", "temperature": 0.1},
            )
            assert response.status_code == 200, response.text
            roles = roles_of(response.json())
            assert roles["general"]["model"] == "fake-two"
            assert roles["general"]["parameters"]["temperature"] == 0.1
            assert roles["coding"]["model"] == "fake-echo"
            assert await chat_model(client, admin) == "fake-two"

        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            assert await chat_model(client, admin) == "fake-two"
            listed = roles_of((await client.get("/api/v1/models", headers=admin.headers)).json())
            assert listed["general"]["model"] == "fake-two"
            assert listed["coding"]["model"] == "fake-echo"

    async def test_an_unreachable_server_is_refused_and_the_old_role_stays(
        self, tmp_path: Path
    ) -> None:
        base_url = f"http://127.0.0.1:{free_port()}/v1"
        settings = await migrated_settings(
            tmp_path, llm=LLMSettings(backend="fake", base_url=base_url)
        )
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            response = await client.put(
                "/api/v1/models/roles/general",
                headers=admin.headers,
                json={"backend": "openai", "model": "some-model", "base_url": base_url},
            )
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "model_unavailable"
            assert "unreachable" in response.json()["detail"]
            assert await chat_model(client, admin) == "fake-echo"
            assert resources.roles.binding("general").backend.name == "fake"
            async with resources.sessions() as db:
                assert list((await db.execute(select(ModelRoleChoice))).scalars()) == []
