"""The shipped answer ranker: its files, its judgement on a made-up corpus, and `qa train` end to end."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, Document, ModelUnavailableError, Retriever
from qa.ranker import DEFAULT_RANKER, MANIFEST, MODEL_FILE, AnswerRanker, load_ranker, sha256
from qa.training.sets import SET_FILES

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
SQUAD_V2 = SHARED_EVAL / "squad-v2.0-dev-part-a.json"


def test_shipped_model_matches_its_manifest() -> None:
    manifest = json.loads((DEFAULT_RANKER / MANIFEST).read_text(encoding="utf-8"))
    assert sha256(DEFAULT_RANKER / MODEL_FILE) == manifest["files"][MODEL_FILE]
    assert (DEFAULT_RANKER / MODEL_FILE).stat().st_size < 50 * 1024 * 1024
    assert "CC BY-SA 4.0" in manifest["licence"]
    assert manifest["training"]["seed"] == 20261127
    assert {d["file"] for d in manifest["training"]["data"]} >= {"squad-v1.1-train.json",
                                                                  "squad-v2.0-train-first10.json",
                                                                  "squad-v1.1-dev-train.json",
                                                                  "squad-v2.0-dev-part-a.json"}
    assert all(len(d["sha256"]) == 64 for d in manifest["training"]["data"])
    assert 0.0 < manifest["calibration"]["min_answerable"] < 1.0
    questions = manifest["training"]["config"]["questions"]
    read = manifest["training"].get("questions_read", questions)
    assert questions == 0 or read >= 10_000  # 0: every one of the 87,599
    for name, _ in manifest["training"]["config"].get("mix", []):  # sets beyond Wikipedia are named with their sha256
        assert SET_FILES[name].name in {d["file"] for d in manifest["training"]["data"]}


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
    from qa.candidates import find_candidates

    retriever = tiny.retriever
    found = find_candidates(retriever, "When was the lighthouse built?", (), retriever.settings)
    texts = [retriever.sentences[i].text for i in found.sentences]
    titles = [retriever.document(retriever.sentences[i].doc_id).title for i in found.sentences]
    ranking = tiny.ranker.rank("When was the lighthouse built?", texts, titles, found.evidence)
    assert ranking.probabilities.shape == (len(texts),)
    assert np.all((ranking.probabilities >= 0) & (ranking.probabilities <= 1))
    assert 0.0 <= ranking.answerable <= 1.0
    assert "1821" in texts[int(np.argmax(ranking.probabilities))]


def test_the_short_answer_is_a_span_of_the_sentence_not_its_title() -> None:
    from qa.ranker import pair_text

    ranker = load_ranker()
    sentence = "The   lighthouse was built in 1821 after a storm sank three ships."
    relevance, spans = ranker.read_pairs("When was the lighthouse built?", [pair_text(sentence, "Velmora harbour")])
    collapsed = " ".join(sentence.split())
    assert relevance.shape == (1,)
    span = spans[0]
    assert span is not None and 0 <= span.start < span.end <= len(collapsed)
    assert "1821" in collapsed[span.start:span.end]
    assert 0.0 < span.probability <= 1.0


def test_a_pair_keeps_the_sentence_first_and_the_start_of_the_one_before() -> None:
    from qa.ranker import PREVIOUS_WORDS, pair_text

    before = " ".join(f"w{k}" for k in range(PREVIOUS_WORDS + 5))
    text = pair_text("It  was built in 1821.", "Velmora harbour", before)
    sentence, previous, title = text.split(" [SEP] ")
    assert sentence == "It was built in 1821."  # the short answer's offsets are the sentence's own
    assert previous.split() == before.split()[:PREVIOUS_WORDS]
    assert title == "Velmora harbour"
    assert pair_text("It was built in 1821.", "Velmora harbour", "").split(" [SEP] ") == [
        "It was built in 1821.", "", "Velmora harbour"]
    assert pair_text("It was built in 1821.", "Velmora harbour") == "It was built in 1821. [SEP] Velmora harbour"


def test_the_sentence_before_stays_inside_its_document(tiny: Assistant) -> None:
    retriever = tiny.retriever
    for doc_id in ("harbour", "bridge"):
        ids = retriever.sentence_ids(doc_id)
        assert retriever.sentence_before(ids[0]) == ""
        for i in ids[1:]:
            assert retriever.sentence_before(i) == retriever.sentences[i - 1].text


def test_training_reads_the_sentence_before_inside_its_paragraph(tmp_path: Path) -> None:
    from qa.training import TrainingSentences
    from qa.training.squad import load_squad

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    documents, _ = load_squad([_tiny_squad(SQUAD_V2, tmp_path / "t.json", slice(0, 2))])
    sentences = TrainingSentences(documents)
    for paragraph in sentences.by_paragraph.values():
        assert sentences.pair(paragraph[0], reads_previous=True).split(" [SEP] ")[1] == ""
        for i in paragraph[1:]:
            before = sentences.pair(i, reads_previous=True).split(" [SEP] ")[1]
            assert before and sentences.texts[i - 1].startswith(before)
        assert sentences.pair(paragraph[0]).count(" [SEP] ") == 1


def test_a_pair_scores_the_same_whatever_is_read_with_it() -> None:
    """The int8 model quantizes activations with one scale per run: read in a batch, a sentence's score
    moved with its neighbours (and each pair was padded to the longest). Nor does reading pairs two at a
    time change a score."""
    from qa.ranker import pair_text

    ranker = load_ranker()
    question = "When was the lighthouse built?"
    pairs = [pair_text(text, "Velmora harbour") for text in (
        "The lighthouse was built in 1821 after a storm sank three ships.",
        "Fishing boats still land their catch at the old quay every morning, as they have for two hundred "
        "years, and the market opens at six.", "Tourists come in summer.")]
    together, spans = ranker.read_pairs(question, pairs)
    for k, pair in enumerate(pairs):
        alone, alone_spans = ranker.read_pairs(question, [pair])
        assert alone[0] == together[k]
        assert alone_spans[0] == spans[k]
    in_parallel, parallel_spans = load_ranker(workers=2).read_pairs(question, pairs)
    assert in_parallel.tolist() == together.tolist()
    assert parallel_spans == spans


def _tiny_squad(source: Path, path: Path, articles: slice) -> Path:
    data = json.loads(source.read_text(encoding="utf-8"))
    path.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": a["title"], "paragraphs": a["paragraphs"][:2]} for a in data["data"][articles]]}), encoding="utf-8")
    return path


def test_training_runs_end_to_end_resumes_and_repeats(tmp_path: Path) -> None:
    """A smoke run trains, checkpoints, calibrates, exports and writes a model that loads; resuming from its
    final checkpoint, and a second run with the same seed, give the same model (no figures asserted)."""
    from qa.training import TrainConfig, reading_point, recalibrate, train

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    development = _tiny_squad(SQUAD_V2, tmp_path / "dev.json", slice(0, 6))
    training = _tiny_squad(SQUAD_V2, tmp_path / "train.json", slice(6, 8))
    config = TrainConfig(layers=1, steps=2, questions=40, threads=1)
    quiet = {"echo": lambda line: None, "training_files": [training]}
    out = tmp_path / "ranker"
    manifest = train([development], out, config, checkpoint=tmp_path / "ckpt.pt", **quiet)
    ranker = AnswerRanker(out)
    assert manifest["files"][MODEL_FILE] == sha256(out / MODEL_FILE)
    assert ranker.relevance("Who?", ["Someone."], ["Title"]).shape == (1,)
    assert (tmp_path / "ckpt.pt").is_file()
    assert not list(tmp_path.glob(".ranker*")), "no staging directory left behind"
    pairs = ["Normans were from Normandy. [SEP] Normans", "The Loire is a river. [SEP] France"]
    expected = ranker.relevance_of_pairs("Where were the Normans from?", pairs)

    resumed = train([development], tmp_path / "resumed", config, checkpoint=tmp_path / "ckpt.pt", resume=True,
                    **quiet)
    again = train([development], tmp_path / "again", config, checkpoint=tmp_path / "other.pt", **quiet)
    for model in (tmp_path / "resumed", tmp_path / "again"):
        np.testing.assert_allclose(AnswerRanker(model).relevance_of_pairs("Where were the Normans from?", pairs),
                                   expected, atol=1e-5)
    assert resumed["calibration"]["min_answerable"] == pytest.approx(manifest["calibration"]["min_answerable"])

    # A second stage continues the finished run's cross-encoder (`--start`) on questions it did not read.
    second = dataclasses.replace(config, start=str(tmp_path / "ckpt.pt"), after=12, questions=0, swapped=0.5)
    continued = train([development], tmp_path / "continued", second, checkpoint=tmp_path / "second.pt", **quiet)
    assert continued["training"]["config"]["start"] == str(tmp_path / "ckpt.pt")
    moved = AnswerRanker(tmp_path / "continued").relevance_of_pairs("Where were the Normans from?", pairs)
    assert np.abs(moved - expected).max() > 1e-4

    # Or from a model directory (the shipped one is such): it read 40 questions of the draw; a run continues after.
    assert reading_point(out, config.seed) == (40, 0)
    # It may learn to read each sentence with the one before it: its manifest says so, and so it is read.
    from_model = dataclasses.replace(config, start=str(out), after=40, questions=0, reads_previous=True)
    continued = train([development], tmp_path / "from-model", from_model, checkpoint=tmp_path / "third.pt", **quiet)
    assert continued["training"]["config"]["start"] == str(out)
    assert continued["training"]["started_from"]["sha256"] == manifest["files"][MODEL_FILE]
    assert continued["reads_previous"] and not manifest["reads_previous"]
    reader = AnswerRanker(tmp_path / "from-model")
    moved = reader.relevance_of_pairs("Where were the Normans from?", pairs)
    assert np.abs(moved - expected).max() > 1e-4
    assert reader.pair("They came from Normandy.", "Normans", "The Normans were a people.") == (
        "They came from Normandy. [SEP] The Normans were a people. [SEP] Normans")
    assert ranker.pair("They came from Normandy.", "Normans", "The Normans were a people.") == (
        "They came from Normandy. [SEP] Normans")
    assert again["files"][MODEL_FILE] == manifest["files"][MODEL_FILE]
    points = [(first, answerable) for first in (0.05, 0.4, 0.9) for answerable in (0.1, 0.5, 0.95)]
    confidences = [ranker.confidence(*point) for point in points]
    assert all(0.0 <= c <= 1.0 for c in confidences)

    # `qa train --confidence-only` refits the same confidence from the model alone, and changes nothing else.
    refitted = recalibrate([development], out, config, confidence_only=True, echo=lambda line: None)
    assert [AnswerRanker(out).confidence(*point) for point in points] == pytest.approx(confidences, abs=1e-6)
    assert refitted["files"] == manifest["files"] and refitted["first_stage"] == manifest["first_stage"]
    assert {k: v for k, v in refitted["calibration"].items() if k != "confidence"} == {
        k: v for k, v in manifest["calibration"].items() if k != "confidence"}

    # `qa train --calibration-only` refits every layer after the cross-encoder: the full run's, exactly.
    refitted = recalibrate([development], out, config, echo=lambda line: None)
    assert refitted["files"] == manifest["files"] and refitted["first_stage"] == manifest["first_stage"]
    assert json.dumps(refitted["calibration"], sort_keys=True) == json.dumps(manifest["calibration"], sort_keys=True)


def test_the_learning_rate_warms_up_decays_and_can_cool_down_early() -> None:
    from qa.training import learning_rate_factor

    planned = [learning_rate_factor(s, 100) for s in range(101)]
    assert planned[0] == pytest.approx(0.1) and max(planned) == planned[9] and planned[100] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(planned[9:]))
    cooled = [learning_rate_factor(s, 100, cool_from=40, cool_steps=20) for s in range(101)]
    assert cooled[:41] == planned[:41]  # the same run up to the cool-down, and no jump at its start
    assert cooled[50] == pytest.approx(planned[40] / 2) and cooled[60] == 0.0 and max(cooled[60:]) == 0.0


def test_a_run_stops_when_asked_and_a_cool_down_finishes_it_early(tmp_path: Path) -> None:
    """`--until` leaves a checkpoint mid-run; `--resume --cooldown N` ends the run N steps later, at a learning
    rate of 0, with a model that loads and a checkpoint that counts as finished."""
    import torch

    from qa.errors import QAError
    from qa.training import TrainConfig, questions_read_by, train

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    development = _tiny_squad(SQUAD_V2, tmp_path / "dev.json", slice(0, 6))
    training = _tiny_squad(SQUAD_V2, tmp_path / "train.json", slice(6, 8))
    quiet = {"echo": lambda line: None, "training_files": [training], "checkpoint": tmp_path / "ckpt.pt"}
    config = TrainConfig(layers=1, steps=6, questions=40, threads=1)
    with pytest.raises(QAError, match="--cooldown ends a run early"):
        train([development], tmp_path / "early", dataclasses.replace(config, cooldown=2), **quiet)
    assert train([development], tmp_path / "stopped", dataclasses.replace(config, until=2), **quiet) == {}
    assert not (tmp_path / "stopped").exists()
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 2
    manifest = train([development], tmp_path / "cooled", dataclasses.replace(config, cooldown=2), resume=True,
                     **quiet)
    assert manifest["training"]["schedule"] == {"steps": 4, "planned_steps": 6, "cool_from": 2}
    AnswerRanker(tmp_path / "cooled")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert (state["step"], state["steps"]) == (4, 4)
    assert [group["lr"] for group in state["optimiser"]["param_groups"]] == [0.0, 0.0]
    assert questions_read_by(tmp_path / "ckpt.pt", config.seed) == 40  # a finished run, to start a next stage from


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    from qa.errors import QAError
    from qa.training import Checkpoints, TrainConfig

    Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=1)).save({"step": 1})
    with pytest.raises(QAError, match="other settings"):
        Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=2)).load()
    assert Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=1, threads=2)).load()["step"] == 1


def test_a_checkpoint_older_than_a_setting_was_made_with_its_default(tmp_path: Path) -> None:
    import torch

    from qa.training import Checkpoints, TrainConfig

    old = dataclasses.asdict(TrainConfig(layers=1))
    del old["swapped"]
    torch.save({"step": 1, "config": old}, tmp_path / "ckpt.pt")
    assert Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=1)).load()["step"] == 1
    with pytest.raises(Exception, match="swapped"):
        Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=1, swapped=0.3)).load()


def test_a_second_stage_starts_only_from_a_finished_run_and_draws_after_it(tmp_path: Path) -> None:
    from qa.errors import QAError
    from qa.training import Checkpoints, TrainConfig, questions_read_by

    Checkpoints(tmp_path / "ckpt.pt", TrainConfig(layers=1)).save({"step": 1, "steps": 2, "model": {}})
    with pytest.raises(QAError, match="not finished"):
        questions_read_by(tmp_path / "ckpt.pt", TrainConfig.seed)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(QAError, match="cannot start from"):
        questions_read_by(tmp_path / "junk.pt", TrainConfig.seed)
    for first, read in ((TrainConfig(questions=300), 300), (TrainConfig(questions=200, after=300), 500)):
        Checkpoints(tmp_path / "done.pt", first).save({"step": 2, "steps": 2, "model": {}})
        assert questions_read_by(tmp_path / "done.pt", TrainConfig.seed) == read
    with pytest.raises(QAError, match="seed"):
        questions_read_by(tmp_path / "done.pt", 7)
    Checkpoints(tmp_path / "done.pt", TrainConfig(questions=0)).save({"step": 2, "steps": 2, "model": {}})
    with pytest.raises(QAError, match="every training question"):
        questions_read_by(tmp_path / "done.pt", TrainConfig.seed)


def test_a_swapped_share_outside_0_to_1_is_refused_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    assert main(["train", "--swapped", "1.5", "--start", "no-such-checkpoint.pt"]) != 0
    assert "--swapped is a share" in capsys.readouterr().err


def test_a_continuing_run_draws_the_questions_the_first_did_not(tmp_path: Path) -> None:
    from qa.training import TrainConfig, training_questions
    from qa.training.squad import load_squad

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    training = _tiny_squad(SQUAD_V2, tmp_path / "train.json", slice(0, 8))
    everything = {(q.doc_id, q.question) for q in load_squad([training])[1] if not q.impossible}

    def drawn(**settings: object) -> tuple[set[tuple[str, str]], int]:
        questions = training_questions([training], [], {}, TrainConfig(**settings))[1]  # type: ignore[arg-type]
        return {(q.doc_id, q.question) for q in questions if not q.impossible}, sum(q.impossible for q in questions)

    first, unanswerable = drawn(questions=10)
    then, also_unanswerable = drawn(questions=10, after=10, start="first.pt")
    rest, _ = drawn(questions=0, after=10, start="first.pt")
    assert len(first) == len(then) == 10 and not first & then and then <= rest
    assert first | rest == everything and not first & rest
    assert unanswerable == also_unanswerable > 0


def test_swapped_questions_must_be_refused_against_their_own_paragraph(tmp_path: Path) -> None:
    from os.path import commonprefix

    from qa.training import TrainConfig, TrainingSentences, training_groups
    from qa.training.squad import contains_any, load_squad

    if not SQUAD_V2.is_file():
        pytest.skip(f"{SQUAD_V2} not found")
    documents, questions = load_squad([_tiny_squad(SQUAD_V2, tmp_path / "t.json", slice(0, 8))])
    answerable = [q for q in questions if not q.impossible]
    sentences = TrainingSentences(documents)
    plain = TrainConfig(follow_ups=0.0, absent=0.0)
    assert all(group.target > 0 for group in training_groups(answerable, sentences, plain, 0))
    groups = training_groups(answerable, sentences, dataclasses.replace(plain, swapped=1.0), 0)
    asked = {q.question: q for q in answerable}
    made = [group for group in groups if group.question not in asked]
    assert len(made) >= len(answerable) // 4, "most questions name something their answering sentence holds"
    for group in made:
        original = max(answerable, key=lambda q: len(commonprefix([q.question, group.question]))
                       + len(commonprefix([q.question[::-1], group.question[::-1]])))
        assert group.target == 0 and not group.answers
        # Its answering sentence is still offered: only the swapped name says that it does not answer.
        assert any(contains_any(text.split(" [SEP] ")[0], original.answers) for text in group.texts)
    assert all(group.target > 0 for group in groups if group.question in asked)


def test_training_on_a_gpu_that_is_not_there_says_so(tmp_path: Path) -> None:
    import torch

    from qa.errors import QAError
    from qa.training import TrainConfig, train

    if torch.cuda.is_available() or not SQUAD_V2.is_file():
        pytest.skip("a GPU is here, or the SQuAD file is not")
    development = _tiny_squad(SQUAD_V2, tmp_path / "dev.json", slice(0, 6))
    with pytest.raises(QAError, match="GPU"):
        train([development], tmp_path / "out", TrainConfig(layers=1, steps=1, device="cuda"),
              training_files=[development], echo=lambda line: None)


def test_a_known_share_of_answered_questions_moves_the_confidence_by_bayes_rule() -> None:
    from qa.ranker import shifted_prior

    assert shifted_prior(0.6, 0.72, 0.72) == pytest.approx(0.6)
    # odds 0.6/0.4 = 1.5, times the change of prior odds (0.5/0.5) / (0.72/0.28): 1.5 * 0.3889 = 0.5833
    assert shifted_prior(0.6, 0.72, 0.5) == pytest.approx(0.5833 / 1.5833, abs=1e-4)
    assert shifted_prior(0.6, 0.72, 0.3) < shifted_prior(0.6, 0.72, 0.5) < 0.6 < shifted_prior(0.6, 0.72, 0.9)
    ranker = load_ranker()
    shipped = ranker.confidence(0.8, 0.9)
    assert ranker.confidence(0.8, 0.9, share=0.3) < shipped < ranker.confidence(0.8, 0.9, share=0.95)
    assert ranker.confidence(0.8, 0.9, share=ranker._confidence.answerable_share) == pytest.approx(shipped)
    assert ranker.confidence(0.9, 0.9) >= ranker.confidence(0.2, 0.9), "a likelier [1] is not less trusted"


def test_load_ranker_is_shared() -> None:
    assert load_ranker() is load_ranker()


def test_a_layer_may_name_any_known_features_in_its_own_order() -> None:
    from qa.errors import ModelUnavailableError
    from qa.ranker import KNOWN_QUESTION_FEATURES, Evidence, _Logistic, question_features, sentence_features

    saved = {"features": ["best_dense", "best_relevance"], "mean": [0.5, 1.0], "scale": [0.2, 2.0],
             "weights": [1.0, 0.5], "bias": 0.0}
    layer = _Logistic.from_json(saved, KNOWN_QUESTION_FEATURES)  # an older model's absolute similarity
    assert layer.names == ("best_dense", "best_relevance")
    with pytest.raises(ModelUnavailableError, match="regenerate"):
        _Logistic.from_json({**saved, "features": ["best_dense", "question_length"]}, KNOWN_QUESTION_FEATURES)

    evidence = [Evidence(dense=0.7, overlap=0.5, overlap_with_previous=0.5, passage=1.0),
                Evidence(dense=0.2, overlap=0.0, overlap_with_previous=0.1, passage=0.5)]
    relevance = np.asarray([3.0, -1.0])
    rows = sentence_features(relevance, evidence, ("dense_gap", "relevance_gap", "dense"))
    np.testing.assert_allclose(rows, [[0.0, 0.0, 0.7], [-0.5, -4.0, 0.2]])
    capped = question_features(relevance, np.asarray([0.8, 0.1]), evidence, ("best_dense_capped", "best_dense"),
                               dense_ceiling=0.45)
    np.testing.assert_allclose(capped, [0.45, 0.7])


@pytest.fixture(scope="module")
def informal() -> Assistant:
    """Text unlike Wikipedia, written for this test: a forum thread in loose lines and a short review."""
    thread = ("Thread: sourdough keeps coming out flat??\ncrumb_queen\nPosted 2 days ago\n"
              "my sourdough keeps coming out flat and dense lol\n"
              "the starter is 5 days old and i feed it once a day with rye\n"
              "i bake at 230 for 40 minutes in a dutch oven, lid off for the last 15\nany ideas\n\n---\n"
              "old_baker_tom\nPosted 2 days ago\n"
              "your starter is too young imo, give it two weeks of daily feeding before you bake with it\n"
              "also try a longer cold proof in the fridge, overnight at least\n")
    review = ("Bought the Kettleton Pro electric kettle in March for 59 pounds. Boils a full litre in about two and a "
              "half minutes, which is quicker than my old one. The lid sticks sometimes. Customer service swapped the "
              "base for free when the light stopped working. Would I buy it again? probably yes.")
    return Assistant(Retriever.build([Document("bread", thread, title="sourdough-thread.txt"),
                                      Document("kettle", review, title="kettle-review.txt")]))


@pytest.mark.parametrize(("question", "answer"), [
    ("How long should the starter mature before baking?", "two weeks"),
    ("What temperature does she bake at?", "230"),
    ("How fast does the kettle heat water?", "two and a half minutes"),
    ("What did support do about the broken light?", "swapped the base"),
])
def test_paraphrased_questions_about_informal_text_are_answered(informal: Assistant, question: str,
                                                                answer: str) -> None:
    """A user's question shares fewer words with the text than SQuAD's do; it is still answered, from the right
    line (the refusal does not lean on how much of the wording the question copies)."""
    answer_ = informal.ask(question)
    assert answer_.found, (question, answer_.answerable)
    assert answer in answer_.citations[0].text


def test_off_topic_questions_about_informal_text_are_refused(informal: Assistant) -> None:
    for question in ("What is the capital of Peru?", "Who won the 1998 World Cup?"):
        assert not informal.ask(question).found, question


def test_a_model_directory_gives_back_the_cross_encoder_it_was_exported_from() -> None:
    """`qa train --start MODEL_DIR` begins from the exported int8 weights, dequantized: the torch model they make
    scores as the shipped ONNX model does, within the int8 activations' rounding, and picks the same sentence."""
    import onnxruntime
    import torch
    from transformers import AutoTokenizer

    from qa.embedding import resolve_model
    from qa.training import BASE_MODEL, build_encoder, model_weights

    weights = model_weights(DEFAULT_RANKER)
    model = build_encoder(6)
    model.register_parameter("null_option", torch.nn.Parameter(torch.zeros(1)))
    model.load_state_dict(weights)
    model.eval()
    base = build_encoder(6).state_dict()["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(weights["bert.embeddings.word_embeddings.weight"], base)  # frozen in training: the base's
    session = onnxruntime.InferenceSession(str(DEFAULT_RANKER / MODEL_FILE), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BASE_MODEL))
    sentences = ["The lighthouse was built in 1821 after a storm sank three ships. [SEP] Harbour",
                 "The harbour is busy in summer and quiet in winter. [SEP] Harbour",
                 "Ferries leave for the island twice a day. [SEP] Harbour"]
    for question in ("When was the lighthouse built?", "How often do ferries leave?", "When is the harbour quiet?"):
        exported, restored = [], []
        for sentence in sentences:
            encoded = tokenizer([question], [sentence], return_tensors="np")
            inputs = {name: encoded[name].astype(np.int64)
                      for name in ("input_ids", "attention_mask", "token_type_ids")}
            exported.append(float(session.run(None, inputs)[0][0]))
            with torch.no_grad():
                restored.append(float(model(*(torch.from_numpy(inputs[n]) for n in inputs))[0][0]))
        assert np.argmax(restored) == np.argmax(exported)
        assert np.abs(np.array(restored) - np.array(exported)).max() < 1.0


