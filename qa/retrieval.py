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

`Retriever` owns the corpus (`qa.corpus`), its vectors and BM25 indexes,
their persistence (`qa.index`, `qa.storage`), and changes to the corpus: `add` embeds only
new or changed documents, `remove` drops documents, both without touching
the vectors of the others. A `where` filter limits any search to documents
by id or path prefix.
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

from .config import QueryBackend, Settings
from .corpus import Corpus
from .documents import Document, bundled_article
from .embedding import Embedder, Progress, cache_dir
from .errors import CorruptIndexError, IndexNotFoundError, InvalidQuestionError, QAError, StaleIndexError
from .index import load_index, read_manifest, save_index
from .lexical import LexicalIndex
from .vectors import VectorIndex

log = logging.getLogger(__name__)

_CHUNKING_FIELDS = ("model", "chunk_sentences", "chunk_overlap", "chunk_tokens", "index_type")
_BUILD_FIELDS = (*_CHUNKING_FIELDS, "approximate_above", "approximate_index", "hnsw_m")

Where = str | Sequence[str] | None
"""A search filter: document ids or path prefixes (see `Retriever.allowed`); None searches everything."""


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: `text` is exactly `document.text[start:end]`.

    Attributes:
        score: fused relevance, higher is better.
        dense: best cosine similarity of one of its sentences to the query.
        lexical: BM25 of the chunk, its best sentence and its document, each scaled to 0..1 by the query's best.
        chunk: position of the chunk in the retriever (for the answer composer).
        page: the 1-based page of a PDF where the chunk starts; None for other files.
        section: the headings above the chunk ("Budget › 2025"), None where it has none.
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
    page: int | None = None
    section: str | None = None


