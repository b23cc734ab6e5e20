"""Lexical matching: BM25 over chunks and stemmed terms for sentence scoring.

Both use the same analyser, bm25s's tokenizer with PyStemmer's English
Snowball stemmer and the NLTK-derived English stop-word list that bm25s
ships (`STOPWORDS_EN_PLUS`; the short list leaves "what", "which", "did" in
and lets question words dominate the scores).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> list[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return list(STOPWORDS_EN_PLUS)


def terms(texts: Sequence[str]) -> list[list[str]]:
    """Stemmed, lower-cased content terms of each text."""
    import bm25s

    tokens = bm25s.tokenize(list(texts), stopwords=_stopwords(), stemmer=_stemmer(), return_ids=False,
                            show_progress=False)
    return [list(t) for t in tokens]


class BM25:
    """BM25 scores of a query against every text of a fixed list."""

    def __init__(self, texts: Sequence[str] = (), *, tokenized: Sequence[Sequence[str]] | None = None) -> None:
        """Index `texts`, or their terms if already computed (`tokenized`, as from `terms`)."""
        import bm25s

        # bm25s sets its logger to DEBUG on import; let applications decide again.
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
        tokenized = terms(texts) if tokenized is None else tokenized
        self.size = len(tokenized)
        self._index = bm25s.BM25()
        self._index.index([list(t) if t else [""] for t in tokenized], show_progress=False)  # a token per document

    def scores(self, query: str) -> np.ndarray:
        """Shape (len(texts),), float32; all zero when no query term is in the vocabulary."""
        known = [t for t in terms([query])[0] if t in self._index.vocab_dict]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._index.get_scores(known), dtype=np.float32)


class TermWeights:
    """Inverse document frequency of terms over a list of texts (sentences)."""

    def __init__(self, texts_terms: Sequence[Sequence[str]]) -> None:
        self.count = max(1, len(texts_terms))
        self._df = Counter(term for text_terms in texts_terms for term in set(text_terms))

    def idf(self, term: str) -> float:
        return math.log(1 + (self.count - self._df.get(term, 0) + 0.5) / (self._df.get(term, 0) + 0.5))

    def overlap(self, query_terms: Sequence[str], text_terms: Sequence[str]) -> float:
        """IDF-weighted share of the query's terms present in the text, 0..1."""
        wanted = set(query_terms)
        if not wanted:
            return 0.0
        total = sum(self.idf(t) for t in wanted)
        present = set(text_terms)
        return sum(self.idf(t) for t in wanted if t in present) / total if total else 0.0
