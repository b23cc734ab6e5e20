"""Replicas over one index folder, and a re-index under load: memory, answers per second, lost requests.

    .venv/bin/python bench/live_reindex.py               # docs/*.md as the collection, 4 s of load per row
    .venv/bin/python bench/live_reindex.py --seconds 8 --clients 4

Indexes a folder (a copy of docs/ by default) with `qa index`, starts one `qa serve --index` on loopback,
then a second one over the same folder, and reads each one's RSS and PSS from /proc/PID/smaps_rollup (PSS
splits the pages the replicas share, such as the memory-mapped vectors, between them). Then: answers per
second through /ask with `--clients` concurrent callers for `--seconds`, against one replica and round-robin
against two; then the same load on two replicas while `qa index` writes two new versions (a file's text
changed each time), counting failed requests and the answers that quote the newest text. Prints a Markdown
table. Each question is varied, so no cache answers it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
QUESTIONS = ["What is the budget for the garden project?", "How are uploads indexed?",
             "What does the manifest record?", "How is the answer ranked?", "What does qa serve do?"]
BUDGET = "# Garden\n\nThe budget for the garden project is {} euros.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "qa.cli", *args], cwd=ROOT, env=ENV, check=True, capture_output=True)


def serve(index: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--index", str(index), "--port", str(port)],
                               cwd=ROOT, env=ENV, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        try:
            urllib.request.urlopen(f"{url}/gradio_api/info", timeout=5)
            ask(url, QUESTIONS[0])  # warm: the models are loaded
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"qa serve exited: {log.read_text()}") from None
            time.sleep(0.2)
    raise SystemExit("qa serve did not start")


def ask(url: str, question: str) -> str:
    body = json.dumps({"data": [question]}).encode()
    request = urllib.request.Request(f"{url}/gradio_api/call/ask", body, {"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    lines = urllib.request.urlopen(f"{url}/gradio_api/call/ask/{event}", timeout=120).read().decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("event: "))
    if lines[at] != "event: complete":
        raise RuntimeError(lines[at + 1] if at + 1 < len(lines) else lines[at])
    return json.loads(lines[at + 1].removeprefix("data: "))[0]["answer"]


def memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    return fields["Rss"], fields["Pss"]


def load(urls: list[str], seconds: float, clients: int, during=None) -> dict:
    """`clients` callers asking in a loop for `seconds` (round-robin over `urls`); `during` runs meanwhile."""
    done, failed, answers = [], [], []
    counter = itertools.count()
    stop = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < stop:
            n = next(counter)
            url = urls[n % len(urls)]
            question = f"{QUESTIONS[n % len(QUESTIONS)]} ({n})" if n % len(QUESTIONS) else QUESTIONS[0]
            try:
                answers.append(ask(url, question))
                done.append(n)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever it is
                failed.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(clients)]
    for thread in threads:
        thread.start()
    if during is not None:
        during()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"ok": len(done), "failed": failed, "per_s": len(done) / elapsed, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="folder to index (default docs/)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qa-live-"))
    processes = []
    try:
        notes, index = work / "notes", work / "idx"
        shutil.copytree(args.docs, notes, ignore=shutil.ignore_patterns("*.png", "*.jpg"))
        (notes / "garden.md").write_text(BUDGET.format("40,000"), encoding="utf-8")
        qa("index", str(notes), "--out", str(index))
        first, url1 = serve(index, work / "serve1.log")
        processes.append(first)
        rss1, pss1 = memory(first.pid)
        second, url2 = serve(index, work / "serve2.log")
        processes.append(second)
        rss2, pss2 = memory(second.pid)
        _, pss1_shared = memory(first.pid)
        one = load([url1], args.seconds, args.clients)
        two = load([url1, url2], args.seconds, args.clients)

        def reindex() -> None:
            for amount in ("55,000", "70,000"):
                time.sleep(args.seconds / 3)
                (notes / "garden.md").write_text(BUDGET.format(amount), encoding="utf-8")
                qa("index", str(notes), "--out", str(index))

        before = memory(first.pid)[0]
        live = load([url1, url2], max(args.seconds, 12.0), args.clients, during=reindex)
        time.sleep(3)
        newest = [ask(url, QUESTIONS[0]) for url in (url1, url2)]
        after = memory(first.pid)[0]
        deleted = sum("(deleted)" in line for line in Path(f"/proc/{first.pid}/maps").read_text().splitlines())
        taken = [(work / f"serve{i}.log").read_text().count("serving the new version") for i in (1, 2)]
        print(f"Collection: {sum(1 for _ in notes.rglob('*.md'))} Markdown files; {args.clients} concurrent "
              f"callers; {os.cpu_count()} CPUs.\n")
        print("| measure | value |\n|---|---|")
        print(f"| replica 1 alone: RSS / PSS | {rss1:,.0f} MB / {pss1:,.0f} MB |")
        print(f"| replica 2: RSS / PSS (its extra memory) | {rss2:,.0f} MB / {pss2:,.0f} MB |")
        print(f"| replica 1's PSS once 2 share its pages | {pss1_shared:,.0f} MB |")
        print(f"| answers/s, 1 replica ({args.seconds:.0f} s) | {one['per_s']:.2f} ({one['ok']} ok, "
              f"{len(one['failed'])} failed) |")
        print(f"| answers/s, 2 replicas round-robin ({args.seconds:.0f} s) | {two['per_s']:.2f} ({two['ok']} ok, "
              f"{len(two['failed'])} failed) |")
        print(f"| re-index twice under load, 2 replicas | {live['ok']} ok, {len(live['failed'])} failed |")
        print(f"| new versions taken up by replica 1 / 2 (of 2) | {taken[0]} / {taken[1]}; then both quote the "
              f"newest text: {all('70,000' in a for a in newest)} |")
        print(f"| replica 1's RSS before / after the two swaps; mappings of deleted versions left | "
              f"{before:,.0f} MB / {after:,.0f} MB; {deleted} |")
        for problem in live["failed"][:5]:
            print(f"\nfailed: {problem}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
