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
sha256 per file.

On disk (docs/reliability.md says why): the index at `idx` is a symbolic
link to a hidden version folder beside it, `.idx.v-XXXXXXXX`. A save writes
a new version folder, flushes every file and folder to disk (fsync), then
moves the link over the old one in one atomic rename: a reader, or a
process killed at any moment, sees the old version or the new one, whole.
A reader holds a shared lock (flock) on the version it loads; old versions
are deleted only when no reader holds them. Writers hold a lock beside the
index (filelock), so a second writer is refused. An index written before
versioned folders (a plain folder) still loads, and the next save replaces it.

Loading checks the manifest against a schema, refuses file names that leave
the folder, requires a checksum for every file it reads, and refuses
anything that does not match; every problem is one `CorruptIndexError` line.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # Windows: no flock; versions are then removed without regard to readers
    fcntl = None  # type: ignore[assignment]

import faiss
import numpy as np

from .config import IndexType, Settings
from .corpus import Corpus
from .docrows import document_from_row, document_row
from .errors import CorruptIndexError, IndexLockedError, IndexNotFoundError, IndexWriteError, QAError
from .lexical import LexicalIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
# A filter that keeps at most this many vectors is searched exactly (a few milliseconds).
_EXACT_FILTERED = 50_000
_ARRAYS = ("doc_sentences", "doc_chunks", "spans", "chunk_spans", "term_ids", "term_offsets")
# bm25s's files per level (`BM25.load`); methods that need the non-occurrence array also read that one.
_BM25_FILES = ("params.index.json", "vocab.index.json", "data.csc.index.npy", "indices.csc.index.npy",
               "indptr.csc.index.npy")
_BM25_NONOCCURRENCE = "nonoccurrence_array.index.npy"
# Every file `load_index` reads; each must have a checksum in the manifest.
REQUIRED_FILES = ("documents.jsonl", *(f"{name}.npy" for name in _ARRAYS), "vocab.json", "vectors.faiss",
                  "lexical/term_counts.npy",
                  *(f"lexical/{level}/{name}" for level in LexicalIndex.LEVELS for name in _BM25_FILES))
_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


# -- writing -------------------------------------------------------------------------------------


def save_index(path: str | Path, *, corpus: Corpus, vectors: VectorIndex, lexical: LexicalIndex,
               settings: Settings, durable: bool = True) -> Path:
    """Write the index as a new version folder and point `path` at it in one atomic step.

    Holds the writer lock (see `write_lock`) while it writes; raises
    `IndexLockedError` if another process holds it. With `durable` (the
    default) every file and folder is flushed to disk (fsync) before the
    swap and the swap after it, so a power cut leaves the old or the new
    index, never a link to files that were not written (docs/reliability.md
    has the cost). Any OS error (a full disk, no permission) becomes one
    `IndexWriteError` naming its meaning and `path`; the old index is kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with write_lock(path):
            version, fd = _new_version(path)
            try:
                try:
                    _write(version, corpus=corpus, vectors=vectors, lexical=lexical, settings=settings)
                    os.chmod(version, 0o755)  # mkdtemp makes it private; an index is read by whoever serves it
                    if durable:
                        _sync_tree(version)
                        _sync_dir(path.parent)  # the new folder's name is on disk before anything points to it
                    _replace_dir(version, path)
                except BaseException:
                    shutil.rmtree(version, ignore_errors=True)
                    raise
                if durable:
                    _sync_dir(path.parent)  # the swap itself is on disk
            finally:
                _unlock(fd)
            _collect(path)
    except QAError:
        raise
    except OSError as exc:
        error = IndexWriteError(_write_failure(path, exc))
        error.errno = exc.errno
        raise error from exc
    return path


def _write_failure(path: Path, exc: OSError) -> str:
    """One line for an OS error met while saving the index at `path`."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded on the device holding {path}"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != path else ""
    return f"cannot write the index at {path}: {reason}{where}"


def _create(file: Path) -> BinaryIO:
    """A new file to write: OS errors (a full disk) come from Python's own writes, with their errno."""
    return open(file, "xb")  # noqa: SIM115 - closed by the caller's `with`


