"""Questions as people type them: does [1] hold the answer when "the number of troops" is asked as "troop numbers"?

Every question of data no model was trained on (SQuAD's held-out articles, and the check halves of the sets
beyond Wikipedia, `qa.training.sets`) that holds a "the N of M" phrase is asked twice, as written and as a noun
compound (`qa.training.compounds.compounded`, its random choices seeded by the question), each as its set is
asked by `qa eval` (SQuAD open over the held-out paragraphs; reddit, amazon and tweets of their own document;
chats and papers open over their set). Prints, per ranker, how often citation [1] holds the answer in each form.

    python bench/compound_questions.py [--ranker DIR ...]

Several rankers are compared on the same questions (the shipped one is "" or "shipped"). The sample is small
(about 50 questions): read differences of a question or two as noise.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from collections.abc import Sequence

SETS = ("reddit", "amazon", "tweets", "molweni", "covid")


def rewritten(questions: Sequence) -> list[tuple[object, str]]:
    """(question, its compound form) for each answerable question that has one."""
    from qa.training.compounds import compounded

    pairs = []
    for q in questions:
        if not q.impossible:
            form = compounded(q.question, random.Random(q.question))
            if form is not None:
                pairs.append((q, form))
    return pairs


def groups() -> list[tuple[str, list, list[tuple[object, str]], str]]:
    """(name, documents, [(question, compound form)], mode) for SQuAD held-out and each set's check half."""
    from qa.eval_sets import MODES, _documents, _home
    from qa.training.sets import load_split
    from qa.training.squad import DEFAULT_SQUAD_FILES, article_of, load_squad, split_articles

    documents, questions = load_squad(DEFAULT_SQUAD_FILES)
    splits = split_articles(questions)
    held = {q.article for q in questions if splits[q.article] == "held-out"}
    out = [("SQuAD held-out", [d for d in documents if article_of(d.doc_id) in held],
            rewritten([q for q in questions if q.article in held]), "open")]
    for name in SETS:
        part = load_split(name, "check")
        docs = _documents(name, part.documents)
        home = _home(name, part.documents)
        out.append((name, [(docs, home)], rewritten(part.questions), MODES[name]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", nargs="*", default=[""], help="ranker directories to compare ('' = shipped)")
    args = parser.parse_args(argv)

    from qa.answer import Assistant
    from qa.config import Settings
    from qa.retrieval import Retriever
    from qa.training.squad import contains_any

    data = groups()
    rows = []
    for ranker in args.ranker:
        settings = Settings(ranker="" if ranker in ("", "shipped") else ranker)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for name, documents, pairs, mode in data:
            if not pairs:
                continue
            if mode == "open":
                corpus = documents if name == "SQuAD held-out" else list(documents[0][0].values())
                assistant = Assistant(Retriever.build(corpus, settings=settings), settings=settings)
                asking = [(assistant, q, form) for q, form in pairs]
            else:
                docs, home = documents[0]
                asking, ranker_model = [], None
                for q, form in pairs:
                    retriever = Retriever.build([docs[home[q.doc_id]]], settings=settings)
                    assistant = Assistant(retriever, settings=settings, ranker=ranker_model)
                    ranker_model = assistant.ranker
                    asking.append((assistant, q, form))
            for assistant, q, form in asking:
                for k, text in ((1, q.question), (2, form)):
                    answer = assistant.ask(text)
                    totals[name][k] += bool(answer.found and answer.citations
                                            and contains_any(answer.citations[0].text, q.answers))
                totals[name][0] += 1
        rows.append((ranker or "shipped", dict(totals)))
    names = [name for name, _, pairs, _ in data if pairs]
    print("| ranker | set | questions | [1] holds the answer: as written | as a noun compound |")
    print("|---|---|---:|---:|---:|")
    for ranker, totals in rows:
        all_n = all_w = all_c = 0
        for name in names:
            n, written, compound = totals[name]
            all_n, all_w, all_c = all_n + n, all_w + written, all_c + compound
            print(f"| {ranker} | {name} | {n} | {written} | {compound} |")
        print(f"| {ranker} | **all** | {all_n} | {all_w} ({all_w / max(1, all_n):.0%}) | "
              f"{all_c} ({all_c / max(1, all_n):.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
