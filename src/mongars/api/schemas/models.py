"""Model roles as the admin API shows and changes them."""

from __future__ import annotations

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


class ModelsResponse(BaseModel):
    roles: list[RoleOut]


class RoleUpdate(BaseModel):
    """API keys always come from the settings; ``base_url`` must be one the settings name."""

    backend: BackendKind
    model: str | None = Field(default=None, min_length=1, max_length=256)
    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
