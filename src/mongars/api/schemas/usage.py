from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from mongars.core.quotas import Allowance, UsageReport


class AllowanceOut(BaseModel):
    used: int
    limit: int | None = Field(description="The day's allowance; null: unlimited.")
    remaining: int | None = Field(description="null: unlimited.")

    @classmethod
    def of(cls, allowance: Allowance) -> AllowanceOut:
        return cls(used=allowance.used, limit=allowance.limit, remaining=allowance.remaining)


class UsageOut(BaseModel):
    day: date = Field(description="The UTC day these counts are for.")
    resets_at: datetime = Field(description="When the counts start again (midnight UTC).")
    messages: AllowanceOut = Field(description="Chat turns.")
    tokens: AllowanceOut = Field(description="Prompt and completion tokens.")

    @classmethod
    def of(cls, report: UsageReport) -> UsageOut:
        return cls(
            day=report.day,
            resets_at=report.resets_at,
            messages=AllowanceOut.of(report.messages),
            tokens=AllowanceOut.of(report.tokens),
        )


class QuotaOverrides(BaseModel):
    """One user's own daily allowances. null: the server default; 0: unlimited."""

    model_config = ConfigDict(extra="forbid")

    daily_messages: int | None = Field(default=None, ge=0, le=2**31 - 1)
    daily_tokens: int | None = Field(default=None, ge=0, le=2**53)


class UserUsageOut(BaseModel):
    username: str
    overrides: QuotaOverrides
    usage: UsageOut

    @classmethod
    def of(cls, username: str, report: UsageReport) -> UserUsageOut:
        return cls(
            username=username,
            overrides=QuotaOverrides(
                daily_messages=report.override_messages, daily_tokens=report.override_tokens
            ),
            usage=UsageOut.of(report),
        )
