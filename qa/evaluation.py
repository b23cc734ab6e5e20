"""Evaluation: measure retrieval and citations on public and development data.

`qa eval squad PATH` runs open retrieval over every paragraph of a SQuAD 2.0
file as one corpus, comparing BM25-only, dense-only and the hybrid from one
index build, then the full `ask` path (citation containment, refusals,
latency). `qa eval article PATH` checks the article development set and
prints every failure with what was cited instead.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .documents import Document
from .errors import QAError

SHARED_EVAL = Path("..") / "shared" / "eval"
DEFAULT_SQUAD = SHARED_EVAL / "squad-v2.0-dev-part-a.json"
DEFAULT_SQUAD_FILES = (SHARED_EVAL / "squad-v1.1-dev-train.json", DEFAULT_SQUAD)
DEFAULT_ARTICLE = Path("..") / "shared" / "eval" / "article_dev.json"
RETRIEVERS = {"BM25 only": 0.0, "dense only": 1.0}
REFUSAL_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
SPLITS = ("all", "held-out", "validation", "training")


# -- metrics (pure functions) ------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case with whitespace collapsed, for containment checks."""
    return " ".join(text.split()).lower()


def contains_any(text: str, answers: Sequence[str]) -> bool:
    """Whether `text` contains one of the answer strings (case and whitespace ignored)."""
    haystack = normalise(text)
    return any(normalise(a) in haystack for a in answers if a.strip())


def recall_at(ranked: Sequence[str], gold: str, k: int) -> float:
    """1.0 if `gold` is among the first k ranked ids, else 0.0."""
    return 1.0 if gold in ranked[:k] else 0.0


def reciprocal_rank(ranked: Sequence[str], gold: str, k: int = 10) -> float:
    """1/rank of `gold` within the first k, else 0.0."""
    for rank, item in enumerate(ranked[:k], start=1):
        if item == gold:
            return 1.0 / rank
    return 0.0


def unique_in_order(items: Sequence[str]) -> list[str]:
    """Items with repeats dropped, first occurrence kept (chunks to documents)."""
    return list(dict.fromkeys(items))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


# -- data ----------------------------------------------------------------------


@dataclass(frozen=True)
class SquadQuestion:
    """A SQuAD question: its paragraph (`doc_id`), gold answers, and article title."""

    question: str
    doc_id: str
    answers: tuple[str, ...]
    impossible: bool
    article: str


