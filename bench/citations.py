"""How many sentences to cite: [1]-[3] recall against padding, over `cite_ratio` and `cite_confidence`.

Each validation question (SQuAD articles `qa train` calibrates on, never the held-out ones) is ranked
once; every pair of settings then cites from the same ranking (`Assistant.cite`), so the sweep costs
one pass. The table shows, per setting, citation [1] and one of [1]-[3] holding a gold answer, and the
share of right answers that cite more than one sentence (the issue's padding limit is 30%).

    python bench/citations.py [--ranker DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from qa import Assistant, Retriever, Settings
from qa.evaluation import sentences_spanned
from qa.training.squad import DEFAULT_SQUAD_FILES, contains_any, load_squad, split_articles

RATIOS = (0.2, 0.3, 0.4, 0.5, 0.7)
CONFIDENCES = (0.8, 0.9, 0.95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranker", help="ranker directory (default: the shipped one)")
    parser.add_argument("--limit", type=int, default=0, help="at most N validation questions (0: all)")
    parser.add_argument("--rerank-sentences", type=int, default=Settings.rerank_sentences,
                        help=f"candidates the cross-encoder reads (default {Settings.rerank_sentences})")
    args = parser.parse_args()
    files = [f for f in DEFAULT_SQUAD_FILES if Path(f).is_file()]
    if not files:
        print(f"SQuAD files not found: {', '.join(map(str, DEFAULT_SQUAD_FILES))}", file=sys.stderr)
        return 2
    documents, questions = load_squad(files)
    splits = split_articles(questions)
    validation = [q for q in questions if splits[q.article] == "validation" and not q.impossible]
    validation = validation[:args.limit or None]
    settings = Settings(index_type="flat", ranker=args.ranker or "", rerank_sentences=args.rerank_sentences)
    retriever = Retriever.build(documents, settings=settings)
    base = Assistant(retriever, settings=settings)
    started = time.perf_counter()
    ranked = []
    for q in validation:
        found, ranking = base.rank(q.question)
        if found.sentences and ranking.answerable >= base.threshold:
            ranked.append((q, found, ranking))
    print(f"{len(validation)} answerable validation questions, {len(ranked)} answered; "
          f"ranked in {time.perf_counter() - started:.0f} s\n")
    print("| cite_confidence | cite_ratio | [1] | [1]-[3] | citations per answer | right answers citing more |")
    print("|---:|---:|---:|---:|---:|---:|")
    n = max(1, len(validation))
    for confidence in CONFIDENCES:
        for ratio in RATIOS:
            variant = Assistant(retriever, settings=dataclasses.replace(settings, cite_confidence=confidence,
                                                                        cite_ratio=ratio), ranker=base.ranker)
            first = three = citations = right = more = 0
            for q, found, ranking in ranked:
                answer = variant.cite(q.question, found, ranking)
                texts = [c.text for c in answer.citations]
                hit = contains_any(texts[0], q.answers)
                first += hit
                three += any(contains_any(t, q.answers) for t in texts[:3])
                citations += len(texts)
                if hit:
                    right += 1
                    more += sum(sentences_spanned(retriever, c) for c in answer.citations) > 1
            print(f"| {confidence} | {ratio} | {first / n:.1%} | {three / n:.1%} | "
                  f"{citations / max(1, len(ranked)):.2f} | {more / max(1, right):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
