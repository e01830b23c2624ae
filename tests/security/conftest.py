"""An app with the production defaults for limits (the shared test app relaxes them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mongars.app import create_app
from mongars.config import RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import InProcess, in_process, migrated_settings

GuardedApp = InProcess


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[GuardedApp]:
    settings = await migrated_settings(tmp_path, rate_limit=RateLimitSettings())
    async with in_process(create_app(settings, roles=ModelRoles.single(FakeBackend()))) as served:
        yield served