class Retriever:
    """Hybrid dense + BM25 search over chunked documents, with save/load and incremental changes.

    The answer step reads, per sentence: `sentences`, `chunk_sentences`,
    `sentence_chunk`, `sentence_terms`, `term_weights`, `sentence_vectors`
    (or `vectors_of`), `sentence_ids(doc_id)`, `document(doc_id)`,
    `passage(...)` and `rank_scored(...)` (through `qa.candidates`, which hands
    the answer step its candidates in one call). Sentences and chunks are made on demand
    from the corpus arrays; `sentence_vectors` is a read-only view of the
    FAISS index's own storage (memory-mapped when loaded), not a copy.
    A retriever is never changed after it is made: `add`, `remove`, `extend`
    and `subset` return a new one, so threads sharing one keep a consistent view.
    """

    def __init__(self, corpus: Corpus, vectors: VectorIndex, embedder: Embedder, settings: Settings, *,
                 lexical: LexicalIndex | None = None) -> None:
        if len(vectors) != len(corpus.spans):
            raise CorruptIndexError(f"{len(vectors)} vectors for {len(corpus.spans)} sentences")
        self.corpus = corpus
        self.settings = settings
        self.embedder = embedder
        self.vectors = vectors
        vectors.configure(settings)
        self.documents = corpus.documents
        self.sentences = corpus.sentences
        self.chunks = corpus.chunks
        self.chunk_sentences = corpus.chunk_sentences
        self.sentence_chunk = corpus.sentence_chunk
        self.chunk_document = corpus.chunk_doc
        self.sentence_terms = corpus.sentence_terms
        self.sentence_vectors = vectors.vectors()
        self.lexical = lexical or LexicalIndex.build(corpus.vocab, corpus.term_ids, corpus.term_offsets,
                                                     corpus.chunk_spans, corpus.doc_sentences, corpus.term_counts())
        self.term_weights = self.lexical.weights

    @property
    def sources(self) -> dict[str, str]:
        """The file each document was read from, by doc_id (documents without a file are left out)."""
        return {d.doc_id: d.path for d in self.documents if d.path}

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
        """Chunk, embed and index documents (embeds every sentence once).

        `sources` (doc_id to file path) sets `Document.path` for documents made without it.
        """
        settings = settings or Settings()
        if model is not None:
            settings = dataclasses.replace(settings, model=model)
        documents = _with_sources(list(documents), sources)
        if not documents:
            raise QAError("no documents to index")
        _check_distinct(documents)
        embedder = embedder or embedder_for(settings)
        started = time.perf_counter()
        corpus = Corpus.from_documents(documents, settings)
        vectors = embed_corpus(corpus, embedder, progress=progress)
        log.info("indexed %d documents, %d sentences in %.1fs",
                 len(documents), len(vectors), time.perf_counter() - started)
        return cls.from_parts(corpus, [vectors], embedder, settings)

    @classmethod
    def from_parts(cls, corpus: Corpus, vectors: Sequence[np.ndarray], embedder: Embedder,
                   settings: Settings) -> Retriever:
        """A retriever over a ready corpus and its sentence vectors, given as consecutive parts of shape (n_i, dim)."""
        index = VectorIndex.build(vectors, index_type=settings.index_type, settings=settings)
        return cls(corpus, index, embedder, settings)

    @classmethod
    def load(cls, path: str | Path, *, model: str | None = None, settings: Settings | None = None,
             check_sources: bool = True) -> Retriever:
        """Load a saved index without re-embedding; raise if it is corrupt, stale or for another model.

        Chunking and model settings come from the index; query-time settings
        (weights, thresholds, search breadth) from `settings`. With
        `check_sources`, a document whose source file changed since it was
        indexed makes the index stale (files whose size and time are unchanged are not read).
        """
        stored = load_index(path)
        saved = stored.manifest["settings"]
        if model is not None and model != saved["model"]:
            raise StaleIndexError(
                f"index at {path} was built with model {saved['model']!r}, not {model!r}; "
                f"rebuild it with `qa index ... --model {model}`"
            )
        settings = dataclasses.replace(settings or Settings(), **{f: saved[f] for f in _BUILD_FIELDS if f in saved})
        embedder = embedder_for(settings)
        if embedder.dim != stored.vectors.dim:
            raise StaleIndexError(
                f"index at {path} holds {stored.vectors.dim}-dimensional vectors but model "
                f"{settings.model!r} makes {embedder.dim}-dimensional ones; rebuild the index"
            )
        if check_sources:
            _check_sources(path, stored.corpus.documents)
        return cls(stored.corpus, stored.vectors, embedder, settings, lexical=stored.lexical)

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
        """Persist to a directory atomically, under the writer lock (see `qa.index.save_index`)."""
        return save_index(path, corpus=self.corpus, vectors=self.vectors, lexical=self.lexical,
                          settings=self.settings)

    # -- changing the corpus --------------------------------------------------------

    def add(self, documents: Iterable[Document], *, progress: bool | Progress = False) -> Retriever:
        """A new retriever with these documents added or, where the doc_id is known, replaced.

        Only documents that are new or whose text changed (by fingerprint)
        are embedded; a known document with the same text only takes the new
        title, path and time. Changed documents move to the end of the corpus.
        """
        documents = list(documents)
        _check_distinct(documents)
        changed = self.changed(documents)
        ids = {d.doc_id for d in changed}
        retriever = self.with_documents([d for d in documents if d.doc_id not in ids])
        if not changed:
            return retriever
        part = Corpus.from_documents(changed, self.settings)
        return retriever.add_parts(part, [embed_corpus(part, self.embedder, progress=progress)])

    def changed(self, documents: Iterable[Document]) -> list[Document]:
        """Those of `documents` that are not indexed yet or whose text differs from the indexed one."""
        positions = self.corpus.positions
        return [d for d in documents
                if d.doc_id not in positions or self.documents[positions[d.doc_id]].fingerprint != d.fingerprint]

    def with_documents(self, documents: Iterable[Document]) -> Retriever:
        """A new retriever in which these indexed documents, same text, carry new titles, paths or times."""
        update = {d.doc_id: d for d in documents}
        if not update:
            return self
        for doc_id, document in update.items():
            if document.fingerprint != self.document(doc_id).fingerprint:
                raise QAError(f"document {doc_id!r} has other text; add it instead")
        if all(self.document(doc_id) == document for doc_id, document in update.items()):
            return self
        corpus = dataclasses.replace(self.corpus, documents=[update.get(d.doc_id, d) for d in self.documents])
        return Retriever(corpus, self.vectors, self.embedder, self.settings, lexical=self.lexical)

    def add_parts(self, corpus: Corpus, vectors: Sequence[np.ndarray]) -> Retriever:
        """A new retriever with a ready part added: its documents, already split and embedded
        (`vectors`: consecutive parts of shape (n_i, dim)), replace indexed ones with the same doc_id."""
        replaced = set(corpus.positions)
        keep = np.asarray([d.doc_id not in replaced for d in self.documents])
        kept = self.corpus.select(keep) if not keep.all() else self.corpus
        return Retriever.from_parts(Corpus.concat([kept, corpus]), [*self._vector_runs(keep), *vectors],
                                    self.embedder, self.settings)

    def remove(self, doc_ids: Iterable[str]) -> Retriever:
        """A new retriever without these documents (nothing is embedded)."""
        unwanted = set([doc_ids] if isinstance(doc_ids, str) else doc_ids)
        unknown = unwanted - set(self.corpus.positions)
        if unknown:
            raise QAError(f"unknown documents: {', '.join(sorted(unknown))}")
        keep = np.asarray([d.doc_id not in unwanted for d in self.documents])
        if not keep.any():
            raise QAError("removing every document would leave an empty index")
        if keep.all():
            return self
        return Retriever.from_parts(self.corpus.select(keep), self._vector_runs(keep), self.embedder, self.settings)

    def extend(self, documents: Iterable[Document], *, progress: bool | Progress = False) -> Retriever:
        """A new retriever over these documents plus the new ones; only the new ones are embedded."""
        documents = list(documents)
        clash = {d.doc_id for d in documents} & set(self.corpus.positions)
        if clash:
            raise QAError(f"documents already indexed: {', '.join(sorted(clash))}")
        if not documents:
            raise QAError("no documents to index")
        return self.add(documents, progress=progress)

    def subset(self, doc_ids: Iterable[str]) -> Retriever:
        """A new retriever over only the named documents (no re-embedding)."""
        wanted = set(doc_ids)
        unknown = wanted - set(self.corpus.positions)
        if unknown:
            raise QAError(f"unknown documents: {', '.join(sorted(unknown))}")
        if not wanted:
            raise QAError("choose at least one document")
        return self.remove(d.doc_id for d in self.documents if d.doc_id not in wanted)

    def _vector_runs(self, keep: np.ndarray) -> list[np.ndarray]:
        """Views of the stored vectors of the kept documents, one per run of consecutive kept documents."""
        bounds = self.corpus.doc_sentences
        runs, first = [], None
        for position, kept in enumerate([*keep.tolist(), False]):
            if kept and first is None:
                first = position
            elif not kept and first is not None:
                runs.append(self.sentence_vectors[bounds[first]:bounds[position]])
                first = None
        return runs

    # -- searching -----------------------------------------------------------------

    def document(self, doc_id: str) -> Document:
        return self.documents[self.corpus.positions[doc_id]]

    def sentence_ids(self, doc_id: str) -> range:
        """Positions of a document's sentences in `self.sentences`."""
        position = self.corpus.positions[doc_id]
        return range(int(self.corpus.doc_sentences[position]), int(self.corpus.doc_sentences[position + 1]))

    def sentence_before(self, sentence_id: int) -> str:
        """The text of the sentence before this one in its document ("" for a document's first sentence)."""
        before = sentence_id - 1
        if before < 0 or self.sentences[before].doc_id != self.sentences[sentence_id].doc_id:
            return ""
        return self.sentences[before].text

    def vectors_of(self, sentence_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of these sentences, shape (len(sentence_ids), dim), float32 (a small copy)."""
        return self.sentence_vectors[np.asarray(sentence_ids, dtype=np.int64)]

    def allowed(self, where: Where) -> np.ndarray | None:
        """Which documents a filter keeps, shape (n_docs,) bool; None for no filter.

        Each entry of `where` keeps the document with that doc_id, documents
        whose doc_id starts with it followed by "/", and documents whose file
        is it or lies under it (a relative path counts from the current
        directory). An entry that keeps nothing is an error.
        """
        if where is None:
            return None
        entries = [where] if isinstance(where, str) else list(where)
        keep = np.zeros(len(self.documents), dtype=bool)
        for entry in entries:
            if not isinstance(entry, str) or not entry.strip():
                raise QAError(f"a document filter must be a doc_id or a path prefix, got {entry!r}")
            prefix = os.path.abspath(os.path.expanduser(entry))
            found = False
            for position, document in enumerate(self.documents):
                if (document.doc_id == entry or document.doc_id.startswith(entry.rstrip("/") + "/")
                        or (document.path and (document.path == prefix
                                               or document.path.startswith(prefix.rstrip(os.sep) + os.sep)))):
                    keep[position] = found = True
            if not found:
                raise QAError(f"no document has the id {entry!r} or lies under the path {prefix!r}; "
                              "`qa info DIR` lists the documents")
        return keep

    def passage(self, chunk: int, *, score: float = 0.0, dense: float = 0.0, lexical: float = 0.0) -> Passage:
        """The chunk at position `chunk` as a `Passage` with the given scores."""
        found = self.chunks[chunk]
        document = self.documents[int(self.chunk_document[chunk])]
        return Passage(found.doc_id, document.title, found.start, found.end, found.text, score, dense, lexical, chunk,
                       document.page_at(found.start), document.section_at(found.start))

    def search(self, query: str, k: int = 5, *, where: Where = None) -> list[Passage]:
        """The k best chunks for a query, best first; `where` limits them to some documents (see `allowed`)."""
        query = check_question(query, self.settings)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.rank(query, self.embedder.embed_query(query), k=k, where=where)

    def rank(self, query: str, query_vector: np.ndarray, *, k: int, dense_weight: float | None = None,
             where: Where = None) -> list[Passage]:
        """Fuse dense and lexical scores over the candidates of both; see the module docstring.

        `dense_weight` overrides the setting (1.0: dense only, 0.0: BM25 only), for evaluation;
        `where` limits the passages to some documents (see `allowed`).
        """
        return self.rank_scored(self.lexical.scores(query), query_vector, k=k, dense_weight=dense_weight, where=where)

    def rank_scored(self, lexical_scores: tuple[np.ndarray, np.ndarray, np.ndarray], query_vector: np.ndarray, *,
                    k: int, dense_weight: float | None = None, where: Where = None) -> list[Passage]:
        """`rank` for a query already turned into its BM25 scores (`LexicalIndex.scores`) and its vector: the
        candidate gathering (`qa.candidates`) makes both once, at the bottom, and fuses them here."""
        settings = self.settings
        (by_chunk, by_sentence, by_document), sentences = self._lexical(lexical_scores, where)
        _, sentence_ids = self.vectors.search(query_vector, settings.candidates * 4, allowed=sentences)
        candidates = set(self.sentence_chunk[sentence_ids].tolist())
        candidates.update(_top(by_chunk, settings.candidates).tolist())
        candidates.update(self.sentence_chunk[_top(by_sentence, settings.candidates)].tolist())
        passages = [self._fused(position, (by_chunk, by_sentence, by_document), query_vector, dense_weight)
                    for position in candidates]
        passages.sort(key=lambda p: (-p.score, p.chunk))
        return passages[:k]

    def passage_scored(self, lexical_scores: tuple[np.ndarray, np.ndarray, np.ndarray], query_vector: np.ndarray,
                       chunk: int, *, where: Where = None) -> Passage:
        """The chunk at position `chunk` scored as `rank_scored` scores the chunks it finds, whether it found it
        or not (for a sentence read for another reason, such as introducing the term a question asks about)."""
        scaled, _ = self._lexical(lexical_scores, where)
        return self._fused(chunk, scaled, query_vector, None)

    def _lexical(self, lexical_scores: tuple[np.ndarray, np.ndarray, np.ndarray], where: Where
                 ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None]:
        """BM25 scores by chunk, sentence and document, zero outside `where` and scaled to the best of each, and
        the sentences `where` allows (None: all)."""
        by_chunk, by_sentence, by_document = lexical_scores
        documents = self.allowed(where)
        sentences = None
        if documents is not None:
            sentences = documents[self.corpus.sentence_doc]
            by_chunk = by_chunk * documents[self.chunk_document]
            by_sentence = by_sentence * sentences
            by_document = by_document * documents
        return (_scaled(by_chunk), _scaled(by_sentence), _scaled(by_document)), sentences

    def _fused(self, position: int, scaled: tuple[np.ndarray, np.ndarray, np.ndarray], query_vector: np.ndarray,
               dense_weight: float | None) -> Passage:
        """One chunk with its fused score: its best sentence's similarity and its BM25 evidence, weighted."""
        by_chunk, by_sentence, by_document = scaled
        weight = self.settings.dense_weight if dense_weight is None else dense_weight
        sentence_ids = self.chunk_sentences[position]
        dense = float((self.sentence_vectors[sentence_ids] @ query_vector).max())
        lexical = (0.5 * by_chunk[position] + 0.25 * by_sentence[sentence_ids].max()
                   + 0.25 * by_document[self.chunk_document[position]])
        score = weight * dense + (1 - weight) * float(lexical)
        return self.passage(position, score=score, dense=dense, lexical=float(lexical))


def embed_corpus(corpus: Corpus, embedder: Embedder, *, progress: bool | Progress = False) -> np.ndarray:
    """The vectors of every sentence of a corpus, shape (n_sentences, dim), float32."""
    return embedder.embed_passages([s.text for s in corpus.sentences], progress=progress)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the (up to) n highest positive scores, in no particular order."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) <= n:
        return positive
    return positive[np.argpartition(-scores[positive], n - 1)[:n]]


def _check_distinct(documents: Sequence[Document]) -> None:
    seen: set[str] = set()
    for document in documents:
        if document.doc_id in seen:
            raise QAError(f"documents must have distinct doc_id values: {document.doc_id!r} comes twice")
        seen.add(document.doc_id)


def _with_sources(documents: list[Document], sources: dict[str, str] | None) -> list[Document]:
    if not sources:
        return documents
    return [dataclasses.replace(d, path=sources[d.doc_id]) if d.doc_id in sources and not d.path else d
            for d in documents]


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
    """The question stripped and made encodable; raise `InvalidQuestionError` if empty or over the length limit.

    Lone surrogates (from a byte that is not UTF-8 on the command line, or
    half of an emoji cut by a client) cannot be encoded, and the tokenizer
    fails on them with a TypeError; they are dropped here, where every path
    (CLI, web, library) passes, and a surrogate pair becomes its character.
    """
    if isinstance(question, str) and any("\ud800" <= ch <= "\udfff" for ch in question):
        question = question.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")
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


def _check_sources(path: str | Path, documents: list[Document]) -> None:
    """Refuse an index whose source files changed since it was built (unchanged modification times are trusted)."""
    from .documents import read_text

    for document in documents:
        source = document.path
        if not source or not Path(source).is_file():
            continue
        if document.modified is not None and os.stat(source).st_mtime == document.modified:
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
