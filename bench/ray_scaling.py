"""Embedding throughput on a local Ray cluster with 1 and 2 workers, next to a single process.

    .venv/bin/python bench/ray_scaling.py                 # the SQuAD paragraphs of ../shared/eval
    .venv/bin/python bench/ray_scaling.py --paragraphs 400 --repeats 2

Every build indexes the same documents (SQuAD paragraphs, one document
each) and must give the same sentences; vectors are compared with the
single-process build. "Start-up" is the time for the workers to be ready
(process start, torch import, model load), measured on its own; "build" is
`qa.distributed.build_on_ray` end to end (start-up included: each build
starts its workers), and sentences/s is computed both with and without the
start-up. Each worker and the single process run torch on one thread. The
configurations are run in turn `--repeats` times and each keeps its best
run, since other processes share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
sys.path.insert(0, str(ROOT))


def paragraphs(limit: int) -> list:
    from qa import Document

    documents = []
    for file in sorted(EVAL.glob("squad-*.json")):
        for article in json.loads(file.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                documents.append(Document(f"p{len(documents):05d}", paragraph["context"], title=article["title"]))
    return documents[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=600)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--per-task", type=int, default=100, help="documents per Ray task (one shard each)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration, alternated; best kept")
    args = parser.parse_args()

    import ray
    import torch

    from qa import Retriever
    from qa.config import Settings
    from qa.distributed import _map, _ray, build_on_ray
    from qa.retrieval import get_embedder

    documents = paragraphs(args.paragraphs)
    torch.set_num_threads(1)
    get_embedder("all-MiniLM-L6-v2")
    local = Retriever.build(documents[:20])  # warm the model and the splitter
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    _ray(None)
    best: dict[int, tuple[float, float]] = {}
    for _ in range(args.repeats):  # alternate the configurations; keep each one's best run
        started = time.perf_counter()
        local = Retriever.build(documents)
        best[0] = min(best.get(0, (float("inf"), 0.0)), (time.perf_counter() - started, 0.0))
        for workers in args.workers:
            started = time.perf_counter()
            _map(ray, Settings(), workers, 1, [[] for _ in range(workers)],
                 lambda actor, b: actor.documents.remote(b), None, len)
            startup = time.perf_counter() - started
            started = time.perf_counter()
            built = build_on_ray(documents, workers=workers, per_task=args.per_task)
            seconds = time.perf_counter() - started
            if list(built.sentences) != list(local.sentences):
                raise SystemExit("the Ray build split the documents differently")
            difference = float(np.abs(built.sentence_vectors - local.sentence_vectors).max())
            if difference > 1e-4:
                raise SystemExit(f"vectors differ by {difference}")
            best[workers] = min(best.get(workers, (float("inf"), 0.0)), (seconds, startup))
    ray.shutdown()
    sentences = len(local.sentences)
    rows = [("single process (no Ray)", 1, *best[0])]
    rows += [(f"Ray, {w} worker{'s' if w > 1 else ''}", w, *best[w]) for w in args.workers]

    print(f"{len(documents)} SQuAD paragraphs, {sentences:,} sentences, {args.per_task} per Ray task; "
          f"{os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| build | workers | wall (s) | sentences/s | worker start-up (s) | sentences/s after start-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, workers, seconds, startup in rows:
        steady = sentences / (seconds - startup) if seconds > startup else float("nan")
        print(f"| {label} | {workers} | {seconds:.1f} | {sentences / seconds:.0f} | {startup:.1f} | {steady:.0f} |")


if __name__ == "__main__":
    main()
