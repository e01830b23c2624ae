"""Structured logs: the request id in the access line and the error envelope, JSON lines from
``mongars serve``, no tokens from query strings."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mongars.config import Settings
from mongars.observability.logs import ConsoleFormatter, JsonFormatter, logging_config
from tests.conftest import Accounts, RunningApp
from tests.test_cli import MONGARS, free_port


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mongars.access"]


class TestAccessLog:
    async def test_the_request_id_is_in_the_log_line_and_the_envelope(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="mongars.access"):
            response = await client.get(
                "/api/v1/conversations/not-a-uuid", headers={"X-Request-ID": "trace-me-42"}
            )
        assert response.status_code == 401
        assert response.json()["request_id"] == "trace-me-42"
        (record,) = access_records(caplog)
        line = json.loads(JsonFormatter().format(record))
        assert line["request_id"] == "trace-me-42"
        assert line["route"] == "/api/v1/conversations/{conversation_id}"
        assert line["status"] == response.status_code
        assert line["method"] == "GET"
        assert isinstance(line["latency_ms"], float)
        assert line["user"] is None
        assert line["level"] == "info"

    async def test_the_user_is_logged_hashed(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        running_app: RunningApp,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        account = await accounts.create("hashme")
        with caplog.at_level(logging.INFO, logger="mongars.access"):
            response = await client.get("/api/v1/user/me", headers=account.headers)
        user_id = response.json()["id"]
        (record,) = access_records(caplog)
        line = json.loads(JsonFormatter().format(record))
        assert line["user"] == running_app.resources.limiter.rejects.hash(user_id)
        assert user_id not in json.dumps(line)
        assert "hashme" not in json.dumps(line)

    def test_console_lines_are_readable(self) -> None:
        record = logging.LogRecord("mongars.access", logging.INFO, "", 0, "GET / 200", (), None)
        record.request_id = "abc"
        record.status = 200
        text = ConsoleFormatter().format(record)
        assert "INFO" in text
        assert "GET / 200" in text
        assert "status=200" in text
        assert text.endswith("[abc]")


class TestConfiguration:
    def test_format_follows_the_environment_unless_set(self) -> None:
        development = Settings(_env_file=None)  # type: ignore[call-arg]
        production = Settings(_env_file=None, env="production", secret_key="p" * 40)  # type: ignore[call-arg]
        forced = Settings(_env_file=None, log_format="json", log_level="DEBUG")  # type: ignore[call-arg]
        assert development.effective_log_format == "console"
        assert production.effective_log_format == "json"
        config = logging_config(forced)
        assert config["formatters"]["default"]["()"] is JsonFormatter
        assert config["root"]["level"] == "DEBUG"
        assert config["loggers"]["uvicorn.access"]["propagate"] is False


def test_serve_writes_one_json_object_per_line_without_tokens(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env = {
        **clean,
        "MONGARS_DATA_DIR": str(tmp_path / "var"),
        "MONGARS_LLM__BACKEND": "fake",
        "MONGARS_RAG__ENABLED": "false",
        "MONGARS_LOG_FORMAT": "json",
    }
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [*MONGARS, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            missing = httpx.get(
                f"{base}/ws/nowhere?t=SECRET-TICKET-123", headers={"X-Request-ID": "serve-1"}
            )
            assert missing.status_code == 404
        finally:
            process.terminate()
            process.wait(timeout=15)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [p for p in parsed if p["logger"] == "mongars.access" and p["status"] == 404]
    assert access, lines
    assert access[0]["request_id"] == "serve-1"
    assert access[0]["route"] == "unmatched"
    assert "SECRET-TICKET-123" not in log_path.read_text()
    assert any(p["logger"].startswith("uvicorn") for p in parsed)