def _write(folder: Path, *, corpus: Corpus, vectors: VectorIndex, lexical: LexicalIndex, settings: Settings) -> None:
    with _create(folder / "documents.jsonl") as out:
        for doc in corpus.documents:
            out.write((json.dumps(document_row(doc)) + "\n").encode("utf-8"))
    for name in _ARRAYS:
        with _create(folder / f"{name}.npy") as out:
            np.save(out, getattr(corpus, name), allow_pickle=False)
    with _create(folder / "vocab.json") as out:
        out.write(json.dumps(corpus.vocab).encode("utf-8"))
    lexical.save(folder / "lexical")
    with _create(folder / "vectors.faiss") as out:
        # Through a Python writer rather than a file name: FAISS turns a failed fwrite into a RuntimeError
        # whose errno is lost in its text; this way a full disk is an OSError with errno ENOSPC.
        faiss.write_index(vectors.faiss, faiss.PyCallbackIOWriter(out.write))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": settings.model,
        "dim": vectors.dim,
        "index": vectors.kind,
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "llm_key"},  # no secret on disk
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
        "files": {name: _sha256(folder / name) for name in files},
    }
    with _create(folder / MANIFEST) as out:
        out.write(json.dumps(manifest, indent=2).encode("utf-8"))


def _sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder, deepest first (their entries name the files)."""
    for root, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            _sync_file(Path(root) / name)
        _sync_dir(Path(root))


def _sync_file(file: Path) -> None:
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    """fsync a folder, so that the names in it (new files, a renamed link) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(version: Path, target: Path) -> None:
    """Point `target` at `version`: a link made inside `version`, renamed over `target` in one atomic step.

    The link is relative (the folder holding both can move) and is made inside
    the version folder, so one left by a killed writer goes with that folder.
    A plain folder at `target` (an index written before versioned folders) is
    parked beside it first; if the link cannot take its place, the folder is
    moved back, so a failed save loses nothing. A writer killed between the
    two moves leaves it parked; the next save or load puts it back (`_recover`).
    """
    pointer = version / ".pointer"
    os.symlink(version.name, pointer)
    if target.is_symlink() or not target.exists():
        os.replace(pointer, target)
        return
    parking = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = parking / "index"
    try:
        os.replace(target, old)
    except BaseException:
        parking.rmdir()
        raise
    try:
        os.replace(pointer, target)
    except BaseException:
        os.replace(old, target)  # if this fails too, the old index stays in `parking`; `_recover` puts it back
        parking.rmdir()
        raise
    shutil.rmtree(parking, ignore_errors=True)


# -- versions: made by a writer, read under a shared lock, removed when no one holds them ---------


def _beside(path: Path, kind: str) -> list[Path]:
    """The hidden entries `.{name}.{kind}-*` beside the index at `path`."""
    prefix = f".{path.name}.{kind}-"
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _version_of(path: Path) -> Path | None:
    """The version folder the index at `path` points to; None for a plain folder, another link or nothing."""
    try:
        name = os.readlink(path)
    except OSError:
        return None
    if "/" in name or not name.startswith(f".{path.name}.v-"):
        return None  # not a link this module made: read through it as a plain folder
    return path.parent / name


def _new_version(path: Path) -> tuple[Path, int]:
    """A new, empty version folder beside `path`, locked exclusively (so no one removes it while it is written)."""
    for _ in range(100):
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.v-", dir=path.parent))
        fd = _lock(folder, exclusive=True, wait=True)
        if fd is not None:
            return folder, fd
    raise OSError(errno.EAGAIN, "version folders were removed as soon as they were made", str(path.parent))


