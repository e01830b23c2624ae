"""``mongars models``: list the roles, provision their models, switch a role.

These commands act locally, like ``mongars user``: they read the same settings (and profiles
file) as the server, open the database directly and talk to the model backends themselves. No
running server or admin token is needed. A ``set-role`` made here is stored in the database and
applied by a server at its next start; to switch a running server at once, use ``PUT
/api/v1/models/roles/{role}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mongars.config import BackendKind, Settings
from mongars.core.errors import MongarsError
from mongars.core.model_admin import (
    RoleChoice,
    apply_persisted_roles,
    known_profile,
    known_role,
    switch_role,
)
from mongars.core.model_profiles import ModelProfiles, ProfileError, load_profiles
from mongars.core.model_provisioning import (
    EventKind,
    ModelProvisioner,
    ProvisionTask,
    targets_for,
)
from mongars.core.model_roles import ROLES, ModelRoles
from mongars.db import migrate as migrations
from mongars.db.database import create_engine
from mongars.resources import open_database

models_app = typer.Typer(
    help="Model roles and profiles: list them, provision their models, switch a role. Acts "
    "locally on the database and the backends, like `mongars user` (no server needed); a "
    "set-role made here reaches a running server at its next start.",
    no_args_is_help=True,
)
out = Console()
console = Console(stderr=True)


def _load() -> tuple[Settings, ModelProfiles]:
    try:
        settings = Settings()
        return settings, load_profiles(settings.llm)
    except ProfileError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


@asynccontextmanager
async def _served_roles(
    settings: Settings, profiles: ModelProfiles
) -> AsyncIterator[tuple[ModelRoles, async_sessionmaker[AsyncSession]]]:
    """The roles as a server started now would serve them: profile, then stored choices."""
    engine = create_engine(settings)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    async with open_database(settings) as sessions:
        roles = ModelRoles.from_settings(profiles.llm)
        try:
            await apply_persisted_roles(roles, profiles.llm, sessions)
            yield roles, sessions
        finally:
            await roles.aclose()


def _fail(exc: MongarsError) -> typer.Exit:
    console.print(f"[red]{exc.detail}[/red]")
    return typer.Exit(1)


@models_app.command("list")
def list_models() -> None:
    """Show the profiles, and each role's backend, model, parameters and live availability."""
    settings, profiles = _load()

    async def run() -> Table:
        table = Table("role", "backend", "model", "parameters", "available", "detail")
        async with _served_roles(settings, profiles) as (roles, _):
            for role in ROLES:
                binding = roles.binding(role)
                health = await binding.backend.health()
                params = binding.params
                available = "yes" if health.reachable and health.model_present else "no"
                table.add_row(
                    role,
                    binding.backend.name,
                    binding.backend.model,
                    f"temperature={params.temperature} top_p={params.top_p} "
                    f"max_tokens={params.max_tokens}",
                    available,
                    health.detail,
                )
        return table

    table = asyncio.run(run())
    for name, profile in profiles.profiles.items():
        marker = "*" if name == profiles.active else " "
        out.print(f"{marker} profile {name}: {profile.description}", highlight=False)
    out.print(table)


RoleOption = Annotated[
    list[str] | None,
    typer.Option("--role", "-r", help="A role to provision (repeat it); default: every role."),
]


@models_app.command("provision")
def provision(
    role: RoleOption = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Provision the roles as this profile maps them (to prepare a switch)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Pull even when the model is already there.")] = False,
) -> None:
    """Pull or check each role's model, with progress bars.

    Ollama models are pulled, the embedded model's file is checked (size, sha256), an
    OpenAI-compatible server must list the model. Exits 1 when any role failed.
    """
    settings, profiles = _load()

    async def run() -> list[ProvisionTask]:
        try:
            chosen = known_profile(profiles, profile) if profile else profiles.active
            wanted = [known_role(name) for name in role] if role else None
        except MongarsError as exc:
            raise _fail(exc) from None
        async with _served_roles(settings, profiles) as (roles, sessions):
            targets = targets_for(roles, profiles, wanted=wanted, profile=chosen)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[phase]}"),
            )
            with Progress(*columns, console=console) as bars:
                shown: dict[str, TaskID] = {}

                async def show(kind: EventKind, task: ProvisionTask) -> None:
                    if task.id not in shown:
                        label = f"{','.join(sorted(task.roles))}: {task.target.model or ''}"
                        shown[task.id] = bars.add_task(label, total=None, phase="")
                    phase = {"completed": "done", "failed": "failed"}.get(kind, task.phase)
                    bars.update(
                        shown[task.id],
                        completed=task.completed_bytes,
                        total=task.total_bytes,
                        phase=phase,
                    )

                async with anyio.create_task_group() as group:
                    service = ModelProvisioner(
                        group, profiles.llm, sessions, progress_interval_seconds=0.1
                    )
                    service.listeners.append(show)
                    # Stored like a server's jobs: GET /api/v1/models/jobs/{id} shows it too.
                    job = await service.start(targets, force=force, profile=chosen)
                    await service.wait(job)
            return list({task.id: task for task in job.tasks.values()}.values())

    tasks = asyncio.run(run())
    for task in tasks:
        roles = ", ".join(sorted(task.roles))
        if task.status == "completed":
            out.print(f"[green]ok[/green] {roles}: {task.detail}", highlight=False)
        else:
            out.print(f"[red]failed[/red] {roles}: {task.error}", highlight=False)
    if any(task.status == "failed" for task in tasks):
        raise typer.Exit(1)


@models_app.command("set-role")
def set_role(
    role: Annotated[str, typer.Argument(help="general, coding, reasoning or embedding.")],
    backend: Annotated[BackendKind, typer.Option(help="The backend kind.")],
    model: Annotated[str | None, typer.Option(help="The model name.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="A server URL the settings already name.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, max=32768)] = None,
) -> None:
    """Switch a role to another backend and model, checked live first.

    The backend must be reachable and have the model. The choice is stored in the database: a
    running server applies it at its next start (PUT /api/v1/models/roles/{role} switches a
    running server at once).
    """
    settings, profiles = _load()

    async def run() -> None:
        async with _served_roles(settings, profiles) as (roles, sessions):
            choice = RoleChoice(
                role=known_role(role),
                backend=backend,
                model=model,
                base_url=base_url,
                temperature=temperature,
                max_tokens=max_tokens,
            )
            async with sessions() as db:
                await switch_role(roles, profiles.llm, db, choice)
                await db.commit()
            served = roles.binding(choice.role).backend
            out.print(f"Role {choice.role} now served by {served.name} {served.model}.")

    try:
        asyncio.run(run())
    except MongarsError as exc:
        raise _fail(exc) from None
