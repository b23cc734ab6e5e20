"""The corpus as arrays: documents, their sentences and chunks, and every sentence's terms.

A million sentences as Python objects take seconds to make and gigabytes to
hold, so a `Corpus` keeps offsets in numpy arrays and makes `Sentence` and
`Chunk` values only when one is asked for (`corpus.sentences[i]`). Sentences
are numbered across the corpus, document after document, so a document's
sentences and chunks are contiguous ranges. Parts made separately (added
documents, Ray shards) are joined with `Corpus.concat`, and documents are
dropped with `select`, without splitting or tokenizing anything again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Generic, TypeVar, overload

import numpy as np

from .chunking import Chunk, Sentence, chunk_document, split_sentences
from .config import Settings
from .documents import Document
from .lexical import term_ids

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Corpus:
    """Documents split into sentences and chunks, with the sentences' terms.

    Attributes:
        documents: the documents, in corpus order.
        doc_sentences: shape (n_docs + 1,), int64; document i holds sentences
            `doc_sentences[i]:doc_sentences[i + 1]`.
        doc_chunks: shape (n_docs + 1,), int64; the same for chunks.
        spans: shape (n_sentences, 2), int64; each sentence's start and end in its document's text.
        chunk_spans: shape (n_chunks, 2), int64; each chunk's first sentence and the one after its last.
        vocab: the stemmed terms; `term_ids` index it.
        term_ids: shape (n_terms,), int32; the terms of every sentence, one after another.
        term_offsets: shape (n_sentences + 1,), int64; sentence i's terms are
            `term_ids[term_offsets[i]:term_offsets[i + 1]]`.
    """

    documents: list[Document]
    doc_sentences: np.ndarray
    doc_chunks: np.ndarray
    spans: np.ndarray
    chunk_spans: np.ndarray
    vocab: list[str]
    term_ids: np.ndarray
    term_offsets: np.ndarray
    positions: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", {d.doc_id: i for i, d in enumerate(self.documents)})
        if len(self.positions) != len(self.documents):
            raise ValueError("documents must have distinct doc_id values")
        n = len(self.documents)
        if (self.doc_sentences.shape != (n + 1,) or self.doc_chunks.shape != (n + 1,)
                or int(self.doc_sentences[-1]) != len(self.spans) or int(self.doc_chunks[-1]) != len(self.chunk_spans)
                or self.term_offsets.shape != (len(self.spans) + 1,)
                or int(self.term_offsets[-1]) != len(self.term_ids)):
            raise ValueError("corpus arrays do not agree in size")

    @classmethod
    def from_documents(cls, documents: Sequence[Document], settings: Settings) -> Corpus:
        """Split, chunk and tokenize documents (no embedding)."""
        documents = list(documents)
        spans: list[tuple[int, int]] = []
        chunk_spans: list[tuple[int, int]] = []
        doc_sentences, doc_chunks = [0], [0]
        texts: list[str] = []
        for document in documents:
            sentences = split_sentences(document, max_tokens=settings.chunk_tokens)
            offset = len(spans)
            spans.extend((s.start, s.end) for s in sentences)
            texts.extend(s.text for s in sentences)
            for chunk in chunk_document(document, sentences, settings):
                chunk_spans.append((offset + chunk.sentences[0], offset + chunk.sentences[-1] + 1))
            doc_sentences.append(len(spans))
            doc_chunks.append(len(chunk_spans))
        ids, offsets, vocab = term_ids(texts)
        return cls(documents, np.asarray(doc_sentences, dtype=np.int64), np.asarray(doc_chunks, dtype=np.int64),
                   _pairs(spans), _pairs(chunk_spans), vocab, ids, offsets)

    @classmethod
    def concat(cls, parts: Sequence[Corpus]) -> Corpus:
        """One corpus holding the documents of every part, in order (doc ids must stay distinct)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        if len(parts) == 1:
            return parts[0]
        vocab = list(parts[0].vocab)
        index = {term: i for i, term in enumerate(vocab)}
        ids = []
        for part in parts:
            table = np.empty(len(part.vocab), dtype=np.int32)
            for i, term in enumerate(part.vocab):
                table[i] = index.setdefault(term, len(index))
                if table[i] == len(vocab):
                    vocab.append(term)
            ids.append(table[part.term_ids] if len(part.term_ids) else part.term_ids.astype(np.int32))
        shifts = np.cumsum([0] + [len(p.spans) for p in parts[:-1]])
        return cls(
            [d for part in parts for d in part.documents],
            _joined_offsets([p.doc_sentences for p in parts]),
            _joined_offsets([p.doc_chunks for p in parts]),
            np.concatenate([p.spans for p in parts]).reshape(-1, 2),
            np.concatenate([p.chunk_spans + shift for p, shift in zip(parts, shifts, strict=True)]).reshape(-1, 2),
            vocab,
            np.concatenate(ids).astype(np.int32),
            _joined_offsets([p.term_offsets for p in parts]),
        )

    def select(self, keep: Sequence[bool] | np.ndarray) -> Corpus:
        """A corpus of only the documents where `keep` is true; terms no longer used leave the vocabulary."""
        keep = np.asarray(keep, dtype=bool)
        kept = np.flatnonzero(keep)
        sentence_ranges = [(int(self.doc_sentences[i]), int(self.doc_sentences[i + 1])) for i in kept]
        chunk_ranges = [(int(self.doc_chunks[i]), int(self.doc_chunks[i + 1])) for i in kept]
        sentences = _gather(len(self.spans), sentence_ranges)
        new_position = np.full(len(self.spans) + 1, -1, dtype=np.int64)
        new_position[sentences] = np.arange(len(sentences))
        chunks = self.chunk_spans[_gather(len(self.chunk_spans), chunk_ranges)]
        first = new_position[chunks[:, 0]]
        chunk_spans = np.stack([first, first + (chunks[:, 1] - chunks[:, 0])], axis=1) if len(chunks) else chunks
        term_ranges = [(int(self.term_offsets[a]), int(self.term_offsets[b])) for a, b in sentence_ranges]
        ids = self.term_ids[_gather(len(self.term_ids), term_ranges)]
        lengths = np.diff(self.term_offsets)[sentences]
        used, ids = np.unique(ids, return_inverse=True)
        return Corpus(
            [self.documents[i] for i in kept],
            np.concatenate([[0], np.cumsum([b - a for a, b in sentence_ranges], dtype=np.int64)]),
            np.concatenate([[0], np.cumsum([b - a for a, b in chunk_ranges], dtype=np.int64)]),
            self.spans[sentences].reshape(-1, 2),
            chunk_spans.reshape(-1, 2).astype(np.int64),
            [self.vocab[i] for i in used.tolist()],
            ids.astype(np.int32).reshape(-1),
            np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]),
        )

    # -- derived arrays ----------------------------------------------------------------------

    @cached_property
    def sentence_doc(self) -> np.ndarray:
        """Shape (n_sentences,), int64: the position of each sentence's document."""
        return np.repeat(np.arange(len(self.documents), dtype=np.int64), np.diff(self.doc_sentences))

    @cached_property
    def chunk_doc(self) -> np.ndarray:
        """Shape (n_chunks,), int64: the position of each chunk's document."""
        return np.repeat(np.arange(len(self.documents), dtype=np.int64), np.diff(self.doc_chunks))

    @cached_property
    def sentence_chunk(self) -> np.ndarray:
        """Shape (n_sentences,), int64: the first chunk holding each sentence.

        Chunks cover every sentence and their ends never decrease, so the first
        chunk holding sentence s is the first whose end is past s.
        """
        return np.searchsorted(self.chunk_spans[:, 1], np.arange(len(self.spans)), side="right").astype(np.int64)

    @cached_property
    def vocab_index(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.vocab)}

    def term_counts(self) -> np.ndarray:
        """Shape (len(vocab),), int64: in how many sentences each term occurs."""
        if not len(self.term_ids):
            return np.zeros(len(self.vocab), dtype=np.int64)
        rows = np.repeat(np.arange(len(self.spans), dtype=np.int64), np.diff(self.term_offsets))
        pairs = np.unique(rows * len(self.vocab) + self.term_ids)
        return np.bincount(pairs % len(self.vocab), minlength=len(self.vocab))

    def sentence_term_ids(self, first: int, stop: int) -> np.ndarray:
        """The term ids of sentences `first:stop`, one after another."""
        return self.term_ids[self.term_offsets[first]:self.term_offsets[stop]]

    # -- values on demand -------------------------------------------------------------------

    @cached_property
    def sentences(self) -> Sequence[Sentence]:
        return _View(len(self.spans), self._sentence)

    @cached_property
    def chunks(self) -> Sequence[Chunk]:
        return _View(len(self.chunk_spans), self._chunk)

    @cached_property
    def chunk_sentences(self) -> Sequence[np.ndarray]:
        return _View(len(self.chunk_spans), lambda i: np.arange(*self.chunk_spans[i], dtype=np.int64))

    @cached_property
    def sentence_terms(self) -> Sequence[list[str]]:
        vocab = self.vocab
        return _View(len(self.spans), lambda i: [vocab[t] for t in self.sentence_term_ids(i, i + 1).tolist()])

    def _sentence(self, i: int) -> Sentence:
        document = self.documents[int(self.sentence_doc[i])]
        start, end = self.spans[i].tolist()
        return Sentence(document.doc_id, start, end, document.text[start:end])

    def _chunk(self, i: int) -> Chunk:
        first, stop = self.chunk_spans[i].tolist()
        position = int(self.chunk_doc[i])
        document = self.documents[position]
        start, end = int(self.spans[first, 0]), int(self.spans[stop - 1, 1])
        offset = int(self.doc_sentences[position])
        return Chunk(document.doc_id, start, end, document.text[start:end], tuple(range(first - offset, stop - offset)))


class _View(Sequence[T], Generic[T]):
    """A read-only sequence whose items are made when asked for."""

    def __init__(self, length: int, make: object) -> None:
        self._length = length
        self._make = make

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self._make(j) for j in range(*i.indices(self._length))]  # type: ignore[operator]
        i = int(i)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {i} out of range for {self._length} items")
        return self._make(i)  # type: ignore[operator]

    def __iter__(self) -> Iterator[T]:
        return (self._make(i) for i in range(self._length))  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return f"<{self._length} items>"


def _pairs(rows: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def _joined_offsets(offsets: list[np.ndarray]) -> np.ndarray:
    """Offset arrays of consecutive parts as one (each part's offsets shifted past the previous parts)."""
    joined, shift = [np.zeros(1, dtype=np.int64)], 0
    for part in offsets:
        joined.append(part[1:] + shift)
        shift += int(part[-1])
    return np.concatenate(joined).astype(np.int64)


def _gather(size: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """The positions inside the half-open ranges, in order, as one int64 array."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    starts = np.asarray([a for a, _ in ranges], dtype=np.int64)
    lengths = np.asarray([b - a for a, b in ranges], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shifts