def _lock(folder: Path, *, exclusive: bool, wait: bool) -> int | None:
    """An open descriptor of `folder` holding a flock on it; None if the folder is gone or (without `wait`) busy.

    After locking, the folder must still be at its name: one removed meanwhile
    was renamed first (see `_collect`), so it does not count.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        held, named = os.fstat(fd), os.stat(folder)
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise FileNotFoundError(folder)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    os.close(fd)  # closing the only descriptor releases the flock


@contextmanager
def _reading(path: Path) -> Iterator[Path]:
    """The folder of one whole version of the index at `path`, kept from removal until the block ends.

    A plain folder (the layout before versions), a link made by someone else
    or a missing index is read in place.
    """
    gone = None
    while True:
        version = _version_of(path)
        if version is None:
            yield path
            return
        fd = _lock(version, exclusive=False, wait=True)
        if fd is not None:
            try:
                yield version
            finally:
                _unlock(fd)
            return
        if version == gone:  # removed versions are not pointed to: this link points to a folder deleted by hand
            raise CorruptIndexError(f"index at {path} points to {version.name}, which is missing; rebuild the index")
        gone = version


def _collect(path: Path) -> None:
    """Remove version folders beside `path` that it does not point to and that no one holds, and their trash.

    Safe without the writer lock: a version being written or read is locked;
    a folder is renamed to `.trash-` under an exclusive lock before it is
    deleted, so a reader that locks it afterwards sees that it is gone.
    """
    for version in _beside(path, "v"):
        if version == _version_of(path):
            continue
        try:
            fd = _lock(version, exclusive=True, wait=False)
        except OSError as exc:
            log.info("cannot remove %s: %s", version, exc)
            continue
        if fd is None:
            continue  # a writer is writing it or a reader loading it: a later save or load removes it
        try:
            if version == _version_of(path):  # a writer pointed to it just before we locked it
                continue
            os.rename(version, version.with_name(f".{path.name}.trash-{version.name}"))
        except OSError as exc:  # a read-only place: nothing can be removed, loading still works
            log.info("cannot remove %s: %s", version, exc)
        finally:
            _unlock(fd)
    for trash in _beside(path, "trash"):
        shutil.rmtree(trash, ignore_errors=True)


# -- reading -------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an index directory, checked against its schema; raises if absent, unreadable or invalid."""
    path = Path(path)
    _settle(path)
    with _reading(path) as folder:
        return _read_manifest(folder, path)


def _settle(path: Path) -> None:
    """Wait out, or repair, a plain-folder index moved aside by a writer (see `_replace_dir`)."""
    for _ in range(40):  # a writer moves the old index aside and the new one in within microseconds
        if path.exists() or path.is_symlink() or not _beside(path, "old"):
            return
        clean_stale(path)  # under the lock: puts back an index that a killed writer moved aside
        time.sleep(0.025)


