"""Model provisioning over the API (admin): POST /api/v1/models/provision, GET
/api/v1/models/jobs/{id}, ``model.provision.*`` frames on a real WebSocket, and profiles in
GET /api/v1/models. Ollama is the protocol fake of tests/ollama_pull_server.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from mongars.app import create_app
from mongars.config import LLMSettings, RoleSettings, Settings
from mongars.core.llm import FakeBackend
from mongars.resources import build_account_services, open_database
from tests.api.test_models import admin_of, chat_model, own_app
from tests.conftest import PASSWORD, Accounts, migrated_settings
from tests.live_server import LiveServer, free_port
from tests.model_fixtures import ALIAS, LlamaServer
from tests.ollama_pull_server import FakeOllamaStore, fake_ollama_store
from tests.ws_client import receive_until, send
from tests.ws_fixtures import connected

PROFILES = """
default = "plain"

[profiles.plain]
description = "Every role on the fake backend"

[profiles.pulled]
description = "Reasoning on Ollama"
reasoning = {{ backend = "ollama", base_url = "{url}", model = "thinker" }}
"""


def reasoning_on(store: FakeOllamaStore, model: str = "tiny") -> LLMSettings:
    """Chat (general, coding) answers from the fake backend; reasoning lives on Ollama."""
    return LLMSettings(
        backend="fake",
        reasoning=RoleSettings(backend="ollama", base_url=store.url, model=model),
    )


async def job_when(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    job_id: str,
    condition: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """GET jobs/{id} until ``condition`` holds for what it answers."""
    with anyio.fail_after(30):
        while True:
            response = await client.get(f"/api/v1/models/jobs/{job_id}", headers=headers)
            assert response.status_code == 200, response.text
            if condition(response.json()):
                return dict(response.json())
            await anyio.sleep(0.02)


async def job_when_done(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str
) -> dict[str, Any]:
    return await job_when(client, headers, job_id, lambda job: job["status"] != "running")


async def until(condition: Any) -> None:
    """Poll a condition another thread (the fake Ollama server) makes true."""
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 -- set by a thread: no event to await
            await anyio.sleep(0.01)


class TestAccess:
    async def test_non_admins_get_403_on_every_models_route(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        user = await accounts.create()
        calls = [
            ("GET", "/api/v1/models", None),
            ("PUT", "/api/v1/models/roles/general", {"backend": "fake", "model": "fake-two"}),
            ("POST", "/api/v1/models/provision", {}),
            ("GET", "/api/v1/models/jobs/abc", None),
        ]
        for method, path, body in calls:
            response = await client.request(method, path, headers=user.headers, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["code"] == "admin_required"

    async def test_anonymous_gets_401_on_provisioning(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/models/provision", json={})).status_code == 401
        assert (await client.get("/api/v1/models/jobs/abc")).status_code == 401


class TestRefusals:
    async def test_an_unknown_role_is_422_naming_it(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.post(
            "/api/v1/models/provision", headers=admin.headers, json={"roles": ["poetry"]}
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "unknown_role"
        assert "'poetry'" in response.json()["detail"]

    async def test_an_unknown_profile_is_422_naming_the_choices(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.post(
            "/api/v1/models/provision", headers=admin.headers, json={"profile": "cloud"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "unknown_profile"
        assert "'cloud'" in response.json()["detail"]
        assert "settings" in response.json()["detail"]

    async def test_an_unknown_job_is_404(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin = await accounts.create(admin=True)
        response = await client.get("/api/v1/models/jobs/no-such-job", headers=admin.headers)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "provision_job_not_found"


class TestProvisioning:
    async def test_a_pull_runs_in_the_background_with_progress_and_never_blocks_chat(
        self, tmp_path: Path
    ) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()  # the pull stops after its first layer line until released
            settings = await migrated_settings(tmp_path, llm=reasoning_on(store))
            async with own_app(settings) as (client, resources):
                admin = await admin_of(client, resources)
                response = await client.post(
                    "/api/v1/models/provision",
                    headers=admin.headers,
                    json={"roles": ["reasoning"]},
                )
                assert response.status_code == 202, response.text
                job = response.json()
                assert response.headers["location"] == f"/api/v1/models/jobs/{job['id']}"
                assert job["status"] == "running"
                assert [r["role"] for r in job["roles"]] == ["reasoning"]
                # The request returned; the pull is in flight (held after its first layer
                # line); chat answers meanwhile.
                in_flight = await job_when(
                    client,
                    admin.headers,
                    job["id"],
                    lambda job: job["roles"][0]["total_bytes"] is not None,
                )
                assert await chat_model(client, admin) == "fake-echo"
                role = in_flight["roles"][0]
                assert (role["status"], role["backend"], role["model"]) == (
                    "running",
                    "ollama",
                    "tiny",
                )
                assert role["phase"].startswith("pulling ")
                assert role["total_bytes"] == 3_000_000  # the first layer announced so far

                store.gate.set()
                done = await job_when_done(client, admin.headers, job["id"])
                role = done["roles"][0]
                assert (done["status"], role["status"], role["phase"]) == (
                    "completed",
                    "completed",
                    "ready",
                )
                assert role["completed_bytes"] == role["total_bytes"] == store.total_bytes
                assert role["error"] is None
                assert role["finished_at"] is not None
                listed = await client.get("/api/v1/models", headers=admin.headers)
                reasoning = {r["role"]: r for r in listed.json()["roles"]}["reasoning"]
                assert reasoning["availability"]["model_present"] is True

    async def test_a_second_provision_while_one_runs_joins_it(self, tmp_path: Path) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()
            settings = await migrated_settings(tmp_path, llm=reasoning_on(store))
            async with own_app(settings) as (client, resources):
                admin = await admin_of(client, resources)
                body = {"roles": ["reasoning"], "force": True}
                first = await client.post(
                    "/api/v1/models/provision", headers=admin.headers, json=body
                )
                await until(lambda: store.pulls["tiny"] == 1)
                second = await client.post(
                    "/api/v1/models/provision", headers=admin.headers, json=body
                )
                assert second.status_code == 202, second.text
                assert second.json()["id"] != first.json()["id"]
                assert second.json()["roles"][0]["joined"] is True
                assert first.json()["roles"][0]["joined"] is False
                store.gate.set()
                one = await job_when_done(client, admin.headers, first.json()["id"])
                two = await job_when_done(client, admin.headers, second.json()["id"])
                assert one["status"] == two["status"] == "completed"
                assert one["roles"][0]["started_at"] == two["roles"][0]["started_at"]
        assert store.pulls["tiny"] == 1

    async def test_a_pull_that_fails_halfway_ends_the_job_failed_with_the_reason(
        self, tmp_path: Path
    ) -> None:
        with fake_ollama_store() as store:
            settings = await migrated_settings(tmp_path, llm=reasoning_on(store, "tiny:broken"))
            async with own_app(settings) as (client, resources):
                admin = await admin_of(client, resources)
                response = await client.post(
                    "/api/v1/models/provision", headers=admin.headers, json={}
                )
                done = await job_when_done(client, admin.headers, response.json()["id"])
        roles = {r["role"]: r for r in done["roles"]}
        assert set(roles) == {"general", "coding", "reasoning", "embedding"}
        assert done["status"] == "failed"
        assert roles["reasoning"]["status"] == "failed"
        assert "max retries exceeded: unexpected EOF" in roles["reasoning"]["error"]
        assert 0 < roles["reasoning"]["completed_bytes"] < store.total_bytes
        assert roles["general"]["status"] == "completed"  # the fake: nothing to do

    async def test_the_roles_of_another_profile_can_be_provisioned_before_a_switch(
        self, tmp_path: Path
    ) -> None:
        with fake_ollama_store() as store:
            profiles = tmp_path / "profiles.toml"
            profiles.write_text(PROFILES.format(url=store.url))
            llm = LLMSettings(backend="fake", profiles_file=profiles)
            settings = await migrated_settings(tmp_path, llm=llm)
            async with own_app(settings) as (client, resources):
                admin = await admin_of(client, resources)
                listed = (await client.get("/api/v1/models", headers=admin.headers)).json()
                assert listed["active_profile"] == "plain"
                assert [p["name"] for p in listed["profiles"]] == ["settings", "plain", "pulled"]
                assert listed["profiles"][2]["description"] == "Reasoning on Ollama"
                response = await client.post(
                    "/api/v1/models/provision",
                    headers=admin.headers,
                    json={"profile": "pulled", "roles": ["reasoning"]},
                )
                done = await job_when_done(client, admin.headers, response.json()["id"])
        assert done["profile"] == "pulled"
        assert done["roles"][0]["model"] == "thinker"
        assert store.pulls["thinker"] == 1


class TestProfilesAtRunTime:
    async def test_an_admin_switch_lays_over_the_active_profile_and_outlives_a_restart(
        self, tmp_path: Path
    ) -> None:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text("[profiles.p]\ngeneral = { backend = 'fake', model = 'fake-p' }\n")
        llm = LLMSettings(backend="fake", profiles_file=profiles, profile="p")
        settings = await migrated_settings(tmp_path, llm=llm)
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            assert await chat_model(client, admin) == "fake-p"
            switched = await client.put(
                "/api/v1/models/roles/general",
                headers=admin.headers,
                json={"backend": "fake", "model": "fake-admin"},
            )
            assert switched.status_code == 200, switched.text
            assert await chat_model(client, admin) == "fake-admin"
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            assert await chat_model(client, admin) == "fake-admin"

    async def test_a_base_url_the_active_profile_names_counts_as_configured(
        self, tmp_path: Path
    ) -> None:
        url = f"http://127.0.0.1:{free_port()}/v1"
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            f"[profiles.p]\ncoding = {{ backend = 'openai', base_url = '{url}', model = 'm' }}\n"
        )
        llm = LLMSettings(backend="fake", profiles_file=profiles, profile="p")
        settings = await migrated_settings(tmp_path, llm=llm)
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            response = await client.put(
                "/api/v1/models/roles/general",
                headers=admin.headers,
                json={"backend": "openai", "model": "m", "base_url": url},
            )
        # Accepted as a destination, then refused only because nothing listens there.
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "model_unavailable"
        assert "unreachable" in response.json()["detail"]


class TestStartup:
    async def test_an_unknown_profile_in_the_settings_stops_the_start_naming_it(
        self, tmp_path: Path
    ) -> None:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(PROFILES.format(url="http://127.0.0.1:9"))
        llm = LLMSettings(backend="fake", profiles_file=profiles, profile="cloud")
        settings = await migrated_settings(tmp_path, llm=llm)
        with pytest.raises(ValueError, match=r"'cloud' \(MONGARS_LLM__PROFILE\)") as error:
            async with own_app(settings):
                pass
        assert "settings, plain, pulled" in str(error.value)


class TestSwitchingToARealServer:
    async def test_general_switched_to_the_llama_cpp_server_answers_the_next_chat(
        self, tmp_path: Path, llama_server: LlamaServer
    ) -> None:
        base_url = llama_server.url + "/v1"
        llm = LLMSettings(backend="fake", base_url=base_url, api_key=llama_server.api_key)
        settings = await migrated_settings(tmp_path, llm=llm)
        async with own_app(settings) as (client, resources):
            admin = await admin_of(client, resources)
            assert await chat_model(client, admin) == "fake-echo"
            response = await client.put(
                "/api/v1/models/roles/general",
                headers=admin.headers,
                json={"backend": "openai", "model": ALIAS, "base_url": base_url, "max_tokens": 8},
            )
            assert response.status_code == 200, response.text
            assert await chat_model(client, admin) == ALIAS
            coding = await client.post(
                "/api/v1/conversation/chat",
                headers=admin.headers,
                json={"message": "def f():\n    return 1"},
            )
            assert coding.json()["model"] == "fake-echo"  # only general was switched


@contextmanager
def serving(settings: Settings) -> Iterator[LiveServer]:
    """A real uvicorn server whose roles come from ``settings`` (tests/live_server.py serves a
    fake for every role)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server exited while starting"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(base_url=f"http://127.0.0.1:{port}", fake=FakeBackend())
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def login_over_http(server: LiveServer, username: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        tokens = await http.post(
            "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


class TestSocketEvents:
    async def test_admins_sockets_get_started_progress_and_completed_frames(
        self, tmp_path: Path
    ) -> None:
        with fake_ollama_store(step_delay_seconds=0.05) as store:
            settings = await migrated_settings(tmp_path, llm=reasoning_on(store))
            services = build_account_services(settings)
            async with open_database(settings) as sessions, sessions() as db:
                for name, admin in (("root", True), ("pleb", False)):
                    await services.accounts.create_user(
                        db, username=name, password=PASSWORD, is_admin=admin
                    )
                await db.commit()
            with serving(settings) as server:
                admin = await login_over_http(server, "root")
                user = await login_over_http(server, "pleb")
                async with (
                    await connected(server, admin) as admin_ws,
                    await connected(server, user) as user_ws,
                ):
                    async with httpx.AsyncClient(base_url=server.base_url) as http:
                        response = await http.post(
                            "/api/v1/models/provision",
                            headers=admin,
                            json={"roles": ["reasoning"]},
                        )
                    assert response.status_code == 202, response.text
                    job_id = response.json()["id"]
                    # The client that asked is gone; the pull goes on and is reported.
                    frames = await receive_until(admin_ws, "model.provision.completed")
                    await send(user_ws, "client.ping", id_="p")
                    assert (await receive_until(user_ws, "ack"))[0]["type"] == "ack"
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    job = await http.get(f"/api/v1/models/jobs/{job_id}", headers=admin)
                assert job.json()["status"] == "completed"
        types = [frame["type"] for frame in frames]
        assert types[0] == "model.provision.started"
        assert "model.provision.progress" in types
        assert set(types) <= {
            "model.provision.started",
            "model.provision.progress",
            "model.provision.completed",
        }
        last = frames[-1]["data"]
        assert last["job_ids"] == [job_id]
        assert last["roles"] == ["reasoning"]
        assert (last["backend"], last["model"], last["status"]) == ("ollama", "tiny", "completed")
        assert last["completed_bytes"] == store.total_bytes
        progress = [f["data"]["completed_bytes"] for f in frames if f["type"].endswith("progress")]
        assert progress == sorted(progress)
        # Throttled: the pull sends 17 status lines over about 0.6 s; a few frames reach sockets.
        assert len(progress) < 10
