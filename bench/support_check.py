"""How well the written-answer check tells supported sentences from unsupported ones (README, "Written answers").

    .venv/bin/python bench/support_check.py

Reads `bench/support_labels.json`: sentences SmolLM2-135M-Instruct wrote for
the article development set, each with a candidate source and a hand label
(supported: everything the sentence says is in that source). Wrong-source
pairs are added: each supported sentence with the source of another question
(a wrong citation, as users report from tools that trust the model's). For the
cross-encoder alone, term coverage alone, and the check's score (the lower of
the two), prints the share of supported pairs kept and of unsupported and
wrong-source pairs dropped at each threshold, as Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.answer import Citation  # noqa: E402
from qa.generation import coverage, relevance_scores  # noqa: E402
from qa.ranker import load_ranker  # noqa: E402

LABELS = Path(__file__).resolve().parent / "support_labels.json"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def main() -> None:
    pairs = json.loads(LABELS.read_text(encoding="utf-8"))["pairs"]
    ranker = load_ranker()
    rows = [(p["claim"], p["title"], p["source"], "supported" if p["supported"] else "unsupported") for p in pairs]
    supported = [p for p in pairs if p["supported"]]
    for i, p in enumerate(supported):
        other = next(q for q in supported[i + 1:] + supported[:i] if q["question"] != p["question"]
                     and q["source"] != p["source"])
        rows.append((p["claim"], other["title"], other["source"], "wrong source"))
    scored = []
    for claim, title, source, label in rows:
        citation = Citation(1, "", title, 0, 0, source, 0.0, source, 0, 0)
        relevance = relevance_scores(ranker, claim, [citation])[0]
        covered = coverage(claim, [citation])
        scored.append((label, {"cross-encoder": relevance, "term coverage": covered,
                               "check (lower of the two)": min(relevance, covered)}))
    counts = {label: sum(s[0] == label for s in scored) for label in ("supported", "unsupported", "wrong source")}
    print(f"{counts['supported']} supported, {counts['unsupported']} unsupported and {counts['wrong source']} "
          "wrong-source pairs\n")
    print("| score | threshold | supported kept | unsupported dropped | wrong source dropped |")
    print("|---|---:|---:|---:|---:|")
    for method in ("cross-encoder", "term coverage", "check (lower of the two)"):
        for threshold in THRESHOLDS:
            kept = sum(s[method] >= threshold for label, s in scored if label == "supported")
            cells = [f"{kept}/{counts['supported']}"]
            for label in ("unsupported", "wrong source"):
                dropped = sum(s[method] < threshold for lab, s in scored if lab == label)
                cells.append(f"{dropped}/{counts[label]}")
            print(f"| {method} | {threshold:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
