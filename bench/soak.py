"""Does the web app's memory stay flat under many API calls, uploads and closed tabs?

    .venv/bin/python bench/soak.py                     # at most about 3 minutes (--seconds 150 of load)
    .venv/bin/python bench/soak.py --seconds 1200 --rounds 8   # longer

Starts `qa serve` on a free loopback port (its own Gradio temp folder, closed tabs freed after
--linger seconds), warms it up, then runs rounds of: /ask calls over plain HTTP (the two-step call:
POST, then read the event stream), malformed /ask calls (refused before any work), and browser tabs
as the server sees them (a heartbeat stream, an upload of a small file through /gradio_api/upload
and the page's upload event, a question through the chat's own event, then the tab closes). After each
round it waits for the closed tabs to be freed and reads the server's resident memory (VmRSS). Prints
one Markdown table; target: RSS after every round within 10% of RSS after the warm-up, and no file
left in the temp folder. The load stops at --seconds (rounds then hold what was done), so a busy
machine runs fewer calls, not longer.

    .venv/bin/python bench/soak.py --api 6000            # issue 33: /ask only, as a plain HTTP client calls it

With --api N: only /ask, N calls after --warm-up calls (default 300), from --threads callers (default 8)
over five different questions, each call on a new connection (`--keep-alive` reuses them), RSS read at
several points. Prints the RSS table and the two targets: RSS after N calls within 10% of RSS after the
warm-up, and the last half of the calls adding under 2%. It stops at --seconds (0: no limit) and reports
what was done.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "web"))
from http_page import HttpPage  # noqa: E402 - a page as the server sees it, shared with the tests

TARGET = 0.10
QUESTIONS = ["What did CNN report about troop numbers?", "Who is Khalifa Haftar?",
             "Where would the US reopen its embassy?", "What security threats does Libya pose to southern Europe?"]
API_QUESTIONS = [*QUESTIONS, "How many troops would the new US policy send to Libya?"]
BAD = [[42], [], ["   "], ["q", None, "extra"], ["q", [["only one"]]], ["why " * 400], [["a list"]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def ask(http: httpx.Client | None, url: str, data: list) -> int:
    """One /ask call, the two-step way; `http` None: each step on a new connection, as curl or a bare
    `requests.post` would make it."""
    if http is None:
        with httpx.Client(timeout=300) as fresh:
            return ask(fresh, url, data)
    posted = http.post(f"{url}/gradio_api/call/ask", json={"data": data})
    if posted.status_code == 200:
        stream = http.get(f"{url}/gradio_api/call/ask/{posted.json()['event_id']}").text
        if "event: complete" not in stream:
            raise RuntimeError(f"/ask failed: {stream[:200]}")
    return posted.status_code


def visit(url: str, n: int) -> None:
    """A browser tab as the server sees it (tests/web/http_page.py): it uploads a small file, asks about it
    through the chat's own events, and closes."""
    page = HttpPage(url)
    try:
        text = f"Visitor {n} notes. The okapi {n} lives in the Ituri forest. It eats leaves, fruit and fungi.\n" * 3
        for name, result in (("upload", page.upload({f"notes-{n}.txt": text})),
                             ("ask", page.ask(f"Where does okapi {n} live?"))):
            if not result.get("success"):
                raise RuntimeError(f"{name} failed: {result}")
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--asks", type=int, default=300, help="/ask calls per round (default 300)")
    parser.add_argument("--bad", type=int, default=1000, help="malformed /ask calls per round (default 1000)")
    parser.add_argument("--pages", type=int, default=50, help="tabs that upload, ask and close, per round")
    parser.add_argument("--seconds", type=float, help="stop sending work after this long (150; with --api 3600, "
                                                          "0: no limit)")
    parser.add_argument("--linger", type=int, default=5, help="seconds a closed tab is kept (the server's "
                                                              "--session-linger; default 5)")
    parser.add_argument("--clients", type=int, default=2, help="callers at a time of each kind (default 2)")
    parser.add_argument("--api", type=int, metavar="N", help="only /ask: N calls after the warm-up (issue 33)")
    parser.add_argument("--warm-up", type=int, default=300, help="with --api: calls before the baseline (300)")
    parser.add_argument("--threads", type=int, default=8, help="with --api: callers at a time (default 8)")
    parser.add_argument("--points", type=int, default=6, help="with --api: RSS readings after the warm-up (6)")
    parser.add_argument("--keep-alive", action="store_true", help="with --api: reuse connections")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 3600 if args.api else 150

    port, url = free_port(), None
    temp = Path(tempfile.mkdtemp(prefix="qa-soak-"))
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp / "gradio"), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port),
                               "--session-linger", str(args.linger)], cwd=temp, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(timeout=300)
    try:
        for _ in range(600):
            try:
                if http.get(f"{url}/config").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"qa serve did not answer on {url} within 5 minutes: {server.stderr.read()[-2000:]}"
                               if server.poll() is not None else f"qa serve did not answer on {url} within 5 minutes")
        if args.api:
            return api_soak(args, server, url, start_rss=rss_mb(server.pid))
        started = time.monotonic()
        totals = {"asks": 0, "bad": 0, "pages": 0}
        rows = []

        deadline = started + args.seconds
        spent = {"asks": 0.0, "bad": 0.0, "pages": 0.0}
        lock = threading.Lock()

        def work(asks: int, bad: int, pages: int) -> None:
            """Each kind of call from its own `--clients` callers, so cheap calls are not held up by slow ones."""
            first_page = totals["pages"]

            def run(job: tuple[str, int]) -> None:
                kind, i = job
                if time.monotonic() > deadline:
                    return
                began = time.monotonic()
                if kind == "asks":
                    assert ask(http, url, [QUESTIONS[i % len(QUESTIONS)]]) == 200
                elif kind == "bad":
                    assert 400 <= ask(http, url, BAD[i % len(BAD)]) < 500
                else:
                    visit(url, first_page + i)
                with lock:
                    totals[kind] += 1
                    spent[kind] += time.monotonic() - began

            pools = [ThreadPoolExecutor(args.clients) for _ in range(3)]
            futures = [pool.submit(run, (kind, i)) for pool, (kind, count) in
                       zip(pools, (("asks", asks), ("bad", bad), ("pages", pages)), strict=True) for i in range(count)]
            for future in futures:
                future.result()
            for pool in pools:
                pool.shutdown()

        def settle() -> float:
            time.sleep(args.linger + 3)  # closed tabs are freed `linger` seconds after closing
            return rss_mb(server.pid)

        start_rss = rss_mb(server.pid)
        work(max(20, args.asks // 5), max(20, args.bad // 5), max(5, args.pages // 5))
        base = settle()
        rows.append(("after warm-up", dict(totals), base))
        for r in range(args.rounds):
            work(args.asks, args.bad, args.pages)
            rows.append((f"after round {r + 1}", dict(totals), settle()))
        elapsed = time.monotonic() - started - (args.rounds + 1) * (args.linger + 3)
        left = [p for p in (temp / "gradio").rglob("*") if p.is_file()] if (temp / "gradio").exists() else []
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        http.close()

    worst = max(abs(rss - base) / base for _, _, rss in rows)
    print(f"\nSoak of `qa serve` on loopback, {os.cpu_count()} CPUs, {args.clients} callers of each kind, closed tabs "
          f"freed after {args.linger} s; RSS at start {start_rss:.0f} MB; {elapsed:.0f} s of load. Mean seconds "
          f"per call: /ask {spent['asks'] / max(1, totals['asks']):.2f}, malformed "
          f"{spent['bad'] / max(1, totals['bad']):.3f}, tab {spent['pages'] / max(1, totals['pages']):.2f}.\n")
    print("| after | /ask calls | malformed /ask | tabs (upload, question, close) | RSS (MB) | vs warm-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, counts, rss in rows:
        print(f"| {name} | {counts['asks']:,} | {counts['bad']:,} | {counts['pages']:,} | {rss:.0f} | "
              f"{(rss - base) / base:+.1%} |")
    print(f"\nLargest change from the warm-up: {worst:.1%} (target within {TARGET:.0%}): "
          f"{'met' if worst <= TARGET else 'NOT met'}. Files left in Gradio's temp folder: {len(left)}.")


def api_soak(args: argparse.Namespace, server: subprocess.Popen, url: str, start_rss: float) -> None:
    """Issue 33's load: /ask only, `--threads` callers, five questions; RSS after the warm-up and at `--points`."""
    http = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=args.threads)) if args.keep_alive else None
    deadline = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    done = 0

    def call(i: int) -> None:
        nonlocal done
        if time.monotonic() <= deadline:
            assert ask(http, url, [API_QUESTIONS[i % len(API_QUESTIONS)]]) == 200
            done += 1  # one writer per call, under the GIL: exact enough for a count

    def calls(n: int) -> float:
        began = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(call, range(done, done + n)))
        time.sleep(3)  # the sweep drops the last calls' sessions
        return time.monotonic() - began

    calls(args.warm_up)
    rows = [("warm-up", done, rss_mb(server.pid), 0.0)]
    step = -(-args.api // args.points)
    while done - rows[0][1] < args.api and time.monotonic() < deadline:
        seconds = calls(min(step, args.api - (done - rows[0][1])))
        rows.append((f"+{done - rows[0][1]:,}", done, rss_mb(server.pid), seconds))
    base, last = rows[0][2], rows[-1]
    half = min(rows, key=lambda r: abs((r[1] - rows[0][1]) - (last[1] - rows[0][1]) / 2))
    print(f"\n/ask soak of `qa serve` on loopback: {args.threads} callers, {len(API_QUESTIONS)} questions, "
          f"{'kept-alive' if args.keep_alive else 'a new'} connection{'s' if args.keep_alive else ' per call'}, "
          f"{os.cpu_count()} CPUs; RSS at start {start_rss:.0f} MB.\n")
    print("| after | /ask calls | RSS (MB) | vs warm-up | KB per call since last | calls/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, n, rss, seconds), before in zip(rows, [None, *rows], strict=False):
        slope = f"{(rss - before[2]) * 1024 / max(1, n - before[1]):+.1f}" if before else ""
        speed = f"{(n - before[1]) / seconds:.1f}" if before and seconds else ""
        print(f"| {name} | {n:,} | {rss:.0f} | {(rss - base) / base:+.1%} | {slope} | {speed} |")
    total, tail = (last[2] - base) / base, (last[2] - half[2]) / half[2]
    print(f"\nAfter {last[1] - rows[0][1]:,} calls: {total:+.1%} vs the warm-up (target within 10%: "
          f"{'met' if abs(total) <= 0.10 else 'NOT met'}); the last {last[1] - half[1]:,} calls: {tail:+.1%} "
          f"(target under 2%: {'met' if tail < 0.02 else 'NOT met'}).")
    if last[1] - rows[0][1] < args.api:
        print(f"Stopped at --seconds {args.seconds:g} after {last[1] - rows[0][1]:,} of {args.api:,} calls.")


if __name__ == "__main__":
    main()