def _read_manifest(folder: Path, path: Path) -> dict[str, Any]:
    """The manifest in `folder` (a version of the index at `path`, which error messages name)."""
    file = folder / MANIFEST
    if not file.is_file():
        if folder != path:
            raise CorruptIndexError(f"index at {path} is incomplete: {MANIFEST} is missing; rebuild the index")
        raise IndexNotFoundError(
            f"no index at {path}: {MANIFEST} not found. Build one with `qa index FILE... --out {path}`"
        )
    try:
        if _regular(folder, MANIFEST) is None:
            raise ValueError("not a plain file")
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise CorruptIndexError(f"index at {path}: {MANIFEST} is unreadable (nested too deeply); "
                                "rebuild the index") from exc
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptIndexError(f"index at {path}: {MANIFEST} is unreadable ({exc}); rebuild the index") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = _shown(manifest.get("format_version")) if isinstance(manifest, dict) else "?"
        raise CorruptIndexError(
            f"index at {path} has format {version}, this version of qa reads format {FORMAT_VERSION}; "
            f"rebuild it with `qa index FILE... --out {path}`"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise CorruptIndexError(f"index at {path}: {MANIFEST} is damaged ({problem}); rebuild the index")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the manifest, or None: a schema check, so a tampered value is one line, not a traceback."""
    for key, kind in (("settings", dict), ("documents", list), ("counts", dict), ("files", dict)):
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not a JSON {'object' if kind is dict else 'array'}"
    if not all(isinstance(d, dict) and isinstance(d.get("sha256"), str) for d in manifest["documents"]):
        return "a document entry has no 'sha256'"
    counts = manifest["counts"]
    for key in ("vectors", "documents", "sentences", "chunks"):
        if not _whole(counts.get(key)):
            return f"'counts' has no number of {key!r}"
    if counts["documents"] != len(manifest["documents"]):
        return f"'counts' says {counts['documents']} documents, 'documents' lists {len(manifest['documents'])}"
    if not isinstance(manifest.get("model"), str) or not manifest["model"]:
        return "'model' is missing or not a name"
    if not _whole(manifest.get("dim"), least=1):
        return f"'dim' is {_shown(manifest.get('dim'))}, not a positive whole number"
    if manifest.get("index") not in ("flat", "hnsw", "ivfpq"):
        return f"'index' is {_shown(manifest.get('index'))}, not 'flat', 'hnsw' or 'ivfpq'"
    return (_settings_problem(manifest["settings"])
            or _documents_problem(manifest["documents"]) or _files_problem(manifest["files"]))


# Settings an index is made with: loading takes them from the manifest (see `Retriever.load`).
_REQUIRED_SETTINGS = ("model", "chunk_sentences", "chunk_overlap", "chunk_tokens", "index_type")
_POSITIVE_SETTINGS = ("chunk_tokens", "hnsw_m")  # `Settings` itself checks the others that matter


def _settings_problem(saved: dict[str, Any]) -> str | None:
    """Each known setting must have its field's type and together pass `Settings`' own checks.

    Types are taken from the fields' defaults (and annotations, for those
    whose default is None), so a setting added to `Settings` is checked too;
    settings this version does not know are ignored.
    """
    for name in _REQUIRED_SETTINGS:
        if name not in saved:
            return f"'settings' has no {name!r}"
    defaults = Settings()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        if field.name not in saved:
            continue
        value, default = saved[field.name], getattr(defaults, field.name)
        kind = _setting_kind(value, default, str(field.type))
        if kind:
            return f"setting {field.name!r} is {_shown(value)}, not {kind}"
        values[field.name] = tuple(value) if isinstance(default, tuple) else value
    for name in _POSITIVE_SETTINGS:
        if name in values and values[name] < 1:
            return f"setting {name!r} is {values[name]}, not a positive whole number"
    try:
        Settings(**values)
    except (ValueError, TypeError) as exc:
        return f"settings are invalid: {exc}"
    return None


def _setting_kind(value: Any, default: Any, annotation: str) -> str | None:
    """None if `value` fits a setting whose default is `default`, else what it should be."""
    if default is None:  # optional: None or what the annotation names
        if value is None or ("float" in annotation and _number(value)) or ("int" in annotation and _whole(value)):
            return None
        return f"None or {'a number' if 'float' in annotation else 'a whole number'}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if _whole(value) else "a whole number >= 0"
    if isinstance(default, float):
        return None if _number(value) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, tuple):
        fits = isinstance(value, list) and len(value) == len(default) and all(_whole(v) for v in value)
        return None if fits else f"a list of {len(default)} whole numbers"
    return None


_DOCUMENT_FIELDS = (("title", lambda v: isinstance(v, str)), ("source", lambda v: v is None or isinstance(v, str)),
                    ("modified", lambda v: v is None or _number(v)), ("chars", lambda v: _whole(v)),
                    ("sentences", lambda v: _whole(v)))


def _documents_problem(documents: list[Any]) -> str | None:
    for entry in documents:
        if not isinstance(entry.get("doc_id"), str) or not entry["doc_id"]:
            return "a document entry has no 'doc_id'"
        if not _SHA256.fullmatch(entry["sha256"]):
            return f"document {_shown(entry['doc_id'])} has a 'sha256' that is not one"
        for key, fits in _DOCUMENT_FIELDS:
            if key in entry and not fits(entry[key]):
                return f"document {_shown(entry['doc_id'])} has {key!r} {_shown(entry[key])}"
    return None


def _files_problem(files: dict[str, Any]) -> str | None:
    """File names must stay inside the index folder and every file the loader reads must have a checksum."""
    for name, digest in files.items():
        if not _FILE_NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
            return f"file name {_shown(name)} is outside the index folder"
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return f"the checksum of {name} is {_shown(digest)}, not a sha256"
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        return f"no checksum for {', '.join(missing[:3])}{' and others' if len(missing) > 3 else ''}"
    return None


def _whole(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    """A value from a manifest for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _regular(folder: Path, name: str) -> Path | None:
    """`folder / name` if it is a plain file reached through plain folders (no link leads out); else None."""
    current = folder
    parts = name.split("/")
    try:
        for i, part in enumerate(parts):
            current = current / part
            mode = os.lstat(current).st_mode
            if not (stat.S_ISREG(mode) if i == len(parts) - 1 else stat.S_ISDIR(mode)):
                return None
    except OSError:
        return None
    return current


