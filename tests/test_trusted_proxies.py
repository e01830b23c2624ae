"""MONGARS_HTTP__TRUSTED_PROXIES end to end: real ``mongars serve`` and ``mongars web``
processes on loopback, sent requests that say they were forwarded for other clients.

uvicorn's proxy-headers middleware exists only in a server started with that option, so an
app built in-process cannot show any of this. The test client is on 127.0.0.1: trusting
loopback makes it "a proxy", and its ``X-Forwarded-For`` names the client.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from mongars.devtools import cluster
from tests.live_server import free_port

CLIENT_A = "203.0.113.7"
CLIENT_B = "198.51.100.9"
LOGINS_PER_MINUTE = 2


def server_environment(data_dir: Path, trusted_proxies: str | None) -> dict[str, str]:
    """One SQLite process with the fake model, cheap hashing and a low login limit; no RAG
    model or web UI to load, so it starts in seconds."""
    extra = {
        "MONGARS_LLM__BACKEND": "fake",
        "MONGARS_RAG__ENABLED": "false",
        "MONGARS_WEB_ENABLED": "false",
        "MONGARS_AUTH__ARGON2_TIME_COST": "1",
        "MONGARS_AUTH__ARGON2_MEMORY_COST_KIB": "1024",
        "MONGARS_AUTH__ARGON2_PARALLELISM": "1",
        "MONGARS_RATE_LIMIT__LOGIN_PER_MINUTE": str(LOGINS_PER_MINUTE),
    }
    if trusted_proxies is not None:
        extra["MONGARS_HTTP__TRUSTED_PROXIES"] = trusted_proxies
    return cluster.cluster_env(
        data_dir,
        database_url=f"sqlite:///{data_dir / 'mongars.db'}",
        schema=None,
        redis_url=None,
        **extra,
    )


@contextmanager
def serve(tmp_path: Path, trusted_proxies: str | None) -> Iterator[str]:
    env = server_environment(tmp_path / "var", trusted_proxies)
    with cluster.replicas(env, 1, tmp_path) as (replica,):
        yield replica.base_url


# The same trust written as an address and as a network (uvicorn accepts networks since 0.31).
@pytest.fixture(scope="module", params=['["127.0.0.1"]', '["127.0.0.0/8"]'])
def trusting(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("trusting"), request.param) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("untrusting"), None) as base_url:
        yield base_url


def log_in(base_url: str, username: str, forwarded_for: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/auth/login",
        json={"username": username, "password": "not the password"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )


def use_up_logins(base_url: str, username: str, forwarded_for: str) -> None:
    statuses = [
        log_in(base_url, username, forwarded_for).status_code for _ in range(LOGINS_PER_MINUTE)
    ]
    assert statuses == [401] * LOGINS_PER_MINUTE
    refused = log_in(base_url, username, forwarded_for)
    assert refused.status_code == 429, refused.text


class TestBehindATrustedProxy:
    def test_login_limits_are_per_forwarded_client(self, trusting: str) -> None:
        use_up_logins(trusting, "ada", CLIENT_A)
        other = log_in(trusting, "ada", CLIENT_B)
        assert other.status_code == 401, other.text  # a wrong password, not a 429
        assert other.headers["ratelimit-remaining"] == str(LOGINS_PER_MINUTE - 1)

    def test_the_client_nearest_the_proxy_counts_not_one_it_made_up(self, trusting: str) -> None:
        # A client's own X-Forwarded-For comes first; our proxy appends the address it saw.
        use_up_logins(trusting, "bob", f"{CLIENT_B}, {CLIENT_A}")
        forged = log_in(trusting, "bob", f"192.0.2.55, {CLIENT_A}")
        assert forged.status_code == 429

    def test_a_forwarded_remote_client_is_not_loopback_for_metrics(self, trusting: str) -> None:
        assert httpx.get(f"{trusting}/metrics", timeout=10).status_code == 200
        remote = httpx.get(f"{trusting}/metrics", headers={"X-Forwarded-For": CLIENT_A}, timeout=10)
        assert remote.status_code == 403
        assert remote.json()["code"] == "metrics_forbidden"


class TestWithoutTrustedProxies:
    def test_forwarded_for_is_ignored_so_every_client_shares_the_peer_limit(
        self, untrusting: str
    ) -> None:
        use_up_logins(untrusting, "ada", CLIENT_A)
        other = log_in(untrusting, "ada", CLIENT_B)
        assert other.status_code == 429, other.text

    def test_a_forged_forwarded_for_cannot_hide_loopback(self, untrusting: str) -> None:
        forged = httpx.get(
            f"{untrusting}/metrics", headers={"X-Forwarded-For": CLIENT_A}, timeout=10
        )
        assert forged.status_code == 200


class TestRefusedAtStart:
    @pytest.mark.parametrize(
        ("environment", "named"),
        [
            ({"MONGARS_HTTP__TRUSTED_PROXIES": '["proxy.internal"]'}, "'proxy.internal'"),
            (
                {
                    "MONGARS_HTTP__TRUSTED_PROXIES": '["*"]',
                    "MONGARS_ENV": "production",
                    "MONGARS_SECRET_KEY": "a-real-secret-" + "x" * 40,
                },
                "refused when MONGARS_ENV=production",
            ),
        ],
    )
    @pytest.mark.parametrize("command", ["serve", "web"])
    def test_a_bad_setting_stops_the_command_with_its_reason(
        self, tmp_path: Path, environment: dict[str, str], named: str, command: str
    ) -> None:
        env = {**server_environment(tmp_path / "var", None), **environment}
        arguments = ["--api-url", "http://127.0.0.1:9"] if command == "web" else []
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mongars", command, *arguments, "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "Invalid settings" in result.stderr
        assert named in " ".join(result.stderr.split())  # rich wraps long lines


@contextmanager
def web_ui(tmp_path: Path, trusted_proxies: str | None) -> Iterator[str]:
    """``mongars web`` against an API that is not there: enough for its own pages."""
    env = server_environment(tmp_path / "var", trusted_proxies)
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                *(sys.executable, "-m", "mongars", "web"),
                *("--api-url", f"http://127.0.0.1:{free_port()}", "--port", str(port)),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base_url}/login/", process, log)
        yield base_url
    finally:
        cluster.stop(process)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer:\n{log.read_text()}")
        time.sleep(0.1)


def post_login_form_over_tls(base_url: str) -> httpx.Response:
    """What a TLS-terminating proxy sends for the login form: the browser's https origin,
    X-Forwarded-Proto: https, over plain HTTP to the UI."""
    origin = "https://" + base_url.removeprefix("http://")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": CLIENT_A}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        page = client.get("/login/")
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, "no CSRF token in the login page"
        # An empty form: with the CSRF check passed, the form itself answers 400.
        return client.post(
            "/login/",
            data={"csrfmiddlewaretoken": token.group(1)},
            headers={"Origin": origin, "Referer": f"{origin}/login/"},
        )


class TestWebUi:
    def test_behind_a_trusted_tls_proxy_the_page_origin_is_https(self, tmp_path: Path) -> None:
        with web_ui(tmp_path, '["127.0.0.1"]') as base_url:
            assert post_login_form_over_tls(base_url).status_code == 400

    def test_without_trust_an_https_origin_fails_the_csrf_check(self, tmp_path: Path) -> None:
        with web_ui(tmp_path, None) as base_url:
            assert post_login_form_over_tls(base_url).status_code == 403
