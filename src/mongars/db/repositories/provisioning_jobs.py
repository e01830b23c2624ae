"""Model provisioning jobs, their roles and the tasks doing the work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.db.tables import ProvisioningJob, ProvisioningJobRole, ProvisioningTask

RUNNING = "running"


@dataclass(frozen=True, slots=True)
class TaskState:
    """What the replica running a task writes as it goes."""

    status: str
    phase: str
    completed_bytes: int
    total_bytes: int | None
    detail: str | None
    error: str | None
    finished_at: datetime | None

    def columns(self) -> dict[str, Any]:
        """As ``provisioning_tasks`` column values (the fields are named after the columns)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True, slots=True)
class StoredJob:
    job: ProvisioningJob
    # In the order the roles were asked in.
    roles: list[tuple[ProvisioningJobRole, ProvisioningTask]]


class ProvisioningJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        job: ProvisioningJob,
        tasks: Sequence[ProvisioningTask],
        roles: Sequence[ProvisioningJobRole],
    ) -> None:
        """A new job with its new tasks; its roles may also point at tasks already stored."""
        # Two flushes: the roles' foreign keys need the job and task rows inserted first.
        self.session.add(job)
        self.session.add_all(tasks)
        await self.session.flush()
        self.session.add_all(roles)
        await self.session.flush()

    async def update_task(self, task_id: uuid.UUID, state: TaskState, when: datetime) -> bool:
        """Write a task's state, only while its row says running: once an end is stored, a
        write of an earlier state that lands late cannot undo it. False when nothing matched."""
        result = await self.session.execute(
            update(ProvisioningTask)
            .where(ProvisioningTask.id == task_id, ProvisioningTask.status == RUNNING)
            .values(**state.columns(), updated_at=when)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, job_id: uuid.UUID) -> StoredJob | None:
        job = await self.session.get(ProvisioningJob, job_id)
        if job is None:
            return None
        result = await self.session.execute(
            select(ProvisioningJobRole, ProvisioningTask)
            .join(ProvisioningTask, ProvisioningTask.id == ProvisioningJobRole.task_id)
            .where(ProvisioningJobRole.job_id == job_id)
            .order_by(ProvisioningJobRole.position)
        )
        return StoredJob(job=job, roles=[(role, task) for role, task in result])

    async def delete_ended(self, ended_before: datetime, silent_since: datetime) -> int:
        """Delete the jobs created and ended before ``ended_before``, then the tasks no job
        points at any more. A task still running counts as ended when its row has been silent
        since ``silent_since`` (its replica stopped). Returns how many jobs went."""
        still_wanted = (
            exists()
            .where(
                ProvisioningJobRole.job_id == ProvisioningJob.id,
                ProvisioningTask.id == ProvisioningJobRole.task_id,
            )
            .where(
                or_(
                    and_(
                        ProvisioningTask.status != RUNNING,
                        ProvisioningTask.finished_at >= ended_before,
                    ),
                    and_(
                        ProvisioningTask.status == RUNNING,
                        ProvisioningTask.updated_at >= silent_since,
                    ),
                )
            )
        )
        jobs = await self.session.execute(
            delete(ProvisioningJob)
            .where(ProvisioningJob.created_at < ended_before, ~still_wanted)
            .execution_options(synchronize_session=False)
        )
        pointed_at = exists().where(ProvisioningJobRole.task_id == ProvisioningTask.id)
        await self.session.execute(
            delete(ProvisioningTask)
            .where(
                ~pointed_at,
                or_(
                    ProvisioningTask.status != RUNNING,
                    ProvisioningTask.updated_at < silent_since,
                ),
            )
            .execution_options(synchronize_session=False)
        )
        return int(jobs.rowcount)  # type: ignore[attr-defined]
