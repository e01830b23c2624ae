"""Change password, and the administrators' user list."""

from __future__ import annotations

from mongars.resources import Resources
from tests.conftest import PASSWORD, Accounts
from tests.web.conftest import Web, text

NEW_PASSWORD = "a different battery staple"


class TestChangePassword:
    async def test_changing_keeps_this_session_and_ends_the_others(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        elsewhere = Web(web.connector)
        await elsewhere.log_in("alice")
        page = await web.get("/account/password/")
        assert '<label for="id_current_password">Current password</label>' in text(page)
        response = await web.submit(
            "/account/password/",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        )
        assert response["Location"] == "/"
        home = await web.get("/")
        assert home.status_code == 200
        assert "Your password is changed" in text(home)
        # The other browser's login ended with the change.
        assert (await elsewhere.get("/"))["Location"].startswith("/login/")
        fresh = Web(web.connector)
        await fresh.log_in("alice", NEW_PASSWORD)

    async def test_a_wrong_current_password_is_said(self, web: Web, accounts: Accounts) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        response = await web.submit(
            "/account/password/",
            {
                "current_password": "not my password",
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        )
        assert response.status_code in (400, 401)
        assert 'role="alert"' in text(response)
        assert (await web.get("/")).status_code == 200  # still logged in

    async def test_mismatched_new_passwords_are_caught_before_the_api(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        response = await web.submit(
            "/account/password/",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_again": "something else",
            },
        )
        assert response.status_code == 400
        assert "The two new passwords are not the same." in text(response)


class TestUsersAdmin:
    async def test_ordinary_users_are_refused_and_see_no_link(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("alice")
        await web.log_in("alice")
        assert 'href="/users/"' not in text(await web.get("/"))
        response = await web.get("/users/")
        assert response.status_code == 403
        assert "Not allowed" in text(response)
        action = await web.submit("/", {"action": "promote"}, action="/users/alice/")
        assert action.status_code == 403

    async def test_an_admin_disables_enables_and_promotes(
        self, web: Web, accounts: Accounts, resources: Resources
    ) -> None:
        await accounts.create("root", admin=True)
        await accounts.create("bob")
        await web.log_in("root")
        assert 'href="/users/"' in text(await web.get("/"))
        listing = text(await web.get("/users/"))
        assert "<td>bob</td>" in listing
        assert 'value="disable"' in listing
        disabled = await web.submit("/users/", {"action": "disable"}, action="/users/bob/")
        assert disabled["Location"] == "/users/"
        after = text(await web.get("/users/"))
        assert "bob is disabled." in after
        assert 'value="enable"' in after
        bob = Web(web.connector)
        refused = await bob.submit("/login/", {"username": "bob", "password": PASSWORD})
        assert refused.status_code in (401, 403)
        await web.submit("/users/", {"action": "enable"}, action="/users/bob/")
        await web.submit("/users/", {"action": "promote"}, action="/users/bob/")
        assert "bob is now an administrator." in text(await web.get("/users/"))
        await bob.log_in("bob")
        assert 'href="/users/"' in text(await bob.get("/"))

    async def test_refusals_and_unknown_actions_are_said(
        self, web: Web, accounts: Accounts
    ) -> None:
        await accounts.create("root", admin=True)
        await web.log_in("root")
        await web.submit("/users/", {"action": "explode"}, action="/users/root/")
        assert "Unknown action &#x27;explode&#x27;." in text(await web.get("/users/"))
        await web.submit("/users/", {"action": "disable"}, action="/users/nobody/")
        assert 'class="flash error"' in text(await web.get("/users/"))
