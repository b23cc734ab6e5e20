"""Query embeddings through ONNX Runtime: the same vectors and results as torch, without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, Retriever, Settings
from qa.config import DEFAULT_MODEL
from qa.embedding import cache_dir, resolve_model
from qa.onnx_backend import onnx_path, supported
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
    assert [p.name for p in first.parent.iterdir()] == ["model.onnx"], "no temporary file left behind"


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