def load_squad(paths: str | Path | Sequence[str | Path], *, articles: slice = slice(None)
               ) -> tuple[list[Document], list[SquadQuestion]]:
    """Paragraphs as documents and their questions from one or more SQuAD JSON files (v1.1 or 2.0).

    The files form one corpus: a paragraph found in several files is one
    document, and a question asked of it in several files is one question.
    `articles` slices the articles, in the order they first appear.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    documents: dict[str, Document] = {}
    questions: dict[tuple[str, str], SquadQuestion] = {}
    titles: list[str] = []
    for path in paths:
        data = _read_json(path, "SQuAD JSON (data[].paragraphs[].context/qas)")
        try:
            for article in data["data"]:
                if article["title"] not in titles:
                    titles.append(article["title"])
                for number, paragraph in enumerate(article["paragraphs"]):
                    context = paragraph["context"]
                    if context not in documents:
                        documents[context] = Document(doc_id=f"{article['title']}-{number}", text=context,
                                                      title=article["title"].replace("_", " "))
                    doc_id = documents[context].doc_id
                    for qa in paragraph["qas"]:
                        answers = tuple(a["text"] for a in qa.get("answers", []))
                        questions.setdefault((qa["question"], doc_id), SquadQuestion(
                            qa["question"], doc_id, answers, bool(qa.get("is_impossible")), article["title"]))
        except (KeyError, TypeError) as exc:
            raise QAError(f"{path} is not SQuAD JSON: missing {exc}") from exc
    kept = set(titles[articles])
    article_of = {d.doc_id: d.doc_id.rsplit("-", 1)[0] for d in documents.values()}
    return ([d for d in documents.values() if article_of[d.doc_id] in kept],
            [q for q in questions.values() if q.article in kept])


def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise QAError(f"{path} not found: pass the path to the {what} file "
                      f"(the project's copy lives in ../shared/eval/)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QAError(f"cannot read {path}: {exc}") from exc


# -- SQuAD -----------------------------------------------------------------------


def evaluate_squad(paths: str | Path | Sequence[str | Path], *, limit: int | None = None,
                   settings: Settings | None = None, articles: slice = slice(None), split: str = "all",
                   out: Any = None) -> dict[str, Any]:
    """Run the SQuAD evaluation and print Markdown tables; returns the figures.

    Every paragraph of the files is one document of the corpus; `split` keeps
    the questions of the articles `qa train` held out, validated or trained on.
    """
    from .answer import Assistant
    from .retrieval import Retriever, embedder_for

    settings = settings or Settings()
    out = out or sys.stdout
    documents, questions = load_squad(paths, articles=articles)
    if split != "all":
        from .train import TrainConfig, split_articles

        splits = split_articles(questions, TrainConfig())
        questions = [q for q in questions if splits[q.article] == split]
    answerable = [q for q in questions if not q.impossible]
    impossible = [q for q in questions if q.impossible]
    if limit is not None:
        answerable, impossible = answerable[:limit], impossible[:limit]

    embedder_for(settings).embed_passages(["warm up"] * 8)  # time the build, not the model's first call
    started = time.perf_counter()
    retriever = Retriever.build(documents, settings=settings)
    build_seconds = time.perf_counter() - started
    texts = [s.text for s in retriever.sentences]
    started = time.perf_counter()
    retriever.embedder.embed_passages(texts)
    raw_seconds = time.perf_counter() - started

    results: dict[str, Any] = {"questions": len(answerable), "paragraphs": len(documents)}
    retrieval_rows = []
    for name, weight in {**RETRIEVERS, "hybrid (default)": None}.items():
        recalls = {1: 0.0, 5: 0.0, 20: 0.0}
        mrr = 0.0
        for q in answerable:
            vector = retriever.embedder.embed_query(q.question)
            ranked = unique_in_order([p.doc_id for p in retriever.rank(q.question, vector, k=80, dense_weight=weight)])
            for k in recalls:
                recalls[k] += recall_at(ranked, q.doc_id, k)
            mrr += reciprocal_rank(ranked, q.doc_id, 10)
        n = max(1, len(answerable))
        row = {"R@1": recalls[1] / n, "R@5": recalls[5] / n, "R@20": recalls[20] / n, "MRR@10": mrr / n}
        retrieval_rows.append((name, row))
        results[name] = row

    assistant = Assistant(retriever)
    retriever.embedder._cache.clear()
    threshold = settings.min_answerable if settings.min_answerable is not None else assistant.ranker.min_answerable
    first = any3 = 0
    latencies = []
    first_lengths: list[tuple[int, int]] = []  # citation [1]: characters, sentences
    citation_counts = []
    confidence_answerable = []
    for q in answerable:
        started = time.perf_counter()
        answer = assistant.ask(q.question)
        latencies.append(time.perf_counter() - started)
        confidence_answerable.append(answer.confidence)
        cited = [c.text for c in answer.citations]
        if answer.citations:
            first_lengths.append((len(cited[0]), _sentences_in(retriever, answer.citations[0])))
            citation_counts.append(len(cited))
        first += bool(cited) and contains_any(cited[0], q.answers)
        any3 += any(contains_any(c, q.answers) for c in cited[:3])
    n = max(1, len(answerable))
    results["citation@1"] = first / n
    results["citation@3"] = any3 / n
    results["citation@1 chars"] = sum(c for c, _ in first_lengths) / max(1, len(first_lengths))
    results["citation@1 sentences"] = sum(s for _, s in first_lengths) / max(1, len(first_lengths))
    results["citations per answer"] = sum(citation_counts) / max(1, len(citation_counts))
    results["ask p50 ms"] = percentile(latencies, 50) * 1000
    results["ask p95 ms"] = percentile(latencies, 95) * 1000
    confidence_impossible = [_confidence(assistant, q.question) for q in impossible]
    refusal_rows = []
    for value in sorted({*REFUSAL_THRESHOLDS, threshold}):
        false_refusals = sum(c < value for c in confidence_answerable) / max(1, len(confidence_answerable))
        refusals = sum(c < value for c in confidence_impossible) / max(1, len(confidence_impossible))
        refusal_rows.append((value, refusals, false_refusals))
    results["false refusals"] = next(f for t, _, f in refusal_rows if t == threshold)
    results["unanswerable refused"] = next(r for t, r, _ in refusal_rows if t == threshold)

    print(f"SQuAD open retrieval: {len(documents)} paragraphs as one corpus; {split} questions: "
          f"{len(answerable)} answerable, {len(impossible)} unanswerable; model {settings.model}\n", file=out)
    print("| retriever | R@1 | R@5 | R@20 | MRR@10 |\n|---|---|---|---|---|", file=out)
    for name, row in retrieval_rows:
        print(f"| {name} | {row['R@1']:.3f} | {row['R@5']:.3f} | {row['R@20']:.3f} | {row['MRR@10']:.3f} |", file=out)
    print("\n| ask path | value |\n|---|---|", file=out)
    print(f"| citation [1] contains a gold answer | {results['citation@1']:.1%} |", file=out)
    print(f"| one of citations [1]-[3] contains a gold answer | {results['citation@3']:.1%} |", file=out)
    print(f"| citation [1] length, mean | {results['citation@1 chars']:.0f} characters, "
          f"{results['citation@1 sentences']:.2f} sentences |", file=out)
    print(f"| citations per answer, mean | {results['citations per answer']:.2f} |", file=out)
    print(f"| false refusals (answerable questions refused) | {results['false refusals']:.1%} |", file=out)
    print(f"| unanswerable questions refused | {results['unanswerable refused']:.1%} |", file=out)
    print(f"| ask latency p50 / p95 | {results['ask p50 ms']:.1f} ms / {results['ask p95 ms']:.1f} ms |", file=out)
    print(f"| index build | {build_seconds:.1f} s, {len(texts) / build_seconds:.0f} sentences/s |", file=out)
    print(f"| raw encode of the same sentences | {raw_seconds:.1f} s, {len(texts) / raw_seconds:.0f} sentences/s |",
          file=out)
    print(f"| build throughput / raw encode throughput | {raw_seconds / build_seconds:.2f} |", file=out)
    print("\n| refuse below P(answerable) | refused unanswerable | false refusals on answerable |\n|---|---|---|",
          file=out)
    for value, refusals, false_refusals in refusal_rows:
        mark = " (the model's threshold)" if value == threshold else ""
        print(f"| {value:.3f}{mark} | {refusals:.1%} | {false_refusals:.1%} |", file=out)
    results["build sentences/s"] = len(texts) / build_seconds
    results["raw sentences/s"] = len(texts) / raw_seconds
    return results


def _sentences_in(retriever: Any, citation: Any) -> int:
    """How many of the document's sentences a citation spans (neighbours are cited as one span)."""
    return sum(citation.start <= retriever.sentences[i].start < citation.end
               for i in retriever.sentence_ids(citation.doc_id))


