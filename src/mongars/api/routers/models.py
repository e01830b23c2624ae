"""Model management (admin): what serves each role, switching a role, profiles, provisioning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from mongars.api.dependencies import AdminUser, DbSession, ResourcesDep
from mongars.api.errors import responses
from mongars.api.schemas.models import (
    ModelsResponse,
    ProfileOut,
    ProvisionJobOut,
    ProvisionRequest,
    RoleAvailability,
    RoleOut,
    RoleParameters,
    RoleUpdate,
)
from mongars.core.llm import BackendHealth, ChatBackend
from mongars.core.model_admin import RoleChoice, known_profile, known_role, switch_role
from mongars.core.model_profiles import ModelProfiles
from mongars.core.model_provisioning import JobReport, targets_for
from mongars.core.model_roles import ROLES, ModelRoles

router = APIRouter(tags=["models"])


async def _describe(roles: ModelRoles, profiles: ModelProfiles) -> ModelsResponse:
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
    return ModelsResponse(
        active_profile=profiles.active,
        profiles=[
            ProfileOut(name=name, description=profile.description)
            for name, profile in profiles.profiles.items()
        ],
        roles=items,
    )


def _job_out(job: JobReport) -> ProvisionJobOut:
    # JobReport and RoleReport carry exactly the response's fields.
    return ProvisionJobOut.model_validate(job, from_attributes=True)


@router.get("/api/v1/models", responses=responses(401, 403))
async def list_models(_admin: AdminUser, resources: ResourcesDep) -> ModelsResponse:
    """The active profile, every profile, and each role's backend, model and parameters with
    live availability (admin)."""
    return await _describe(resources.roles, resources.profiles)


@router.put("/api/v1/models/roles/{role}", responses=responses(401, 403, 422))
async def set_model_role(
    role: Annotated[str, Path(min_length=1, max_length=64)],
    body: RoleUpdate,
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
) -> ModelsResponse:
    """Switch a role's backend and model at run time, after checking the backend is reachable
    and has the model (422 with the reason otherwise); the choice outlives restarts and lays
    over the active profile (admin)."""
    choice = RoleChoice(
        role=known_role(role),
        backend=body.backend,
        model=body.model,
        base_url=body.base_url,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
    )
    await switch_role(resources.roles, resources.profiles.llm, db, choice)
    return await _describe(resources.roles, resources.profiles)


@router.post(
    "/api/v1/models/provision",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(401, 403, 422),
)
async def provision_models(
    body: ProvisionRequest,
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
    response: Response,
) -> ProvisionJobOut:
    """Start pulling or checking the roles' models in the background: 202 with a job to poll
    (admins' sockets also get ``model.provision.*`` events). A role already being provisioned
    joins the running task instead of starting another (admin)."""
    profiles = resources.profiles
    profile = known_profile(profiles, body.profile) if body.profile else profiles.active
    wanted = [known_role(name) for name in body.roles] if body.roles else None
    targets = targets_for(resources.roles, profiles, wanted=wanted, profile=profile)
    # The job is stored in a transaction of its own, committed before the 202 so that every
    # replica can answer for it. This request's session only read (who asks): end it first,
    # as SQLite has one connection per process and the session holds it.
    await db.commit()
    job = await resources.provisioning.start(targets, force=body.force, profile=profile)
    response.headers["Location"] = f"/api/v1/models/jobs/{job.id}"
    return _job_out(job.report())


@router.get("/api/v1/models/jobs/{job_id}", responses=responses(401, 403, 404))
async def get_provision_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)],
    _admin: AdminUser,
    db: DbSession,
    resources: ResourcesDep,
) -> ProvisionJobOut:
    """A provisioning job's per-role progress and outcome, from any replica (admin)."""
    return _job_out(await resources.provisioning.report(db, job_id))
