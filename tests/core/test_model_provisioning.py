"""ModelProvisioner: Ollama pulls against a protocol fake of Ollama's pull API, the embedded
model's file check on the real shipped GGUF, and the OpenAI-compatible model list of the real
llama.cpp server; jobs and tasks as stored in a real SQLite database."""

from __future__ import annotations

import logging
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mongars.config import LLMSettings
from mongars.core.errors import NotFound
from mongars.core.llm import default_model_path
from mongars.core.model_provisioning import (
    PINNED_MODEL_FILES,
    EventKind,
    JobReport,
    ModelProvisioner,
    ProvisionJob,
    ProvisionTask,
    Target,
)
from mongars.db.base import utcnow
from mongars.db.repositories.provisioning_jobs import ProvisioningJobRepository
from mongars.db.tables import ProvisioningJob, ProvisioningJobRole, ProvisioningTask
from mongars.resources import open_database
from tests.conftest import migrated_settings
from tests.model_fixtures import ALIAS, LlamaServer
from tests.ollama_pull_server import STEPS, FakeOllamaStore, fake_ollama_store

Event = tuple[EventKind, dict[str, object]]


Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
async def sessions(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sessions]:
    """A migrated SQLite database for the module's jobs (each test reads only its own)."""
    settings = await migrated_settings(tmp_path_factory.mktemp("provisioning"))
    async with open_database(settings) as factory:
        yield factory


@asynccontextmanager
async def provisioner(
    sessions: Sessions,
    llm: LLMSettings | None = None,
    *,
    interval: float = 0.0,
    **options: Any,
) -> AsyncIterator[tuple[ModelProvisioner, list[Event]]]:
    events: list[Event] = []

    async def record(kind: EventKind, task: ProvisionTask) -> None:
        events.append((kind, task.snapshot()))

    async with anyio.create_task_group() as group:
        service = ModelProvisioner(
            group,
            llm or LLMSettings(backend="fake"),
            sessions,
            progress_interval_seconds=interval,
            **options,
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
    async def test_a_pull_reports_byte_progress_then_completes(self, sessions: Sessions) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions) as (service, events):
                job = await service.start(
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

    async def test_a_pulled_model_is_not_pulled_again_unless_forced(
        self, sessions: Sessions
    ) -> None:
        with fake_ollama_store() as store:
            store.pulled.add("tiny:latest")
            async with provisioner(sessions) as (service, _):
                kept = await finished(
                    service,
                    await service.start(
                        {"general": ollama(store, "tiny")}, force=False, profile="p"
                    ),
                )
                assert store.pulls["tiny"] == 0
                assert "Already pulled" in str(kept.tasks["general"].detail)
                await finished(
                    service,
                    await service.start(
                        {"general": ollama(store, "tiny")}, force=True, profile="p"
                    ),
                )
                assert store.pulls["tiny"] == 1

    async def test_a_pull_that_fails_halfway_ends_failed_with_the_reason(
        self, sessions: Sessions
    ) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions) as (service, events):
                job = await finished(
                    service,
                    await service.start(
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

    async def test_an_unknown_model_fails_with_ollamas_reason(self, sessions: Sessions) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions) as (service, _):
                job = await finished(
                    service,
                    await service.start(
                        {"general": ollama(store, "nope:unknown")}, force=False, profile="p"
                    ),
                )
        assert "file does not exist" in str(job.tasks["general"].error)

    async def test_an_unreachable_server_fails_naming_it(self, sessions: Sessions) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        async with provisioner(sessions) as (service, _):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("ollama", url, "m")}, force=False, profile="p"
                ),
            )
        assert "cannot be reached" in str(job.tasks["general"].error)

    async def test_progress_events_are_throttled(self, sessions: Sessions) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions, interval=60.0) as (service, events):
                await finished(
                    service,
                    await service.start(
                        {"general": ollama(store, "tiny")}, force=False, profile="p"
                    ),
                )
        assert [kind for kind, _ in events] == ["started", "progress", "completed"]


