"""`qa serve --index` as a real process on loopback: its token, its refusals, and new versions taken up live.

One server per module, over a tiny folder indexed by `qa index`; a token is set, so every call carries it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from qa.web.access import check_exposure

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests"
BUDGET = "# Budget\n\nThe budget for the garden project is {} euros. It pays for trees and benches.\n"
OTHER = "# Trees\n\nThe park has oak trees and lime trees. The benches are made of larch wood.\n"
QUESTION = "What is the budget for the garden project?"


def qa(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300, **kwargs)


def write_notes(folder: Path, amount: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "budget.md").write_text(BUDGET.format(amount), encoding="utf-8")
    (folder / "trees.md").write_text(OTHER, encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, notes folder, index folder, server log) of a running `qa serve --index --token`."""
    tmp = tmp_path_factory.mktemp("live")
    notes, index, log = tmp / "notes", tmp / "idx", tmp / "serve.log"
    write_notes(notes, "40,000")
    built = qa("index", str(notes), "--out", str(index))
    assert built.returncode == 0, built.stderr
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--index", str(index),
                                    "--port", str(port)],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "QA_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/gradio_api/info", headers=bearer(), timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        yield url, notes, index, log
    finally:
        process.terminate()
        process.wait(30)


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def ask(url: str, question: str = QUESTION, headers: dict | None = None) -> str:
    """The answer's text from /ask (over the queue, as plain HTTP callers use it)."""
    headers = bearer() if headers is None else headers
    posted = httpx.post(f"{url}/gradio_api/call/ask", json={"data": [question]}, headers=headers, timeout=60)
    posted.raise_for_status()
    stream = httpx.get(f"{url}/gradio_api/call/ask/{posted.json()['event_id']}", headers=headers, timeout=120)
    lines = stream.text.splitlines()
    event = next(i for i, line in enumerate(lines) if line.startswith("event: complete"))
    return json.loads(lines[event + 1].removeprefix("data: "))[0]["answer"]


def until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return condition()


# -- the token ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": TOKEN}])
def test_ask_without_the_token_is_401_with_one_line_of_json(server, headers):
    url = server[0]
    response = httpx.post(f"{url}/gradio_api/call/ask", json={"data": [QUESTION]}, headers=headers)
    assert response.status_code == 401
    assert "\n" not in response.text.strip()
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/config", "/gradio_api/info", "/gradio_api/queue/join", "/gradio_api/upload"])
def test_the_apps_own_endpoints_need_the_token_too(server, path):
    url = server[0]
    method = httpx.get if path in ("/config", "/gradio_api/info") else httpx.post
    assert method(url + path).status_code == 401
    assert method(url + path, headers=bearer()).status_code != 401


def test_a_browser_without_the_token_gets_the_sign_in_form_and_a_cookie_for_the_right_one(server):
    url = server[0]
    page = httpx.get(url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'name="token"' in page.text
    wrong = httpx.post(url + "/sign-in", data={"token": "nope"})
    assert wrong.status_code == 401 and "not right" in wrong.text and "set-cookie" not in wrong.headers
    with httpx.Client() as browser:
        signed = browser.post(url + "/sign-in", data={"token": TOKEN})
        assert signed.status_code == 303 and "HttpOnly" in signed.headers["set-cookie"]
        assert TOKEN not in signed.headers["set-cookie"]
        assert browser.get(url + "/config").status_code == 200


def test_ask_with_the_token_answers_and_the_token_is_never_logged(server):
    url, _, _, log = server
    assert ask(url)
    assert TOKEN not in log.read_text()


# -- where it may listen ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--host", "0.0.0.0"], ["--host", "192.168.1.10"], ["--share"]])
def test_serving_beyond_loopback_without_a_token_is_refused_in_one_line(flags):
    done = qa("serve", *flags, env={"QA_TOKEN": ""})
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "without a token" in done.stderr and "--public" in done.stderr


@pytest.mark.parametrize(("host", "share", "token", "public", "refused"), [
    ("127.0.0.1", False, None, False, False), ("localhost", False, None, False, False),
    ("::1", False, None, False, False), ("0.0.0.0", False, "t", False, False),
    ("0.0.0.0", False, None, True, False), ("127.0.0.1", True, None, False, True), ("::", False, None, False, True)])
def test_which_addresses_need_a_token(host, share, token, public, refused):
    try:
        check_exposure(host, share, token, public)
    except Exception:  # noqa: BLE001
        assert refused
    else:
        assert not refused


# -- live versions ----------------------------------------------------------------------------------------------


def test_a_new_version_is_served_within_seconds_and_a_damaged_one_is_refused(server):
    url, notes, index, log = server
    assert "40,000" in ask(url)
    write_notes(notes, "55,000")
    built = qa("index", str(notes), "--out", str(index))
    assert built.returncode == 0, built.stderr
    started = time.monotonic()
    assert until(lambda: "55,000" in ask(url), 20), log.read_text()
    print(f"new version served {time.monotonic() - started:.1f}s after `qa index` returned")

    # A damaged version: a copy of the served one with its vectors cut short, pointed to atomically.
    served = index.parent / os.readlink(index)
    damaged = index.parent / f".{index.name}.v-damaged"
    shutil.copytree(served, damaged, symlinks=True)
    vectors = damaged / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:100])
    link = damaged / ".pointer-test"
    os.symlink(damaged.name, link)
    os.replace(link, index)
    assert until(lambda: "was refused" in log.read_text(), 10), log.read_text()
    assert "55,000" in ask(url)
    refused = [line for line in log.read_text().splitlines() if "was refused" in line]
    assert len(refused) == 1 and "vectors.faiss" in refused[0]
