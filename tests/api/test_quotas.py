"""Daily allowances: counted from finished turns, refused before a turn once used up,
overridden per user by admins, shown to each user (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from mongars.core.llm import FakeBackend
from mongars.db.database import commit_with
from mongars.db.repositories.users import UserRepository
from mongars.db.tables import Message
from mongars.resources import Resources
from tests.conftest import Account, Accounts


async def chat(client: httpx.AsyncClient, account: Account, message: str) -> httpx.Response:
    return await client.post(
        "/api/v1/conversation/chat", headers=account.headers, json={"message": message}
    )


async def usage(client: httpx.AsyncClient, account: Account) -> dict[str, object]:
    response = await client.get("/api/v1/user/me/usage", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def set_quota(
    client: httpx.AsyncClient, admin: Account, username: str, **overrides: int | None
) -> httpx.Response:
    return await client.put(
        f"/api/v1/users/{username}/quota", headers=admin.headers, json=overrides
    )


class TestUsage:
    async def test_counts_turns_and_tokens_for_today_against_the_defaults(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        fresh = await usage(client, account)
        assert fresh["messages"] == {"used": 0, "limit": 500, "remaining": 500}
        assert fresh["tokens"] == {"used": 0, "limit": 1_000_000, "remaining": 1_000_000}
        assert fresh["day"] == datetime.now(UTC).date().isoformat()
        resets_at = datetime.fromisoformat(str(fresh["resets_at"]))
        assert resets_at - datetime.now(UTC) <= timedelta(days=1)
        assert (resets_at.hour, resets_at.minute) == (0, 0)

        totals = 0
        for message in ("one two three", "four five"):
            body = (await chat(client, account, message)).json()
            totals += body["usage"]["total_tokens"]
        used = await usage(client, account)
        assert used["messages"] == {"used": 2, "limit": 500, "remaining": 498}
        assert used["tokens"] == {
            "used": totals,
            "limit": 1_000_000,
            "remaining": 1_000_000 - totals,
        }

    async def test_a_turn_the_backend_never_answered_is_not_counted(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        account = await accounts.create()
        fake_backend.fail_before_first_token = True
        assert (await chat(client, account, "anyone?")).status_code == 503
        assert (await usage(client, account))["messages"] == {
            "used": 0,
            "limit": 500,
            "remaining": 500,
        }

    async def test_concurrent_turns_all_count(
        self, client: httpx.AsyncClient, accounts: Accounts, resources: Resources
    ) -> None:
        account = await accounts.create()
        async with resources.sessions() as db:
            user = await UserRepository(db).get_by_username(account.username)
            assert user is not None

        async def count_one() -> None:
            async with resources.sessions() as db:
                await commit_with(db, lambda c: resources.quotas.count_turn(c, user.id, 7, 3))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(count_one)
        used = await usage(client, account)
        assert used["messages"] == {"used": 8, "limit": 500, "remaining": 492}
        assert used["tokens"]["used"] == 80  # type: ignore[index]


class TestQuotaExceeded:
    async def test_messages_refused_before_the_turn_with_retry_after(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
    ) -> None:
        admin, account = await accounts.create("root", admin=True), await accounts.create()
        assert (
            await set_quota(client, admin, account.username, daily_messages=1)
        ).status_code == 200
        assert (await chat(client, account, "first")).status_code == 200
        for route in ("/api/v1/conversation/chat", "/api/v1/conversation/chat/stream"):
            refused = await client.post(route, headers=account.headers, json={"message": "more"})
            assert refused.status_code == 429
            assert refused.json()["code"] == "quota_exceeded"
            wait = int(refused.headers["retry-after"])
            assert 0 < wait <= 24 * 3600
            assert "messages" in refused.json()["detail"]
        async with resources.sessions() as db:
            assert await db.scalar(select(func.count()).select_from(Message)) == 2
        assert resources.limiter.rejects.counts[("chat", "quota_exceeded")] >= 2
        assert (await usage(client, account))["messages"] == {
            "used": 1,
            "limit": 1,
            "remaining": 0,
        }

    @pytest.mark.parametrize("store", [True, False], ids=["stored", "store false"])
    async def test_the_openai_route_is_refused_too_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        accounts: Accounts,
        resources: Resources,
        fake_backend: FakeBackend,
        store: bool,
    ) -> None:
        admin, account = await accounts.create("root", admin=True), await accounts.create()
        await set_quota(client, admin, account.username, daily_messages=1)
        assert (await chat(client, account, "first")).status_code == 200
        refused = await client.post(
            "/v1/chat/completions",
            headers=account.headers,
            json={
                "model": "general",
                "messages": [{"role": "user", "content": "more"}],
                "store": store,
            },
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert int(refused.headers["retry-after"]) > 0
        async with resources.sessions() as db:
            assert await db.scalar(select(func.count()).select_from(Message)) == 2

    async def test_tokens_run_out_too_and_other_users_are_unaffected(
        self, client: httpx.AsyncClient, accounts: Accounts, fake_backend: FakeBackend
    ) -> None:
        admin = await accounts.create("root", admin=True)
        frugal, other = await accounts.create(), await accounts.create()
        await set_quota(client, admin, frugal.username, daily_tokens=5)
        assert (await chat(client, frugal, "a long enough question")).status_code == 200
        refused = await chat(client, frugal, "again")
        assert refused.json()["code"] == "quota_exceeded"
        assert "tokens" in refused.json()["detail"]
        assert (await chat(client, other, "hello")).status_code == 200


class TestOverrides:
    async def test_admin_sets_reads_and_resets_a_users_allowances(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin, account = await accounts.create("root", admin=True), await accounts.create()
        unlimited = await set_quota(client, admin, account.username, daily_messages=0)
        assert unlimited.status_code == 200
        body = unlimited.json()
        assert body["username"] == account.username
        assert body["overrides"] == {"daily_messages": 0, "daily_tokens": None}
        assert body["usage"]["messages"] == {"used": 0, "limit": None, "remaining": None}
        assert body["usage"]["tokens"]["limit"] == 1_000_000
        read = await client.get(f"/api/v1/users/{account.username}/usage", headers=admin.headers)
        assert read.json() == body
        assert (await usage(client, account))["messages"]["limit"] is None  # type: ignore[index]
        reset = await set_quota(client, admin, account.username)
        assert reset.json()["overrides"] == {"daily_messages": None, "daily_tokens": None}
        assert reset.json()["usage"]["messages"]["limit"] == 500

    async def test_only_admins_and_only_known_users(
        self, client: httpx.AsyncClient, accounts: Accounts
    ) -> None:
        admin, account = await accounts.create("root", admin=True), await accounts.create()
        mine = await set_quota(client, account, account.username, daily_messages=10**6)
        assert mine.status_code == 403
        peek = await client.get(f"/api/v1/users/{admin.username}/usage", headers=account.headers)
        assert peek.status_code == 403
        missing = await set_quota(client, admin, "nobody", daily_messages=1)
        assert (missing.status_code, missing.json()["code"]) == (404, "user_not_found")
        negative = await set_quota(client, admin, account.username, daily_messages=-1)
        assert negative.status_code == 422
        unknown_field = await set_quota(client, admin, account.username, weekly_messages=1)
        assert unknown_field.status_code == 422
        assert (await client.get("/api/v1/user/me/usage")).status_code == 401
