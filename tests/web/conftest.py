"""Fixtures for the web UI's tests: Django's own async test client, CSRF checks on, talking to
the session's real API app (``running_app``) in-process, as ``mongars serve`` does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mongars_web.connector import SCOPE_KEY, ApiConnector, InProcessApi

from tests.conftest import PASSWORD, Accounts, RunningApp

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Web:
    """A browser without JavaScript: Django's AsyncClient, which keeps cookies and enforces
    CSRF like a real request, plus helpers to read tokens off pages and submit forms."""

    def __init__(self, connector: ApiConnector) -> None:
        from django.test import AsyncClient

        class ConnectedClient(AsyncClient):
            # What mongars.web_mount's wrapper does for real requests: the connector in the
            # ASGI scope.
            def _base_scope(self, **request: Any) -> dict[str, Any]:
                return {**super()._base_scope(**request), SCOPE_KEY: connector}

        self.connector = connector
        self.http = ConnectedClient(enforce_csrf_checks=True)

    async def get(self, url: str, **kwargs: Any) -> Any:
        return await self.http.get(url, **kwargs)

    async def csrf_token(self, page_url: str = "/login/") -> str:
        page = await self.http.get(page_url)
        match = CSRF_INPUT.search(page.content.decode())
        assert match, f"no CSRF token on {page_url} ({page.status_code})"
        return match.group(1)

    async def submit(
        self, page_url: str, data: dict[str, str], action: str | None = None, **kwargs: Any
    ) -> Any:
        """Open ``page_url``, then post ``data`` with its CSRF token (to ``action``, default the
        same page), as a person filling in the page's form would."""
        token = await self.csrf_token(page_url)
        return await self.http.post(
            action or page_url, {"csrfmiddlewaretoken": token, **data}, **kwargs
        )

    async def log_in(self, username: str, password: str = PASSWORD) -> Any:
        response = await self.submit("/login/", {"username": username, "password": password})
        assert response.status_code == 302, response.content.decode()[:2000]
        return response

    async def session(self) -> Any:
        return await self.http.asession()


def text(response: Any) -> str:
    return str(response.content.decode())


@pytest.fixture
async def web(
    running_app: RunningApp, client: httpx.AsyncClient, accounts: Accounts
) -> AsyncIterator[Web]:
    # ``client`` empties every table after the test; ``running_app.asgi`` carries the app's
    # lifespan state (its Resources), exactly what the UI's in-process calls need.
    return Web(InProcessApi(app=running_app.asgi, registration_open=True))  # type: ignore[arg-type]
