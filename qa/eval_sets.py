"""How the assistant answers text that is not Wikipedia: the validation parts of the sets in `qa.training.sets`.

Each set is asked as its kind of text is used (issue 30's measures):

- reddit, amazon, tweets: each question asked of its own document alone ("own");
- molweni: over all the set's chats as one collection ("open"), its unanswerable questions to be refused;
- covid: over all the set's papers, each paper one document ("open").

Figures: [1] holds a gold answer (a refusal counts as wrong), the short answer's token F1 (a withheld short
answer counts as empty), how often the short answer is shown, and refusals of answerable and of unanswerable
questions. `qa eval sets` prints them as a Markdown table.
"""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .config import Settings
from .documents import Document
from .training.squad import SquadQuestion, contains_any, f1

#: How each set is asked: of the question's own document, or over the whole set.
MODES = {"reddit": "own", "amazon": "own", "tweets": "own", "molweni": "open", "covid": "open"}
SET_SEED = 20261207


def set_figures(name: str, *, part: str = "check", limit: int = 300, settings: Settings | None = None,
                flat_chats: bool = False) -> dict[str, float]:
    """The figures of one set's `part` (at most `limit` questions, a seeded draw)."""
    from .answer import Assistant
    from .retrieval import Retriever
    from .training.sets import load_split

    settings = settings or Settings()
    questions_set = load_split(name, part, flat=True) if flat_chats else load_split(name, part)
    questions = list(questions_set.questions)
    if limit and len(questions) > limit:
        questions = random.Random(f"{SET_SEED}-{name}").sample(questions, limit)
    documents = _documents(name, questions_set.documents)
    home = _home(name, questions_set.documents)
    outcomes = []
    if MODES[name] == "open":
        assistant = Assistant(Retriever.build(list(documents.values()), settings=settings), settings=settings)
        outcomes = [(q, assistant.ask(q.question)) for q in questions]
    else:
        by_document: dict[str, list[SquadQuestion]] = defaultdict(list)
        for q in questions:
            by_document[home[q.doc_id]].append(q)
        ranker = None
        for doc_id, asked in by_document.items():
            retriever = Retriever.build([documents[doc_id]], settings=settings)
            assistant = Assistant(retriever, settings=settings, ranker=ranker)
            ranker = assistant.ranker
            outcomes += [(q, assistant.ask(q.question)) for q in asked]
    return score(outcomes)


def score(outcomes: Sequence[tuple[SquadQuestion, Any]]) -> dict[str, float]:
    """Rates over (question, answer) pairs; see the module's docstring."""
    answerable = [(q, a) for q, a in outcomes if not q.impossible]
    unanswerable = [(q, a) for q, a in outcomes if q.impossible]
    n = max(1, len(answerable))
    first = sum(a.found and bool(a.citations) and contains_any(a.citations[0].text, q.answers) for q, a in answerable)
    shown = [(q, a) for q, a in answerable if a.found and a.phrase is not None]
    return {
        "questions": len(answerable),
        "[1] holds the answer": first / n,
        "short-answer F1": 100 * sum(f1(a.phrase.text, q.answers) for q, a in shown) / n,
        "short answer shown": len(shown) / n,
        "answerable refused": sum(not a.found for _, a in answerable) / n,
        "unanswerable questions": len(unanswerable),
        "unanswerable refused": (sum(not a.found for _, a in unanswerable) / len(unanswerable)
                                 if unanswerable else float("nan")),
    }


def _documents(name: str, documents: Sequence[Document]) -> dict[str, Document]:
    """The documents a set is asked of: a paper's paragraphs join back into the paper."""
    if name != "covid":
        return {d.doc_id: d for d in documents}
    papers: dict[str, list[Document]] = defaultdict(list)
    for d in documents:
        papers[d.doc_id.rsplit("-", 1)[0]].append(d)
    return {paper: Document(doc_id=paper, text="\n\n".join(p.text for p in parts), title=parts[0].title)
            for paper, parts in papers.items()}


def _home(name: str, documents: Sequence[Document]) -> dict[str, str]:
    return {d.doc_id: d.doc_id.rsplit("-", 1)[0] if name == "covid" else d.doc_id for d in documents}


def evaluate_sets(names: Sequence[str], *, part: str = "check", limit: int = 300,
                  settings: Settings | None = None, out: Any = None) -> dict[str, dict[str, float]]:
    """Every named set's figures, printed as one Markdown table."""
    out = out or sys.stdout
    results = {}
    for name in names:
        started = time.perf_counter()
        results[name] = set_figures(name, part=part, limit=limit, settings=settings)
        if name == "molweni":
            results["molweni (one line)"] = set_figures(name, part=part, limit=limit, settings=settings,
                                                        flat_chats=True)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(table(results), file=out)
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(results.values())).keys()) if results else []
    rows = ["| set | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, figures in results.items():
        cells = [f"{v:.0f}" if k in ("questions", "unanswerable questions") else f"{v:.1f}" if "F1" in k
                 else "–" if v != v else f"{v:.1%}" for k, v in figures.items()]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
