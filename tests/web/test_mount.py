"""The UI inside the API's app: it answers what no API route matches and nothing else, and
the page's headers are the UI's."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from mongars_web import markdown
from mongars_web.connector import RemoteApi

from mongars.app import API_ROUTERS, create_app
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from mongars.web_mount import is_api_path, standalone_web_app
from tests.conftest import in_process, migrated_settings


async def test_api_paths_keep_the_apis_answers(client: httpx.AsyncClient) -> None:
    unknown_api = await client.get("/api/v1/no-such-route")
    assert unknown_api.status_code == 404
    assert unknown_api.json()["code"] == "not_found"
    assert (await client.get("/healthz")).json()["status"] == "ok"
    assert (await client.post("/token")).status_code == 422  # the API's form, not a page
    assert (await client.get("/v1/anything")).headers["content-type"].startswith("application/json")


async def test_other_paths_are_the_uis_pages(client: httpx.AsyncClient) -> None:
    page = await client.get("/login/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # One policy, the UI's own (the API's default would forbid the page's script).
    assert page.headers.get_list("content-security-policy") == [
        page.headers["content-security-policy"]
    ]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # Not the API's no-referrer: browsers would send "Origin: null" with the page's forms.
    assert page.headers["referrer-policy"] == "same-origin"
    assert (await client.get("/login")).headers["location"] == "/login/"
    missing = await client.get("/no-such-page/")
    assert missing.status_code == 404
    assert "There is no page at this address." in missing.text
    # Metrics count pages under one route label, never their raw paths.
    await client.get("/chat/00000000-0000-0000-0000-000000000001/")
    metrics = (await client.get("/metrics")).text
    assert 'route="/{web_ui_page}"' in metrics
    assert "00000000-0000-0000-0000-000000000001" not in metrics


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/api/v1/users", True),
        ("/v1/chat/completions", True),
        ("/ws/chat/", True),
        ("/static/web/chat.js", True),
        ("/", False),
        ("/chat/new/", False),
        ("/apiary/", False),
        ("/v10/", False),
    ],
)
def test_which_paths_belong_to_the_api(path: str, api: bool) -> None:
    assert is_api_path(path) is api


async def test_every_api_route_is_under_an_api_prefix(tmp_path: Path) -> None:
    # API_PREFIXES is kept by hand (it also reserves /docs and /static when they are off); a
    # route added under a new prefix would be unreachable for UI paths and shadow nothing, but
    # its unknown sub-paths would get the UI's HTML 404: this holds the list to the routes.
    settings = await migrated_settings(tmp_path, docs_enabled=True)
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    routes = [*app.routes, *(route for router in API_ROUTERS for route in router.routes)]
    paths = [path for route in routes if (path := getattr(route, "path", None))]
    assert len(paths) > 50
    outside = [path for path in paths if not is_api_path(path.split("{")[0].rstrip("/") or "/")]
    assert outside == []


async def test_the_ui_can_be_turned_off(tmp_path: Path) -> None:
    settings = await migrated_settings(tmp_path, web_enabled=False)
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    async with in_process(app) as served:
        response = await served.client.get("/login/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_the_standalone_ui_calls_the_remote_api_and_opens_its_websocket(
    tmp_path: Path,
) -> None:
    """``mongars web --api-url``: pages from the UI, every API call to the given URL."""
    settings = await migrated_settings(tmp_path)
    seen: list[str] = []

    def remote_api(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        return httpx.Response(
            401, json={"detail": "Incorrect username or password.", "code": "bad_credentials"}
        )

    app = standalone_web_app(
        settings, "https://api.example.test", transport=httpx.MockTransport(remote_api)
    )
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        page = await http.get("/login/")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "connect-src 'self' wss://api.example.test" in policy
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token
        refused = await http.post(
            "/login/",
            data={"csrfmiddlewaretoken": token.group(1), "username": "a", "password": "b"},
        )
        assert refused.status_code == 401
        assert "Incorrect username or password." in refused.text
        assert seen == ["POST https://api.example.test/api/v1/auth/login"]
        other_host = await http.get("/login/", headers={"host": "evil.example"})
        assert other_host.status_code == 400
    assert RemoteApi("http://api.test:8000").websocket_url({}) == "ws://api.test:8000/ws/chat/"


async def test_a_remote_api_is_told_the_browsers_address() -> None:
    forwarded: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        forwarded.append(request.headers.get("x-forwarded-for"))
        return httpx.Response(200, json={})

    remote = RemoteApi("http://api.test", transport=httpx.MockTransport(api))
    async with remote.client({"client": ("203.0.113.7", 51000)}) as client:
        await client.get("/healthz")
    async with remote.client({}) as client:  # no peer (a unix socket): nothing to forward
        await client.get("/healthz")
    assert forwarded == ["203.0.113.7", None]


def test_server_side_markdown_is_sanitised_and_highlighted() -> None:
    html = markdown.render(
        "# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://e.test)"
        "\n\n```python\nprint('hi')\n```"
    )
    assert "<script" not in html
    assert 'href="javascript' not in html
    assert '<a href="https://e.test" rel="noopener noreferrer nofollow">ok</a>' in html
    assert '<code class="hljs language-python"><span class="nb">print</span>' in html


def test_the_session_cookie_is_secure_in_production_and_shared_through_redis(
    tmp_path: Path,
) -> None:
    from mongars_web.django_settings import django_settings

    from mongars.config import Settings

    development = django_settings(
        Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    )
    assert development["SESSION_ENGINE"] == "django.contrib.sessions.backends.file"
    assert Path(development["SESSION_FILE_PATH"]).is_dir()
    assert development["SESSION_COOKIE_SECURE"] is False
    production = django_settings(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            env="production",
            data_dir=tmp_path,
            secret_key="p" * 48,
            redis_url="redis://127.0.0.1:6379/0",
            redis_key_prefix="web-test",
        )
    )
    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    assert production["SESSION_COOKIE_HTTPONLY"] is True
    assert production["SESSION_COOKIE_SAMESITE"] == "Lax"
    # Replicas share sessions through the Redis they already share; never signed cookies.
    assert production["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert production["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/0"
    assert production["CACHES"]["default"]["KEY_PREFIX"] == "web-test:web"
    assert production["SECRET_KEY"] != "p" * 48  # a key of the UI's own, derived


def test_mongars_web_refuses_an_api_url_that_is_not_http() -> None:
    from typer.testing import CliRunner

    from mongars.cli import app

    result = CliRunner().invoke(app, ["web", "--api-url", "ftp://example.test"])
    assert result.exit_code == 2
    assert "--api-url must start with http:// or https://" in result.output
