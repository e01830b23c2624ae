"""Model roles, profiles and provisioning jobs as the admin API shows and changes them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mongars.config import BackendKind


class RoleParameters(BaseModel):
    temperature: float
    top_p: float
    max_tokens: int


class RoleAvailability(BaseModel):
    reachable: bool
    model_present: bool | None = Field(description="null when the backend could not be asked")
    detail: str
    circuit: str | None = Field(
        description="closed, open or half_open; null for backends without a circuit breaker"
    )


class RoleOut(BaseModel):
    role: str
    backend: str
    model: str
    parameters: RoleParameters
    availability: RoleAvailability


class ProfileOut(BaseModel):
    name: str
    description: str


class ModelsResponse(BaseModel):
    active_profile: str = Field(
        description='"settings" when no profiles file is configured (the MONGARS_LLM__* roles)'
    )
    profiles: list[ProfileOut]
    roles: list[RoleOut]


class ProvisionRequest(BaseModel):
    roles: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Roles to provision; default: every role",
    )
    profile: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Provision the roles as this profile maps them (to prepare a switch); "
        "default: as they are served now",
    )
    force: bool = Field(default=False, description="Pull even when the model is already there")


class RoleProvisionOut(BaseModel):
    role: str
    backend: str
    model: str | None
    status: Literal["running", "completed", "failed"]
    phase: str = Field(description='e.g. "pulling manifest", "verifying sha256 digest", "ready"')
    completed_bytes: int
    total_bytes: int | None = Field(description="null until the backend announces a size")
    detail: str | None
    error: str | None = Field(description="why it failed")
    joined: bool = Field(description="true when this job joined a task another job started")
    started_at: datetime
    finished_at: datetime | None


class ProvisionJobOut(BaseModel):
    id: str
    profile: str
    force: bool
    status: Literal["running", "completed", "failed"]
    created_at: datetime
    roles: list[RoleProvisionOut]


class RoleUpdate(BaseModel):
    """API keys always come from the settings; ``base_url`` must be one the settings name."""

    backend: BackendKind
    model: str | None = Field(default=None, min_length=1, max_length=256)
    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
