"""The vector index and the on-disk format of a whole retriever.

`VectorIndex` handles FAISS's quirks in one place (contiguous float32,
dimension checks, `-1` labels, `k` capped at `ntotal`). `save_index` and
`load_index` persist a corpus as a few plain files plus a manifest that
records the format version, model, settings, a fingerprint per document and
a sha256 per file; writes go to a temporary directory that is renamed into
place, and loading refuses anything that does not match the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .chunking import Chunk, Sentence
from .config import IndexType, Settings
from .documents import Document
from .errors import CorruptIndexError, IndexNotFoundError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_FILES = ("documents.jsonl", "spans.json", "vectors.faiss")


class VectorIndex:
    """Inner-product search over unit vectors: exact (flat) or approximate (HNSW)."""

    def __init__(self, index: faiss.Index) -> None:
        self.faiss = index

    @classmethod
    def build(cls, vectors: np.ndarray, *, index_type: IndexType = "flat") -> VectorIndex:
        """Index vectors of shape (n, dim), float32, L2-normalised."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if index_type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return cls(index)

    @property
    def dim(self) -> int:
        return int(self.faiss.d)

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector of shape (dim,); fewer if the index is small."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query has dimension {query.shape[1]}, index has {self.dim}")
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores, ids = self.faiss.search(query, k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def vectors(self) -> np.ndarray:
        """All stored vectors, shape (n, dim), float32 (read back, not re-embedded)."""
        return self.faiss.reconstruct_n(0, len(self))


@dataclass(frozen=True)
class StoredIndex:
    """Everything `load_index` reads back."""

    documents: list[Document]
    sentences: list[list[Sentence]]
    chunks: list[list[Chunk]]
    vectors: VectorIndex
    manifest: dict[str, Any]


def save_index(
    path: str | Path,
    *,
    documents: list[Document],
    sentences: list[list[Sentence]],
    chunks: list[list[Chunk]],
    vectors: VectorIndex,
    settings: Settings,
    sources: dict[str, str] | None = None,
) -> Path:
    """Write an index directory atomically; an existing one is replaced only once the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as out:
            for doc in documents:
                out.write(json.dumps({"doc_id": doc.doc_id, "title": doc.title, "text": doc.text}) + "\n")
        spans = {
            "sentences": [[[s.start, s.end] for s in doc_sentences] for doc_sentences in sentences],
            "chunks": [[[c.start, c.end, c.sentences[0], c.sentences[-1]] for c in doc_chunks]
                       for doc_chunks in chunks],
        }
        (tmp / "spans.json").write_text(json.dumps(spans), encoding="utf-8")
        faiss.write_index(vectors.faiss, str(tmp / "vectors.faiss"))
        sources = sources or {}
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": settings.model,
            "dim": vectors.dim,
            "settings": dataclasses.asdict(settings),
            "documents": [
                {"doc_id": d.doc_id, "title": d.title, "sha256": d.fingerprint, "chars": len(d.text),
                 "source": sources.get(d.doc_id)}
                for d in documents
            ],
            "counts": {
                "documents": len(documents),
                "sentences": sum(map(len, sentences)),
                "chunks": sum(map(len, chunks)),
                "vectors": len(vectors),
            },
            "files": {name: _sha256(tmp / name) for name in _FILES},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an index directory; raises if absent or unreadable."""
    path = Path(path)
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
            f"this version of qa reads format {FORMAT_VERSION}; rebuild the index"
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


def load_index(path: str | Path) -> StoredIndex:
    """Read an index directory, checking every file against the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    for name in _FILES:
        file = path / name
        if not file.is_file():
            raise CorruptIndexError(f"index at {path} is incomplete: {name} is missing; rebuild the index")
        if _sha256(file) != manifest.get("files", {}).get(name):
            raise CorruptIndexError(
                f"index at {path}: {name} does not match its checksum (truncated or altered); rebuild the index"
            )
    try:
        documents = []
        with open(path / "documents.jsonl", encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                documents.append(Document(doc_id=row["doc_id"], text=row["text"], title=row["title"]))
        spans = json.loads((path / "spans.json").read_text(encoding="utf-8"))
        sentences = [
            [Sentence(doc.doc_id, s, e, doc.text[s:e]) for s, e in doc_spans]
            for doc, doc_spans in zip(documents, spans["sentences"], strict=True)
        ]
        chunks = [
            [Chunk(doc.doc_id, s, e, doc.text[s:e], tuple(range(first, last + 1))) for s, e, first, last in doc_spans]
            for doc, doc_spans in zip(documents, spans["chunks"], strict=True)
        ]
        vectors = VectorIndex(faiss.read_index(str(path / "vectors.faiss")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CorruptIndexError(f"index at {path} cannot be read ({exc}); rebuild the index") from exc
    expected = [d["sha256"] for d in manifest["documents"]]
    if [d.fingerprint for d in documents] != expected or len(vectors) != manifest["counts"]["vectors"]:
        raise CorruptIndexError(f"index at {path} does not match its manifest; rebuild the index")
    return StoredIndex(documents, sentences, chunks, vectors, manifest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing any old directory there without a moment of half-written state.

    The old directory is parked beside the target first; if the new one cannot
    take its place, the old one is moved back so a failed save loses nothing.
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
        os.replace(old, target)  # if this fails too, the old index stays in `parking` to recover by hand
        parking.rmdir()
        raise
    shutil.rmtree(parking, ignore_errors=True)
