"""Cold start: the wall time of one `qa ask` in a new process, and where it goes.

    .venv/bin/python bench/cold_start.py            # 5 runs of each
    .venv/bin/python bench/cold_start.py --runs 10

Uses a fresh user cache in a temporary directory. The first `qa ask` there
builds the default index and exports the query model to ONNX; every later
one is a new process over the cached index, as a user running `qa ask` again
sees it. Those runs alternate between the default query backend (ONNX
Runtime) and QA_QUERY_BACKEND=torch (sentence-transformers), so noise from
other processes hits both alike. `python -X importtime` then shows which
top-level imports cost most in each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QA = Path(sys.executable).parent / "qa"
QUESTION = "How many troops would the new US policy send to Libya?"


def run(env: dict[str, str], *argv: str) -> tuple[float, str]:
    """Wall seconds of one process, and its stderr."""
    started = time.perf_counter()
    result = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{argv} failed: {result.stderr[-2000:]}")
    return seconds, result.stderr


def top_imports(stderr: str, count: int = 5) -> list[tuple[str, float]]:
    """The costliest top-level imports in `-X importtime` output: (module, cumulative seconds)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith(" ") or name.startswith("  "):  # nested imports are counted in their parent
            continue
        try:
            rows.append((name.strip(), int(cumulative) / 1e6))
        except ValueError:
            continue  # the header line
    return sorted(rows, key=lambda row: -row[1])[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold runs of each backend (default 5)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="qa-cold-") as tmp:
        base = {**os.environ, "XDG_CACHE_HOME": tmp}
        base.pop("QA_INDEX_DIR", None)
        backends = {"ONNX Runtime (default)": {**base, "QA_QUERY_BACKEND": "onnx"},
                    "torch (QA_QUERY_BACKEND=torch)": {**base, "QA_QUERY_BACKEND": "torch"}}
        first, _ = run(backends["ONNX Runtime (default)"], str(QA), "ask", QUESTION)
        times: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.runs):
            for name, env in backends.items():
                times[name].append(run(env, str(QA), "ask", QUESTION)[0])
        imports = {name: top_imports(run(env, sys.executable, "-X", "importtime", "-m", "qa.cli", "ask",
                                         QUESTION)[1]) for name, env in backends.items()}
        torch_only = statistics.median(run(base, sys.executable, "-c", "import torch")[0] for _ in range(3))

    onnx, torch = (statistics.median(values) for values in times.values())
    print("## Cold start of `qa ask`\n")
    print(f"CPUs {os.cpu_count()}, load average at the end {os.getloadavg()[0]:.2f}. Each run is a new process "
          f"asking {QUESTION!r} over the cached default index.\n")
    print("| `qa ask`, new process | runs | median wall (s) | min (s) | max (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {len(values)} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{max(values):.2f} |")
    print(f"| first run ever (builds the index, exports the model) | 1 | {first:.2f} | | |")
    print(f"| for scale: `python -c 'import torch'` | 3 | {torch_only:.2f} | | |")
    print(f"\n**torch / ONNX Runtime: {torch / onnx:.1f}x** the cold wall time.\n")
    for name, rows in imports.items():
        print(f"Costliest top-level imports, {name}: "
              + ", ".join(f"{module} {seconds:.2f} s" for module, seconds in rows) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