def _confidence(assistant: Any, question: str) -> float:
    """The answer's confidence, the input of the refusal decision."""
    return float(assistant.ask(question).confidence)


# -- article development set ----------------------------------------------------------


def evaluate_article(path: str | Path, *, assistant: Any = None, out: Any = None) -> dict[str, Any]:
    """Check the article development set; print each failure with what was cited instead."""
    from .answer import Assistant
    from .retrieval import Retriever

    out = out or sys.stdout
    data = _read_json(path, "article development set (article_dev.json)")
    assistant = assistant or Assistant(Retriever.default())
    failures: list[str] = []
    counts = {"evidence in [1]": 0, "key in answer": 0, "off-topic refused": 0, "conversation turns": 0}
    for item in data["single"]:
        answer = assistant.ask(item["q"])
        cited = answer.citations[0].text if answer.citations else ""
        evidence_ok = answer.found and normalise(item["evidence"]) in normalise(cited)
        key_ok = answer.found and contains_any(answer.text, item["key"])
        counts["evidence in [1]"] += evidence_ok
        counts["key in answer"] += key_ok
        if not (evidence_ok and key_ok):
            failures.append(f"{item['q']!r}: expected {item['evidence']!r}; cited {normalise(cited)[:160]!r}")
    for question in data["unanswerable"]:
        answer = assistant.ask(question)
        counts["off-topic refused"] += not answer.found
        if answer.found:
            failures.append(f"{question!r}: should be refused; cited {normalise(answer.citations[0].text)[:160]!r}")
    turns = 0
    for conversation in data["conversations"]:
        history: list[tuple[str, str]] = []
        for turn in conversation["turns"]:
            turns += 1
            answer = assistant.ask(turn["q"], history=history)
            cited = answer.citations[0].text if answer.citations else ""
            ok = answer.found and normalise(turn["evidence"]) in normalise(cited)
            ok = ok and (not turn.get("key") or contains_any(answer.text, turn["key"]))
            counts["conversation turns"] += ok
            if not ok:
                failures.append(f"turn {turn['q']!r} (searched {answer.query!r}): expected {turn['evidence']!r}; "
                                f"cited {normalise(cited)[:160]!r}")
            history.append((turn["q"], answer.text))
    totals = {"evidence in [1]": len(data["single"]), "key in answer": len(data["single"]),
              "off-topic refused": len(data["unanswerable"]), "conversation turns": turns}
    print("| article check | passed |\n|---|---|", file=out)
    for name, value in counts.items():
        print(f"| {name} | {value}/{totals[name]} |", file=out)
    if failures:
        print("\nFailures:", file=out)
        for failure in failures:
            print(f"- {failure}", file=out)
    return {"counts": counts, "totals": totals, "failures": failures}


