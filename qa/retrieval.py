"""Retrieval: find the chunks of the corpus that best match a question.

Two views of every chunk are fused. Dense: each sentence is embedded, and a
chunk scores as its best-matching sentence (a question usually paraphrases
one sentence, and short texts embed more sharply than long ones). Lexical:
BM25 at three granularities, each scaled by the query's best score there:
the chunk itself (half the lexical weight), its best sentence and its whole
document (a quarter each). The fused score is
`dense_weight * dense + (1 - dense_weight) * lexical`.

Measured on SQuAD (README, "Quality"): sentence-level dense beats whole-chunk
dense, and the three BM25 granularities together beat chunk BM25 alone.

`Retriever` owns the corpus, its vectors and its persistence.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .chunking import Chunk, Sentence, chunk_document, split_sentences
from .config import QueryBackend, Settings
from .documents import Document, bundled_article
from .embedding import Embedder, Progress, cache_dir
from .errors import CorruptIndexError, IndexNotFoundError, InvalidQuestionError, QAError, StaleIndexError
from .index import VectorIndex, load_index, read_manifest, save_index
from .lexical import BM25, TermWeights, terms

log = logging.getLogger(__name__)

_CHUNKING_FIELDS = ("model", "chunk_sentences", "chunk_overlap", "chunk_tokens", "index_type")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: `text` is exactly `document.text[start:end]`.

    Attributes:
        score: fused relevance, higher is better.
        dense: best cosine similarity of one of its sentences to the query.
        lexical: BM25 of the chunk, its best sentence and its document, each scaled to 0..1 by the query's best.
        chunk: position of the chunk in the retriever (for the answer composer).
    """

    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    dense: float = 0.0
    lexical: float = 0.0
    chunk: int = -1


