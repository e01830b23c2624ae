"""The ``mongars`` command: serve, migrate, and manage accounts from the shell."""

from __future__ import annotations

import asyncio
import logging.config
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from mongars import cli_models, web_cli
from mongars.config import Settings
from mongars.core.credentials_policy import check_password, normalize_username
from mongars.core.errors import MongarsError
from mongars.db import migrate as migrations
from mongars.observability.logs import logging_config
from mongars.resources import AccountServices, build_account_services, open_database
from mongars.uvicorn_options import uvicorn_options

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
    """Serve the API and the web UI with uvicorn."""
    import uvicorn

    settings = _settings()
    # JSON lines or a readable console (MONGARS_LOG_FORMAT), for uvicorn's loggers too; its
    # access log is off: mongars.access replaces it without raw paths or query strings.
    log_config = logging_config(settings)
    logging.config.dictConfig(log_config)
    if migrate_first if migrate_first is not None else settings.uses_sqlite:
        asyncio.run(_migrate(settings))
    bind_host = host or settings.host
    bind_port = port or settings.port
    if settings.effective_log_format == "json":
        logging.getLogger("mongars").info("serving on http://%s:%s", bind_host, bind_port)
    else:
        console.print(f"monGARS is serving on [bold]http://{bind_host}:{bind_port}[/bold]")
    uvicorn.run(
        "mongars.app:create_app_from_environment",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        **uvicorn_options(settings, log_config),
        # Chat frames are small; per-message deflate cost ~45 KB and a zlib pass per socket
        # (measured by bench/ws.py) for little gain.
        ws_per_message_deflate=False,
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


rag_app = typer.Typer(help="Documents for retrieval (RAG).", no_args_is_help=True)
app.add_typer(rag_app, name="rag")
app.command("web")(web_cli.web)
app.add_typer(cli_models.models_app, name="models")


def _files_under(paths: list[Path]) -> list[Path]:
    from mongars.core.rag.extract import MIME_BY_SUFFIX

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MIME_BY_SUFFIX
            )
        elif path.is_file():
            found.append(path)
        else:
            console.print(f"[red]No such file or directory:[/red] {path}")
            raise typer.Exit(2)
    return found


@rag_app.command("ingest")
def rag_ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, or folders to read recursively.")],
    user: Annotated[str, typer.Option("--user", help="The owner of the documents.")],
    collection: Annotated[str, typer.Option("--collection", help="Collection name.")] = "default",
    shared: Annotated[
        bool, typer.Option("--shared", help="Readable by everyone (the owner must be an admin).")
    ] = False,
) -> None:
    """Ingest documents (.txt, .md, .pdf, .html): each in its own transaction."""
    # Loads only the embedding model: no chat model, no server.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from mongars.core.rag.embedder import Embedder
    from mongars.core.rag.service import RagService
    from mongars.db.repositories.users import UserRepository

    username = _username(user)
    files = _files_under(paths)
    settings = _settings()
    outcome = {"ingested": 0, "replaced": 0, "unchanged": 0, "failed": 0, "chunks": 0}

    async def run() -> None:
        await _migrate(settings)
        rag = RagService(Embedder(threads=settings.rag.embedder_threads), settings.rag)
        async with open_database(settings) as sessions:
            async with sessions() as db:
                owner = await UserRepository(db).get_by_username(username)
            if owner is None:
                console.print(f"[red]No such user:[/red] {username}")
                raise typer.Exit(1)
            columns = (*Progress.get_default_columns()[:-1], MofNCompleteColumn())
            with Progress(
                *columns, BarColumn(bar_width=None), TimeElapsedColumn(), console=console
            ) as progress:
                task = progress.add_task("Ingesting", total=len(files))
                for file in files:
                    progress.update(task, description=file.name[:40])
                    try:
                        async with sessions() as db:
                            result = await rag.ingest(
                                db,
                                owner,
                                filename=file.as_posix(),
                                data=file.read_bytes(),
                                collection=collection,
                                shared=shared,
                            )
                            await db.commit()
                    except MongarsError as exc:
                        outcome["failed"] += 1
                        progress.console.print(f"[red]skipped[/red] {exc.detail}")
                    else:
                        key = (
                            "unchanged"
                            if result.deduplicated
                            else "replaced"
                            if result.replaced
                            else "ingested"
                        )
                        outcome[key] += 1
                        if not result.deduplicated:
                            outcome["chunks"] += result.document.chunk_count
                    progress.advance(task)

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    console.print(
        f"{outcome['ingested']} new, {outcome['replaced']} replaced, "
        f"{outcome['unchanged']} unchanged, {outcome['failed']} failed; "
        f"{outcome['chunks']} chunks in {elapsed:.1f} s (collection [bold]{collection}[/bold])."
    )
    if outcome["failed"]:
        raise typer.Exit(1)


def main() -> None:
    app()
