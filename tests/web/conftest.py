"""The web app, launched once per test session on a free port, and one headless Chromium for the browser tests.

The app serves the session `retriever` of tests/conftest.py, whose index lives in a temp dir (never the
repository's index/).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # app.py sits at the repository root, outside the qa package
    sys.path.append(str(ROOT))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(retriever) -> Iterator:
    """The running app (its `Page`): tests read its sessions and may vary its handlers' limits."""
    from qa.web import app

    port = free_port()
    demo = app.launch(host="127.0.0.1", port=port, retriever=retriever, block=False)
    demo.url = f"http://127.0.0.1:{port}"
    try:
        yield demo
    finally:
        demo.sessions.stop.set()
        demo.close(verbose=False)


@pytest.fixture(scope="session")
def app_url(served) -> str:
    return served.url


@pytest.fixture(scope="session")
def client(app_url: str):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def visitor(browser, app_url: str):
    """A function that opens the app in a new browser context: a new visitor with their own session."""
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: pytest.fail(f"page opened a dialog: {dialog.message}"))
        page.goto(app_url)
        page.locator("#qa-question textarea").wait_for()
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(visitor):
    return visitor()
