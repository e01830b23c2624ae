"""The ``mongars`` command: serve, migrate, and manage accounts from the shell."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from mongars.config import Settings
from mongars.core.credentials_policy import check_password, normalize_username
from mongars.core.errors import MongarsError
from mongars.db import migrate as migrations
from mongars.resources import AccountServices, build_account_services, open_database

app = typer.Typer(help="monGARS, a self-hosted conversational-AI gateway.", no_args_is_help=True)
user_app = typer.Typer(help="Create accounts and reset passwords.", no_args_is_help=True)
app.add_typer(user_app, name="user")
console = Console(stderr=True)

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


async def _migrate(settings: Settings) -> str | None:
    from mongars.db.database import create_engine

    engine = create_engine(settings)
    try:
        await migrations.upgrade(engine)
        return await migrations.current_revision(engine)
    finally:
        await engine.dispose()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    revision = asyncio.run(_migrate(settings))
    console.print(f"Database at revision [bold]{revision}[/bold].")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: MONGARS_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: MONGARS_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    migrate_first: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Migrate before serving. Default: yes on SQLite; on PostgreSQL run "
            "`mongars migrate` once per release instead of from every replica.",
        ),
    ] = None,
) -> None:
    """Serve the API (and, later, the web UI) with uvicorn."""
    import uvicorn

    settings = _settings()
    if migrate_first if migrate_first is not None else settings.uses_sqlite:
        asyncio.run(_migrate(settings))
    bind_host = host or settings.host
    bind_port = port or settings.port
    console.print(f"monGARS is serving on [bold]http://{bind_host}:{bind_port}[/bold]")
    uvicorn.run(
        "mongars.app:create_app_from_environment",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
    )


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password(password)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _username(value: str) -> str:
    try:
        return normalize_username(value)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _run_in_unit_of_work(work: Callable[[AccountServices, AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = _settings()
        await _migrate(settings)
        services = build_account_services(settings)
        async with open_database(settings) as sessions, sessions() as db:
            result = await work(services, db)
            await db.commit()
            return result

    try:
        return asyncio.run(run())
    except MongarsError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@user_app.command("create-admin")
def create_admin(name: str, password_stdin: PasswordStdin = False) -> None:
    """Create an administrator (the only way to make the first one)."""
    username, password = _username(name), _read_password(password_stdin)
    _run_in_unit_of_work(
        lambda r, db: r.accounts.create_user(
            db, username=username, password=password, is_admin=True
        )
    )
    console.print(f"Created administrator [bold]{username}[/bold].")


@user_app.command("create")
def create_user(name: str, password_stdin: PasswordStdin = False) -> None:
    """Create an ordinary account (works when registration is closed)."""
    username, password = _username(name), _read_password(password_stdin)
    _run_in_unit_of_work(
        lambda r, db: r.accounts.create_user(db, username=username, password=password)
    )
    console.print(f"Created user [bold]{username}[/bold].")


@user_app.command("set-password")
def set_password(name: str, password_stdin: PasswordStdin = False) -> None:
    """Reset a password; the user's existing tokens stop working."""
    username, password = _username(name), _read_password(password_stdin)
    _run_in_unit_of_work(
        lambda r, db: r.accounts.set_password(db, username=username, password=password)
    )
    console.print(f"Password set for [bold]{username}[/bold]; their sessions were ended.")


def main() -> None:
    app()