# -- command line ----------------------------------------------------------------------


def add_eval_commands(commands: Any) -> None:
    """Register `qa eval squad` and `qa eval article` on the CLI's subparsers."""
    evaluate = commands.add_parser("eval", help="measure quality on evaluation data")
    which = evaluate.add_subparsers(dest="dataset", required=True)
    squad = which.add_parser("squad", help="open retrieval over SQuAD files as one corpus")
    squad.add_argument("paths", nargs="*", default=[str(f) for f in DEFAULT_SQUAD_FILES],
                       help="SQuAD JSON files (default: the shared v1.1 and 2.0 files)")
    squad.add_argument("--limit", type=int, help="at most N answerable and N unanswerable questions")
    squad.add_argument("--articles", help="articles to use, as a Python slice: '0:5' or '5:'")
    squad.add_argument("--split", choices=SPLITS, default="all",
                       help="questions of the articles `qa train` held out, validated or trained on")
    squad.set_defaults(run=_run_squad)
    article = which.add_parser("article", help="the bundled article's development set")
    article.add_argument("path", nargs="?", default=str(DEFAULT_ARTICLE))
    article.set_defaults(run=_run_article)


def _run_squad(args: argparse.Namespace) -> int:
    articles = slice(None)
    if args.articles:
        start, _, stop = args.articles.partition(":")
        articles = slice(int(start) if start else None, int(stop) if stop else None)
    evaluate_squad(args.paths, limit=args.limit, articles=articles, split=args.split)
    return 0


def _run_article(args: argparse.Namespace) -> int:
    result = evaluate_article(args.path)
    return 1 if result["failures"] else 0
