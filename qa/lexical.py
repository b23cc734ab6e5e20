"""Lexical matching: BM25 over chunks and stemmed terms for sentence scoring.

Texts are tokenized once into ids of one vocabulary (`term_ids`); BM25
indexes are built from those ids and saved and loaded with bm25s's own
`save`/`load` (memory-mapped), so loading an index never tokenizes again.

Both use the same analyser, bm25s's tokenizer with PyStemmer's English
Snowball stemmer and the NLTK-derived English stop-word list that bm25s
ships (`STOPWORDS_EN_PLUS`; the short list leaves "what", "which", "did" in
and lets question words dominate the scores).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
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


def term_ids(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The terms of each text as ids: (ids int32, offsets int64 of shape (len(texts) + 1,), vocabulary).

    Text i's terms are `vocab[j] for j in ids[offsets[i]:offsets[i + 1]]`, in order, as `terms` gives them.
    """
    import bm25s

    if not texts:
        return np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64), []
    tokenized = bm25s.tokenize(list(texts), stopwords=_stopwords(), stemmer=_stemmer(), return_ids=True,
                               show_progress=False)
    vocab = [""] * len(tokenized.vocab)
    for term, i in tokenized.vocab.items():
        vocab[i] = term
    lengths = np.fromiter((len(t) for t in tokenized.ids), dtype=np.int64, count=len(tokenized.ids))
    flat = np.fromiter((i for t in tokenized.ids for i in t), dtype=np.int32, count=int(lengths.sum()))
    return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), vocab


class BM25:
    """BM25 scores of a query against every text of a fixed list, by bm25s (its own save/load)."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.size = int(index.scores["num_docs"])

    @classmethod
    def build(cls, texts_terms: Sequence[Sequence[int]], vocab: Sequence[str]) -> BM25:
        """Index texts given as lists of term ids into `vocab`; a text without terms gets the empty term."""
        import bm25s

        _quiet_bm25s()
        vocab_dict = {term: i for i, term in enumerate(vocab)}
        empty = vocab_dict.setdefault("", len(vocab_dict))
        index = bm25s.BM25()
        index.index(([list(t) if len(t) else [empty] for t in texts_terms], vocab_dict),
                    create_empty_token=False, show_progress=False)
        return cls(index)

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """Shape (size,), float32; all zero when no query term is in the vocabulary."""
        vocab = self._index.vocab_dict
        known = [vocab[t] for t in query_terms if t and t in vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._index.get_scores_from_ids(known), dtype=np.float32)

    def save(self, path: str | Path) -> None:
        self._index.save(str(path), show_progress=False)

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> BM25:
        """Read what `save` wrote; with `mmap` the score matrix stays on disk until touched."""
        import bm25s

        _quiet_bm25s()
        return cls(bm25s.BM25.load(str(path), mmap=mmap, show_progress=False))


def _quiet_bm25s() -> None:
    """bm25s sets its logger to DEBUG on import; let applications decide again."""
    logging.getLogger("bm25s").setLevel(logging.NOTSET)


class TermWeights:
    """Inverse document frequency of terms over a list of texts (sentences)."""

    def __init__(self, texts_terms: Sequence[Sequence[str]] = (), *, counts: Mapping[str, int] | None = None,
                 total: int | None = None) -> None:
        """From the texts' terms, or from ready `counts` (texts holding each term) out of `total` texts."""
        self.count = max(1, len(texts_terms) if total is None else total)
        self._df = Counter(term for text_terms in texts_terms for term in set(text_terms)) if counts is None else counts

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


class LexicalIndex:
    """BM25 at chunk, sentence and document level over one vocabulary, and the terms' IDF weights."""

    LEVELS = ("chunks", "sentences", "documents")

    def __init__(self, chunks: BM25, sentences: BM25, documents: BM25, weights: TermWeights,
                 counts: np.ndarray) -> None:
        self.chunks, self.sentences, self.documents = chunks, sentences, documents
        self.weights = weights
        self._counts = counts

    @classmethod
    def build(cls, vocab: Sequence[str], ids: np.ndarray, offsets: np.ndarray, chunk_spans: np.ndarray,
              doc_sentences: np.ndarray, counts: np.ndarray) -> LexicalIndex:
        """From sentence terms as ids (`ids`, `offsets`, as `term_ids` gives), chunks and documents as
        ranges of sentences, and `counts`: in how many sentences each term occurs."""

        def spans(bounds: Sequence[tuple[int, int]]) -> list[list[int]]:
            return [ids[offsets[a]:offsets[b]].tolist() for a, b in bounds]

        sentence_bounds = zip(range(len(offsets) - 1), range(1, len(offsets)), strict=True)
        doc_bounds = zip(doc_sentences[:-1].tolist(), doc_sentences[1:].tolist(), strict=True)
        return cls(BM25.build(spans(chunk_spans.tolist()), vocab), BM25.build(spans(sentence_bounds), vocab),
                   BM25.build(spans(doc_bounds), vocab), _weights(vocab, counts, len(offsets) - 1), counts)

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BM25 of the query against every chunk, sentence and document; float32 arrays."""
        query_terms = terms([query])[0]
        return self.chunks.scores(query_terms), self.sentences.scores(query_terms), self.documents.scores(query_terms)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for level in self.LEVELS:
            getattr(self, level).save(path / level)
        np.save(path / "term_counts.npy", self._counts, allow_pickle=False)

    @classmethod
    def load(cls, path: Path, vocab: Sequence[str], *, mmap: bool = True) -> LexicalIndex:
        counts = np.load(path / "term_counts.npy", allow_pickle=False)
        if len(counts) != len(vocab):
            raise ValueError(f"{len(counts)} term counts for {len(vocab)} terms")
        levels = [BM25.load(path / level, mmap=mmap) for level in cls.LEVELS]
        return cls(*levels, _weights(vocab, counts, levels[1].size), counts)


def _weights(vocab: Sequence[str], counts: np.ndarray, sentences: int) -> TermWeights:
    return TermWeights(counts=dict(zip(vocab, counts.tolist(), strict=True)), total=sentences)
