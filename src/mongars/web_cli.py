"""``mongars web``: the chat UI alone, in front of a monGARS API running elsewhere."""

from __future__ import annotations

import logging.config
from typing import Annotated

import typer
from rich.console import Console

from mongars.config import Settings
from mongars.observability.logs import logging_config
from mongars.uvicorn_options import uvicorn_options

console = Console(stderr=True)


def web(
    api_url: Annotated[
        str, typer.Option("--api-url", help="The API's base URL, e.g. https://api.example.com.")
    ],
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: MONGARS_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: MONGARS_PORT).")] = None,
) -> None:
    """Serve only the web UI, against the API at --api-url (which must list this UI's origin
    in MONGARS_HTTP__ALLOWED_ORIGINS, for the page's WebSocket)."""
    import uvicorn

    from mongars.web_mount import standalone_web_app

    if not api_url.startswith(("http://", "https://")):
        console.print(f"[red]--api-url must start with http:// or https://, not {api_url!r}[/red]")
        raise typer.Exit(2)
    try:
        settings = Settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None
    log_config = logging_config(settings)
    logging.config.dictConfig(log_config)
    bind_host, bind_port = host or settings.host, port or settings.port
    console.print(
        f"monGARS web UI on [bold]http://{bind_host}:{bind_port}[/bold], API at {api_url}"
    )
    uvicorn.run(
        standalone_web_app(settings, api_url.rstrip("/")),
        host=bind_host,
        port=bind_port,
        **uvicorn_options(settings, log_config),
    )
