"""Query embeddings through ONNX Runtime: the same vectors and results as torch, without importing torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, Retriever, Settings, onnx_backend
from qa.config import DEFAULT_MODEL
from qa.embedding import cache_dir, resolve_model
from qa.onnx_backend import OnnxQueryEncoder, export_key, onnx_path, supported
from qa.retrieval import get_embedder

TEXTS = [
    "What did CNN report about troop numbers?",
    "  leading and trailing spaces  ",
    "Ünïcödé: café, naïve, Tripoli — “quoted” 2016.",
    "x",
    "A long passage that goes on. " * 80,  # over the model's 256 word pieces: truncated alike
]


@pytest.fixture(scope="module")
def onnx_embedder():
    embedder = get_embedder(DEFAULT_MODEL, 1, 1, "onnx")
    assert embedder.query_backend == "onnx"
    return embedder


@pytest.fixture(scope="module")
def torch_embedder():
    embedder = get_embedder(DEFAULT_MODEL, 1, 1, "torch")
    assert embedder.query_backend == "torch"
    return embedder


@pytest.mark.parametrize("text", TEXTS)
def test_onnx_vectors_match_torch(onnx_embedder, torch_embedder, text):
    by_onnx, by_torch = onnx_embedder.encode_query(text), torch_embedder.encode_query(text)
    assert by_onnx.dtype == np.float32 and by_onnx.shape == (torch_embedder.dim,)
    assert np.abs(by_onnx - by_torch).max() < 1e-5
    assert float(np.linalg.norm(by_onnx)) == pytest.approx(1.0, abs=1e-5)


def test_answers_are_the_same_with_either_backend(article_index_dir, article_dev):
    answers = {}
    for backend in ("onnx", "torch"):
        retriever = Retriever.load(article_index_dir, settings=Settings(query_backend=backend))
        assert retriever.embedder.query_backend == backend
        assistant = Assistant(retriever)
        answers[backend] = [(a.text, [(c.start, c.end) for c in a.citations])
                            for a in map(assistant.ask, [item["q"] for item in article_dev["single"]])]
    assert answers["onnx"] == answers["torch"]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_lone_surrogate_in_a_query_is_dropped_before_the_tokenizer(article_index_dir, backend):
    """Half an emoji in a question made the tokenizer raise TypeError (TextEncodeInput); `check_question`,
    which every search passes, drops it."""
    retriever = Retriever.load(article_index_dir, settings=Settings(query_backend=backend))
    clean = [(p.start, p.end) for p in retriever.search("Who is Khalifa Haftar?", k=3)]
    assert [(p.start, p.end) for p in retriever.search("Who is Khalifa Haftar?\ud83d", k=3)] == clean
    assert [(p.start, p.end) for p in retriever.search("Who is \udcff Khalifa Haftar?", k=3)] == clean


def test_answering_from_a_saved_index_does_not_import_torch(article_index_dir):
    script = ("import sys; from qa import Assistant, Retriever; "
              f"answer = Assistant(Retriever.load({str(article_index_dir)!r})).ask('Who is Khalifa Haftar?'); "
              "print(answer.found, sorted(m for m in ('torch', 'transformers', 'sentence_transformers') "
              "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True []"


def test_export_is_cached_and_written_whole(onnx_embedder):
    path = resolve_model(DEFAULT_MODEL)
    first = onnx_path(path, cache_dir())
    assert first.is_file() and first.stat().st_size > 1_000_000
    assert onnx_path(path, cache_dir()) == first
    assert first.parent.name == export_key(path)
    assert sorted(p.name for p in first.parent.iterdir()) == ["model.onnx", "sources.json"], "no temporary file"


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


def test_exports_are_keyed_by_content_and_old_ones_removed(onnx_embedder, tmp_path: Path, monkeypatch):
    """Exports piled up in ~/.cache/qa/onnx/model-<size>-<mtime>/ (87 MB each, never pruned); now the key is
    a hash of the model's content, a warm start hashes nothing, and exports nothing uses are removed."""
    real = Path(resolve_model(DEFAULT_MODEL))
    exported = onnx_path(real, cache_dir())  # the session's export of the bundled model
    model = tmp_path / "model"  # the same model in another place (as after a reinstall)
    model.mkdir()
    for item in real.iterdir():
        (model / item.name).symlink_to(item, target_is_directory=item.is_dir())
    root = tmp_path / "cache" / "onnx"
    link_or_copy(exported, root / exported.parent.name / "model.onnx")  # this content's export, already there
    legacy = root / "model-90868376-1764603120"
    legacy.mkdir()
    (legacy / "model.onnx").write_bytes(b"an export keyed by size and mtime")
    half = root / exported.parent.name / ".model-abandoned.onnx"
    half.write_bytes(b"left by a killed export")
    os.utime(half, (0, 0))

    first = onnx_path(model, root.parent)
    assert first == root / exported.parent.name / "model.onnx", "same content, same export: nothing exported"
    assert not legacy.exists() and not half.exists()

    def no_hashing(files):
        raise AssertionError("a warm start must not read the weights")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_backend, "_content_hash", no_hashing)
        assert onnx_path(model, root.parent) == first

    # New file times, same bytes (a reinstall): hashed again, the same export.
    (model / "config.json").unlink()
    shutil.copyfile(real / "config.json", model / "config.json")
    assert onnx_path(model, root.parent) == first

    # New content: a new key, and the old export, which no model uses any more, is removed.
    config = json.loads((real / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    key = export_key(model)
    assert key != first.parent.name
    link_or_copy(exported, root / key / "model.onnx")  # stands for the export of the new content (same weights)
    second = onnx_path(model, root.parent)
    assert second == root / key / "model.onnx"
    assert not first.parent.exists()
    assert sorted(p.name for p in root.iterdir()) == [key]
    vector = OnnxQueryEncoder(model, second).encode([TEXTS[0]])[0]
    assert np.abs(vector - onnx_embedder.encode_query(TEXTS[0])).max() < 1e-6


def test_models_it_cannot_serve_use_torch(tmp_path: Path):
    assert supported(resolve_model(DEFAULT_MODEL))
    assert not supported(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "Transformer", "path": ""},
                                                       {"type": "Pooling", "path": "1_Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert not supported(tmp_path)


def test_backend_setting_is_checked():
    with pytest.raises(ValueError, match="query_backend"):
        Settings(query_backend="gpu")
