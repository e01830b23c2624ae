"""A database that cannot be reached: 503s that say so, never a 500."""

from __future__ import annotations

from pathlib import Path

from mongars.app import create_app
from mongars.devtools.cluster import free_port
from tests.conftest import in_process, make_settings


class TestDatabaseDown:
    async def test_ready_fails_and_requests_get_503(self, tmp_path: Path) -> None:
        settings = make_settings(
            tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/test"
        )
        async with in_process(create_app(settings)) as served:
            client = served.client
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/ready")
            assert ready.status_code == 503
            check = ready.json()["checks"]["database"]
            assert check["ok"] is False
            assert check["detail"]
            login = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
            assert login.status_code == 503
            assert login.json()["code"] == "database_unavailable"
            assert login.headers["retry-after"] == "5"
