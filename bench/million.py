"""A million sentences on one machine: exact and approximate indexes side by side.

    .venv/bin/python bench/million.py                       # 1,000,000 sentences, flat, HNSW and IVF-PQ
    .venv/bin/python bench/million.py --sentences 200000 --types flat ivfpq --work /tmp/qa-200k

The corpus is built here, never downloaded, from the shared SQuAD files:
1. Real texts: every sentence of every SQuAD paragraph in ../shared/eval
   (split by `qa.chunking`, duplicates dropped) and every question except
   `--queries` held out as queries. Spliced texts (the first half of the
   words of one real text, the second half of another, drawn with seed 0)
   fill the base up to `--base` texts (50,000), and all of them are embedded
   once with the bundled model (cached in `--work`).
2. Derived sentences fill the corpus up to `--sentences`: sentence i mixes
   base texts a and b (drawn with seed 1): its text splices their words as
   above, and its vector is normalise(t * v_a + (1 - t) * v_b + e), with
   t ~ U(0.6, 0.9) and e ~ N(0, 0.005^2) per dimension.
3. Documents are runs of 50 consecutive sentences joined by spaces; they
   are chunked as usual (4 sentences, overlap 1) and tokenized for BM25.

Each index type is built, saved, loaded and queried in its own process, so
that each peak RSS (`ru_maxrss`) is its own; the process baseline (Python,
torch and the model loaded, no index) is measured the same way and
subtracted for the per-100,000-sentence figure. Queries are the held-out
SQuAD questions, embedded once. Recall@10 is the share of the exact top 10
(the flat index over the same vectors) that the approximate index returns.
Query p50/p95 is one FAISS search for the 10 best (`VectorIndex.search`),
and `rank` is the whole hybrid search (`Retriever.rank`, BM25 at three
levels plus FAISS plus fusion) with the query vector given. The reference
is the exact index of the first 10,000 sentences, measured in the same run.
Artefacts stay in `--work` (several GB at 1M); delete it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
SENTENCES_PER_DOCUMENT = 50

sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def splice(a: str, b: str) -> str:
    left, right = a.split(), b.split()
    return " ".join(left[: max(1, len(left) // 2)] + right[len(right) // 2:])


# -- stage 1: the embedded base ------------------------------------------------------------------


def real_texts(held_out: int) -> tuple[list[str], list[str]]:
    """(sentences and questions of the SQuAD files, held-out questions)."""
    from qa import Document
    from qa.chunking import split_sentences

    sentences: dict[str, None] = {}
    questions: dict[str, None] = {}
    for file in sorted(EVAL.glob("squad-*.json")):
        for article in json.loads(file.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                for sentence in split_sentences(Document("p", paragraph["context"])):
                    sentences[" ".join(sentence.text.split())] = None
                for qa in paragraph["qas"]:
                    questions[" ".join(qa["question"].split())] = None
    ordered = list(questions)
    np.random.default_rng(2).shuffle(ordered)
    return list(sentences) + ordered[held_out:], ordered[:held_out]


def stage_base(work: Path, base: int, held_out: int) -> None:
    from qa.retrieval import get_embedder

    texts, queries = real_texts(held_out)
    real = len(texts)
    rng = np.random.default_rng(0)
    while len(texts) < base:
        a, b = rng.integers(0, real, size=2)
        texts.append(splice(texts[a], texts[b]))
    texts = texts[:base]
    import torch

    torch.set_num_threads(1)  # measured 2.3x faster than two threads on this busy 2-core machine
    embedder = get_embedder("all-MiniLM-L6-v2")
    started = time.perf_counter()
    vectors = embedder.embed_passages(texts, progress=True)
    seconds = time.perf_counter() - started
    query_vectors = np.stack([embedder.embed_query(q) for q in queries])
    np.save(work / "base.npy", vectors)
    np.save(work / "queries.npy", query_vectors)
    (work / "base.json").write_text(json.dumps({"texts": texts, "queries": queries, "real": real,
                                                "embed_seconds": seconds}), encoding="utf-8")


# -- stage 2: derive, build, save ----------------------------------------------------------------


def derive(work: Path, n: int) -> tuple[list[str], np.ndarray]:
    base = json.loads((work / "base.json").read_text(encoding="utf-8"))
    texts: list[str] = list(base["texts"][:n])
    vectors = np.load(work / "base.npy")[:n]
    extra = n - len(texts)
    if extra <= 0:
        return texts, np.ascontiguousarray(vectors)
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, len(vectors), size=(extra, 2))
    mix = rng.uniform(0.6, 0.9, size=(extra, 1)).astype(np.float32)
    out = np.empty((n, vectors.shape[1]), dtype=np.float32)
    out[: len(vectors)] = vectors
    for first in range(0, extra, 100_000):
        last = min(extra, first + 100_000)
        a, b = pairs[first:last, 0], pairs[first:last, 1]
        block = mix[first:last] * vectors[a] + (1 - mix[first:last]) * vectors[b]
        block += rng.normal(0, 0.005, size=block.shape).astype(np.float32)
        out[len(vectors) + first: len(vectors) + last] = block / np.linalg.norm(block, axis=1, keepdims=True)
    texts.extend(splice(texts[a], texts[b]) for a, b in pairs.tolist())
    return texts, out


def make_corpus(texts: list[str]) -> Any:
    """Documents of 50 sentences each, chunked as usual; sentence spans are known, so pysbd is not run."""
    from qa import Document, Settings
    from qa.chunking import Sentence, chunk_document
    from qa.corpus import Corpus
    from qa.lexical import term_ids

    settings = Settings()
    documents, spans, chunk_spans, doc_sentences, doc_chunks = [], [], [], [0], [0]
    for first in range(0, len(texts), SENTENCES_PER_DOCUMENT):
        group = texts[first: first + SENTENCES_PER_DOCUMENT]
        document = Document(f"doc-{first // SENTENCES_PER_DOCUMENT:06d}", " ".join(group))
        sentences, position = [], 0
        for text in group:
            sentences.append(Sentence(document.doc_id, position, position + len(text), text))
            position += len(text) + 1
        spans.extend((s.start, s.end) for s in sentences)
        for chunk in chunk_document(document, sentences, settings):
            chunk_spans.append((first + chunk.sentences[0], first + chunk.sentences[-1] + 1))
        documents.append(document)
        doc_sentences.append(len(spans))
        doc_chunks.append(len(chunk_spans))
    ids, offsets, vocab = term_ids(texts)
    return Corpus(documents, np.asarray(doc_sentences), np.asarray(doc_chunks), np.asarray(spans).reshape(-1, 2),
                  np.asarray(chunk_spans).reshape(-1, 2), vocab, ids, offsets)


def stage_build(work: Path, n: int, index_type: str) -> dict[str, Any]:
    from qa import Retriever, Settings
    from qa.retrieval import get_embedder
    from qa.vectors import VectorIndex

    embedder = get_embedder("all-MiniLM-L6-v2")
    baseline = rss_mb()
    texts, vectors = derive(work, n)
    started = time.perf_counter()
    corpus = make_corpus(texts)
    del texts
    corpus_seconds = time.perf_counter() - started
    settings = Settings(index_type=index_type)  # type: ignore[arg-type]
    started = time.perf_counter()
    index = VectorIndex.build(vectors, index_type=index_type, settings=settings)  # type: ignore[arg-type]
    vector_seconds = time.perf_counter() - started
    del vectors
    started = time.perf_counter()
    retriever = Retriever(corpus, index, embedder, settings)
    lexical_seconds = time.perf_counter() - started
    path = work / f"index-{index_type}-{n}"
    started = time.perf_counter()
    retriever.save(path)
    return {"corpus_s": corpus_seconds, "vectors_s": vector_seconds, "lexical_s": lexical_seconds,
            "save_s": time.perf_counter() - started, "build_rss_mb": rss_mb(), "baseline_rss_mb": baseline,
            "disk_mb": disk_mb(path), "vectors_mb": (path / "vectors.faiss").stat().st_size / 2**20,
            "chunks": len(corpus.chunk_spans), "documents": len(corpus.documents)}


# -- stage 3: load and query ---------------------------------------------------------------------


def stage_query(work: Path, n: int, index_type: str, repeats: int) -> dict[str, Any]:
    from qa import Retriever
    from qa.retrieval import get_embedder

    get_embedder("all-MiniLM-L6-v2")
    baseline = rss_mb()
    path = work / f"index-{index_type}-{n}"
    os.sync()
    started = time.perf_counter()
    retriever = Retriever.load(path)
    load_seconds = time.perf_counter() - started
    load_rss = rss_mb()
    queries = np.load(work / "queries.npy")
    texts = json.loads((work / "base.json").read_text(encoding="utf-8"))["queries"]
    found = []
    faiss_ms: list[float] = []
    rank_ms: list[float] = []
    for _ in range(repeats):
        for vector in queries:
            started = time.perf_counter()
            _, ids = retriever.vectors.search(vector, 10)
            faiss_ms.append((time.perf_counter() - started) * 1000)
            found.append(ids.tolist())
    for text, vector in zip(texts, queries, strict=True):
        started = time.perf_counter()
        retriever.rank(text, vector, k=5)
        rank_ms.append((time.perf_counter() - started) * 1000)
    result = {"load_s": load_seconds, "load_rss_mb": load_rss, "query_rss_mb": rss_mb(), "baseline_rss_mb": baseline,
              "faiss_p50_ms": pct(faiss_ms, 50), "faiss_p95_ms": pct(faiss_ms, 95),
              "rank_p50_ms": pct(rank_ms, 50), "rank_p95_ms": pct(rank_ms, 95),
              "kind": retriever.vectors.kind}
    found = found[: len(queries)]
    truth_file = work / f"truth-{n}.json"
    if index_type == "flat":
        truth_file.write_text(json.dumps(found), encoding="utf-8")
    if truth_file.is_file():
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
        result["recall_at_10"] = recall(found, truth)
        result["sweep"] = sweep(retriever.vectors, queries, truth)
    return result


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return statistics.mean(len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True))


def sweep(vectors: Any, queries: np.ndarray, truth: list[list[int]]) -> list[tuple[int, float, float, float]]:
    """(breadth, recall@10, p50 ms, p95 ms) for HNSW efSearch or IVF-PQ nprobe values."""
    import faiss

    if vectors.kind == "hnsw":
        values, knob = [64, 128, 192, 256, 384], lambda v: setattr(vectors.faiss.hnsw, "efSearch", v)
    elif vectors.kind == "ivfpq":
        ivf = faiss.extract_index_ivf(vectors.faiss)
        values, knob = [16, 32, 48, 64, 96], lambda v: setattr(ivf, "nprobe", v)
    else:
        return []
    rows = []
    for value in values:
        knob(value)
        found, times = [], []
        for _ in range(2):
            for query in queries:
                started = time.perf_counter()
                found.append(vectors.search(query, 10)[1].tolist())
                times.append((time.perf_counter() - started) * 1000)
        rows.append((value, recall(found[: len(queries)], truth), pct(times, 50), pct(times, 95)))
    return rows


def pct(values: list[float], q: int) -> float:
    return float(np.percentile(values, q))


# -- driver --------------------------------------------------------------------------------------


def run_stage(*args: str) -> dict[str, Any]:
    """Run one stage in a fresh process (own peak RSS); its last stdout line is JSON."""
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"stage {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    from qa.storage import remove_index

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-bench-million"))
    parser.add_argument("--sentences", type=int, default=1_000_000)
    parser.add_argument("--base", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reference", type=int, default=10_000, help="size of the exact reference index")
    parser.add_argument("--types", nargs="+", default=["hnsw", "ivfpq"], help="approximate indexes (exact always)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries for FAISS timings")
    parser.add_argument("--keep", action="store_true", help="keep the built indexes in --work")
    parser.add_argument("--reuse", action="store_true", help="reuse results.json rows of types not in --types")
    parser.add_argument("--stage", choices=["base", "build", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--type", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "base":
        stage_base(work, args.base, args.queries)
        print(json.dumps({"ok": True}))
        return
    if args.stage == "build":
        print(json.dumps(stage_build(work, args.n, args.type)))
        return
    if args.stage == "query":
        print(json.dumps(stage_query(work, args.n, args.type, args.repeats)))
        return

    if not (work / "base.npy").is_file():
        print(f"embedding the base texts into {work} (once) ...", file=sys.stderr)
        run_stage("--stage", "base", "--work", str(work), "--base", str(args.base), "--queries", str(args.queries))
    base = json.loads((work / "base.json").read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {}
    if args.reuse and (work / "results.json").is_file():
        rows = json.loads((work / "results.json").read_text(encoding="utf-8"))
    size = f"{args.sentences // 1000:,}k"
    plan = [("flat", args.reference, f"exact, {args.reference // 1000:,}k (reference)"), ("flat", args.sentences,
                                                                                      f"exact, {size}")]
    plan += [(t, args.sentences, f"{t}, {size}") for t in args.types if t != "flat"]
    if args.reuse:  # the exact rows (and the truth they wrote) are kept from the earlier run
        plan = [step for step in plan if not (step[0] == "flat" and step[2] in rows)]
    for index_type, n, label in plan:
        print(f"{label}: building ...", file=sys.stderr)
        row = run_stage("--stage", "build", "--work", str(work), "--n", str(n), "--type", index_type)
        print(f"{label}: loading and querying ...", file=sys.stderr)
        row |= run_stage("--stage", "query", "--work", str(work), "--n", str(n), "--type", index_type,
                         "--repeats", str(args.repeats))
        row["n"] = n
        rows[label] = row
        print(json.dumps({label: row}), file=sys.stderr)
        if not args.keep:
            remove_index(work / f"index-{index_type}-{n}")  # the link and its version folders
    (work / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(report(rows, base, args))


def report(rows: dict[str, dict[str, Any]], base: dict[str, Any], args: argparse.Namespace) -> str:
    import faiss

    reference = next(iter(rows.values()))
    lines = [
        f"Corpus: {args.sentences:,} sentences from {args.base:,} embedded texts ({base['real']:,} real SQuAD "
        f"sentences and questions, the rest spliced; embedding took {base['embed_seconds']:.0f} s), "
        f"{args.queries} held-out SQuAD questions as queries; faiss {faiss.__version__}, {os.cpu_count()} CPUs.",
        "",
        "| index | sentences | recall@10 | FAISS p50 / p95 (ms) | p50 / 10k exact | `rank` p50 / p95 (ms) "
        "| build: vectors / BM25 + rest (s) | on disk (MB) | peak RSS per 100k, build / loaded (MB) | load (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        per = row["n"] / 100_000
        recall = f"{row['recall_at_10']:.3f}" if "recall_at_10" in row else "—"
        lines.append(
            f"| {label} | {row['n']:,} | {recall} | {row['faiss_p50_ms']:.2f} / {row['faiss_p95_ms']:.2f} "
            f"| {row['faiss_p50_ms'] / reference['faiss_p50_ms']:.1f}x "
            f"| {row['rank_p50_ms']:.0f} / {row['rank_p95_ms']:.0f} "
            f"| {row['vectors_s']:.1f} / {row['corpus_s'] + row['lexical_s']:.0f} | {row['disk_mb']:,.0f} "
            f"| {(row['build_rss_mb'] - row['baseline_rss_mb']) / per:,.0f} / "
            f"{(row['query_rss_mb'] - row['baseline_rss_mb']) / per:,.0f} | {row['load_s']:.2f} |"
        )
    for label, row in rows.items():
        if row.get("sweep"):
            knob = "efSearch" if row["kind"] == "hnsw" else "nprobe"
            lines += ["", f"{label}, by search breadth ({knob}):", "",
                      f"| {knob} | recall@10 | FAISS p50 / p95 (ms) | p50 / 10k exact |", "|---:|---:|---:|---:|"]
            lines += [f"| {v} | {r:.3f} | {p50:.2f} / {p95:.2f} | {p50 / reference['faiss_p50_ms']:.1f}x |"
                      for v, r, p50, p95 in row["sweep"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
