"""Log in, register, log out, CSRF refusals and the session's end, with Django's test client
against the real API (both database engines)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from asgi_lifespan import LifespanManager
from mongars_web.api import TOKENS_KEY
from mongars_web.connector import InProcessApi
from mongars_web.django_settings import SESSION_COOKIE_NAME

from mongars.app import create_app
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import PASSWORD, Accounts, migrated_settings
from tests.web.conftest import Web, text


class TestLogin:
    async def test_the_login_page_has_labelled_fields_and_a_csrf_token(self, web: Web) -> None:
        page = await web.get("/login/")
        assert page.status_code == 200
        body = text(page)
        assert '<label for="id_username">Username</label>' in body
        assert '<label for="id_password">Password</label>' in body
        assert 'name="csrfmiddlewaretoken"' in body
        assert 'href="/register/"' in body  # registration is open

    async def test_logging_in_keeps_the_tokens_on_the_server(
        self, web: Web, accounts: Accounts
    ) -> None:
        account = await accounts.create("alice")
        response = await web.log_in("alice")
        assert response["Location"] == "/"
        cookie = web.http.cookies[SESSION_COOKIE_NAME]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        # The browser holds an opaque session id; the API's tokens are only on the server.
        assert account.access_token not in cookie.value
        session = await web.session()
        tokens = session[TOKENS_KEY]
        assert tokens["access"]
        assert tokens["refresh"]
        assert tokens["access"] not in str(web.http.cookies)
        home = await web.get("/")
        assert home.status_code == 200
        assert "Your conversations" in text(home)
        assert "alice" in text(home)

    async def test_a_wrong_password_is_told_in_plain_words(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        response = await web.submit("/login/", {"username": "alice", "password": "wrong one!"})
        assert response.status_code == 401
        assert 'role="alert"' in text(response)
        assert "incorrect" in text(response).lower() or "invalid" in text(response).lower()
        assert (await web.get("/"))["Location"].startswith("/login/")

    async def test_an_empty_form_names_the_missing_fields(self, web: Web) -> None:
        response = await web.submit("/login/", {"username": "", "password": ""})
        assert response.status_code == 400
        assert text(response).count("This field is required.") == 2

    async def test_the_next_page_is_followed_only_on_this_site(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        ours = await web.submit(
            "/login/", {"username": "alice", "password": PASSWORD, "next": "/search/"}
        )
        assert ours["Location"] == "/search/"
        web_two = Web(web.connector)
        elsewhere = await web_two.submit(
            "/login/",
            {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"},
        )
        assert elsewhere["Location"] == "/"

    async def test_pages_need_a_login(self, web: Web) -> None:
        for url in ("/", "/chat/new/", "/search/", "/account/password/", "/users/"):
            response = await web.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url


class TestRegister:
    async def test_registering_logs_the_new_user_in(self, web: Web) -> None:
        response = await web.submit(
            "/register/",
            {"username": "newcomer", "password": PASSWORD, "password_again": PASSWORD},
        )
        assert response.status_code == 302, text(response)[:2000]
        home = await web.get("/")
        assert "Welcome, newcomer!" in text(home)

    async def test_mismatched_passwords_and_taken_names_are_refused(
        self, web: Web, accounts: Accounts
    ) -> None:
        mismatch = await web.submit(
            "/register/",
            {"username": "newcomer", "password": PASSWORD, "password_again": PASSWORD + "x"},
        )
        assert mismatch.status_code == 400
        assert "The two passwords are not the same." in text(mismatch)
        await accounts.create("taken")
        taken = await web.submit(
            "/register/", {"username": "taken", "password": PASSWORD, "password_again": PASSWORD}
        )
        assert taken.status_code == 409
        assert "taken" in text(taken).lower()

    async def test_a_password_the_api_refuses_is_shown_on_its_field(self, web: Web) -> None:
        response = await web.submit(
            "/register/", {"username": "shorty", "password": "short", "password_again": "short"}
        )
        assert response.status_code == 422
        assert 'class="field-error"' in text(response)

    async def test_closed_registration_is_said_and_not_offered(self, tmp_path: Path) -> None:
        settings = await migrated_settings(tmp_path, registration_open=False)
        app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
        async with LifespanManager(app) as manager:
            web = Web(InProcessApi(app=manager.app, registration_open=False))  # type: ignore[arg-type]
            assert 'href="/register/"' not in text(await web.get("/login/"))
            response = await web.submit(
                "/register/",
                {"username": "newcomer", "password": PASSWORD, "password_again": PASSWORD},
            )
            assert response.status_code == 403
            assert "Registration is closed" in text(response)


class TestLogout:
    async def test_logging_out_ends_the_login_on_the_api_too(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        session = await web.session()
        access = session[TOKENS_KEY]["access"]
        response = await web.submit("/", {}, action="/logout/")
        assert response["Location"] == "/login/"
        assert (await web.get("/"))["Location"].startswith("/login/")
        # The old access token no longer works on the API either.
        api = web.connector.client({})
        async with api:
            me = await api.get("/api/v1/user/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 401

    async def test_logging_out_needs_a_post(self, web: Web, accounts: Accounts) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        assert (await web.get("/logout/")).status_code == 405


class TestCsrf:
    async def test_a_form_without_its_token_is_refused(self, web: Web, accounts: Accounts) -> None:
        await accounts.create("alice")
        response = await web.http.post("/login/", {"username": "alice", "password": PASSWORD})
        assert response.status_code == 403
        assert "Form expired" in text(response)
        assert SESSION_COOKIE_NAME not in web.http.cookies

    async def test_a_logged_in_post_without_its_token_is_refused(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        for url, data in (
            ("/chat/new/", {"message": "hello"}),
            ("/logout/", {}),
            ("/ws-ticket/", {}),
            ("/account/password/", {"current_password": PASSWORD}),
        ):
            response = await web.http.post(url, data)
            assert response.status_code == 403, url
        assert (await web.get("/")).status_code == 200  # still logged in: logout was refused

    async def test_a_token_from_another_session_is_refused(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        other = Web(web.connector)
        token = await other.csrf_token("/login/")
        await web.get("/login/")  # this browser's own CSRF cookie
        response = await web.http.post(
            "/login/", {"csrfmiddlewaretoken": token, "username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 403

    async def test_logging_in_renews_the_csrf_secret(self, web: Web, accounts: Accounts) -> None:
        """As Django's own login() does: a token seen or planted before is worthless after."""
        await accounts.create("alice")
        await web.csrf_token("/login/")
        before = web.http.cookies["mongars_csrftoken"].value
        await web.log_in("alice")
        assert web.http.cookies["mongars_csrftoken"].value != before


