"""Conversations without JavaScript: the list, sending (the server runs the turn, the page after
the redirect shows question and answer), errors in plain words, export, delete and search."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from mongars_web.connector import InProcessApi

from mongars.app import create_app
from mongars.config import ChatSettings, RateLimitSettings
from mongars.core.llm import FakeBackend
from mongars.core.model_roles import ModelRoles
from tests.conftest import PASSWORD, Accounts, migrated_settings
from tests.web.conftest import Web, text

CONVERSATION_URL = re.compile(r"^/chat/([0-9a-f-]{36})/#message-(\d+)$")


async def send(web: Web, page_url: str, message: str, action: str | None = None) -> tuple[str, str]:
    """Post a message from ``page_url``'s form; (the conversation's page, its id)."""
    response = await web.submit(page_url, {"message": message}, action=action)
    assert response.status_code == 302, text(response)[:3000]
    match = CONVERSATION_URL.match(response["Location"])
    assert match, response["Location"]
    return response["Location"].split("#")[0], match.group(1)


@pytest.fixture
async def alice(web: Web, accounts: Accounts, fake_backend: FakeBackend) -> Web:
    await accounts.create("alice")
    await web.log_in("alice")
    return web


class TestSendingWithoutJavaScript:
    async def test_a_new_chat_shows_the_question_and_the_answer(self, alice: Web) -> None:
        page, _id = await send(alice, "/chat/new/", "Hello **there**")
        body = text(await alice.get(page))
        assert '<div class="content plain">Hello **there**</div>' in body
        assert "<p>echo: Hello <strong>there</strong></p>" in body  # Markdown, rendered
        assert '<label for="id_message">Your message</label>' in body
        assert f'action="{page}"' in body  # the next message continues this conversation

    async def test_the_conversation_goes_on_and_is_listed(self, alice: Web) -> None:
        page, conversation_id = await send(alice, "/", "First question", action="/chat/new/")
        again, same_id = await send(alice, page, "Second question")
        assert (again, same_id) == (page, conversation_id)
        body = text(await alice.get(page))
        assert body.index("First question") < body.index("echo: Second question")
        listing = text(await alice.get("/"))
        assert f'href="/chat/{conversation_id}/"' in listing
        assert "4 messages" in listing

    async def test_the_models_markup_is_sanitised(self, alice: Web) -> None:
        page, _id = await send(
            alice, "/chat/new/", '<script>alert(1)</script> <img src=x onerror="alert(2)">'
        )
        body = text(await alice.get(page))
        assert "<script>alert" not in body
        assert "<img" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body

    async def test_a_page_number_that_is_no_number_shows_the_first_page(self, alice: Web) -> None:
        # "²" is a digit to str.isdigit, but int() refuses it.
        for page in ("%C2%B2", "abc", "0", "-1"):
            assert (await alice.get(f"/?page={page}")).status_code == 200, page

    async def test_an_empty_message_is_refused_on_the_page(self, alice: Web) -> None:
        response = await alice.submit("/chat/new/", {"message": "   "})
        assert response.status_code == 400
        assert "Write something first." in text(response)

    async def test_a_message_over_the_limit_is_named(self, alice: Web) -> None:
        response = await alice.submit("/chat/new/", {"message": "x" * (33 * 1024)})
        assert response.status_code == 413
        assert "the limit is 32768" in text(response)
        assert 'id="chat-error" class="error-box" role="alert" >' in text(response)

    async def test_a_backend_that_is_down_is_said_in_plain_words(
        self, alice: Web, fake_backend: FakeBackend
    ) -> None:
        page, _id = await send(alice, "/chat/new/", "Working")
        fake_backend.fail_before_first_token = True
        response = await alice.submit(page, {"message": "Broken now"})
        assert response.status_code == 503
        body = text(response)
        assert "The model is not available right now." in body
        assert "Broken now" in body  # the typed text is kept in the form

    async def test_someone_elses_conversation_is_not_found(
        self, alice: Web, accounts: Accounts
    ) -> None:
        page, _id = await send(alice, "/chat/new/", "Mine")
        await accounts.create("mallory")
        mallory = Web(alice.connector)
        await mallory.log_in("mallory")
        response = await mallory.get(page)
        assert response.status_code == 404
        assert "Mine" not in text(response)
        sneaky = await mallory.submit("/chat/new/", {"message": "x"}, action=page)
        assert sneaky.status_code == 404


async def test_rate_limited_sending_says_when_to_try_again(tmp_path: Path) -> None:
    settings = await migrated_settings(
        tmp_path, rate_limit=RateLimitSettings(chat_per_minute=1, login_per_minute=0)
    )
    app = create_app(settings, roles=ModelRoles.single(FakeBackend()))
    async with LifespanManager(app) as manager:
        web = Web(InProcessApi(app=manager.app))  # type: ignore[arg-type]
        await web.submit(
            "/register/", {"username": "eager", "password": PASSWORD, "password_again": PASSWORD}
        )
        await send(web, "/chat/new/", "One")
        response = await web.submit("/chat/new/", {"message": "Two"})
        assert response.status_code == 429
        assert re.search(
            r"Too many requests in a short time\. Try again in \d+ seconds\.", text(response)
        )


async def test_a_backend_timeout_is_said_in_plain_words(tmp_path: Path) -> None:
    fake = FakeBackend(hang_before_first_token=True)
    settings = await migrated_settings(tmp_path, chat=ChatSettings(token_timeout_seconds=0.2))
    app = create_app(settings, roles=ModelRoles.single(fake))
    async with LifespanManager(app) as manager:
        web = Web(InProcessApi(app=manager.app))  # type: ignore[arg-type]
        await web.submit(
            "/register/", {"username": "patient", "password": PASSWORD, "password_again": PASSWORD}
        )
        response = await web.submit("/chat/new/", {"message": "Anyone there?"})
        assert response.status_code == 504
        assert "The model took too long to answer." in text(response)


class TestExportDeleteSearch:
    async def test_export_as_markdown_and_json(self, alice: Web) -> None:
        page, conversation_id = await send(alice, "/chat/new/", "Export me")
        assert f'href="/chat/{conversation_id}/export/?format=json"' in text(await alice.get(page))
        markdown = await alice.get(f"/chat/{conversation_id}/export/?format=markdown")
        assert markdown.status_code == 200
        assert markdown["Content-Type"].startswith("text/markdown")
        assert markdown["Content-Disposition"].startswith("attachment; filename=")
        assert "echo: Export me" in text(markdown)
        as_json = await alice.get(f"/chat/{conversation_id}/export/?format=json")
        body = json.loads(as_json.content)
        assert [m["content"] for m in body["messages"]] == ["Export me", "echo: Export me"]

    async def test_delete_asks_for_a_post_and_removes_it(self, alice: Web) -> None:
        page, conversation_id = await send(alice, "/chat/new/", "Delete me")
        assert (await alice.get(f"/chat/{conversation_id}/delete/")).status_code == 405
        response = await alice.submit(page, {}, action=f"/chat/{conversation_id}/delete/")
        assert response["Location"] == "/"
        assert "The conversation was deleted." in text(await alice.get("/"))
        assert (await alice.get(page)).status_code == 404

    async def test_search_marks_the_words_and_links_to_the_message(self, alice: Web) -> None:
        _page, conversation_id = await send(alice, "/chat/new/", "The purple <b>giraffe</b>")
        empty = await alice.get("/search/")
        assert '<label for="q">Words to find</label>' in text(empty)
        found = text(await alice.get("/search/?q=giraffe"))
        assert f'href="/chat/{conversation_id}/#message-' in found
        assert "<mark>giraffe</mark>" in found
        assert "&lt;b&gt;" in found  # the snippet is text, escaped
        assert "<b>" not in found
        nothing = text(await alice.get("/search/?q=zebra"))
        assert "Nothing matches." in nothing


class TestTheWebSocketTicket:
    async def test_the_page_gets_a_single_use_ticket_not_a_token(self, alice: Web) -> None:
        token = await alice.csrf_token("/chat/new/")
        response = await alice.http.post("/ws-ticket/", headers={"X-CSRFToken": token})
        assert response.status_code == 200
        body = json.loads(response.content)
        assert set(body) == {"ticket", "ttl", "ws_url"}
        assert body["ttl"] == 30
        assert body["ws_url"] is None  # in-process: the page's own origin

    async def test_without_a_login_it_says_where_to_log_in(self, web: Web) -> None:
        token = await web.csrf_token("/login/")
        response = await web.http.post("/ws-ticket/", headers={"X-CSRFToken": token})
        assert response.status_code == 401
        assert json.loads(response.content)["login_url"] == "/login/"
