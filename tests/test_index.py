"""The FAISS wrapper against brute force, and persistence of a whole retriever."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_layout import as_plain_folder, leftovers

import qa.index
import qa.storage
from qa import (
    CorruptIndexError,
    Document,
    IndexNotFoundError,
    QAError,
    Retriever,
    Settings,
    StaleIndexError,
)
from qa.config import DEFAULT_MODEL
from qa.errors import IndexWriteError
from qa.index import load_index, read_manifest
from qa.vectors import VectorIndex

ROOT = Path(__file__).resolve().parents[1]

DOCS = [
    Document(
        "ports",
        "Tobruk has a deep natural harbour. Fishing boats leave the quay at dawn. The port ships crude oil to Europe.",
        title="Ports",
    ),
    Document(
        "desert",
        "The Sahara covers most of southern Libya. Summer temperatures exceed forty degrees. "
        "Oases support small towns.",
    ),
    Document(
        "history",
        "Tripoli was founded by the Phoenicians. Roman ruins stand at Leptis Magna. Italy ruled Libya from 1911.",
        title="History",
    ),
]
QUERIES = ["Where does the oil go?", "How hot is the desert?", "Who founded Tripoli?", "Roman ruins"]


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small() -> Retriever:
    return Retriever.build(DOCS)


def fill_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make FAISS write the vectors to /dev/full, so the save meets a real ENOSPC from the kernel."""
    real = faiss.write_index

    def write_to_a_full_device(index: faiss.Index, _destination: object, *args: object) -> None:
        with open("/dev/full", "wb", buffering=0) as device:
            real(index, faiss.PyCallbackIOWriter(device.write))

    monkeypatch.setattr(qa.index.faiss, "write_index", write_to_a_full_device)


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_same_results(left: list, right: list) -> None:
    strip = [dataclasses.replace(p, score=0.0, dense=0.0, lexical=0.0) for p in left]
    assert strip == [dataclasses.replace(p, score=0.0, dense=0.0, lexical=0.0) for p in right]
    for a, b in zip(left, right, strict=True):
        assert (a.score, a.dense, a.lexical) == pytest.approx((b.score, b.dense, b.lexical), abs=1e-6)


# -- VectorIndex -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 50])
def test_flat_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(42)
    vectors = unit_vectors(rng, 300, 24)
    index = VectorIndex.build(vectors, index_type="flat")
    assert (len(index), index.dim) == (300, 24)
    for query in unit_vectors(rng, 10, 24):
        scores, ids = index.search(query, k)
        expected = vectors @ query
        order = np.argsort(-expected, kind="stable")[:k]
        assert ids.tolist() == order.tolist()
        assert scores == pytest.approx(expected[order], abs=1e-5)
        assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_k_larger_than_the_index_is_capped() -> None:
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, 5, 8)
    for index_type in ("flat", "hnsw"):
        index = VectorIndex.build(vectors, index_type=index_type)
        scores, ids = index.search(vectors[2], 50)
        assert sorted(ids.tolist()) == [0, 1, 2, 3, 4]
        assert ids[0] == 2 and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert list(scores) == sorted(scores, reverse=True)


def test_k_zero_returns_nothing() -> None:
    index = VectorIndex.build(unit_vectors(np.random.default_rng(2), 4, 8))
    scores, ids = index.search(np.ones(8, dtype=np.float32), 0)
    assert scores.shape == ids.shape == (0,)


def test_hnsw_agrees_with_brute_force_on_top_1() -> None:
    rng = np.random.default_rng(7)
    vectors = unit_vectors(rng, 200, 16)
    index = VectorIndex.build(vectors, index_type="hnsw")
    for query in unit_vectors(rng, 25, 16):
        _, ids = index.search(query, 1)
        assert ids[0] == int(np.argmax(vectors @ query))


def test_dimension_mismatch_raises() -> None:
    index = VectorIndex.build(unit_vectors(np.random.default_rng(3), 10, 24))
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones(10, dtype=np.float32), 3)


def test_stored_vectors_read_back() -> None:
    vectors = unit_vectors(np.random.default_rng(4), 20, 12)
    assert VectorIndex.build(vectors).vectors() == pytest.approx(vectors)


