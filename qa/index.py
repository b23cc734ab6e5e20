"""The vector index and the on-disk format of a whole retriever.

`VectorIndex` handles FAISS's quirks in one place (contiguous float32,
dimension checks, `-1` labels, `k` capped at `ntotal`, filters) for an exact
flat index, HNSW, or IVF-PQ whose candidates are re-scored with the full
vectors. All three keep the full vectors in FAISS's flat storage, which
`vectors()` returns as a read-only view (no second copy) and which a loaded
index memory-maps (`IO_FLAG_MMAP_IFC`).

`save_index` and `load_index` persist a corpus as plain files (JSON lines,
numpy arrays, bm25s's and FAISS's own formats) plus a manifest that records
the format version, model, settings, a fingerprint per document and a
sha256 per file. Writers hold a lock beside the index (filelock); writes go
to a temporary directory that is renamed into place, and what a killed
writer left behind is cleaned up, or put back, by the next save or load.
Loading refuses anything that does not match the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .config import IndexType, Settings
from .corpus import Corpus
from .documents import Document
from .errors import CorruptIndexError, IndexLockedError, IndexNotFoundError
from .lexical import LexicalIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
# A filter that keeps at most this many vectors is searched exactly (a few milliseconds).
_EXACT_FILTERED = 50_000
_ARRAYS = ("doc_sentences", "doc_chunks", "spans", "chunk_spans", "term_ids", "term_offsets")


class VectorIndex:
    """Inner-product search over unit vectors: exact (flat) or approximate (HNSW, IVF-PQ)."""

    def __init__(self, index: faiss.Index) -> None:
        self.faiss = index

    @classmethod
    def build(cls, vectors: np.ndarray | Sequence[np.ndarray], *, index_type: IndexType = "flat",
              settings: Settings | None = None) -> VectorIndex:
        """Index unit vectors, float32, of shape (n, dim) or given as consecutive parts of shape (n_i, dim).

        Parts are added one by one, so views of a stored index need no joined copy.
        "auto" picks the index by size (see `Settings`).
        """
        settings = settings or Settings()
        faiss.omp_set_num_threads(settings.faiss_threads)
        parts = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
        parts = [np.ascontiguousarray(p, dtype=np.float32).reshape(len(p), -1) for p in parts]
        if not parts:
            raise ValueError("no vectors to index")
        n, dim = sum(len(p) for p in parts), parts[0].shape[1]
        kind = resolve_index_type(index_type, n, settings)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivfpq":
            lists = max(1, min(int(math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per list
            bits = 8 if n >= 4096 else max(1, int(math.log2(max(2, n // 16))))
            sub = next(m for m in (48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if dim % m == 0)
            base = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, sub, bits, faiss.METRIC_INNER_PRODUCT)
            base.train(_sample(parts, 100 * lists))
            index = faiss.IndexRefineFlat(base)
        else:
            index = faiss.IndexFlatIP(dim)
        for part in parts:
            if len(part):
                index.add(part)
        built = cls(index)
        built.configure(settings)
        return built

    def configure(self, settings: Settings) -> None:
        """Apply the query-time settings (FAISS threads, HNSW efSearch, IVF nprobe, re-scored candidates)."""
        faiss.omp_set_num_threads(settings.faiss_threads)
        kind = self.kind
        if kind == "hnsw":
            self.faiss.hnsw.efSearch = settings.hnsw_ef_search
        elif kind == "ivfpq":
            faiss.extract_index_ivf(self.faiss).nprobe = settings.ivf_nprobe
            self.faiss.k_factor = settings.ivf_rescore

    @property
    def kind(self) -> str:
        """"flat", "hnsw" or "ivfpq"."""
        if isinstance(self.faiss, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(self.faiss, faiss.IndexRefine):
            return "ivfpq"
        return "flat"

    @property
    def dim(self) -> int:
        return int(self.faiss.d)

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    def search(self, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector of shape (dim,); fewer if the index is small.

        `allowed`, shape (n,) bool, keeps only those ids. An approximate index
        scores a small allowed set exactly, since its graph or lists may hold
        too few allowed neighbours.
        """
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query has dimension {query.shape[1]}, index has {self.dim}")
        k = min(k, len(self) if allowed is None else int(np.count_nonzero(allowed)))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params = None
        if allowed is not None:
            if self.kind != "flat" and int(np.count_nonzero(allowed)) <= _EXACT_FILTERED:
                return self._exact(query[0], k, allowed)
            bitmap = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            params = self._params(faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap)))
        scores, ids = self.faiss.search(query, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _params(self, selector: Any) -> Any:
        kind = self.kind
        if kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.faiss.hnsw.efSearch)
        if kind == "ivfpq":
            base = faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(self.faiss).nprobe)
            return faiss.IndexRefineSearchParameters(k_factor=self.faiss.k_factor, base_index_params=base, sel=selector)
        return faiss.SearchParameters(sel=selector)

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.vectors()
        ids = np.flatnonzero(allowed)
        scores = np.concatenate([vectors[a:b] @ query for a, b in _runs(allowed)])
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top].astype(np.float32), ids[top].astype(np.int64)

    def vectors(self) -> np.ndarray:
        """All stored vectors, shape (n, dim), float32: a read-only view of FAISS's storage, not a copy."""
        storage = self.faiss
        if isinstance(storage, faiss.IndexHNSW):
            storage = faiss.downcast_index(storage.storage)
        elif isinstance(storage, faiss.IndexRefine):
            storage = faiss.downcast_index(storage.refine_index)
        n, dim = len(self), self.dim
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        view = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)
        view.flags.writeable = False  # a loaded index maps its file read-only
        return np.asarray(_Owned(view, self.faiss))


