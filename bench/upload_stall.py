"""Do other visitors' questions stall while one visitor's large upload is indexed?

    .venv/bin/python bench/upload_stall.py                 # a 480,000-character .txt, as in issue 9
    .venv/bin/python bench/upload_stall.py --chars 100000  # quicker

Starts the web chat (app.py) on a free loopback port, asks questions through
/ask over plain HTTP one after another with the server otherwise idle, then
has a visitor in headless Chromium upload a large .txt and keeps asking while
it is indexed. Each question is unique (a varied lead-in), so the server's
query cache never answers for the model. Reports p50/p95 of both; target:
p95 during the upload within 3x of the idle p95. Needs Debian's chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGET = 3.0
QUESTIONS = [
    "What did CNN report about troop numbers?",
    "What security threats does Libya pose to southern Europe?",
    "Who is Khalifa Haftar?",
    "Where would the US reopen its embassy?",
    "What did the CNN report say about Haftar?",
    "Why has training Libyan troops had little success?",
    "What is the largest crossing point for migrants to Europe?",
    "Who does the PC/GNA battle?",
]
LEAD_INS = ["", "Question: ", "Tell me, ", "Please answer: ", "I wonder: ", "Quick question: ", "Now, ", "So, ",
            "One more: ", "Briefly: ", "Remind me: ", "Another question: "]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(url: str, question: str) -> float:
    """Seconds for one /ask over plain HTTP (POST, then read the event stream to its end)."""
    started = time.perf_counter()
    body = json.dumps({"data": [question, []]}).encode()  # an explicit empty history: older apps required it
    request = urllib.request.Request(f"{url}/gradio_api/call/ask", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/ask/{event_id}", timeout=300) as response:
        stream = response.read().decode()
    if "event: complete" not in stream:
        raise RuntimeError(f"/ask failed: {stream[:300]}")
    return time.perf_counter() - started


def unique_questions():
    for lead_in in LEAD_INS * 100:
        for question in QUESTIONS:
            yield lead_in + question[0].lower() + question[1:] if lead_in else question


def big_text(chars: int) -> str:
    """Plausible English sentences, `chars` characters, deterministic."""
    rng = random.Random(9)
    words = ("the herd of zebras migrated across dry plains near the river while rangers counted foals every "
             "morning at the crossing and lions watched from tall grass as birds followed the cattle").split()
    paragraphs, size = [], 0
    while size < chars:
        paragraph = " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(8, 22))).capitalize() + "."
                             for _ in range(5))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:chars]


def upload(url: str, path: Path, done: dict) -> None:
    """A visitor uploads `path` in Chromium and waits until it is indexed (runs in its own thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.locator("#qa-question textarea").wait_for()
        page.locator("#qa-upload input[type=file]").set_input_files(str(path))
        done["started"] = time.perf_counter()
        page.locator("#qa-status", has_text=f"Added {path.stem}").wait_for(timeout=900_000)
        done["finished"] = time.perf_counter()
        browser.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=480_000, help="size of the uploaded .txt (default 480,000)")
    parser.add_argument("--idle", type=int, default=30,
                        help="questions asked with the server idle, before and again after the upload (default 30)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between questions during the upload")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 1

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="qa-stall-") as tmp:
        work = Path(tmp)
        document = work / "field-log.txt"
        document.write_text(big_text(args.chars), encoding="utf-8")
        env = {**os.environ, "QA_INDEX_DIR": str(work / "index"), "GRADIO_TEMP_DIR": str(work / "gradio")}
        server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))  # noqa: SIM115
        try:
            deadline = time.time() + 180
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        raise RuntimeError("the app did not start: " + (work / "server.log").read_text()) from None
                    time.sleep(0.5)
            questions = unique_questions()
            for _ in range(3):
                ask(url, next(questions))  # warm up
            idle = [ask(url, next(questions)) for _ in range(args.idle)]

            done: dict[str, float] = {}
            visitor = threading.Thread(target=upload, args=(url, document, done), daemon=True)
            visitor.start()
            while "started" not in done and visitor.is_alive():
                time.sleep(0.1)
            time.sleep(2.0)  # let indexing get going (the question came 4 s in)
            during, sent = [], []
            while visitor.is_alive() and "finished" not in done:
                sent.append(time.perf_counter() - done["started"])
                during.append(ask(url, next(questions)))
                time.sleep(args.gap)
            visitor.join()
            if "finished" not in done:
                raise RuntimeError("the upload did not finish")
            idle += [ask(url, next(questions)) for _ in range(args.idle)]  # idle again after: load drifts
            log = (work / "server.log").read_text()
        finally:
            server.terminate()
            server.wait(timeout=30)

    upload_s = done["finished"] - done["started"]
    idle_p95, during_p95 = percentile(idle, 95), percentile(during, 95)
    ratio = during_p95 / idle_p95
    print("## Questions while another visitor's upload is indexed\n")
    print(f"Upload: {args.chars:,} characters, indexed in {upload_s:.1f} s. CPUs {os.cpu_count()}, "
          f"load average at the end {os.getloadavg()[0]:.2f}.\n")
    print("| /ask over HTTP | questions | p50 (s) | p95 (s) | max (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, values in (("server idle", idle), ("during the upload", during)):
        print(f"| {name} | {len(values)} | {statistics.median(values):.3f} | {percentile(values, 95):.3f} | "
              f"{max(values):.3f} |")
    print(f"| **p95 during / p95 idle** (target <= {TARGET:g}x) | | | **{ratio:.2f}x** | |")
    slowest = sorted(zip(during, sent, strict=True), reverse=True)[:3]
    print(f"\n{'Meets' if ratio <= TARGET else 'MISSES'} the target. Idle questions are asked before and after "
          "the upload. Slowest during the upload: "
          + ", ".join(f"{seconds:.3f} s (sent {at:.1f} s in)" for seconds, at in slowest) + ".")
    if "Traceback" in log:
        print("\nThe server logged a traceback:\n" + log[-2000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
