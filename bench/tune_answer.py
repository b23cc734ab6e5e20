"""Fit the answer composer's weights and print an ablation table.

Run: .venv/bin/python bench/tune_answer.py [SQUAD_JSON] [--articles 0:5]

Candidates are the sentences of the top passages the retriever returns for
each answerable SQuAD question (only the tuning articles, 0-4 by default);
a candidate is right if it contains a gold answer. The script grid-searches
the weights of `qa.answer`'s sentence score and prints, for the default
weights and with each feature dropped, how often the best candidate is right
(citation [1]) and how often one of the best three is. No weight or rule
refers to a particular question or document.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa import answer as composer  # noqa: E402
from qa.evaluation import DEFAULT_SQUAD, contains_any, load_squad  # noqa: E402
from qa.lexical import terms  # noqa: E402
from qa.retrieval import Retriever  # noqa: E402

FEATURES = ("dense", "overlap", "overlap_with_previous", "passage", "cue", "novelty")


def candidate_table(path: str, articles: slice) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per question: (features of shape (n, len(FEATURES)), labels of shape (n,))."""
    documents, questions = load_squad(path, articles=articles)
    retriever = Retriever.build(documents)
    table = []
    for question in (q for q in questions if not q.impossible):
        vector = retriever.embedder.embed_query(question.question)
        passages = retriever.rank(question.question, vector, k=retriever.settings.answer_passages)
        query_terms = terms([question.question])[0]
        cue = composer.answer_cue(question.question)
        words = set(re.findall(r"\w+", question.question.lower()))
        best = max(p.score for p in passages)
        rows, labels, seen = [], [], set()
        for passage in passages:
            for sentence_id in retriever.chunk_sentences[passage.chunk].tolist():
                if sentence_id in seen:
                    continue
                seen.add(sentence_id)
                f = composer.sentence_features(retriever, sentence_id, query_terms, vector)
                text = retriever.sentences[sentence_id].text
                hit = cue is not None and composer.has_new_match(cue, text, words)
                rows.append([f.dense, f.overlap, f.overlap_with_previous, passage.score / best, float(hit), f.novelty])
                labels.append(contains_any(text, question.answers))
        table.append((np.asarray(rows), np.asarray(labels)))
    return table


def accuracy(table: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> tuple[float, float]:
    first = three = 0
    for features, labels in table:
        order = np.argsort(-(features @ weights), kind="stable")
        first += bool(labels[order[0]])
        three += bool(labels[order[:3]].any())
    return first / len(table), three / len(table)


def row(name: str, result: tuple[float, float]) -> None:
    print(f"| {name} | {result[0]:.1%} | {result[1]:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_SQUAD))
    parser.add_argument("--articles", default="0:5", help="tuning articles as a slice (default 0:5)")
    parser.add_argument("--grid", action="store_true", help="also search a grid of weights")
    args = parser.parse_args()
    start, _, stop = args.articles.partition(":")
    table = candidate_table(args.path, slice(int(start or 0), int(stop) if stop else None))
    current = np.array([composer.W_DENSE, composer.W_TERMS, composer.W_TERMS_WITH_PREVIOUS, composer.W_PASSAGE,
                        composer.W_CUE, composer.W_NOVELTY])
    print(f"{len(table)} answerable questions, articles {args.articles}\n")
    print("| sentence score | citation [1] right | one of [1]-[3] right |\n|---|---|---|")
    row("default weights", accuracy(table, current))
    for i, name in enumerate(FEATURES):
        ablated = current.copy()
        ablated[i] = 0
        row(f"without {name}", accuracy(table, ablated))
    row("dense only", accuracy(table, np.eye(len(FEATURES))[0]))
    if args.grid:
        grid = itertools.product([0.35, 0.45, 0.55], [0.1, 0.2, 0.3], [0.25, 0.35, 0.45], [0.1, 0.2, 0.3],
                                 [0.1, 0.15, 0.2], [0, 0.1, 0.2])
        scored = sorted(((accuracy(table, np.array(w)), w) for w in grid), key=lambda x: -(x[0][0] + x[0][1] / 2))
        print("\nbest weights (dense, overlap, overlap_with_previous, passage, cue, novelty):")
        for (first, three), weights in scored[:5]:
            print(f"  {weights}: {first:.1%} / {three:.1%}")


if __name__ == "__main__":
    main()
