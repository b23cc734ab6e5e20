"""Measures that evaluation and training share: ranking, latency and calibration figures (pure functions).

SQuAD's answer measures (`exact_match`, `f1`) live with the SQuAD data, in `qa.training.squad`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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


def expected_calibration_error(probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> float:
    """ECE over `bins` equal-width bins: the mean |accuracy - confidence| weighted by each bin's share."""
    total = len(probabilities)
    if not total:
        return 0.0
    error = 0.0
    for b in range(bins):
        inside = [(p, o) for p, o in zip(probabilities, outcomes, strict=True)
                  if min(int(p * bins), bins - 1) == b]
        if inside:
            accuracy = sum(o for _, o in inside) / len(inside)
            confidence = sum(p for p, _ in inside) / len(inside)
            error += len(inside) / total * abs(accuracy - confidence)
    return error
