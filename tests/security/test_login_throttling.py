"""Guessing passwords: throttled per client address and username, with an escalating lockout
that treats unknown users exactly like known ones; registration throttled per address."""

from __future__ import annotations

import anyio
import httpx

from tests.conftest import PASSWORD
from tests.security.conftest import GuardedApp

FREE_FAILURES = 5  # the default MONGARS_RATE_LIMIT__LOGIN_FREE_FAILURES


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


def comparable(response: httpx.Response) -> tuple[object, ...]:
    body = response.json()
    body.pop("request_id")
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("x-request-id", "content-length")
    }
    return response.status_code, body, headers


class TestBruteForce:
    async def test_wrong_passwords_lead_to_a_lockout_that_holds_even_for_the_right_one(
        self, guarded: GuardedApp
    ) -> None:
        client = guarded.client
        await client.post("/api/v1/user/register", json={"username": "ada", "password": PASSWORD})
        for _ in range(FREE_FAILURES + 1):
            wrong = await login(client, "ada", "guess guess")
            assert wrong.status_code == 401
        locked = await login(client, "ada", PASSWORD)
        assert locked.status_code == 429
        assert locked.json()["code"] == "rate_limited"
        assert locked.headers["retry-after"] == "1"
        assert locked.headers["ratelimit-remaining"] == "0"
        assert "access_token" not in locked.text
        # Escalation: each further failure doubles the wait.
        await anyio.sleep(1.05)
        assert (await login(client, "ada", "guess again")).status_code == 401
        assert (await login(client, "ada", PASSWORD)).headers["retry-after"] == "2"
        # The real user, elsewhere, is not locked out by someone else's guessing.
        async with guarded.client_from("198.51.100.7") as elsewhere:
            assert (await login(elsewhere, "ada", PASSWORD)).status_code == 200
        counts = guarded.resources.limiter.rejects.counts
        assert counts[("login", "login_locked")] == 2

    async def test_attempts_per_minute_are_capped_whatever_their_outcome(
        self, guarded: GuardedApp
    ) -> None:
        client = guarded.client
        await client.post("/api/v1/user/register", json={"username": "bob", "password": PASSWORD})
        statuses = [(await login(client, "bob", PASSWORD)).status_code for _ in range(11)]
        assert statuses == [200] * 10 + [429]


class TestPasswordChange:
    async def test_guessing_the_current_password_is_throttled_like_a_login(
        self, guarded: GuardedApp
    ) -> None:
        """A stolen token must not become a way to guess the password and take the account."""
        client = guarded.client
        await client.post("/api/v1/user/register", json={"username": "cyd", "password": PASSWORD})
        token = (await login(client, "cyd", PASSWORD)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def change(old: str) -> httpx.Response:
            body = {"old_password": old, "new_password": "taken over at last"}
            return await client.post("/api/v1/user/change-password", json=body, headers=headers)

        for _ in range(FREE_FAILURES + 1):
            wrong = await change("guess guess")
            assert wrong.status_code == 400
            assert wrong.json()["code"] == "wrong_password"
        locked = await change(PASSWORD)
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "1"
        # The same lockout holds for logins from this address: one budget of guesses, not two.
        assert (await login(client, "cyd", PASSWORD)).status_code == 429
        await anyio.sleep(1.05)
        assert (await change(PASSWORD)).status_code == 200


class TestUnknownUserAndWrongPassword:
    async def test_are_indistinguishable_including_the_lockout(self, guarded: GuardedApp) -> None:
        client = guarded.client
        await client.post("/api/v1/user/register", json={"username": "eve", "password": PASSWORD})
        for attempt in range(FREE_FAILURES + 2):
            unknown = await login(client, "nobody", "guess guess")
            wrong = await login(client, "eve", "guess guess")
            assert comparable(unknown) == comparable(wrong), attempt
        assert unknown.status_code == 429


class TestRegistrationFlood:
    async def test_is_throttled_per_address(self, guarded: GuardedApp) -> None:
        client = guarded.client
        statuses = [
            (
                await client.post(
                    "/api/v1/user/register", json={"username": f"bot{n}", "password": PASSWORD}
                )
            ).status_code
            for n in range(11)
        ]
        assert statuses == [201] * 10 + [429]
