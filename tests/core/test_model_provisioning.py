"""ModelProvisioner: Ollama pulls against a protocol fake of Ollama's pull API, the embedded
model's file check on the real shipped GGUF, and the OpenAI-compatible model list of the real
llama.cpp server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from mongars.config import LLMSettings
from mongars.core.llm import default_model_path
from mongars.core.model_provisioning import (
    PINNED_MODEL_FILES,
    EventKind,
    ModelProvisioner,
    ProvisionJob,
    ProvisionTask,
    Target,
)
from tests.model_fixtures import ALIAS, LlamaServer
from tests.ollama_pull_server import STEPS, FakeOllamaStore, fake_ollama_store

Event = tuple[EventKind, dict[str, object]]


@asynccontextmanager
async def provisioner(
    llm: LLMSettings | None = None, *, interval: float = 0.0
) -> AsyncIterator[tuple[ModelProvisioner, list[Event]]]:
    events: list[Event] = []

    async def record(kind: EventKind, task: ProvisionTask) -> None:
        events.append((kind, task.snapshot()))

    async with anyio.create_task_group() as group:
        service = ModelProvisioner(
            group, llm or LLMSettings(backend="fake"), progress_interval_seconds=interval
        )
        service.listeners.append(record)
        yield service, events


async def finished(service: ModelProvisioner, job: ProvisionJob) -> ProvisionJob:
    with anyio.fail_after(30):
        await service.wait(job)
    return job


def ollama(store: FakeOllamaStore, model: str) -> Target:
    return Target("ollama", store.url, model)


class TestOllamaPull:
    async def test_a_pull_reports_byte_progress_then_completes(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner() as (service, events):
                job = service.start(
                    {"general": ollama(store, "tiny:latest")}, force=False, profile="settings"
                )
                await finished(service, job)
        task = job.tasks["general"]
        assert (job.status, task.status, task.phase) == ("completed", "completed", "ready")
        assert task.completed_bytes == task.total_bytes == store.total_bytes
        assert store.pulls["tiny:latest"] == 1
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "started"
        assert kinds[-1] == "completed"
        progress = [data for kind, data in events if kind == "progress"]
        assert len(progress) > STEPS
        done = [int(str(data["completed_bytes"])) for data in progress]
        assert done == sorted(done)
        assert 0 < done[len(done) // 2] < store.total_bytes
        assert {"pulling manifest", "verifying sha256 digest", "success"} <= {
            str(data["phase"]) for data in progress
        }

    async def test_a_pulled_model_is_not_pulled_again_unless_forced(self) -> None:
        with fake_ollama_store() as store:
            store.pulled.add("tiny:latest")
            async with provisioner() as (service, _):
                kept = await finished(
                    service,
                    service.start({"general": ollama(store, "tiny")}, force=False, profile="p"),
                )
                assert store.pulls["tiny"] == 0
                assert "Already pulled" in str(kept.tasks["general"].detail)
                await finished(
                    service,
                    service.start({"general": ollama(store, "tiny")}, force=True, profile="p"),
                )
                assert store.pulls["tiny"] == 1

    async def test_a_pull_that_fails_halfway_ends_failed_with_the_reason(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner() as (service, events):
                job = await finished(
                    service,
                    service.start(
                        {"coding": ollama(store, "tiny:broken")}, force=False, profile="p"
                    ),
                )
        task = job.tasks["coding"]
        assert (job.status, task.status) == ("failed", "failed")
        assert "max retries exceeded: unexpected EOF" in str(task.error)
        assert "'tiny:broken'" in str(task.error)
        assert 0 < task.completed_bytes < store.total_bytes
        assert events[-1][0] == "failed"
        assert events[-1][1]["error"] == task.error
        assert "tiny:broken" not in store.pulled

    async def test_an_unknown_model_fails_with_ollamas_reason(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner() as (service, _):
                job = await finished(
                    service,
                    service.start(
                        {"general": ollama(store, "nope:unknown")}, force=False, profile="p"
                    ),
                )
        assert "file does not exist" in str(job.tasks["general"].error)

    async def test_an_unreachable_server_fails_naming_it(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        async with provisioner() as (service, _):
            job = await finished(
                service,
                service.start({"general": Target("ollama", url, "m")}, force=False, profile="p"),
            )
        assert "cannot be reached" in str(job.tasks["general"].error)

    async def test_progress_events_are_throttled(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner(interval=60.0) as (service, events):
                await finished(
                    service,
                    service.start({"general": ollama(store, "tiny")}, force=False, profile="p"),
                )
        assert [kind for kind, _ in events] == ["started", "progress", "completed"]


class TestJoining:
    async def test_a_second_provision_of_a_running_role_joins_it(self) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()  # every pull waits after its first layer line
            async with provisioner() as (service, _):
                first = service.start({"general": ollama(store, "tiny")}, force=False, profile="p")
                with anyio.fail_after(10):  # until the pull is in flight (held by the gate)
                    while store.pulls["tiny"] == 0:  # noqa: ASYNC110 -- counted by a thread
                        await anyio.sleep(0.01)
                second = service.start({"general": ollama(store, "tiny")}, force=True, profile="p")
                assert second.tasks["general"] is first.tasks["general"]
                assert second.joined == {"general"}
                assert first.joined == set()
                assert first.tasks["general"].job_ids == [first.id, second.id]
                store.gate.set()
                await finished(service, second)
                assert first.status == second.status == "completed"
        assert store.pulls["tiny"] == 1

    async def test_roles_on_the_same_model_share_one_task(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner() as (service, _):
                job = service.start(
                    {"general": ollama(store, "tiny"), "coding": ollama(store, "tiny")},
                    force=False,
                    profile="p",
                )
                await finished(service, job)
        assert job.tasks["general"] is job.tasks["coding"]
        assert job.tasks["general"].roles == {"general", "coding"}
        assert store.pulls["tiny"] == 1

    async def test_after_a_pull_ends_a_new_provision_starts_afresh(self) -> None:
        with fake_ollama_store() as store:
            async with provisioner() as (service, _):
                one = await finished(
                    service, service.start({"general": ollama(store, "t")}, force=True, profile="p")
                )
                two = await finished(
                    service, service.start({"general": ollama(store, "t")}, force=True, profile="p")
                )
        assert one.tasks["general"] is not two.tasks["general"]
        assert store.pulls["t"] == 2


class TestEmbeddedModelFile:
    async def test_the_shipped_gguf_matches_its_pinned_size_and_digest(self) -> None:
        path = default_model_path()
        assert path.name in PINNED_MODEL_FILES
        async with provisioner(LLMSettings(backend="embedded")) as (service, events):
            job = await finished(
                service,
                service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        task = job.tasks["general"]
        assert task.status == "completed", task.error
        assert task.detail == f"{path.name}: size and sha256 match."
        assert task.completed_bytes == task.total_bytes == path.stat().st_size
        assert events[-1][0] == "completed"

    async def test_a_corrupted_copy_fails_on_its_digest(self, tmp_path: Path) -> None:
        original = default_model_path()
        copy = tmp_path / original.name
        shutil.copyfile(original, copy)
        with copy.open("r+b") as handle:  # one flipped byte in the middle, same size
            handle.seek(copy.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))
        llm = LLMSettings(backend="embedded", model_path=copy)
        async with provisioner(llm) as (service, _):
            job = await finished(
                service,
                service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        error = str(job.tasks["general"].error)
        assert job.status == "failed"
        assert PINNED_MODEL_FILES[original.name].sha256 in error
        assert "corrupted" in error

    async def test_a_truncated_copy_fails_on_its_size_before_hashing(self, tmp_path: Path) -> None:
        original = default_model_path()
        copy = tmp_path / original.name
        with original.open("rb") as source, copy.open("wb") as target:
            target.write(source.read(1024 * 1024))
        llm = LLMSettings(backend="embedded", model_path=copy)
        async with provisioner(llm) as (service, _):
            job = await finished(
                service,
                service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        task = job.tasks["general"]
        assert f"is {1024 * 1024} bytes" in str(task.error)
        assert task.completed_bytes == 0

    async def test_a_custom_file_is_checked_against_the_configured_digest(
        self, tmp_path: Path
    ) -> None:
        custom = tmp_path / "custom.gguf"
        custom.write_bytes(b"GGUF" + bytes(100))
        wrong = LLMSettings(backend="embedded", model_path=custom, model_sha256="0" * 64)
        async with provisioner(wrong) as (service, _):
            job = await finished(
                service,
                service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        assert "0" * 64 + " was expected" in str(job.tasks["general"].error)

    async def test_a_missing_file_fails_naming_it(self, tmp_path: Path) -> None:
        llm = LLMSettings(backend="embedded", model_path=tmp_path / "gone.gguf")
        async with provisioner(llm) as (service, _):
            job = await finished(
                service,
                service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        assert "gone.gguf cannot be read" in str(job.tasks["general"].error)


class TestOpenAICompatible:
    async def test_the_real_llama_cpp_server_lists_the_model(
        self, llama_server: LlamaServer
    ) -> None:
        target = Target("openai", llama_server.url + "/v1", ALIAS, llama_server.api_key)
        async with provisioner() as (service, _):
            job = await finished(
                service, service.start({"general": target}, force=False, profile="p")
            )
        task = job.tasks["general"]
        assert task.status == "completed", task.error
        assert ALIAS in str(task.detail)

    async def test_a_model_the_server_does_not_list_fails(self, llama_server: LlamaServer) -> None:
        target = Target("openai", llama_server.url + "/v1", "not-served", llama_server.api_key)
        async with provisioner() as (service, _):
            job = await finished(
                service, service.start({"general": target}, force=False, profile="p")
            )
        assert "'not-served'" in str(job.tasks["general"].error)

    async def test_a_wrong_api_key_fails(self, llama_server: LlamaServer) -> None:
        target = Target("openai", llama_server.url + "/v1", ALIAS, "wrong-key")
        async with provisioner() as (service, _):
            job = await finished(
                service, service.start({"general": target}, force=False, profile="p")
            )
        task = job.tasks["general"]
        assert task.status == "failed"
        assert "401" in str(task.error)


class TestFake:
    async def test_the_fake_backend_has_nothing_to_provision(self) -> None:
        async with provisioner() as (service, events):
            job = await finished(
                service,
                service.start(
                    {"general": Target("fake", None, "fake-echo")}, force=False, profile="p"
                ),
            )
        assert job.status == "completed"
        assert [kind for kind, _ in events] == ["started", "completed"]