class _Owned:
    """Exposes an array view while keeping the FAISS index that owns its memory alive."""

    def __init__(self, view: np.ndarray, owner: Any) -> None:
        self.__array_interface__ = view.__array_interface__
        self._owner = owner


def resolve_index_type(index_type: IndexType, n: int, settings: Settings) -> str:
    """The concrete index kind: "auto" is flat up to `settings.approximate_above` vectors, then approximate."""
    if index_type == "auto":
        return settings.approximate_index if n > settings.approximate_above else "flat"
    return index_type


def _sample(parts: list[np.ndarray], count: int) -> np.ndarray:
    """Up to `count` rows drawn evenly at random (seeded) from consecutive parts, as one array."""
    n = sum(len(p) for p in parts)
    if n <= count:
        return np.concatenate(parts)
    chosen = np.sort(np.random.default_rng(0).choice(n, count, replace=False))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    return np.concatenate([parts[i][chosen[(chosen >= bounds[i]) & (chosen < bounds[i + 1])] - bounds[i]]
                           for i in range(len(parts))])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The half-open ranges where `mask` is true."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@dataclass(frozen=True)
class StoredIndex:
    """Everything `load_index` reads back."""

    corpus: Corpus
    vectors: VectorIndex
    lexical: LexicalIndex
    manifest: dict[str, Any]