class TestJoining:
    async def test_a_second_provision_of_a_running_role_joins_it(self, sessions: Sessions) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()  # every pull waits after its first layer line
            async with provisioner(sessions) as (service, _):
                first = await service.start(
                    {"general": ollama(store, "tiny")}, force=False, profile="p"
                )
                with anyio.fail_after(10):  # until the pull is in flight (held by the gate)
                    while store.pulls["tiny"] == 0:  # noqa: ASYNC110 -- counted by a thread
                        await anyio.sleep(0.01)
                second = await service.start(
                    {"general": ollama(store, "tiny")}, force=True, profile="p"
                )
                assert second.tasks["general"] is first.tasks["general"]
                assert second.joined == {"general"}
                assert first.joined == set()
                assert first.tasks["general"].job_ids == [first.id, second.id]
                store.gate.set()
                await finished(service, second)
                assert first.status == second.status == "completed"
        assert store.pulls["tiny"] == 1

    async def test_roles_on_the_same_model_share_one_task(self, sessions: Sessions) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions) as (service, _):
                job = await service.start(
                    {"general": ollama(store, "tiny"), "coding": ollama(store, "tiny")},
                    force=False,
                    profile="p",
                )
                await finished(service, job)
        assert job.tasks["general"] is job.tasks["coding"]
        assert job.tasks["general"].roles == {"general", "coding"}
        assert store.pulls["tiny"] == 1

    async def test_after_a_pull_ends_a_new_provision_starts_afresh(
        self, sessions: Sessions
    ) -> None:
        with fake_ollama_store() as store:
            async with provisioner(sessions) as (service, _):
                one = await finished(
                    service,
                    await service.start({"general": ollama(store, "t")}, force=True, profile="p"),
                )
                two = await finished(
                    service,
                    await service.start({"general": ollama(store, "t")}, force=True, profile="p"),
                )
        assert one.tasks["general"] is not two.tasks["general"]
        assert store.pulls["t"] == 2


class TestEmbeddedModelFile:
    async def test_the_shipped_gguf_matches_its_pinned_size_and_digest(
        self, sessions: Sessions
    ) -> None:
        path = default_model_path()
        assert path.name in PINNED_MODEL_FILES
        async with provisioner(sessions, LLMSettings(backend="embedded")) as (service, events):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        task = job.tasks["general"]
        assert task.status == "completed", task.error
        assert task.detail == f"{path.name}: size and sha256 match."
        assert task.completed_bytes == task.total_bytes == path.stat().st_size
        assert events[-1][0] == "completed"

    async def test_a_corrupted_copy_fails_on_its_digest(
        self, sessions: Sessions, tmp_path: Path
    ) -> None:
        original = default_model_path()
        copy = tmp_path / original.name
        shutil.copyfile(original, copy)
        with copy.open("r+b") as handle:  # one flipped byte in the middle, same size
            handle.seek(copy.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))
        llm = LLMSettings(backend="embedded", model_path=copy)
        async with provisioner(sessions, llm) as (service, _):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        error = str(job.tasks["general"].error)
        assert job.status == "failed"
        assert PINNED_MODEL_FILES[original.name].sha256 in error
        assert "corrupted" in error

    async def test_a_truncated_copy_fails_on_its_size_before_hashing(
        self, sessions: Sessions, tmp_path: Path
    ) -> None:
        original = default_model_path()
        copy = tmp_path / original.name
        with original.open("rb") as source, copy.open("wb") as target:
            target.write(source.read(1024 * 1024))
        llm = LLMSettings(backend="embedded", model_path=copy)
        async with provisioner(sessions, llm) as (service, _):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        task = job.tasks["general"]
        assert f"is {1024 * 1024} bytes" in str(task.error)
        assert task.completed_bytes == 0

    async def test_a_custom_file_is_checked_against_the_configured_digest(
        self, sessions: Sessions, tmp_path: Path
    ) -> None:
        custom = tmp_path / "custom.gguf"
        custom.write_bytes(b"GGUF" + bytes(100))
        wrong = LLMSettings(backend="embedded", model_path=custom, model_sha256="0" * 64)
        async with provisioner(sessions, wrong) as (service, _):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        assert "0" * 64 + " was expected" in str(job.tasks["general"].error)

    async def test_a_missing_file_fails_naming_it(self, sessions: Sessions, tmp_path: Path) -> None:
        llm = LLMSettings(backend="embedded", model_path=tmp_path / "gone.gguf")
        async with provisioner(sessions, llm) as (service, _):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("embedded", None, None)}, force=False, profile="p"
                ),
            )
        assert "gone.gguf cannot be read" in str(job.tasks["general"].error)