def _check_files(folder: Path, manifest: dict[str, Any], path: Path) -> None:
    """Every file in the manifest is a plain file in the folder and matches its checksum."""
    files = manifest["files"]
    for name, digest in files.items():
        file = _regular(folder, name)
        if file is None:
            raise CorruptIndexError(
                f"index at {path} is incomplete: {name} is missing or not a plain file; rebuild the index")
        if _sha256(file) != digest:
            raise CorruptIndexError(
                f"index at {path}: {name} does not match its checksum (truncated or altered); rebuild the index"
            )
    for level in LexicalIndex.LEVELS:  # bm25s reads one more file for some methods: it needs a checksum too
        name = f"lexical/{level}/{_BM25_NONOCCURRENCE}"
        try:
            params = json.loads((folder / "lexical" / level / _BM25_FILES[0]).read_text(encoding="utf-8"))
            method = str(params.get("method", "")).lower()
        except (OSError, ValueError, AttributeError, RecursionError) as exc:
            raise CorruptIndexError(f"index at {path} cannot be read (lexical/{level}: {exc}); "
                                    "rebuild the index") from exc
        if method in ("bm25l", "bm25+") and name not in files:
            raise CorruptIndexError(f"index at {path}: {MANIFEST} is damaged (no checksum for {name}); "
                                    "rebuild the index")


def load_index(path: str | Path, *, mmap: bool = True) -> StoredIndex:
    """Read one whole version of an index directory, checking every file against the manifest.

    With `mmap`, the vectors and the BM25 matrices are memory-mapped rather
    than read into memory (a version removed later stays mapped until the
    process lets go of it). Old versions and what killed writers left are
    removed first when no one holds them.
    """
    path = Path(path)
    clean_stale(path)
    _settle(path)
    with _reading(path) as folder:
        manifest = _read_manifest(folder, path)
        _check_files(folder, manifest, path)
        try:
            documents = []
            with open(folder / "documents.jsonl", encoding="utf-8") as lines:
                for line in lines:
                    documents.append(document_from_row(json.loads(line)))
            arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            corpus = Corpus(documents, vocab=vocab, **arrays)
            lexical = LexicalIndex.load(folder / "lexical", vocab, mmap=mmap)
            flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
            vectors = VectorIndex(faiss.read_index(str(folder / "vectors.faiss"), flags))
        except RecursionError as exc:
            raise CorruptIndexError(f"index at {path} cannot be read (nested too deeply); rebuild the index") from exc
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            raise CorruptIndexError(f"index at {path} cannot be read ({exc}); rebuild the index") from exc
    expected = [d["sha256"] for d in manifest["documents"]]
    counts = manifest["counts"]
    if ([d.fingerprint for d in documents] != expected or len(vectors) != counts["vectors"]
            or len(vectors) != len(corpus.spans) or counts["sentences"] != len(corpus.spans)
            or counts["chunks"] != len(corpus.chunk_spans) or vectors.kind != manifest["index"]
            or vectors.dim != manifest["dim"]):
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
    """Remove old versions no one holds; put back or remove what a killed writer of a plain folder left.

    Versions need no lock to be removed (see `_collect`); the plain-folder
    leftovers need the writer lock, and are left alone while a writer holds it.
    """
    path = Path(path)
    _collect(path)
    if not _beside(path, "tmp") and not _beside(path, "old"):
        return
    try:
        with write_lock(path):
            pass
    except IndexLockedError:
        log.info("a writer is at work on %s; leaving its temporary files", path)
    except OSError as exc:  # a read-only place: nothing can be cleaned, loading still works
        log.info("cannot clean temporary files beside %s: %s", path, exc)


def remove_index(path: str | Path) -> None:
    """Delete the index at `path` (`shutil.rmtree` on the link would not): the link, its versions, leftovers.

    Under the writer lock; a version a reader is loading is removed by a later save or load.
    """
    path = Path(path)
    with write_lock(path):
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        _collect(path)


def _recover(path: Path) -> None:
    """If a writer was killed between moving a plain-folder index aside and the new one in, put the old one back."""
    if path.exists() or path.is_symlink():
        return
    for parking in _beside(path, "old"):
        if (parking / "index" / MANIFEST).is_file():
            try:
                os.replace(parking / "index", path)
            except OSError:
                return
            log.warning("restored the index at %s that an interrupted write had moved aside", path)
            return


def _remove_leftovers(path: Path) -> None:
    """Remove what earlier writers left: temporary and parked folders (lock held), unused versions."""
    for stale in [*_beside(path, "tmp"), *_beside(path, "old")]:
        log.info("removing %s, left by an interrupted write", stale)
        shutil.rmtree(stale, ignore_errors=True)
    _collect(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
