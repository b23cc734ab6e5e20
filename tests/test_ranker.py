"""The shipped answer ranker: its files, its judgement on a made-up corpus, and `qa train` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, Document, ModelUnavailableError, Retriever
from qa.ranker import DEFAULT_RANKER, MANIFEST, MODEL_FILE, AnswerRanker, load_ranker, sha256

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
SQUAD_V2 = SHARED_EVAL / "squad-v2.0-dev-part-a.json"


def test_shipped_model_matches_its_manifest() -> None:
    manifest = json.loads((DEFAULT_RANKER / MANIFEST).read_text(encoding="utf-8"))
    assert sha256(DEFAULT_RANKER / MODEL_FILE) == manifest["files"][MODEL_FILE]
    assert (DEFAULT_RANKER / MODEL_FILE).stat().st_size < 50 * 1024 * 1024
    assert "CC BY-SA 4.0" in manifest["licence"]
    assert manifest["training"]["seed"] == 20261127
    assert {d["file"] for d in manifest["training"]["data"]} >= {"squad-v1.1-dev-train.json",
                                                                  "squad-v2.0-dev-part-a.json"}
    assert all(len(d["sha256"]) == 64 for d in manifest["training"]["data"])
    assert 0.0 < manifest["calibration"]["min_answerable"] < 1.0


def test_shipped_model_loads_offline_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from qa.ranker import AnswerRanker; r = AnswerRanker(); "
            "s = r.relevance('Who wrote it?', ['Ann wrote it.'], ['Notes']); "
            "assert s.shape == (1,); assert 'torch' not in sys.modules, 'torch was imported'")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_changed_model_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ranker"
    shutil.copytree(DEFAULT_RANKER, copy)
    with open(copy / MODEL_FILE, "r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\0" * 16)
    with pytest.raises(ModelUnavailableError, match="sha256"):
        AnswerRanker(copy)


def test_a_missing_model_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="qa train"):
        AnswerRanker(tmp_path / "nothing-here")


@pytest.fixture(scope="module")
def tiny() -> Assistant:
    """A corpus made here: each question's answer sits among sentences that share its words."""
    documents = [
        Document("harbour", "The old harbour of Velmora was built by Genoese merchants. The harbour is busy in "
                 "summer and quiet in winter. Its lighthouse was built in 1821 after a storm sank three ships. "
                 "Fishermen still mend their nets on the harbour wall.", title="Velmora harbour"),
        Document("bridge", "The stone bridge over the Arlen river has seven arches. Tourists often ask how old "
                 "the bridge is. Records show the bridge was finished in 1563 under Duke Anselm. "
                 "A flood damaged two arches in 1910.", title="Arlen bridge"),
    ]
    return Assistant(Retriever.build(documents))


@pytest.mark.parametrize(("question", "answer"), [
    ("When was the lighthouse built?", "1821"),
    ("Who built the old harbour?", "Genoese merchants"),
    ("When was the bridge finished?", "1563"),
    ("How many arches does the bridge have?", "seven arches"),
])
def test_the_answering_sentence_ranks_above_distractors(tiny: Assistant, question: str, answer: str) -> None:
    answer_ = tiny.ask(question)
    assert answer_.found, question
    assert answer in answer_.citations[0].text
    probabilities = [c.score for c in answer_.citations]
    assert probabilities == sorted(probabilities, reverse=True)


def test_off_topic_questions_get_a_low_probability(tiny: Assistant) -> None:
    on = tiny.ask("When was the bridge finished?").confidence
    off = tiny.ask("What is the boiling point of mercury?").confidence
    assert off < on
    assert not tiny.ask("What is the boiling point of mercury?").found


def test_probabilities_are_probabilities(tiny: Assistant) -> None:
    from qa.answer import find_candidates

    retriever = tiny.retriever
    found = find_candidates(retriever, "When was the lighthouse built?", (), retriever.settings)
    texts = [retriever.sentences[i].text for i in found.sentences]
    titles = [retriever.document(retriever.sentences[i].doc_id).title for i in found.sentences]
    ranking = tiny.ranker.rank("When was the lighthouse built?", texts, titles, found.evidence)
    assert ranking.probabilities.shape == (len(texts),)
    assert np.all((ranking.probabilities >= 0) & (ranking.probabilities <= 1))
    assert 0.0 <= ranking.answerable <= 1.0
    assert "1821" in texts[int(np.argmax(ranking.probabilities))]


def test_citing_stops_once_the_chosen_sentences_are_likely_enough() -> None:
    cited = AnswerRanker.cited
    assert cited(np.array([0.95, 0.5, 0.4]), 3, 0.9) == [0]
    assert cited(np.array([0.6, 0.5, 0.4, 0.3]), 3, 0.9) == [0, 1, 2]
    assert cited(np.array([0.2, 0.7, 0.1]), 3, 0.7) == [1]
    assert cited(np.array([0.5, 0.5, 0.5]), 2, 0.99) == [0, 1]


def test_training_runs_end_to_end_on_a_tiny_slice(tmp_path: Path) -> None:
    """A smoke run: it trains, calibrates, exports and writes a model that loads (no figures asserted)."""
    from qa.train import TrainConfig, train

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    data = json.loads(SQUAD_V2.read_text(encoding="utf-8"))
    tiny_file = tmp_path / "tiny-squad.json"
    tiny_file.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": a["title"], "paragraphs": a["paragraphs"][:2]} for a in data["data"][:4]]}), encoding="utf-8")
    out = tmp_path / "ranker"
    manifest = train([tiny_file], out, TrainConfig(layers=1, steps=2), echo=lambda line: None)
    ranker = AnswerRanker(out)
    assert manifest["files"][MODEL_FILE] == sha256(out / MODEL_FILE)
    assert ranker.relevance("Who?", ["Someone."], ["Title"]).shape == (1,)
    assert not list(tmp_path.glob(".ranker*")), "no staging directory left behind"


def test_load_ranker_is_shared() -> None:
    assert load_ranker() is load_ranker()