def save_index(path: str | Path, *, corpus: Corpus, vectors: VectorIndex, lexical: LexicalIndex,
               settings: Settings) -> Path:
    """Write an index directory atomically; an existing one is replaced only once the new one is complete.

    Holds the writer lock (see `write_lock`) while it writes; raises
    `IndexLockedError` if another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_lock(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            _write(tmp, corpus=corpus, vectors=vectors, lexical=lexical, settings=settings)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; an index is read by whoever serves it
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


def _write(tmp: Path, *, corpus: Corpus, vectors: VectorIndex, lexical: LexicalIndex, settings: Settings) -> None:
    with open(tmp / "documents.jsonl", "w", encoding="utf-8") as out:
        for doc in corpus.documents:
            out.write(json.dumps({"doc_id": doc.doc_id, "title": doc.title, "text": doc.text, "path": doc.path,
                                  "modified": doc.modified}) + "\n")
    for name in _ARRAYS:
        np.save(tmp / f"{name}.npy", getattr(corpus, name), allow_pickle=False)
    (tmp / "vocab.json").write_text(json.dumps(corpus.vocab), encoding="utf-8")
    lexical.save(tmp / "lexical")
    faiss.write_index(vectors.faiss, str(tmp / "vectors.faiss"))
    files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": settings.model,
        "dim": vectors.dim,
        "index": vectors.kind,
        "settings": dataclasses.asdict(settings),
        "documents": [
            {"doc_id": d.doc_id, "title": d.title, "sha256": d.fingerprint, "chars": len(d.text),
             "source": d.path, "modified": d.modified,
             "sentences": int(corpus.doc_sentences[i + 1] - corpus.doc_sentences[i])}
            for i, d in enumerate(corpus.documents)
        ],
        "counts": {
            "documents": len(corpus.documents),
            "sentences": len(corpus.spans),
            "chunks": len(corpus.chunk_spans),
            "vectors": len(vectors),
        },
        "files": {name: _sha256(tmp / name) for name in files},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an index directory; raises if absent or unreadable."""
    path = Path(path)
    for _ in range(40):  # a writer moves the old index aside and the new one in within microseconds
        if (path / MANIFEST).is_file() or path.exists() or not any(path.parent.glob(f".{path.name}.old-*")):
            break
        clean_stale(path)  # under the lock: puts back an index that a killed writer moved aside
        time.sleep(0.025)
    if not (path / MANIFEST).is_file():
        raise IndexNotFoundError(
            f"no index at {path}: {MANIFEST} not found. Build one with `qa index FILE... --out {path}`"
        )
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptIndexError(f"index at {path}: {MANIFEST} is unreadable ({exc}); rebuild the index") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptIndexError(
            f"index at {path} has format {manifest.get('format_version') if isinstance(manifest, dict) else '?'}, "
            f"this version of qa reads format {FORMAT_VERSION}; rebuild it with `qa index FILE... --out {path}`"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise CorruptIndexError(f"index at {path}: {MANIFEST} is damaged ({problem}); rebuild the index")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the keys loading relies on, or None; so a damaged manifest is not a bare KeyError."""
    for key, kind in (("settings", dict), ("documents", list), ("counts", dict), ("files", dict)):
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not a JSON {'object' if kind is dict else 'array'}"
    if not all(isinstance(d, dict) and isinstance(d.get("sha256"), str) for d in manifest["documents"]):
        return "a document entry has no 'sha256'"
    if not isinstance(manifest["counts"].get("vectors"), int):
        return "'counts' has no number of 'vectors'"
    return None


def load_index(path: str | Path, *, mmap: bool = True) -> StoredIndex:
    """Read an index directory, checking every file against the manifest.

    With `mmap`, the vectors and the BM25 matrices are memory-mapped rather
    than read into memory. Stale temporary directories of killed writers are
    removed first when no writer is at work.
    """
    path = Path(path)
    clean_stale(path)
    manifest = read_manifest(path)
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CorruptIndexError(f"index at {path} is incomplete: {name} is missing; rebuild the index")
        if _sha256(file) != digest:
            raise CorruptIndexError(
                f"index at {path}: {name} does not match its checksum (truncated or altered); rebuild the index"
            )
    try:
        documents = []
        with open(path / "documents.jsonl", encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                documents.append(Document(doc_id=row["doc_id"], text=row["text"], title=row["title"],
                                          path=row.get("path"), modified=row.get("modified")))
        arrays = {name: np.load(path / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        corpus = Corpus(documents, vocab=vocab, **arrays)
        lexical = LexicalIndex.load(path / "lexical", vocab, mmap=mmap)
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        vectors = VectorIndex(faiss.read_index(str(path / "vectors.faiss"), flags))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CorruptIndexError(f"index at {path} cannot be read ({exc}); rebuild the index") from exc
    expected = [d["sha256"] for d in manifest["documents"]]
    if ([d.fingerprint for d in documents] != expected or len(vectors) != manifest["counts"]["vectors"]
            or len(vectors) != len(corpus.spans)):
        raise CorruptIndexError(f"index at {path} does not match its manifest; rebuild the index")
    return StoredIndex(corpus, vectors, lexical, manifest)


# -- writers: the lock and what a killed one leaves behind -------------------------------------


def lock_path(path: str | Path) -> Path:
    """The lock file of the index at `path`: hidden, beside it (the directory itself is replaced whole)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextmanager
def write_lock(path: str | Path, *, timeout: float = 0) -> Iterator[None]:
    """Hold the writer lock of the index at `path` (re-entrant in one thread).

    Raises `IndexLockedError` if another writer holds it for longer than
    `timeout` seconds. The operating system releases it when a writer dies,
    so a killed `qa index` never leaves the index locked.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(path), is_singleton=True)
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise IndexLockedError(
            f"index at {path} is being written by another process (lock {lock.lock_file}); "
            "wait for it to finish and try again"
        ) from exc
    try:
        _recover(path)
        _remove_leftovers(path)
        yield
    finally:
        lock.release()


def clean_stale(path: str | Path) -> None:
    """Put back or remove what a killed writer left beside `path`, unless a live writer holds the lock."""
    path = Path(path)
    if not any(path.parent.glob(f".{path.name}.tmp-*")) and not any(path.parent.glob(f".{path.name}.old-*")):
        return
    try:
        with write_lock(path):
            pass
    except IndexLockedError:
        log.info("a writer is at work on %s; leaving its temporary files", path)
    except OSError as exc:  # a read-only place: nothing can be cleaned, loading still works
        log.info("cannot clean temporary files beside %s: %s", path, exc)


def _recover(path: Path) -> None:
    """If a writer was killed between moving the old index aside and the new one in, put the old one back."""
    if path.exists():
        return
    for parking in sorted(path.parent.glob(f".{path.name}.old-*")):
        if (parking / "index" / MANIFEST).is_file():
            try:
                os.replace(parking / "index", path)
            except OSError:
                return
            log.warning("restored the index at %s that an interrupted write had moved aside", path)
            return


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary and parked directories of earlier writers (call only with the lock held)."""
    for stale in [*path.parent.glob(f".{path.name}.tmp-*"), *path.parent.glob(f".{path.name}.old-*")]:
        log.info("removing %s, left by an interrupted write", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing any old directory there.

    The old directory is parked beside the target first; if the new one cannot
    take its place, the old one is moved back so a failed save loses nothing.
    A writer killed between the two moves leaves the old one parked; the
    next save or load puts it back (`_recover`).
    """
    if not target.exists():
        os.replace(new, target)
        return
    parking = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = parking / "index"
    try:
        os.replace(target, old)
    except BaseException:
        parking.rmdir()
        raise
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # if this fails too, the old index stays in `parking`; `_recover` puts it back
        parking.rmdir()
        raise
    shutil.rmtree(parking, ignore_errors=True)