class Retriever:
    """Hybrid dense + BM25 search over chunked documents, with save/load."""

    def __init__(
        self,
        documents: Sequence[Document],
        sentences: Sequence[Sequence[Sentence]],
        chunks: Sequence[Sequence[Chunk]],
        vectors: VectorIndex,
        embedder: Embedder,
        settings: Settings,
        *,
        sources: dict[str, str] | None = None,
    ) -> None:
        if len({d.doc_id for d in documents}) != len(documents):
            raise QAError("documents must have distinct doc_id values")
        self.documents = list(documents)
        self.settings = settings
        self.embedder = embedder
        self.vectors = vectors
        self.sources = dict(sources or {})
        self._by_id = {d.doc_id: d for d in self.documents}
        self._doc_position = {d.doc_id: i for i, d in enumerate(self.documents)}
        # Flatten per-document lists into global numbering.
        self.sentences: list[Sentence] = []
        self.chunks: list[Chunk] = []
        self.chunk_sentences: list[np.ndarray] = []
        self._sentence_ranges: list[tuple[int, int]] = []
        for doc_sentences, doc_chunks in zip(sentences, chunks, strict=True):
            offset = len(self.sentences)
            self.sentences.extend(doc_sentences)
            self._sentence_ranges.append((offset, len(self.sentences)))
            for chunk in doc_chunks:
                self.chunks.append(chunk)
                self.chunk_sentences.append(np.asarray(chunk.sentences, dtype=np.int64) + offset)
        self.sentence_chunk = np.zeros(len(self.sentences), dtype=np.int64)
        for position in range(len(self.chunks) - 1, -1, -1):
            self.sentence_chunk[self.chunk_sentences[position]] = position
        if len(vectors) != len(self.sentences):
            raise CorruptIndexError(f"{len(vectors)} vectors for {len(self.sentences)} sentences")
        self.sentence_vectors = vectors.vectors()
        self.chunk_document = np.asarray([self._doc_position[c.doc_id] for c in self.chunks], dtype=np.int64)
        self.sentence_terms = terms([s.text for s in self.sentences])
        self.term_weights = TermWeights(self.sentence_terms)
        self.bm25 = BM25([c.text for c in self.chunks])
        self.sentence_bm25 = BM25(tokenized=self.sentence_terms)
        self.document_bm25 = BM25([d.text for d in self.documents])

    # -- building, loading, saving ------------------------------------------------

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        *,
        model: str | None = None,
        settings: Settings | None = None,
        progress: bool | Progress = False,
        sources: dict[str, str] | None = None,
        embedder: Embedder | None = None,
    ) -> Retriever:
        """Chunk, embed and index documents (embeds every sentence once)."""
        settings = settings or Settings()
        if model is not None:
            settings = dataclasses.replace(settings, model=model)
        documents = list(documents)
        if not documents:
            raise QAError("no documents to index")
        embedder = embedder or embedder_for(settings)
        started = time.perf_counter()
        sentences = [split_sentences(d, max_tokens=settings.chunk_tokens) for d in documents]
        chunks = [chunk_document(d, s, settings) for d, s in zip(documents, sentences, strict=True)]
        texts = [s.text for doc_sentences in sentences for s in doc_sentences]
        vectors = VectorIndex.build(embedder.embed_passages(texts, progress=progress), index_type=settings.index_type)
        log.info("indexed %d documents, %d sentences in %.1fs",
                 len(documents), len(texts), time.perf_counter() - started)
        return cls(documents, sentences, chunks, vectors, embedder, settings, sources=sources)

    @classmethod
    def load(cls, path: str | Path, *, model: str | None = None, settings: Settings | None = None) -> Retriever:
        """Load a saved index without re-embedding; raise if it is corrupt, stale or for another model.

        Chunking and model settings come from the index; query-time settings
        (weights, thresholds) from `settings`.
        """
        stored = load_index(path)
        saved = stored.manifest["settings"]
        if model is not None and model != saved["model"]:
            raise StaleIndexError(
                f"index at {path} was built with model {saved['model']!r}, not {model!r}; "
                f"rebuild it with `qa index ... --model {model}`"
            )
        settings = dataclasses.replace(settings or Settings(), **{f: saved[f] for f in _CHUNKING_FIELDS})
        embedder = embedder_for(settings)
        if embedder.dim != stored.vectors.dim:
            raise StaleIndexError(
                f"index at {path} holds {stored.vectors.dim}-dimensional vectors but model "
                f"{settings.model!r} makes {embedder.dim}-dimensional ones; rebuild the index"
            )
        sources = {d["doc_id"]: d["source"] for d in stored.manifest["documents"] if d.get("source")}
        _check_sources(path, stored.documents, sources)
        return cls(stored.documents, stored.sentences, stored.chunks, stored.vectors, embedder, settings,
                   sources=sources)

    @classmethod
    def default(
        cls, *, index_dir: str | Path | None = None, settings: Settings | None = None, progress: bool = False
    ) -> Retriever:
        """The bundled article: load `index_dir` (default: `default_index_dir()`) if fresh, else build and save it."""
        settings = settings or Settings()
        index_dir = index_dir or default_index_dir()
        article = bundled_article()
        try:
            manifest = read_manifest(index_dir)
            fresh = [d["sha256"] for d in manifest["documents"]] == [article.fingerprint] and all(
                manifest["settings"].get(f) == getattr(settings, f) for f in _CHUNKING_FIELDS
            )
            if fresh:
                return cls.load(index_dir, settings=settings)
            log.info("index at %s is stale; rebuilding", index_dir)
        except (IndexNotFoundError, CorruptIndexError, StaleIndexError, KeyError, TypeError) as exc:
            log.info("building default index at %s (%s)", index_dir, exc)
        retriever = cls.build([article], settings=settings, progress=progress)
        try:
            retriever.save(index_dir)
        except OSError as exc:  # a read-only checkout still answers, it just rebuilds next time
            log.warning("could not save index to %s: %s", index_dir, exc)
        return retriever

    def save(self, path: str | Path) -> Path:
        """Persist to a directory atomically (see `qa.index.save_index`)."""
        return save_index(
            path,
            documents=self.documents,
            sentences=[self.sentences[first:last] for first, last in self._sentence_ranges],
            chunks=self._chunks_by_document(),
            vectors=self.vectors,
            settings=self.settings,
            sources=self.sources,
        )

    # -- changing the corpus --------------------------------------------------------

    def extend(self, documents: Iterable[Document], *, progress: bool | Progress = False) -> Retriever:
        """A new retriever over these documents plus the new ones; only the new ones are embedded."""
        added = Retriever.build(documents, settings=self.settings, progress=progress, embedder=self.embedder)
        clash = {d.doc_id for d in added.documents} & set(self._by_id)
        if clash:
            raise QAError(f"documents already indexed: {', '.join(sorted(clash))}")
        return self._combine([self, added])

    def subset(self, doc_ids: Iterable[str]) -> Retriever:
        """A new retriever over only the named documents (no re-embedding)."""
        wanted = set(doc_ids)
        unknown = wanted - set(self._by_id)
        if unknown:
            raise QAError(f"unknown documents: {', '.join(sorted(unknown))}")
        if not wanted:
            raise QAError("choose at least one document")
        keep = [d.doc_id in wanted for d in self.documents]
        return self._combine([self], keep=keep)

    def _combine(self, parts: list[Retriever], keep: list[bool] | None = None) -> Retriever:
        documents, sentences, chunks, vectors = [], [], [], []
        flags = iter(keep) if keep is not None else None
        for part in parts:
            for document, (first, last), doc_chunks in zip(part.documents, part._sentence_ranges,
                                                             part._chunks_by_document(), strict=True):
                if flags is not None and not next(flags):
                    continue
                documents.append(document)
                sentences.append(part.sentences[first:last])
                chunks.append(doc_chunks)
                vectors.append(part.sentence_vectors[first:last])
        index = VectorIndex.build(np.concatenate(vectors), index_type=self.settings.index_type)
        sources = {k: v for part in parts for k, v in part.sources.items() if k in {d.doc_id for d in documents}}
        return Retriever(documents, sentences, chunks, index, self.embedder, self.settings, sources=sources)

    # -- searching -----------------------------------------------------------------

    def document(self, doc_id: str) -> Document:
        return self._by_id[doc_id]

    def sentence_ids(self, doc_id: str) -> range:
        """Positions of a document's sentences in `self.sentences`."""
        first, last = self._sentence_ranges[self._doc_position[doc_id]]
        return range(first, last)

    def passage(self, chunk: int, *, score: float = 0.0, dense: float = 0.0, lexical: float = 0.0) -> Passage:
        """The chunk at position `chunk` as a `Passage` with the given scores."""
        found = self.chunks[chunk]
        return Passage(found.doc_id, self._by_id[found.doc_id].title, found.start, found.end, found.text, score,
                       dense, lexical, chunk)

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The k best chunks for a query, best first."""
        query = check_question(query, self.settings)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.rank(query, self.embedder.embed_query(query), k=k)

    def rank(self, query: str, query_vector: np.ndarray, *, k: int, dense_weight: float | None = None) -> list[Passage]:
        """Fuse dense and lexical scores over the candidates of both; see the module docstring.

        `dense_weight` overrides the setting (1.0: dense only, 0.0: BM25 only), for evaluation.
        """
        settings = self.settings
        weight = settings.dense_weight if dense_weight is None else dense_weight
        by_chunk = _scaled(self.bm25.scores(query))
        by_sentence = _scaled(self.sentence_bm25.scores(query))
        by_document = _scaled(self.document_bm25.scores(query))
        _, sentence_ids = self.vectors.search(query_vector, settings.candidates * 4)
        candidates = set(self.sentence_chunk[sentence_ids].tolist())
        candidates.update(np.argsort(-by_chunk)[: settings.candidates].tolist())
        candidates.update(self.sentence_chunk[np.argsort(-by_sentence)[: settings.candidates]].tolist())
        passages = []
        for position in candidates:
            sentence_ids = self.chunk_sentences[position]
            dense = float((self.sentence_vectors[sentence_ids] @ query_vector).max())
            lexical = (0.5 * by_chunk[position] + 0.25 * by_sentence[sentence_ids].max()
                       + 0.25 * by_document[self.chunk_document[position]])
            score = weight * dense + (1 - weight) * float(lexical)
            passages.append(self.passage(position, score=score, dense=dense, lexical=float(lexical)))
        passages.sort(key=lambda p: (-p.score, p.chunk))
        return passages[:k]

    def _chunks_by_document(self) -> list[list[Chunk]]:
        grouped: dict[str, list[Chunk]] = {d.doc_id: [] for d in self.documents}
        for chunk in self.chunks:
            grouped[chunk.doc_id].append(chunk)
        return [grouped[d.doc_id] for d in self.documents]


def default_index_dir() -> Path:
    """Where the bundled article's index is kept: $QA_INDEX_DIR, else the user's cache directory.

    Never the current directory: `qa ask` run anywhere must not write there
    (on Linux this is ~/.cache/qa/index/default, or under $XDG_CACHE_HOME).
    """
    chosen = os.environ.get("QA_INDEX_DIR")
    return Path(chosen) if chosen else cache_dir() / "index" / "default"


def _scaled(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their maximum (all zero stays zero)."""
    best = float(scores.max()) if scores.size else 0.0
    return scores / best if best > 0 else scores


