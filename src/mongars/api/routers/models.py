"""Model roles at run time (admin): what serves each role, and switching a role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from mongars.api.dependencies import AdminUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.schemas.models import (
    ModelsResponse,
    RoleAvailability,
    RoleOut,
    RoleParameters,
    RoleUpdate,
)
from mongars.core.llm import BackendHealth, ChatBackend
from mongars.core.model_admin import RoleChoice, known_role, switch_role
from mongars.core.model_roles import ROLES, ModelRoles

router = APIRouter(tags=["models"])


async def _describe(roles: ModelRoles) -> ModelsResponse:
    checked: dict[int, BackendHealth] = {}
    items: list[RoleOut] = []
    for role in ROLES:
        binding = roles.binding(role)
        backend: ChatBackend = binding.backend
        health = checked.get(id(backend))
        if health is None:
            health = checked[id(backend)] = await backend.health()
        breaker = getattr(backend, "breaker", None)
        items.append(
            RoleOut(
                role=role,
                backend=backend.name,
                model=backend.model,
                parameters=RoleParameters(
                    temperature=binding.params.temperature,
                    top_p=binding.params.top_p,
                    max_tokens=binding.params.max_tokens,
                ),
                availability=RoleAvailability(
                    reachable=health.reachable,
                    model_present=health.model_present,
                    detail=health.detail,
                    circuit=str(breaker.state) if breaker is not None else None,
                ),
            )
        )
    return ModelsResponse(roles=items)


@router.get("/api/v1/models", responses=responses(401, 403))
async def list_models(_admin: AdminUser, resources: ResourcesDep) -> ModelsResponse:
    """Each role's backend, model and parameters, with live availability (admin)."""
    return await _describe(resources.roles)


@router.put("/api/v1/models/roles/{role}", responses=responses(401, 403, 422))
async def set_model_role(
    role: Annotated[str, Path(min_length=1, max_length=64)],
    body: RoleUpdate,
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
) -> ModelsResponse:
    """Switch a role's backend and model at run time, after checking the backend is reachable
    and has the model (422 with the reason otherwise); the choice outlives restarts (admin)."""
    choice = RoleChoice(
        role=known_role(role),
        backend=body.backend,
        model=body.model,
        base_url=body.base_url,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
    )
    await switch_role(resources.roles, resources.settings.llm, db, choice)
    return await _describe(resources.roles)
