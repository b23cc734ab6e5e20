"""The on-disk format of a whole retriever: the manifest, its validation and checksums, save and load.

`save_index` and `load_index` persist a corpus as plain files (JSON lines,
numpy arrays, bm25s's and FAISS's own formats) plus a manifest that records
the format version, model, settings, a fingerprint per document and a
sha256 per file. How the folder is written, swapped in atomically, read whole
under a lock and cleaned is `qa.storage`'s; the vector index itself is
`qa.vectors`'s.

Loading checks the manifest against a schema, refuses file names that leave
the folder, requires a checksum for every file it reads, and refuses
anything that does not match; every problem is one `CorruptIndexError` line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .config import Settings
from .corpus import Corpus
from .docrows import document_from_row, document_row
from .errors import CorruptIndexError, IndexNotFoundError
from .lexical import LexicalIndex
from .storage import MANIFEST, clean_stale, create, reading, regular, settle, sha256, write_version
from .vectors import VectorIndex

FORMAT_VERSION = 2

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
    """Write the index as a new version folder and point `path` at it in one atomic step (`qa.storage.write_version`:
    under the writer lock, flushed to disk with `durable`; an OS error is one `IndexWriteError`, the old index kept)."""
    return write_version(path, lambda folder: _write(folder, corpus=corpus, vectors=vectors, lexical=lexical,
                                                     settings=settings), durable=durable)


def _write(folder: Path, *, corpus: Corpus, vectors: VectorIndex, lexical: LexicalIndex, settings: Settings) -> None:
    with create(folder / "documents.jsonl") as out:
        for doc in corpus.documents:
            out.write((json.dumps(document_row(doc)) + "\n").encode("utf-8"))
    for name in _ARRAYS:
        with create(folder / f"{name}.npy") as out:
            np.save(out, getattr(corpus, name), allow_pickle=False)
    with create(folder / "vocab.json") as out:
        out.write(json.dumps(corpus.vocab).encode("utf-8"))
    lexical.save(folder / "lexical")
    with create(folder / "vectors.faiss") as out:
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
        "files": {name: sha256(folder / name) for name in files},
    }
    with create(folder / MANIFEST) as out:
        out.write(json.dumps(manifest, indent=2).encode("utf-8"))


# -- reading -------------------------------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an index directory, checked against its schema; raises if absent, unreadable or invalid."""
    path = Path(path)
    settle(path)
    with reading(path) as folder:
        return _read_manifest(folder, path)


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
        if regular(folder, MANIFEST) is None:
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


def _check_files(folder: Path, manifest: dict[str, Any], path: Path) -> None:
    """Every file in the manifest is a plain file in the folder and matches its checksum."""
    files = manifest["files"]
    for name, digest in files.items():
        file = regular(folder, name)
        if file is None:
            raise CorruptIndexError(
                f"index at {path} is incomplete: {name} is missing or not a plain file; rebuild the index")
        if sha256(file) != digest:
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
    settle(path)
    with reading(path) as folder:
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
