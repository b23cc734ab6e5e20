"""Folders of documents: find the files, tell new and changed ones, keep an index in step with them.

`find_files` walks files and folders (recursively; hidden entries skipped
quietly, files of other types counted by type for the summary) for .txt,
.md, .html, .pdf and .docx files and gives each a stable doc_id: a file
named directly gets its slugified name, as `Document.from_path` does; a
file found in a folder gets its slugified path inside that folder
(`notes/2024/budget.md` → `2024/budget`), so equal names in different
subfolders do not clash.

`sync` makes the index at `out` hold the documents under the given paths,
doing as little as it can, under the index's writer lock:
- a file whose doc_id, path and modification time match the index is not
  even read; one whose text is unchanged (by fingerprint) is not embedded;
- documents whose files are gone from the given paths are dropped; indexed
  documents from elsewhere are kept;
- a file in a folder that cannot be read is skipped with its reason (an
  earlier indexed version of it is kept); a file named directly that cannot
  be read is an error, and nothing is written.
The reading, splitting and embedding of the files to (re)index is done by a
`Builder`: `local_builder` in this process, or `qa.distributed.ray_builder`
on a Ray cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import IndexType, Settings
from .corpus import Corpus
from .documents import SUPPORTED_SUFFIXES, Document, slugify
from .errors import CorruptIndexError, DocumentError, IndexNotFoundError, QAError, StaleIndexError

log = logging.getLogger(__name__)

EMBED_BATCH = 256  # sentences per progress step


@dataclass(frozen=True)
class SourceFile:
    """A file to index: where it is, the doc_id it gets, and whether it was named directly."""

    path: Path
    doc_id: str
    named: bool = False


@dataclass
class Built:
    """What a builder made of some files.

    Attributes:
        corpus: the documents whose text is new or changed, split and tokenized (None if there are none).
        vectors: their sentence vectors, consecutive parts of shape (n_i, dim), float32.
        same_text: documents read again whose text is unchanged (new title, path or time only).
        skipped: (path, reason) of files that could not be used.
    """

    corpus: Corpus | None = None
    vectors: list[np.ndarray] = field(default_factory=list)
    same_text: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


Builder = Callable[[Sequence[SourceFile], dict[str, str], Settings, Any], Built]
"""Reads, splits and embeds files: (files, fingerprints of indexed doc_ids, settings, progress bar or None)."""


@dataclass(frozen=True)
class Summary:
    """What `sync` did, for the closing report of `qa index`."""

    path: Path
    documents: int
    sentences: int
    chunks: int
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: int
    embedded: int
    skipped: list[tuple[str, str]]
    other_types: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"indexed {self.documents:,} documents, {self.sentences:,} sentences, {self.chunks:,} chunks "
               f"into {self.path}",
               f"  added {len(self.added):,}, changed {len(self.changed):,}, removed {len(self.removed):,}, "
               f"unchanged {self.unchanged:,}; embedded {self.embedded:,} sentences"]
        # "skipped 3 files: 2 .jpg, 1 .xlsx"; files that could not be used are listed each with its reason.
        kinds = [f"{count:,} {suffix}" for suffix, count in self.other_types.items()]
        if self.skipped and kinds:
            kinds.append(f"{len(self.skipped):,} that could not be used")
        total = sum(self.other_types.values()) + len(self.skipped)
        if total:
            listed = f" {', '.join(kinds)}" + (":" if self.skipped else "") if kinds else ""
            out.append(f"  skipped {total:,} file{'s' if total != 1 else ''}:{listed}")
            out.extend(f"    {path}: {reason}" for path, reason in self.skipped)
        return out


def find_files(paths: Sequence[str | Path], other_types: Counter[str] | None = None
               ) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """The supported files under `paths`, and (path, reason) of those skipped for a clashing doc_id.

    Files of other types found in folders are counted into `other_types` by
    suffix (".jpg", or "no extension"). Raises `QAError` for a path that does
    not exist, a named file of an unsupported type, or two named files with the same doc_id.
    """
    found: dict[str, SourceFile] = {}
    skipped: list[tuple[str, str]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            walked = _walk(path)
            if other_types is not None:
                other_types.update(p.suffix.lower() or "no extension" for p in walked
                                   if p.suffix.lower() not in SUPPORTED_SUFFIXES)
            candidates = [SourceFile(p.resolve(), _folder_id(p.relative_to(path)))
                          for p in walked if p.suffix.lower() in SUPPORTED_SUFFIXES]
        elif path.exists():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise DocumentError(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; "
                                    f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
            candidates = [SourceFile(path.resolve(), slugify(path.stem), named=True)]
        else:
            raise QAError(f"{name}: no such file or directory")
        for candidate in candidates:
            other = found.get(candidate.doc_id)
            if other is None:
                found[candidate.doc_id] = candidate
            elif other.path != candidate.path:
                if candidate.named and other.named:
                    raise QAError(f"two files would both get the id {candidate.doc_id!r} "
                                  f"({other.path}, {candidate.path}); rename one")
                skipped.append((str(candidate.path), f"same doc_id {candidate.doc_id!r} as {other.path}"))
    if not found:
        raise QAError("no .txt, .md, .html, .pdf or .docx files found in the given paths")
    return list(found.values()), skipped


def _walk(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return [f for f in files if f.is_file()]


def _folder_id(relative: Path) -> str:
    parts = [*relative.parts[:-1], relative.stem]
    return "/".join(slugify(part) for part in parts)


def read_files(files: Sequence[SourceFile], fingerprints: dict[str, str], tick: Callable[[], None] | None = None
               ) -> tuple[list[Document], list[Document], list[tuple[str, str]]]:
    """(documents with new text, documents with their indexed text, skipped files with reasons)."""
    changed, same, skipped = [], [], []
    for file in files:
        try:
            document = Document.from_path(file.path, doc_id=file.doc_id)
        except DocumentError as exc:
            if file.named:
                raise
            skipped.append((str(file.path), str(exc).removeprefix(f"{file.path.name}: ")))
        else:
            (same if fingerprints.get(document.doc_id) == document.fingerprint else changed).append(document)
        if tick:
            tick()
    return changed, same, skipped


def local_builder(files: Sequence[SourceFile], fingerprints: dict[str, str], settings: Settings, bar: Any) -> Built:
    """Read, split and embed in this process, batch by batch on one progress bar."""
    from .retrieval import embedder_for

    if bar is not None:
        bar.reset(total=len(files))
        bar.set_description("reading")
    changed, same, skipped = read_files(files, fingerprints, (lambda: bar.update(1)) if bar is not None else None)
    if not changed:
        return Built(same_text=same, skipped=skipped)
    corpus = Corpus.from_documents(changed, settings)
    texts = [s.text for s in corpus.sentences]
    embedder = embedder_for(settings)
    log.info("embedding %d sentences of %d documents", len(texts), len(changed))
    if bar is not None:
        bar.reset(total=len(texts))
        bar.set_description("embedding")
    vectors = []
    for first in range(0, len(texts), EMBED_BATCH):
        vectors.append(embedder.embed_passages(texts[first:first + EMBED_BATCH]))
        if bar is not None:
            bar.update(len(vectors[-1]))
    return Built(corpus, vectors, same, skipped)


def sync(paths: Sequence[str | Path], out: str | Path, *, model: str | None = None,
         index_type: IndexType | None = None, builder: Builder = local_builder, progress: bool = False) -> Summary:
    """Make the index at `out` hold the documents under `paths`, embedding only what is new or changed."""
    from tqdm import tqdm

    from .retrieval import Retriever, embedder_for
    from .storage import write_lock

    out = Path(out)
    other_types: Counter[str] = Counter()
    files, clashes = find_files(paths, other_types)
    with write_lock(out):
        settings = Settings()
        try:
            current = Retriever.load(out, check_sources=False)
        except IndexNotFoundError:
            current = None
        except (CorruptIndexError, StaleIndexError) as exc:
            log.warning("rebuilding the index at %s from scratch: %s", out, exc)
            current = None
        if current is not None:
            settings = current.settings
            if model is not None and model != settings.model:
                log.warning("the index at %s was built with model %s; embedding everything with %s",
                            out, settings.model, model)
                current = None
        if model is not None:
            settings = dataclasses.replace(settings, model=model)
        if index_type is not None:
            settings = dataclasses.replace(settings, index_type=index_type)
        indexed = {d.doc_id: d for d in current.documents} if current is not None else {}
        stale = [f for f in files if not _unchanged(indexed.get(f.doc_id), f)]
        # A PDF indexed before pages were kept is split again (its chunks then stay within pages), not just re-read.
        fingerprints = {doc_id: d.fingerprint for doc_id, d in indexed.items() if not _pages_missing(d)}
        bar = tqdm(total=len(stale), unit="item", disable=None if progress else True, leave=False)
        try:
            built = builder(stale, fingerprints, settings, None if bar.disable else bar)
        finally:
            bar.close()
        skipped = clashes + built.skipped
        unreadable = {Path(p) for p, _ in built.skipped}
        found = {f.doc_id for f in files if f.path not in unreadable}
        kept_old = {f.doc_id for f in files if f.path in unreadable and f.doc_id in indexed}
        roots = [Path(p).resolve() for p in paths]
        removed = [doc_id for doc_id, d in indexed.items()
                   if doc_id not in found and doc_id not in kept_old and d.path and _under(Path(d.path), roots)]
        new = built.corpus.documents if built.corpus is not None else []
        if current is None:
            if built.corpus is None:
                raise QAError("none of the files could be read: " + "; ".join(f"{p}: {r}" for p, r in skipped))
            retriever = Retriever.from_parts(built.corpus, built.vectors, embedder_for(settings), settings)
        else:
            retriever = current
            if removed:
                retriever = retriever.remove(removed)
            retriever = retriever.with_documents(built.same_text)
            if built.corpus is not None:
                retriever = retriever.add_parts(built.corpus, built.vectors)
            if settings != retriever.settings:  # another index type: the vectors are indexed again, not embedded
                retriever = Retriever.from_parts(retriever.corpus, [retriever.sentence_vectors],
                                                 retriever.embedder, settings)
        if retriever is not current:  # nothing changed: the index on disk stays as it is
            retriever.save(out)
    return Summary(
        path=out, documents=len(retriever.documents), sentences=len(retriever.sentences),
        chunks=len(retriever.chunks), added=[d.doc_id for d in new if d.doc_id not in indexed],
        changed=[d.doc_id for d in new if d.doc_id in indexed], removed=removed,
        unchanged=len(retriever.documents) - len(new), embedded=sum(len(v) for v in built.vectors), skipped=skipped,
        other_types=dict(sorted(other_types.items(), key=lambda item: (-item[1], item[0]))),
    )


def _unchanged(document: Document | None, file: SourceFile) -> bool:
    """Whether an indexed document certainly still matches its file (same path and modification time)."""
    if document is None or document.path != str(file.path) or document.modified is None:
        return False
    if _pages_missing(document):
        return False
    try:
        return os.stat(file.path).st_mtime == document.modified
    except OSError:
        return False


def _pages_missing(document: Document) -> bool:
    """Whether a PDF was indexed before documents kept their pages (an older index)."""
    return bool(document.path) and str(document.path).lower().endswith(".pdf") and not document.pages


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
