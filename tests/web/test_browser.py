"""The chat page in a real browser: Playwright driving Debian's Chromium (never a downloaded
browser) against a real uvicorn server with the UI and the API in one app, on each database.

The fake model pauses between its words, so an answer arrives in visible steps.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect

from mongars.config import Settings
from mongars.web_mount import standalone_web_app
from tests.conftest import PASSWORD, Database
from tests.live_server import LiveServer, free_port, register_and_login

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
ANSWER = f"echo: {WORDS}"
LAST_ANSWER = "#messages .message.assistant >> nth=-1"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"The browser tests need Debian's Chromium at {CHROMIUM}: run `make browser` "
            "(apt-get install chromium); `make test` does it first."
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium))
        yield launched
        await launched.close()


async def logged_in_page(
    browser: Browser,
    server: LiveServer,
    name: str,
    *,
    javascript: bool = True,
    api_url: str | None = None,
) -> Page:
    register_and_login(api_url or server.base_url, name, PASSWORD)
    context = await browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(20_000)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/login/")
    # Keyboard only: labelled fields, Tab between them, Enter submits.
    await page.get_by_label("Username").fill(name)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    return page


async def start_answer(page: Page, server: LiveServer, message: str = WORDS) -> None:
    await page.goto(f"{server.base_url}/chat/new/")
    await page.get_by_label("Your message").fill(message)
    await page.get_by_label("Your message").press("Enter")


async def wait_for_words(page: Page, count: int) -> str:
    """Wait until the answer being written shows at least ``count`` words; its text then."""
    await page.wait_for_function(
        """(count) => {
            const answers = document.querySelectorAll('#messages .message.assistant .content');
            const last = answers[answers.length - 1];
            return last && last.textContent.trim().split(/\\s+/).length >= count;
        }""",
        arg=count,
    )
    return await page.locator(f"{LAST_ANSWER} >> .content").inner_text()


async def test_the_answer_streams_in_steps_and_is_announced(
    browser: Browser, server: LiveServer
) -> None:
    server.fake.token_delay_seconds = 0.08
    page = await logged_in_page(browser, server, "streamer")
    await page.goto(f"{server.base_url}/chat/new/")
    # Every text the answer shows while it is written.
    await page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                const answers = document.querySelectorAll('#messages .message.assistant .content');
                const last = answers[answers.length - 1];
                if (last) window.seen.push(last.textContent);
            }).observe(document.getElementById('messages'),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )
    await page.get_by_label("Your message").fill(WORDS)
    await page.get_by_label("Your message").press("Enter")
    await expect(page.locator("#stop")).to_be_visible()
    answer = page.locator(f"{LAST_ANSWER} >> .content")
    await expect(answer).to_have_text(ANSWER)
    seen = [text for text in dict.fromkeys(await page.evaluate("window.seen")) if text.strip()]
    assert len(seen) >= 3, seen  # several steps, not one final paint
    assert all(ANSWER.startswith(text.strip()) for text in seen), seen
    await expect(page.locator("#stop")).to_be_hidden()
    await expect(page.locator("#announcer")).to_have_text(f"monGARS answered: {ANSWER}")
    assert re.search(r"/chat/[0-9a-f-]{36}/$", page.url)  # the new conversation's address
    # The user's message is on the page as sent, and the stored turn is there after a reload.
    await page.reload()
    await expect(page.locator(f"{LAST_ANSWER} >> .content")).to_have_text(ANSWER)

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "chat-desktop.png"), full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(ARTIFACTS / "chat-phone.png"), full_page=True)
    # Readable at phone width: nothing wider than the screen.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.context.close()


async def test_markdown_and_code_are_rendered_safely(browser: Browser, server: LiveServer) -> None:
    page = await logged_in_page(browser, server, "markdowner")
    await start_answer(page, server, "**bold** `code` <img src=x onerror=alert(1)>")
    answer = page.locator(f"{LAST_ANSWER} >> .content")
    await expect(answer.locator("strong")).to_have_text("bold")
    await expect(answer.locator("code")).to_have_text("code")
    assert await answer.locator("img").count() == 0
    await page.context.close()


async def test_a_model_that_is_down_is_said_in_plain_words(
    browser: Browser, server: LiveServer
) -> None:
    server.fake.fail_before_first_token = True
    page = await logged_in_page(browser, server, "unlucky")
    await start_answer(page, server, "Anyone home?")
    await expect(page.locator("#chat-error")).to_contain_text(
        "The model is not available right now."
    )
    await expect(page.locator(LAST_ANSWER)).to_have_attribute("data-status", "error")
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    await page.context.close()


async def test_a_reload_in_the_middle_resumes_the_answer(
    browser: Browser, server: LiveServer
) -> None:
    server.fake.token_delay_seconds = 0.2
    page = await logged_in_page(browser, server, "reloader")
    await start_answer(page, server)
    partial = await wait_for_words(page, 3)
    assert partial != ANSWER
    await page.reload()
    await expect(page.locator(f"{LAST_ANSWER} >> .content")).to_have_text(ANSWER)
    await expect(page.locator(LAST_ANSWER)).to_have_attribute("data-status", "complete")
    await expect(page.locator(f"{LAST_ANSWER} >> .note")).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('mongars.stream')") is None
    await page.context.close()


async def test_a_dropped_connection_reconnects_and_resumes(
    browser: Browser, server: LiveServer
) -> None:
    server.fake.token_delay_seconds = 0.15
    page = await logged_in_page(browser, server, "dropper")
    await start_answer(page, server)
    await wait_for_words(page, 3)
    await page.evaluate("window.mongarsChat.channel.drop()")
    await expect(page.locator(f"{LAST_ANSWER} >> .content")).to_have_text(ANSWER)
    await expect(page.locator("#chat-error")).to_be_hidden()
    await page.context.close()


async def test_the_stop_button_ends_the_answer(browser: Browser, server: LiveServer) -> None:
    server.fake.token_delay_seconds = 0.25
    page = await logged_in_page(browser, server, "stopper")
    await start_answer(page, server)
    await wait_for_words(page, 3)
    await page.get_by_role("button", name="Stop", exact=True).click()
    answer = page.locator(LAST_ANSWER)
    await expect(answer.locator(".note")).to_have_text("Stopped.")
    stopped = await answer.locator(".content").inner_text()
    assert ANSWER.startswith(stopped.strip())
    assert stopped.strip() != ANSWER
    await expect(page.locator("#stop")).to_be_hidden()
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    # What was kept is stored as an incomplete answer.
    await page.reload()
    await expect(page.locator(LAST_ANSWER)).to_have_attribute("data-status", "incomplete")
    await page.context.close()


async def test_the_same_conversation_without_javascript(
    browser: Browser, server: LiveServer
) -> None:
    server.fake.token_delay_seconds = 0.02
    # Started with JavaScript (streamed) ...
    scripted = await logged_in_page(browser, server, "plainreader")
    await start_answer(scripted, server, "First with scripts")
    await expect(scripted.locator(f"{LAST_ANSWER} >> .content")).to_have_text(
        "echo: First with scripts"
    )
    conversation_url = scripted.url
    await scripted.context.close()
    # ... and carried on in a browser that runs none.
    page = await browser.new_page(java_script_enabled=False)
    page.set_default_timeout(20_000)
    path = conversation_url.removeprefix(server.base_url)
    await page.goto(f"{server.base_url}/login/?next={path}")
    await page.get_by_label("Username").fill("plainreader")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    assert page.url == conversation_url
    await expect(page.locator(f"{LAST_ANSWER} >> .content")).to_have_text(
        "echo: First with scripts"
    )
    await page.get_by_label("Your message").fill("Then **without** scripts")
    await page.get_by_role("button", name="Send", exact=True).click()
    # The server ran the whole turn; the page after the redirect shows question and answer.
    assert re.search(r"/chat/[0-9a-f-]{36}/#message-\d+$", page.url)
    assert page.url.split("#")[0] == conversation_url
    await expect(page.locator("#messages .message.user >> nth=-1")).to_contain_text(
        "Then **without** scripts"
    )
    answer = page.locator(f"{LAST_ANSWER} >> .content")
    await expect(answer).to_have_text("echo: Then without scripts")
    await expect(answer.locator("strong")).to_have_text("without")  # Markdown, server-side
    await expect(page.locator("#messages .message")).to_have_count(4)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "chat-no-javascript.png"), full_page=True)
    await page.context.close()


@contextmanager
def standalone_ui(settings: Settings, api_url: str) -> Iterator[str]:
    """What ``mongars web --api-url`` runs, on a port of its own; its base URL."""
    port = free_port()
    config = uvicorn.Config(
        standalone_web_app(settings, api_url), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"ui:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the standalone UI did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def test_the_standalone_ui_streams_from_a_remote_api(
    browser: Browser, server: LiveServer, database: Database
) -> None:
    """``mongars web``: pages from one origin, the API and its WebSocket on another."""
    server.fake.token_delay_seconds = 0.05
    with standalone_ui(database.settings, server.base_url) as ui_url:
        page = await logged_in_page(
            browser, LiveServer(ui_url, server.fake), "remote", api_url=server.base_url
        )
        await page.goto(f"{ui_url}/chat/new/")
        await page.get_by_label("Your message").fill(WORDS)
        await page.get_by_label("Your message").press("Enter")
        await expect(page.locator(f"{LAST_ANSWER} >> .content")).to_have_text(ANSWER)
        assert page.url.startswith(f"{ui_url}/chat/")
        await page.context.close()