def check_question(question: str, settings: Settings) -> str:
    """The question stripped; raise `InvalidQuestionError` if empty or over the length limit."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestionError("the question is empty: type a question about the document")
    question = question.strip()
    if len(question) > settings.max_question_chars:
        raise InvalidQuestionError(
            f"the question has {len(question):,} characters; the limit is {settings.max_question_chars:,}. "
            "Ask something shorter"
        )
    return question


def embedder_for(settings: Settings) -> Embedder:
    """The shared `Embedder` for the model, thread counts and query backend in `settings`."""
    return get_embedder(settings.model, settings.query_threads, settings.index_threads, settings.query_backend)


@lru_cache(maxsize=8)
def get_embedder(model: str, query_threads: int | None = None, index_threads: int | None = None,
                 query_backend: QueryBackend | None = None) -> Embedder:
    """One `Embedder` per model, thread counts and backend per process (the model itself is loaded once)."""
    return Embedder(model, query_threads=query_threads, index_threads=index_threads, query_backend=query_backend)


def _check_sources(path: str | Path, documents: list[Document], sources: dict[str, str]) -> None:
    """Refuse an index whose source files changed since it was built."""
    from .documents import read_text

    for document in documents:
        source = sources.get(document.doc_id)
        if not source or not Path(source).is_file():
            continue
        try:
            text, _ = read_text(Path(source))
        except QAError:
            continue
        if text != document.text:
            raise StaleIndexError(
                f"index at {path} is stale: {source} changed since it was indexed; "
                f"rebuild with `qa index ... --out {path}`"
            )
