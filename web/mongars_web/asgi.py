"""The UI as an ASGI app, for a given way of reaching the API."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars.config import Settings
from mongars_web.connector import ApiConnector, with_connector
from mongars_web.django_settings import configure


def web_application(settings: Settings, connector: ApiConnector) -> ASGIApp:
    """Django's ASGI handler, with ``connector`` handed to every request it serves."""
    configure(settings)
    # Imported after configure(): Django reads its settings at import time.
    from django.core.asgi import get_asgi_application

    return with_connector(_lowercase_header_names(get_asgi_application()), connector)


def _lowercase_header_names(app: ASGIApp) -> ASGIApp:
    """Django sends header names as written ("Content-Security-Policy"); ASGI wants them in
    lower case, and the API's middleware (which only adds a header the response lacks) would
    otherwise not see Django's and add a second one."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_lowercase(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name.lower(), value) for name, value in message.get("headers", [])
                ]
            await send(message)

        await app(scope, receive, send_lowercase)

    return serve
