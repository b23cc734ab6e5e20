"""The FAISS wrapper against brute force, and persistence of a whole retriever."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import qa.index
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
from qa.index import VectorIndex, read_manifest

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


def leftovers(directory: Path) -> list[str]:
    """Hidden temporary entries a save may leave beside the index (its lock file is kept: it is not one)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


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
    manifest["files"]["documents.jsonl"] = qa.index._sha256(path / "documents.jsonl")
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
    digest = qa.index._sha256(path / "doc_sentences.npy")
    edit_manifest(path, lambda m: m["files"].update({"doc_sentences.npy": digest}))


def old_format(path: Path) -> None:
    edit_manifest(path, lambda m: m.update(format_version=1))


def edit_manifest(path: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


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
    ],
)
def test_damaged_index_raises_corrupt_index_error(
    tmp_path: Path, small: Retriever, damage: Callable[[Path], None], message: str
) -> None:
    path = small.save(tmp_path / "idx")
    damage(path)
    with pytest.raises(CorruptIndexError, match=message) as caught:
        Retriever.load(path)
    assert str(path) in str(caught.value)
    assert "rebuild" in str(caught.value)


def test_info_on_a_damaged_manifest_raises_corrupt_index_error(tmp_path: Path, small: Retriever) -> None:
    path = small.save(tmp_path / "idx")
    manifest_without_counts(path)
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
            if Path(src).name.startswith(".idx.tmp-") and Path(dst) == path:
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
    path = small.save(tmp_path / "idx")
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
