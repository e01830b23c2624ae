"""A reference client: chat with monGARS in the terminal, answers streamed token by token.

    python examples/python/chat_cli.py --url http://127.0.0.1:8000 --username ada
    MONGARS_API_KEY=mg_... python examples/python/chat_cli.py

Type a message and press Enter. Commands: /new (start a new conversation), /history (your
last turns), /quit. ``--transport ws`` streams over the WebSocket channel instead of SSE.
Needs the SDK (``pip install mongars-sdk``), typer and rich.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from mongars_sdk import Client, MongarsError, StreamError, WebSocketSession
from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
app = typer.Typer(add_completion=False)


def stream_over_sse(client: Client, message: str, conversation_id: str | None) -> str | None:
    with client.chat_stream(message, conversation_id=conversation_id) as stream:
        for event in stream:
            if event.type == "delta":
                out.print(event.text, end="", markup=False)
    out.print()
    return str(stream.result.conversation_id) if stream.result else conversation_id


def chat_loop(client: Client, transport: Literal["sse", "ws"]) -> None:
    conversation_id: str | None = None
    session = client.websocket() if transport == "ws" else None
    if session is not None:
        session.connect()
    try:
        while True:
            try:
                line = input("you> ") if out.is_terminal else input()
            except EOFError:
                break
            message = line.strip()
            if not message:
                continue
            if message == "/quit":
                break
            if message == "/new":
                conversation_id = None
                out.print("[dim]New conversation.[/dim]")
                continue
            if message == "/history":
                for turn in client.history(limit=5).items:
                    out.print(f"[bold]{turn.query}[/bold] -> {turn.response}", markup=True)
                continue
            try:
                if session is None:
                    conversation_id = stream_over_sse(client, message, conversation_id)
                else:
                    conversation_id = stream_over_ws(session, message, conversation_id)
            except MongarsError as exc:
                err.print(f"[red]error:[/red] {exc}")
    finally:
        if session is not None:
            session.close()


def stream_over_ws(
    session: WebSocketSession, message: str, conversation_id: str | None
) -> str | None:
    ref = session.send(message, conversation_id=conversation_id)
    stream_id: str | None = None
    while True:
        frame = session.recv(timeout=120)
        if frame.type == "ack" and frame.data.get("ref") == ref:
            stream_id = frame.stream_id
        elif frame.stream_id is not None and frame.stream_id == stream_id:
            if frame.type == "chat.delta":
                out.print(frame.text, end="", markup=False)
            elif frame.type == "chat.done":
                out.print()
                return str(frame.data["conversation_id"])
            elif frame.type == "chat.error":
                raise StreamError(str(frame.data["code"]), str(frame.data.get("detail", "")))
        elif frame.type == "chat.error" and frame.data.get("ref") == ref:
            raise StreamError(str(frame.data["code"]), str(frame.data.get("detail", "")))


@app.command()
def main(
    url: Annotated[str, typer.Option(envvar="MONGARS_URL")] = "http://127.0.0.1:8000",
    username: Annotated[str | None, typer.Option(envvar="MONGARS_USERNAME")] = None,
    password: Annotated[str | None, typer.Option(envvar="MONGARS_PASSWORD", hidden=True)] = None,
    api_key: Annotated[str | None, typer.Option(envvar="MONGARS_API_KEY", hidden=True)] = None,
    transport: Annotated[str, typer.Option(help="sse or ws")] = "sse",
) -> None:
    """Chat with a monGARS server."""
    if transport not in ("sse", "ws"):
        raise typer.BadParameter("--transport must be sse or ws")
    with Client(url, api_key=api_key) as client:
        if api_key is None:
            if username is None:
                raise typer.BadParameter("give --username (or MONGARS_API_KEY)")
            password = password or typer.prompt("password", hide_input=True)
            try:
                client.login(username, password)
            except MongarsError as exc:
                err.print(f"[red]login failed:[/red] {exc}")
                raise typer.Exit(1) from None
        chat_loop(client, "ws" if transport == "ws" else "sse")


if __name__ == "__main__":
    app()
