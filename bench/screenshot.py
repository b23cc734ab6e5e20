"""Make docs/screenshot.png: the web chat answering the troop-numbers question, sources shown.

    .venv/bin/python bench/screenshot.py [--out docs/screenshot.png] [--index DIR] [--question TEXT]

Starts app.py on a free local port (the index is built in a temp dir unless --index is given),
drives Debian's Chromium with Playwright, asks by typing and pressing Enter, clicks the marker [1]
so the cited sentence is also shown highlighted in the document, and saves the page.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTION = "How many troops would the new US policy send to Libya?"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--index", help="index directory of the bundled article (default: a temp dir)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--question", default=QUESTION, help=f"what to ask (default: {QUESTION!r})")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from qa.web import app

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        demo = app.launch("127.0.0.1", port, index_dir=args.index or Path(tmp) / "index", block=False)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
                page.goto(f"http://127.0.0.1:{port}")
                box = page.locator("#qa-question textarea")
                box.fill(args.question)
                box.press("Enter")
                expect(page.locator("#qa-sources .qa-source mark").first).to_be_visible(timeout=60_000)
                page.locator("#qa-chat .qa-marker").first.click()
                expect(page.locator("#qa-sources .qa-source.qa-active .qa-doc mark")).to_be_visible()
                page.evaluate("window.scrollTo(0, 0)")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            demo.close(verbose=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
