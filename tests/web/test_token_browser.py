"""The page behind a token, in Chromium: it asks for the token once, then the chat works as usual."""

from __future__ import annotations

import pytest
from conftest import free_port
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]
TOKEN = "browser-test-token"
TROOPS = "How many troops would the new US policy send to Libya?"


@pytest.fixture(scope="module")
def guarded(retriever):
    from qa.web import app

    port = free_port()
    demo = app.launch(host="127.0.0.1", port=port, retriever=retriever, block=False, token=TOKEN)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.sessions.stop.set()
        demo.close(verbose=False)


def test_the_page_asks_for_the_token_once_and_then_answers(browser, guarded):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(guarded)
        expect(page.locator("#qa-token")).to_be_visible()
        page.fill("#qa-token", "not-the-token")
        page.click("#qa-sign-in")
        expect(page.locator(".qa-wrong")).to_contain_text("not right")
        page.fill("#qa-token", TOKEN)
        page.click("#qa-sign-in")
        box = page.locator("#qa-question textarea")
        box.wait_for(timeout=30_000)
        box.fill(TROOPS)
        box.press("Enter")  # Gradio's own calls (queue, heartbeat, config) carry the sign-in cookie
        expect(page.locator("#qa-sources .qa-for")).to_contain_text(TROOPS, timeout=60_000)
        expect(page.locator("#qa-chat [data-testid=bot]").last).to_contain_text("troops")
        again = context.new_page()  # the browser keeps it: no second prompt
        again.goto(guarded)
        again.locator("#qa-question textarea").wait_for(timeout=30_000)
        assert again.locator("#qa-token").count() == 0
    finally:
        context.close()
