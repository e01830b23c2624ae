"""Per-user daily allowances: messages and tokens per UTC day.

Checked before a turn runs (429 ``quota_exceeded``, ``Retry-After`` until the next UTC
midnight): a chat turn's in the transaction that stores its question, before anything is
written (``check_turn``); an embeddings request's by ``enforce``, which refuses it once the
allowance is used up, though embeddings are not counted against it. Counted when a turn
finishes, in the transaction that stores its answer (tokens are only known then). A user's
turns already in flight when the allowance runs out still finish, so the last ones can
overshoot it by what was in flight; the per-minute chat limit bounds that. Turns that produced
nothing (status ``error``: the backend never answered) are not counted.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.config import QuotaSettings
from mongars.core.errors import RateLimited
from mongars.core.ratelimit.rejects import RejectLog
from mongars.db.base import utcnow
from mongars.db.repositories.usage import Standing, UsageRepository, add_usage, standing_in
from mongars.db.tables import User

logger = logging.getLogger(__name__)


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"
    default_detail = "Your daily allowance is used up."


@dataclass(frozen=True, slots=True)
class Allowance:
    used: int
    # None: unlimited.
    limit: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit


@dataclass(frozen=True, slots=True)
class UsageReport:
    day: date
    resets_at: datetime
    messages: Allowance
    tokens: Allowance
    # The user's own overrides (None: the default applies; 0: unlimited).
    override_messages: int | None
    override_tokens: int | None


def _effective(override: int | None, default: int) -> int | None:
    value = default if override is None else override
    return value or None  # 0 means unlimited


class QuotaService:
    def __init__(
        self,
        settings: QuotaSettings,
        rejects: RejectLog,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.rejects = rejects
        self.clock = clock

    async def report(self, db: AsyncSession, user_id: uuid.UUID) -> UsageReport:
        """Today's use and limits (UTC day)."""
        now = self.clock()
        standing = await UsageRepository(db).standing(user_id, now.date())
        return self._report(standing, now)

    async def enforce(self, db: AsyncSession, user: User) -> UsageReport:
        """Refuse a new request once either daily allowance is used up."""
        report = await self.report(db, user.id)
        self._refuse_if_exhausted(report, user.id)
        return report

    def check_turn(self, connection: Connection, user_id: uuid.UUID) -> None:
        """``enforce`` in the caller's transaction (``ChatService.admission``, run inside
        ``database.commit_with``: possibly on the database's thread)."""
        now = self.clock()
        self._refuse_if_exhausted(
            self._report(standing_in(connection, user_id, now.date()), now), user_id
        )

    def _refuse_if_exhausted(self, report: UsageReport, user_id: uuid.UUID) -> None:
        exhausted = [
            name
            for name, allowance in (("messages", report.messages), ("tokens", report.tokens))
            if allowance.exhausted
        ]
        if exhausted:
            wait = max(1, math.ceil((report.resets_at - self.clock()).total_seconds()))
            self.rejects.record("chat", "quota_exceeded", str(user_id), wait)
            raise QuotaExceeded(
                f"Your daily allowance of {' and '.join(exhausted)} is used up; it resets at "
                f"{report.resets_at.isoformat()} (midnight UTC).",
                headers={"Retry-After": str(wait)},
            )

    async def set_override(
        self,
        db: AsyncSession,
        user: User,
        *,
        daily_messages: int | None,
        daily_tokens: int | None,
    ) -> UsageReport:
        await UsageRepository(db).set_override(
            user.id, daily_messages=daily_messages, daily_tokens=daily_tokens, now=self.clock()
        )
        return await self.report(db, user.id)

    def count_turn(
        self, connection: Connection, user_id: uuid.UUID, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Count one answered turn in the caller's transaction (``ChatService.accounting``,
        run inside ``database.commit_with``: possibly on the database's thread)."""
        add_usage(
            connection,
            user_id,
            self.clock().date(),
            messages=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def _report(self, standing: Standing, now: datetime) -> UsageReport:
        today = now.date()
        return UsageReport(
            day=today,
            resets_at=datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC),
            messages=Allowance(
                standing.messages,
                _effective(standing.daily_messages, self.settings.daily_messages),
            ),
            tokens=Allowance(
                standing.tokens, _effective(standing.daily_tokens, self.settings.daily_tokens)
            ),
            override_messages=standing.daily_messages,
            override_tokens=standing.daily_tokens,
        )