class TestOpenAICompatible:
    async def test_the_real_llama_cpp_server_lists_the_model(
        self, sessions: Sessions, llama_server: LlamaServer
    ) -> None:
        target = Target("openai", llama_server.url + "/v1", ALIAS, llama_server.api_key)
        async with provisioner(sessions) as (service, _):
            job = await finished(
                service, await service.start({"general": target}, force=False, profile="p")
            )
        task = job.tasks["general"]
        assert task.status == "completed", task.error
        assert ALIAS in str(task.detail)

    async def test_a_model_the_server_does_not_list_fails(
        self, sessions: Sessions, llama_server: LlamaServer
    ) -> None:
        target = Target("openai", llama_server.url + "/v1", "not-served", llama_server.api_key)
        async with provisioner(sessions) as (service, _):
            job = await finished(
                service, await service.start({"general": target}, force=False, profile="p")
            )
        assert "'not-served'" in str(job.tasks["general"].error)

    async def test_a_wrong_api_key_fails(
        self, sessions: Sessions, llama_server: LlamaServer
    ) -> None:
        target = Target("openai", llama_server.url + "/v1", ALIAS, "wrong-key")
        async with provisioner(sessions) as (service, _):
            job = await finished(
                service, await service.start({"general": target}, force=False, profile="p")
            )
        task = job.tasks["general"]
        assert task.status == "failed"
        assert "401" in str(task.error)


class TestFake:
    async def test_the_fake_backend_has_nothing_to_provision(self, sessions: Sessions) -> None:
        async with provisioner(sessions) as (service, events):
            job = await finished(
                service,
                await service.start(
                    {"general": Target("fake", None, "fake-echo")}, force=False, profile="p"
                ),
            )
        assert job.status == "completed"
        assert [kind for kind, _ in events] == ["started", "completed"]


async def stored(sessions: Sessions, service: ModelProvisioner, job_id: str) -> JobReport:
    async with sessions() as db:
        return await service.report(db, job_id)


async def stored_when(
    sessions: Sessions,
    service: ModelProvisioner,
    job_id: str,
    condition: Callable[[JobReport], bool],
) -> JobReport:
    with anyio.fail_after(10):
        # Polled, as a client on another replica would: the database has no event to await.
        while not condition(report := await stored(sessions, service, job_id)):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return report


async def task_row(sessions: Sessions, task: ProvisionTask) -> ProvisioningTask | None:
    async with sessions() as db:
        return await db.get(ProvisioningTask, uuid.UUID(task.id))


async def left_behind(
    sessions: Sessions,
    *,
    created: timedelta,
    updated: timedelta,
    status: str = "running",
    replica: str = "gone-host:4242",
) -> tuple[str, uuid.UUID]:
    """A job with one task as a replica left it ``created``/``updated`` ago (a finished
    task's last update is its end). Returns the job's id and the task's."""
    now = utcnow()
    job_id, task_id = uuid.uuid4(), uuid.uuid4()
    async with sessions() as db:
        await ProvisioningJobRepository(db).add(
            ProvisioningJob(id=job_id, profile="p", force=False, created_at=now - created),
            [
                ProvisioningTask(
                    id=task_id,
                    backend="ollama",
                    model="tiny",
                    status=status,
                    phase="pulling a1a1" if status == "running" else "ready",
                    completed_bytes=10,
                    total_bytes=100,
                    replica=replica,
                    started_at=now - created,
                    finished_at=None if status == "running" else now - updated,
                    updated_at=now - updated,
                )
            ],
            [ProvisioningJobRole(job_id=job_id, role="general", position=0, task_id=task_id)],
        )
        await db.commit()
    return job_id.hex, task_id