# -- save / load ---------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_round_trip_gives_identical_results_without_re_embedding(
    tmp_path: Path, spy_embed_passages: list[list[str]], index_type: str
) -> None:
    built = Retriever.build(DOCS, settings=Settings(index_type=index_type))
    assert sum(map(len, spy_embed_passages)) == len(built.sentences), "the spy sees the build"
    built.save(tmp_path / "idx")
    spy_embed_passages.clear()

    loaded = Retriever.load(tmp_path / "idx")
    assert spy_embed_passages == [], "loading must not re-embed"
    assert loaded.documents == built.documents
    assert [d.title for d in loaded.documents] == ["Ports", "desert", "History"]
    assert loaded.sentences == built.sentences
    assert loaded.chunks == built.chunks
    assert loaded.settings == built.settings
    assert loaded.sentence_vectors == pytest.approx(built.sentence_vectors)
    for query in QUERIES:
        assert_same_results(loaded.search(query, k=5), built.search(query, k=5))
    assert leftovers(tmp_path) == []


def test_manifest_records_what_was_saved(tmp_path: Path, small: Retriever) -> None:
    small.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx")
    assert manifest["model"] == DEFAULT_MODEL
    assert manifest["dim"] == small.embedder.dim
    assert [d["doc_id"] for d in manifest["documents"]] == ["ports", "desert", "history"]
    assert [d["sha256"] for d in manifest["documents"]] == [d.fingerprint for d in DOCS]
    assert manifest["counts"] == {"documents": 3, "sentences": len(small.sentences), "chunks": len(small.chunks),
                                  "vectors": len(small.sentences)}
    assert manifest["index"] == "flat"
    assert {"documents.jsonl", "spans.npy", "vocab.json", "vectors.faiss", "lexical/term_counts.npy",
            "lexical/sentences/vocab.index.json"} <= set(manifest["files"])
    assert set(manifest["files"]) == {p.relative_to(tmp_path / "idx").as_posix()
                                      for p in (tmp_path / "idx").rglob("*") if p.is_file()} - {"manifest.json"}