def test_a_run_over_every_question_is_continued_in_its_own_order(tmp_path: Path) -> None:
    from qa.errors import QAError
    from qa.training import Checkpoints, TrainConfig, reading_point

    manifest = json.loads((DEFAULT_RANKER / MANIFEST).read_text(encoding="utf-8"))["training"]
    if manifest["config"]["questions"] == 0:  # the shipped model read every question's first steps
        skip = manifest["config"].get("skip", 0) + manifest["schedule"]["steps"]
        assert reading_point(DEFAULT_RANKER, manifest["seed"]) == (0, skip)
    Checkpoints(tmp_path / "all.pt", TrainConfig(questions=0, skip=30)).save({"step": 12, "steps": 12, "model": {}})
    assert reading_point(tmp_path / "all.pt", TrainConfig.seed) == (0, 42)
    rest = TrainConfig(questions=0, after=500, skip=30)  # a second stage that read all the first left, in order
    Checkpoints(tmp_path / "rest.pt", rest).save({"step": 12, "steps": 12, "model": {}})
    assert reading_point(tmp_path / "rest.pt", TrainConfig.seed) == (500, 42)
    with pytest.raises(QAError, match="cannot start from"):
        reading_point(tmp_path, TrainConfig.seed)  # a directory without a model


def test_a_model_that_read_every_question_is_continued_only_in_its_order(capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    if json.loads((DEFAULT_RANKER / MANIFEST).read_text(encoding="utf-8"))["training"]["config"]["questions"]:
        pytest.skip("the shipped model drew a share of the questions")
    assert main(["train", "--start", str(DEFAULT_RANKER), "--questions", "100"]) != 0
    assert "continue it with --questions 0" in capsys.readouterr().err


def test_number_agreement_marks_quantity_questions_only() -> None:
    from qa.ranker import number_agreement

    assert number_agreement("How many troops?", ["fifty", "Haftar", None]).tolist() == [1.0, -1.0, -1.0]
    assert number_agreement("What did CNN report about troop numbers?", ["up to 50 troops"]).tolist() == [1.0]
    assert number_agreement("Who is Haftar?", ["fifty", "Haftar"]).tolist() == [0.0, 0.0]
    # The previous question after [SEP] is not the question asked.
    assert number_agreement("Who leads it? [SEP] How many troops?", ["Haftar"]).tolist() == [0.0]