class TestStorage:
    async def test_the_stored_job_follows_the_pull_and_ends_as_the_replica_holds_it(
        self, sessions: Sessions
    ) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()
            async with provisioner(sessions, write_interval_seconds=0.05) as (service, _):
                job = await service.start(
                    {"general": ollama(store, "tiny"), "coding": Target("fake", None, "m")},
                    force=False,
                    profile="p",
                )
                # Stored before start returned: any replica can answer at once.
                first = await stored(sessions, service, job.id)
                assert (first.id, first.profile, first.status) == (job.id, "p", "running")
                assert [role.role for role in first.roles] == ["general", "coding"]
                held = await stored_when(
                    sessions, service, job.id, lambda job: job.roles[0].total_bytes is not None
                )
                assert held.roles[0].status == "running"
                assert held.roles[0].phase.startswith("pulling ")
                assert held.roles[0].total_bytes == 3_000_000
                store.gate.set()
                await finished(service, job)
                last = await stored(sessions, service, job.id)
        assert last == job.report()
        assert last.status == "completed"
        assert last.roles[0].completed_bytes == store.total_bytes
        assert last.roles[0].finished_at is not None

    async def test_a_held_pull_is_touched_every_heartbeat_and_stays_running(
        self, sessions: Sessions
    ) -> None:
        with fake_ollama_store() as store:
            store.gate.clear()
            quick = provisioner(sessions, write_interval_seconds=0.05, heartbeat_seconds=0.25)
            async with quick as (service, _):
                job = await service.start(
                    {"general": ollama(store, "tiny")}, force=False, profile="p"
                )
                await stored_when(
                    sessions, service, job.id, lambda job: job.roles[0].total_bytes is not None
                )
                task = job.tasks["general"]
                before = await task_row(sessions, task)
                await anyio.sleep(1.0)  # no progress meanwhile: the pull is held
                after = await task_row(sessions, task)
                assert before is not None
                assert after is not None
                assert after.updated_at > before.updated_at
                assert after.completed_bytes == before.completed_bytes
                # Silent for 0.75 s would mean a stopped replica; the heartbeats say otherwise.
                assert (await stored(sessions, service, job.id)).status == "running"
                store.gate.set()
                await finished(service, job)

    async def test_a_running_task_gone_silent_is_reported_failed_naming_its_replica(
        self, sessions: Sessions
    ) -> None:
        async with provisioner(sessions) as (service, _):
            assert service.silent_after == timedelta(seconds=30)
            dead, dead_task = await left_behind(
                sessions, created=timedelta(minutes=2), updated=timedelta(seconds=31)
            )
            alive, _ = await left_behind(
                sessions, created=timedelta(minutes=2), updated=timedelta(seconds=5)
            )
            reported = await stored(sessions, service, dead)
            still = await stored(sessions, service, alive)
            async with sessions() as db:
                row = await db.get(ProvisioningTask, dead_task)
        role = reported.roles[0]
        assert (reported.status, role.status) == ("failed", "failed")
        assert role.error is not None
        assert "The replica running it (gone-host:4242) stopped" in role.error
        assert row is not None
        assert role.finished_at == row.updated_at
        assert (role.phase, role.completed_bytes) == ("pulling a1a1", 10)  # where it stopped
        assert row.status == "running"  # reported, never overwritten
        assert (still.status, still.roles[0].error) == ("running", None)

    async def test_jobs_are_deleted_an_hour_after_they_end_when_a_job_starts(
        self, sessions: Sessions
    ) -> None:
        hour, minute = timedelta(hours=1), timedelta(minutes=1)
        expired, expired_task = await left_behind(
            sessions, created=hour + 2 * minute, updated=hour + minute, status="completed"
        )
        recent, _ = await left_behind(
            sessions, created=hour + 2 * minute, updated=hour - minute, status="failed"
        )
        long_running, _ = await left_behind(sessions, created=2 * hour, updated=minute / 6)
        dead_long_ago, _ = await left_behind(sessions, created=2 * hour, updated=2 * hour)
        dead_lately, _ = await left_behind(sessions, created=2 * hour, updated=hour - minute)
        async with provisioner(sessions) as (service, _):
            for job_id in (expired, recent, long_running, dead_long_ago, dead_lately):
                await stored(sessions, service, job_id)  # all there until a job starts
            await finished(
                service,
                await service.start(
                    {"general": Target("fake", None, "m")}, force=False, profile="p"
                ),
            )
            for job_id in (expired, dead_long_ago):
                with pytest.raises(NotFound):
                    await stored(sessions, service, job_id)
            for job_id in (recent, long_running, dead_lately):
                await stored(sessions, service, job_id)
        async with sessions() as db:
            assert await db.get(ProvisioningTask, expired_task) is None  # no job points at it

    async def test_a_failed_write_is_logged_never_fails_the_pull_and_is_retried(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="mongars.core.model_provisioning")
        settings = await migrated_settings(tmp_path)
        with fake_ollama_store() as store:
            store.gate.clear()
            async with (
                open_database(settings) as own,
                provisioner(own, write_interval_seconds=0.05) as (service, events),
            ):
                job = await service.start(
                    {"general": ollama(store, "tiny")}, force=False, profile="p"
                )
                task = job.tasks["general"]
                await stored_when(
                    own, service, job.id, lambda job: job.roles[0].total_bytes is not None
                )
                await rename(own, "provisioning_tasks", "elsewhere")  # writes fail from here
                store.gate.set()
                with anyio.fail_after(10):  # the pull ends regardless, its writes logged
                    while task.status == "running" or "not stored" not in caplog.text:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert (task.status, task.completed_bytes) == ("completed", store.total_bytes)
                await rename(own, "elsewhere", "provisioning_tasks")  # the database is back
                await finished(service, job)
                last = await stored(own, service, job.id)
        assert last == job.report()  # the end was written once it could be
        assert last.status == "completed"
        assert events[-1][0] == "completed"
        assert f"provisioning task {task.id}: its state was not stored" in caplog.text


async def rename(sessions: Sessions, table: str, to: str) -> None:
    async with sessions() as db:
        await db.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))
        await db.commit()
