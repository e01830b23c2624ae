"""Large ingests in the background, with progress.

The file is checked, extracted and chunked during the request (so a bad file still gets its
4xx at once); embedding and storing run as a job in the app's task group, in a transaction of
their own, and ``get`` reports chunks embedded out of chunks in all. Jobs are kept in the
memory of the replica that runs them for ``retention_seconds`` after they end: poll the
replica that accepted the upload (the ``Location`` it returned), or list the documents, which
any replica can do.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from anyio.abc import TaskGroup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mongars.core.errors import MongarsError, NotFound
from mongars.core.rag.service import PreparedIngest, RagService
from mongars.db.base import utcnow
from mongars.db.tables import User

logger = logging.getLogger(__name__)

JobStatus = Literal["running", "done", "failed"]


@dataclass
class IngestJob:
    id: str
    owner_id: uuid.UUID
    filename: str
    collection: str
    chunks_total: int
    chunks_embedded: int = 0
    status: JobStatus = "running"
    document_id: uuid.UUID | None = None
    replaced: bool = False
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None

    def progress(self, embedded: int, total: int) -> None:
        self.chunks_embedded, self.chunks_total = embedded, total


class IngestJobs:
    def __init__(
        self,
        task_group: TaskGroup,
        sessions: async_sessionmaker[AsyncSession],
        rag: RagService,
        *,
        retention_seconds: float = 3600.0,
    ) -> None:
        self._task_group = task_group
        self._sessions = sessions
        self._rag = rag
        self._retention = retention_seconds
        self._jobs: dict[str, IngestJob] = {}
        self._ended: deque[tuple[float, str]] = deque()

    def start(self, user: User, prepared: PreparedIngest) -> IngestJob:
        self._sweep()
        job = IngestJob(
            id=uuid.uuid4().hex,
            owner_id=user.id,
            filename=prepared.filename,
            collection=prepared.collection,
            chunks_total=len(prepared.chunks),
        )
        self._jobs[job.id] = job
        self._task_group.start_soon(self._run, job, user.id, prepared, name=f"ingest {job.id}")
        return job

    def get(self, job_id: str, owner_id: uuid.UUID) -> IngestJob:
        job = self._jobs.get(job_id)
        if job is None or job.owner_id != owner_id:
            raise NotFound("No such ingest job, or it has expired.", code="ingest_job_not_found")
        return job

    async def _run(self, job: IngestJob, user_id: uuid.UUID, prepared: PreparedIngest) -> None:
        try:
            async with self._sessions() as db:
                user = await db.get(User, user_id)
                if user is None:
                    raise NotFound("The uploader's account is gone.", code="user_not_found")
                result = await self._rag.store_ingest(db, user, prepared, progress=job.progress)
                await db.commit()
            job.document_id, job.replaced, job.status = result.document.id, result.replaced, "done"
        except MongarsError as exc:
            job.status, job.error = "failed", exc.detail
        except Exception:
            logger.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", "The document could not be stored."
        finally:
            job.finished_at = utcnow()
            self._ended.append((time.monotonic(), job.id))

    def _sweep(self) -> None:
        horizon = time.monotonic() - self._retention
        while self._ended and self._ended[0][0] < horizon:
            self._jobs.pop(self._ended.popleft()[1], None)
