"""``mongars models list|provision|set-role`` through typer's CliRunner, on a database of its own
and the protocol fake of Ollama's pull API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mongars.cli import app
from mongars.config import Settings
from mongars.db.tables import ProvisioningJob, ProvisioningJobRole, ProvisioningTask
from mongars.resources import open_database
from tests.ollama_pull_server import FakeOllamaStore, fake_ollama_store


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("MONGARS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("COLUMNS", "250")  # rich tables unwrapped
    monkeypatch.setenv("MONGARS_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MONGARS_LLM__BACKEND", "fake")
    return CliRunner()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllamaStore]:
    with fake_ollama_store() as server:
        monkeypatch.setenv("MONGARS_LLM__REASONING__BACKEND", "ollama")
        monkeypatch.setenv("MONGARS_LLM__REASONING__BASE_URL", server.url)
        monkeypatch.setenv("MONGARS_LLM__REASONING__MODEL", "tiny")
        yield server


def row(output: str, role: str) -> list[str]:
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1] == role:
            return cells[1:-1]
    raise AssertionError(f"no row for {role} in:\n{output}")


class TestList:
    def test_profiles_and_every_role_with_availability(
        self, runner: CliRunner, store: FakeOllamaStore
    ) -> None:
        result = runner.invoke(app, ["models", "list"])
        assert result.exit_code == 0, result.output
        assert "* profile settings: The roles as the MONGARS_LLM__* settings" in result.stdout
        general = row(result.stdout, "general")
        assert general[:3] == ["general", "fake", "fake-echo"]
        assert general[4] == "yes"
        reasoning = row(result.stdout, "reasoning")
        assert reasoning[:3] == ["reasoning", "ollama", "tiny"]
        assert reasoning[4] == "no"
        assert "not pulled" in reasoning[5]

    def test_the_active_profile_is_marked(
        self, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            "[profiles.small]\ndescription = 'Small'\n"
            "coding = { backend = 'fake', model = 'fake-coder', temperature = 0.1 }\n"
        )
        monkeypatch.setenv("MONGARS_LLM__PROFILES_FILE", str(profiles))
        monkeypatch.setenv("MONGARS_LLM__PROFILE", "small")
        result = runner.invoke(app, ["models", "list"])
        assert result.exit_code == 0, result.output
        assert "  profile settings:" in result.stdout
        assert "* profile small: Small" in result.stdout
        coding = row(result.stdout, "coding")
        assert coding[2] == "fake-coder"
        assert "temperature=0.1" in coding[3]

    def test_a_bad_profiles_file_is_named_and_exits_2(
        self, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text("[profiles.x.general]\nbackend = 'llamafile'\n")
        monkeypatch.setenv("MONGARS_LLM__PROFILES_FILE", str(profiles))
        result = runner.invoke(app, ["models", "list"])
        assert result.exit_code == 2
        assert "profiles.x.general.backend" in " ".join(result.output.split())


class TestProvision:
    def test_a_pull_with_progress_then_ok(self, runner: CliRunner, store: FakeOllamaStore) -> None:
        result = runner.invoke(app, ["models", "provision", "--role", "reasoning"])
        assert result.exit_code == 0, result.output
        assert f"ok reasoning: Pulled 'tiny' ({store.total_bytes} bytes)." in result.stdout
        assert store.pulls["tiny"] == 1
        again = runner.invoke(app, ["models", "provision", "-r", "reasoning"])
        assert "Already pulled" in again.stdout
        assert store.pulls["tiny"] == 1

    def test_every_role_by_default_and_a_failed_pull_exits_1(
        self, runner: CliRunner, store: FakeOllamaStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MONGARS_LLM__REASONING__MODEL", "tiny:broken")
        result = runner.invoke(app, ["models", "provision"])
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert "ok coding, embedding, general: The fake backend has nothing to provision." in lines
        assert any(
            line.startswith("failed reasoning:") and "unexpected EOF" in line for line in lines
        )

    def test_the_job_is_stored_where_the_servers_show_it(
        self, runner: CliRunner, store: FakeOllamaStore
    ) -> None:
        result = runner.invoke(app, ["models", "provision", "--role", "reasoning", "--force"])
        assert result.exit_code == 0, result.output

        async def stored() -> list[tuple[object, ...]]:
            async with open_database(Settings()) as sessions, sessions() as db:
                rows = await db.execute(
                    select(
                        ProvisioningJob.force,
                        ProvisioningJobRole.role,
                        ProvisioningTask.status,
                        ProvisioningTask.completed_bytes,
                    )
                    .join(ProvisioningJobRole, ProvisioningJobRole.job_id == ProvisioningJob.id)
                    .join(ProvisioningTask, ProvisioningTask.id == ProvisioningJobRole.task_id)
                )
                return [tuple(row) for row in rows]

        # asyncio.run, as the CLI does (anyio.run refuses while the test runner's loop lives).
        assert asyncio.run(stored()) == [(True, "reasoning", "completed", store.total_bytes)]

    def test_an_unknown_role_is_named(self, runner: CliRunner) -> None:
        result = runner.invoke(app, ["models", "provision", "--role", "poetry"])
        assert result.exit_code == 1
        assert "Unknown role 'poetry'" in result.output

    def test_another_profiles_roles(
        self,
        runner: CliRunner,
        store: FakeOllamaStore,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            f"[profiles.big]\nembedding = {{ backend = 'ollama', base_url = '{store.url}', "
            "model = 'embedder' }\n"
        )
        monkeypatch.setenv("MONGARS_LLM__PROFILES_FILE", str(profiles))
        result = runner.invoke(
            app, ["models", "provision", "--profile", "big", "--role", "embedding"]
        )
        assert result.exit_code == 0, result.output
        assert store.pulls == {"embedder": 1}
        unknown = runner.invoke(app, ["models", "provision", "--profile", "huge"])
        assert unknown.exit_code == 1
        assert "Unknown model profile 'huge'" in unknown.output


class TestSetRole:
    def test_a_checked_switch_is_stored_and_listed(self, runner: CliRunner) -> None:
        result = runner.invoke(
            app, ["models", "set-role", "general", "--backend", "fake", "--model", "fake-two"]
        )
        assert result.exit_code == 0, result.output
        assert "Role general now served by fake fake-two." in result.stdout
        listed = runner.invoke(app, ["models", "list"])
        assert row(listed.stdout, "general")[2] == "fake-two"
        assert row(listed.stdout, "coding")[2] == "fake-echo"

    def test_a_backend_without_the_model_is_refused_with_the_reason(
        self, runner: CliRunner, store: FakeOllamaStore
    ) -> None:
        result = runner.invoke(
            app,
            [
                "models",
                "set-role",
                "general",
                "--backend",
                "ollama",
                "--model",
                "tiny",
                "--base-url",
                store.url,
            ],
        )
        assert result.exit_code == 1
        assert "does not have the model" in result.output
        listed = runner.invoke(app, ["models", "list"])
        assert row(listed.stdout, "general")[1] == "fake"
