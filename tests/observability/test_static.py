"""Built web assets at /static when they exist; a warning naming the build command when not."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from mongars.app import create_app
from tests.conftest import make_settings


async def test_static_files_are_served_when_built(tmp_path: Path) -> None:
    built = tmp_path / "static"
    built.mkdir()
    (built / "app.css").write_text("body { color: teal; }")
    app = create_app(make_settings(tmp_path, static_dir=built))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        found = await http.get("/static/app.css")
        missing = await http.get("/static/nope.js")
    assert found.status_code == 200
    assert found.text == "body { color: teal; }"
    assert found.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404


def test_a_warning_says_what_to_do_when_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mongars.app"):
        app = create_app(make_settings(tmp_path, static_dir=tmp_path / "not-built"))
    assert "MONGARS_STATIC_DIR" in caplog.text
    assert str(tmp_path / "not-built") in caplog.text
    assert not any(getattr(route, "path", None) == "/static" for route in app.routes)
