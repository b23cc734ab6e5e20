"""Reading close candidates again in float: the float graph rebuilt from the shipped int8 one, and when it is used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from qa.precise import close_candidates, float_graph
from qa.ranker import DEFAULT_RANKER, MANIFEST, MODEL_FILE, AnswerRanker, pair_text

QUESTION = "When was the lighthouse built?"
PAIRS = [pair_text(text, "Velmora harbour") for text in (
    "The lighthouse was built in 1821 after a storm sank three ships.",
    "The lighthouse keeper's cottage was built in 1823, two years after the tower.",
    "Fishing boats still land their catch at the old quay every morning.",
    "Tourists come in summer.")]


@pytest.fixture(scope="module")
def float_session() -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(float_graph(DEFAULT_RANKER / MODEL_FILE).SerializeToString(),
                                        providers=["CPUExecutionProvider"])


def _with_margin(tmp_path: Path, margin: float) -> AnswerRanker:
    copy = tmp_path / "ranker"
    shutil.copytree(DEFAULT_RANKER, copy)
    manifest = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    manifest["calibration"]["close_margin"] = margin
    (copy / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return AnswerRanker(copy)


def test_the_float_graph_has_no_quantized_products_and_scores_like_the_int8_one(
        float_session: onnxruntime.InferenceSession) -> None:
    graph = float_graph(DEFAULT_RANKER / MODEL_FILE).graph
    kinds = {node.op_type for node in graph.node}
    assert "MatMulInteger" not in kinds and "DynamicQuantizeLinear" not in kinds
    ranker = AnswerRanker()
    quantized, _ = ranker.read_pairs(QUESTION, PAIRS)
    full = np.asarray([ranker._read(QUESTION, pair, float_session)[0] for pair in PAIRS])
    # The same weights: the scores differ by the activations' rounding only, and the order holds here.
    assert np.abs(full - quantized).max() < 0.6
    assert full.argmax() == quantized.argmax() == 0
    assert not np.array_equal(full, quantized)


def test_only_candidates_within_the_margin_of_the_best_are_read_again(
        tmp_path: Path, float_session: onnxruntime.InferenceSession) -> None:
    assert close_candidates(np.asarray([1.0, 3.0, 2.8, 2.5, -1.0]), 0.3, 3) == [1, 2]
    assert close_candidates(np.asarray([1.0, 3.0, 2.8, 2.9]), 0.3, 2) == [1, 3]  # at most `most`, the best first
    assert close_candidates(np.asarray([3.0, 2.9]), 0.0, 3) == []  # a model without a margin is never re-read
    assert close_candidates(np.asarray([3.0]), 1.0, 3) == []

    ranker = _with_margin(tmp_path, 100.0)  # every candidate is "close": the best `most` are read in float
    quantized, spans = ranker.read_pairs(QUESTION, PAIRS)
    order = np.argsort(-quantized)
    again, again_spans = ranker.reread_close(QUESTION, PAIRS, quantized, spans, 2)
    for k in range(len(PAIRS)):
        if k in order[:2]:
            assert again[k] == pytest.approx(ranker._read(QUESTION, PAIRS[k], float_session)[0], abs=1e-5)
        else:
            assert again[k] == quantized[k] and again_spans[k] == spans[k]
    assert ranker.reread_close(QUESTION, PAIRS, quantized, spans, 0)[0].tolist() == quantized.tolist()


def test_a_ranker_without_a_margin_never_builds_the_float_graph(tmp_path: Path) -> None:
    ranker = _with_margin(tmp_path, 0.0)  # as a model calibrated before the margin was measured
    assert ranker.close_margin == 0.0
    ranker.reread_close(QUESTION, PAIRS, *ranker.read_pairs(QUESTION, PAIRS), 3)
    assert ranker._precise_session is None


def test_the_shipped_model_has_a_measured_margin_and_builds_the_float_graph_once() -> None:
    ranker = AnswerRanker()
    assert 0.0 < ranker.close_margin < 2.0
    assert ranker._precise_session is None  # not at load: a one-question command never needs it
    ranker.prepare()
    built = ranker._precise_session
    assert built is not None and ranker._precise() is built


def test_a_graph_that_is_not_quantized_is_refused(tmp_path: Path) -> None:
    from qa import ModelUnavailableError

    plain = tmp_path / "plain.onnx"
    plain.write_bytes(float_graph(DEFAULT_RANKER / MODEL_FILE).SerializeToString())
    with pytest.raises(ModelUnavailableError, match="no quantized products"):
        float_graph(plain)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError, match="cannot read"):
        float_graph(tmp_path / "broken.onnx")


def test_a_model_whose_graph_cannot_be_rewritten_answers_from_its_int8_scores(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from qa.ranker import sha256

    copy = tmp_path / "ranker"
    shutil.copytree(DEFAULT_RANKER, copy)
    (copy / MODEL_FILE).write_bytes(float_graph(DEFAULT_RANKER / MODEL_FILE).SerializeToString())  # no int8 left
    manifest = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][MODEL_FILE] = sha256(copy / MODEL_FILE)
    manifest["calibration"]["close_margin"] = 100.0
    (copy / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    ranker = AnswerRanker(copy)
    scores, spans = ranker.read_pairs(QUESTION, PAIRS)
    again, _ = ranker.reread_close(QUESTION, PAIRS, scores, spans, 3)
    assert again.tolist() == scores.tolist()
    assert ranker.close_margin == 0.0
    assert "not read again in float" in caplog.text