class TestSessionExpiry:
    async def test_an_expired_access_token_is_refreshed_quietly(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        session = await web.session()
        before = dict(session[TOKENS_KEY])
        session[TOKENS_KEY] = {**before, "access_expires_at": time.time() - 1}
        await session.asave()
        assert (await web.get("/")).status_code == 200
        after = (await web.session())[TOKENS_KEY]
        assert after["access"] != before["access"]
        assert after["refresh"] != before["refresh"]  # rotated
        assert after["access_expires_at"] > time.time()

    async def test_two_pages_loading_at_once_refresh_only_once(
        self, web: Web, accounts: Accounts
    ) -> None:
        """Two tabs of one session: a second refresh with the same (rotated) refresh token
        would make the API end the login."""
        await accounts.create("alice")
        await web.log_in("alice")
        session = await web.session()
        session[TOKENS_KEY] = {**session[TOKENS_KEY], "access_expires_at": time.time() - 1}
        await session.asave()
        urls = ("/", "/?page=2", "/search/?q=hello")  # each calls the API
        pages = await asyncio.gather(*(web.get(url) for url in urls))
        assert [page.status_code for page in pages] == [200, 200, 200]
        assert (await web.get("/")).status_code == 200  # the login lives on

    async def test_an_access_token_the_api_refuses_is_refreshed_and_retried(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        session = await web.session()
        session[TOKENS_KEY] = {**session[TOKENS_KEY], "access": "not-a-token"}
        await session.asave()
        assert (await web.get("/")).status_code == 200
        assert (await web.session())[TOKENS_KEY]["access"] != "not-a-token"

    async def test_an_expired_refresh_token_sends_back_to_the_login_page(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        session = await web.session()
        session[TOKENS_KEY] = {
            "access": "expired",
            "refresh": "expired-too",
            "access_expires_at": time.time() - 1,
        }
        await session.asave()
        response = await web.get("/search/?q=hello")
        assert response.status_code == 302
        assert response["Location"] == "/login/?next=%2Fsearch%2F%3Fq%3Dhello"
        login = await web.get(response["Location"])
        assert "Your session has expired" in text(login)
        assert TOKENS_KEY not in await web.session()