def truncate_vectors(path: Path) -> None:
    data = (path / "vectors.faiss").read_bytes()
    (path / "vectors.faiss").write_bytes(data[: len(data) // 2])


def tamper_documents(path: Path) -> None:
    file = path / "documents.jsonl"
    file.write_text(file.read_text(encoding="utf-8").replace("Tobruk", "Tobrux"), encoding="utf-8")


def tamper_documents_and_checksum(path: Path) -> None:
    tamper_documents(path)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["documents.jsonl"] = qa.storage.sha256(path / "documents.jsonl")
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def delete_spans(path: Path) -> None:
    (path / "spans.npy").unlink()


def truncate_bm25(path: Path) -> None:
    file = path / "lexical" / "chunks" / "data.csc.index.npy"
    file.write_bytes(file.read_bytes()[:40])


def garbage_manifest(path: Path) -> None:
    (path / "manifest.json").write_bytes(b"\x00\xff{not json at all")


def manifest_not_an_object(path: Path) -> None:
    (path / "manifest.json").write_text("[1, 2, 3]", encoding="utf-8")


def manifest_other_format(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(format_version=99))


def manifest_without_documents(path: Path) -> None:
    edit_manifest(path, lambda m: m.pop("documents"))


def manifest_without_counts(path: Path) -> None:
    edit_manifest(path, lambda m: m.pop("counts"))


def manifest_documents_not_a_list(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(documents="ports, desert, history"))


def manifest_document_without_checksum(path: Path) -> None:
    edit_manifest(path, lambda m: m["documents"][1].pop("sha256"))


def manifest_vectors_not_a_number(path: Path) -> None:
    edit_manifest(path, lambda m: m["counts"].update(vectors="nine"))


def spans_for_fewer_documents(path: Path) -> None:
    offsets = np.load(path / "doc_sentences.npy")
    np.save(path / "doc_sentences.npy", offsets[:-1])
    digest = qa.storage.sha256(path / "doc_sentences.npy")
    edit_manifest(path, lambda m: m["files"].update({"doc_sentences.npy": digest}))


def old_format(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(format_version=1))


def edit_manifest(path: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


# -- hostile manifests (issue 16): values, nesting, file names, checksums ----------------------


def chunk_sentences_zero(path: Path) -> None:
    edit_manifest(path, lambda m: m["settings"].update(chunk_sentences=0))


def chunk_sentences_text(path: Path) -> None:
    edit_manifest(path, lambda m: m["settings"].update(chunk_sentences="x"))


def settings_index_type_bogus(path: Path) -> None:
    edit_manifest(path, lambda m: m["settings"].update(index_type="bogus"))


def index_kind_bogus(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(index="bogus"))


def manifest_nested_deeply(path: Path) -> None:
    (path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


def documents_nested_deeply(path: Path) -> None:
    (path / "documents.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    digest = qa.storage.sha256(path / "documents.jsonl")
    edit_manifest(path, lambda m: m["files"].update({"documents.jsonl": digest}))


def no_checksums(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(files={}))


def flipped_vector_byte_without_its_checksum(path: Path) -> None:
    edit_manifest(path, lambda m: m["files"].pop("vectors.faiss"))
    data = bytearray((path / "vectors.faiss").read_bytes())
    data[-5] ^= 0xFF
    (path / "vectors.faiss").write_bytes(bytes(data))


def name_climbing_out_with_the_right_checksum(path: Path) -> None:
    secret = path.parent / "secret.txt"
    secret.write_text("the neighbour's secret", encoding="utf-8")
    edit_manifest(path, lambda m: m["files"].update({"../secret.txt": qa.storage.sha256(secret)}))


def absolute_name(path: Path) -> None:
    edit_manifest(path, lambda m: m["files"].update({"/etc/passwd": "0" * 64}))


def link_to_a_file_outside(path: Path) -> None:
    outside = path.parent / "vocab-elsewhere.json"
    shutil.copyfile(path / "vocab.json", outside)
    (path / "vocab.json").unlink()
    (path / "vocab.json").symlink_to(outside)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncate_vectors, "vectors.faiss"),
        (tamper_documents, "documents.jsonl"),
        (tamper_documents_and_checksum, "manifest"),
        (delete_spans, "spans.npy"),
        (truncate_bm25, "data.csc.index.npy"),
        (old_format, "format 1, this version of qa reads format 2"),
        (garbage_manifest, "manifest.json"),
        (manifest_not_an_object, "format"),
        (manifest_other_format, "format"),
        (manifest_without_documents, "manifest"),
        (manifest_without_counts, "manifest.json is damaged .'counts'"),
        (manifest_documents_not_a_list, "manifest.json is damaged .'documents'"),
        (manifest_document_without_checksum, "manifest.json is damaged .*sha256"),
        (manifest_vectors_not_a_number, "manifest.json is damaged .*vectors"),
        (spans_for_fewer_documents, "cannot be read"),
        (chunk_sentences_zero, "manifest.json is damaged .*chunk_sentences"),
        (chunk_sentences_text, "manifest.json is damaged .*chunk_sentences"),
        (settings_index_type_bogus, "manifest.json is damaged .*index_type"),
        (index_kind_bogus, "manifest.json is damaged .*'index'"),
        (manifest_nested_deeply, "manifest.json is unreadable .*nested too deeply"),
        (documents_nested_deeply, "cannot be read .*nested too deeply"),
        (no_checksums, "manifest.json is damaged .*no checksum for documents.jsonl"),
        (flipped_vector_byte_without_its_checksum, "manifest.json is damaged .*no checksum for vectors.faiss"),
        (name_climbing_out_with_the_right_checksum, "manifest.json is damaged .*'../secret.txt' is outside the index"),
        (absolute_name, "manifest.json is damaged .*'/etc/passwd' is outside the index"),
        (link_to_a_file_outside, "vocab.json is missing or not a plain file"),
    ],
)
def test_damaged_index_raises_corrupt_index_error(
    tmp_path: Path, small: Retriever, damage: Callable[[Path], None], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = small.save(tmp_path / "idx")
    damage(path)
    hashed: list[Path] = []
    real_sha256 = qa.storage.sha256
    monkeypatch.setattr(qa.index, "sha256", lambda file: hashed.append(Path(file)) or real_sha256(file))
    with pytest.raises(CorruptIndexError, match=message) as caught:
        Retriever.load(path)
    assert str(path) in str(caught.value)
    assert "rebuild" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    folder = path.resolve()
    assert all(folder in file.resolve().parents for file in hashed), "nothing outside the index is opened"


@pytest.mark.parametrize("damage", [manifest_without_counts, chunk_sentences_text, index_kind_bogus,
                                    manifest_nested_deeply, no_checksums, absolute_name])
def test_info_on_a_damaged_manifest_raises_corrupt_index_error(
    tmp_path: Path, small: Retriever, damage: Callable[[Path], None]
) -> None:
    path = small.save(tmp_path / "idx")
    damage(path)
    with pytest.raises(CorruptIndexError, match="rebuild"):
        read_manifest(path)


def test_loading_for_another_model_is_stale(tmp_path: Path, small: Retriever) -> None:
    path = small.save(tmp_path / "idx")
    with pytest.raises(StaleIndexError, match="other"):
        Retriever.load(path, model="other")
    edit_manifest(path, lambda m: m["settings"].update(model="other-model"))
    with pytest.raises(StaleIndexError, match="other-model"):
        Retriever.load(path, model=DEFAULT_MODEL)


def test_vectors_of_another_dimension_are_stale(tmp_path: Path, small: Retriever) -> None:
    odd = VectorIndex.build(unit_vectors(np.random.default_rng(5), len(small.sentences), 8))
    Retriever(small.corpus, odd, small.embedder, small.settings).save(tmp_path / "idx")
    with pytest.raises(StaleIndexError, match="8-dimensional"):
        Retriever.load(tmp_path / "idx")


def test_changed_source_file_is_stale(tmp_path: Path) -> None:
    source = tmp_path / "doc.txt"
    source.write_text("Benghazi is the second city. It lies in the east.", encoding="utf-8")
    built = Retriever.build([Document.from_path(source)], sources={"doc": str(source)})
    path = built.save(tmp_path / "idx")
    assert Retriever.load(path).documents == built.documents
    assert read_manifest(path)["documents"][0]["source"] == str(source)

    source.write_text("Benghazi is the second city. It lies in the far east.", encoding="utf-8")
    with pytest.raises(StaleIndexError, match="doc.txt"):
        Retriever.load(path)


def test_missing_index_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="qa index"):
        Retriever.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        Retriever.load(tmp_path / "empty")


def test_save_replaces_an_existing_index(tmp_path: Path, small: Retriever) -> None:
    path = small.save(tmp_path / "idx")
    other = Retriever.build([Document("solo", "Misrata is a port city. It has a steel works.")])
    other.save(path)
    assert [d.doc_id for d in Retriever.load(path).documents] == ["solo"]
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_the_old_index(
    tmp_path: Path, small: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = small.save(tmp_path / "idx")
    before = snapshot(path)
    other = Retriever.build([Document("solo", "Misrata is a port city. It has a steel works.")])

    def broken_write(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(qa.index.faiss, "write_index", broken_write)
    with pytest.raises(RuntimeError, match="simulated"):
        other.save(path)
    assert snapshot(path) == before
    assert [d.doc_id for d in Retriever.load(path).documents] == ["ports", "desert", "history"]
    assert leftovers(tmp_path) == []


def test_failed_swap_leaves_the_old_index(tmp_path: Path, small: Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    """If moving the finished new index into place fails, the old one must still be there."""
    path = small.save(tmp_path / "idx")
    other = Retriever.build([Document("solo", "Misrata is a port city. It has a steel works.")])
    real_replace, real_rename = os.replace, os.rename

    def failing(real: Callable[..., None]) -> Callable[..., None]:
        def move(src: str | Path, dst: str | Path, *args: object, **kwargs: object) -> None:
            if Path(dst) == path:
                raise OSError("rename failed (simulated)")
            real(src, dst, *args, **kwargs)

        return move

    monkeypatch.setattr(os, "replace", failing(real_replace))
    monkeypatch.setattr(os, "rename", failing(real_rename))
    with pytest.raises(OSError, match="simulated"):
        other.save(path)
    monkeypatch.undo()
    assert [d.doc_id for d in Retriever.load(path).documents] == ["ports", "desert", "history"]
    assert leftovers(tmp_path) == []


def test_failed_move_of_the_old_index_leaves_it_in_place(
    tmp_path: Path, small: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index in the plain-folder layout is moved aside once, when the first versioned save replaces it."""
    path = small.save(tmp_path / "idx")
    as_plain_folder(path)
    assert [d.doc_id for d in Retriever.load(path).documents] == ["ports", "desert", "history"]
    other = Retriever.build([Document("solo", "Misrata is a port city. It has a steel works.")])
    real_replace = os.replace

    def move(src: str | Path, dst: str | Path) -> None:
        if Path(src) == path:
            raise OSError("rename failed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", move)
    with pytest.raises(OSError, match="simulated"):
        other.save(path)
    monkeypatch.undo()
    assert [d.doc_id for d in Retriever.load(path).documents] == ["ports", "desert", "history"]
    assert leftovers(tmp_path) == []
    assert not path.is_symlink()
    other.save(path)
    assert path.is_symlink() and [d.doc_id for d in Retriever.load(path).documents] == ["solo"]
    assert leftovers(tmp_path) == []


# -- faults: a full disk, power cuts, readers racing a writer (issue 16) ------------------------


def test_a_full_disk_is_one_clear_error_and_keeps_the_old_index(
    tmp_path: Path, small: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = small.save(tmp_path / "idx")
    before = snapshot(path)
    other = Retriever.build([Document("solo", "Misrata is a port city. It has a steel works.")])
    fill_the_disk(monkeypatch)
    with pytest.raises(IndexWriteError) as caught:
        other.save(path)
    assert str(caught.value) == f"no space left on the device holding {path}"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, QAError | OSError)
    monkeypatch.undo()
    assert snapshot(path) == before
    assert [d.doc_id for d in Retriever.load(path).documents] == ["ports", "desert", "history"]
    assert leftovers(tmp_path) == []


def test_other_os_errors_name_their_meaning_and_the_path(tmp_path: Path, small: Retriever) -> None:
    (tmp_path / "taken").write_text("a file, not a folder", encoding="utf-8")
    path = tmp_path / "taken" / "sub" / "idx"
    with pytest.raises(IndexWriteError, match=f"^cannot write the index at {re.escape(str(path))}: Not a directory"):
        small.save(path)


def test_save_flushes_files_and_folders_before_the_swap(
    tmp_path: Path, small: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like SQLite: every file and folder of the new version is on disk before the pointer moves, then the move."""
    path = small.save(tmp_path / "idx")
    events: list[tuple[str, tuple[int, int]]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        events.append(("fsync", (status.st_dev, status.st_ino)))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path, *args: object, **kwargs: object) -> None:
        real_replace(src, dst, *args, **kwargs)
        if Path(dst) == path:
            events.append(("swap", (0, 0)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    small.save(path)
    monkeypatch.undo()

    def key(p: Path) -> tuple[int, int]:
        return (p.stat().st_dev, p.stat().st_ino)

    version = path.resolve()
    written = {key(p) for p in [version, *version.rglob("*")]}
    swap = events.index(("swap", (0, 0)))
    assert written <= {k for e, k in events[:swap] if e == "fsync"}, "every file and folder is flushed first"
    assert ("fsync", key(tmp_path)) in events[:swap], "the new folder's name is on disk before the swap"
    assert ("fsync", key(tmp_path)) in events[swap:], "and the swap itself after it"


# Two versions a writer alternates between; a reader must always get one of them whole.
SOLO = [Document("solo", "Misrata is a port city. It has a steel works. Its port handles containers.")]


def save_quickly(retriever: Retriever, path: Path) -> Path:
    """Save without fsync: swapping does not depend on it, and hundreds of fsyncs stall a busy machine."""
    return qa.index.save_index(path, corpus=retriever.corpus, vectors=retriever.vectors, lexical=retriever.lexical,
                               settings=retriever.settings, durable=False)


def whole_version(stored: qa.index.StoredIndex, versions: dict[tuple[str, ...], np.ndarray]) -> tuple[str, ...]:
    ids = tuple(d.doc_id for d in stored.corpus.documents)
    assert ids in versions, ids
    assert np.array_equal(stored.vectors.vectors(), versions[ids])
    return ids


def test_readers_racing_a_writer_always_load_a_whole_version(tmp_path: Path, small: Retriever) -> None:
    other = Retriever.build(SOLO)
    path = small.save(tmp_path / "idx")
    versions = {("ports", "desert", "history"): small.sentence_vectors, ("solo",): other.sentence_vectors}
    stop, saves, writer_errors = threading.Event(), [0], []

    def writer() -> None:
        while not stop.is_set():
            try:
                save_quickly(other if saves[0] % 2 == 0 else small, path)
                saves[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                writer_errors.append(repr(exc))
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: Counter[tuple[str, ...]] = Counter()
    errors = []
    try:
        started = time.monotonic()  # two seconds at least, longer on a busy machine until enough swaps are seen
        while time.monotonic() < started + 2.0 or (
                (saves[0] < 10 or len(seen) < 2) and time.monotonic() < started + 60.0):
            try:
                stored = load_index(path)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(repr(exc))
                continue
            seen[whole_version(stored, versions)] += 1
    finally:
        stop.set()
        thread.join()
    assert errors == [] and writer_errors == []
    assert saves[0] >= 2 and len(seen) == 2, (saves, seen)
    load_index(path)  # removes versions that readers held during the last swaps
    assert leftovers(tmp_path) == []


READER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from qa.index import load_index
    path, seconds = sys.argv[1], float(sys.argv[2])
    loads, errors, seen = 0, 0, set()
    print("ready", flush=True)
    start = time.monotonic()  # `seconds` at least, longer on a busy machine until both versions are seen
    while time.monotonic() < start + seconds or ((loads < 20 or len(seen) < 2) and time.monotonic() < start + 120):
        try:
            stored = load_index(path)
        except Exception as exc:
            errors += 1
            print(type(exc).__name__, exc, file=sys.stderr)
            continue
        loads += 1
        seen.add(tuple(d.doc_id for d in stored.corpus.documents))
    print(loads, errors, len(seen), flush=True)
""").format(root=str(ROOT))


def test_a_reader_process_racing_a_writer_never_fails(tmp_path: Path, small: Retriever) -> None:
    other = Retriever.build(SOLO)
    path = small.save(tmp_path / "idx")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    saves = 0
    while reader.poll() is None:
        save_quickly(other if saves % 2 == 0 else small, path)
        saves += 1
        time.sleep(0.02)
    out, err = reader.communicate(timeout=60)
    loads, errors, seen = map(int, out.split())
    assert (errors, err) == (0, "")
    assert loads >= 2 and seen == 2 and saves >= 2, (loads, seen, saves)


def test_remove_index_deletes_the_link_and_its_versions(tmp_path: Path, small: Retriever) -> None:
    path = small.save(tmp_path / "idx")
    small.save(path)
    qa.storage.remove_index(path)
    assert not path.exists() and not path.is_symlink() and leftovers(tmp_path) == []
    with pytest.raises(IndexNotFoundError):
        load_index(path)


def test_default_builds_once_then_loads(tmp_path: Path, spy_embed_passages: list[list[str]]) -> None:
    index_dir = tmp_path / "default"
    first = Retriever.default(index_dir=index_dir)
    assert spy_embed_passages, "the first call builds"
    stamps = {p.name: p.stat().st_mtime_ns for p in index_dir.rglob("*")}
    spy_embed_passages.clear()

    second = Retriever.default(index_dir=index_dir)
    assert spy_embed_passages == [], "the second call loads the saved index"
    assert {p.name: p.stat().st_mtime_ns for p in index_dir.rglob("*")} == stamps
    assert second.sentences == first.sentences
    question = "What did CNN report about troop numbers?"
    assert_same_results(second.search(question), first.search(question))

    # Other chunking settings make the saved index stale: it is rebuilt and replaced.
    third = Retriever.default(index_dir=index_dir, settings=Settings(chunk_sentences=3))
    assert spy_embed_passages, "stale settings rebuild"
    assert read_manifest(index_dir)["settings"]["chunk_sentences"] == 3
    assert max(len(c.sentences) for c in third.chunks) == 3

    # A damaged index is rebuilt rather than failing.
    truncate_vectors(index_dir)
    spy_embed_passages.clear()
    Retriever.default(index_dir=index_dir, settings=Settings(chunk_sentences=3))
    assert spy_embed_passages
    assert len(Retriever.load(index_dir).sentences) == len(first.sentences)


def test_duplicate_doc_ids_cannot_be_indexed() -> None:
    with pytest.raises(QAError, match="distinct"):
        Retriever.build([Document("same", "One text here."), Document("same", "Another text here.")])
