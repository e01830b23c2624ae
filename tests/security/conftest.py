"""An app with the production defaults for limits (the shared test app relaxes them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from mongars.app import create_app
from mongars.config import RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.resources import Resources
from tests.conftest import migrated_settings


@dataclass
class GuardedApp:
    client: httpx.AsyncClient
    resources: Resources
    asgi: object

    def client_from(self, address: str) -> httpx.AsyncClient:
        """A client whose requests come from another address."""
        transport = httpx.ASGITransport(app=self.asgi, client=(address, 50000))  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[GuardedApp]:
    settings = await migrated_settings(tmp_path, rate_limit=RateLimitSettings())
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield GuardedApp(client, manager._state["resources"], manager.app)
