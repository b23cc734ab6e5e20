"""Metric code on hand-made inputs, and one small end-to-end `qa eval` run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.cli import main
from qa.metrics import percentile, recall_at, reciprocal_rank, unique_in_order
from qa.training.squad import contains_any, load_squad

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
SQUAD_DEV = SHARED_EVAL / "squad-v2.0-dev-part-a.json"
ARTICLE_DEV = SHARED_EVAL / "article_dev.json"


def test_recall_at_k() -> None:
    ranked = ["a", "b", "c"]
    assert recall_at(ranked, "a", 1) == 1.0
    assert recall_at(ranked, "b", 1) == 0.0
    assert recall_at(ranked, "c", 3) == 1.0
    assert recall_at(ranked, "z", 20) == 0.0


def test_reciprocal_rank_is_cut_at_k() -> None:
    assert reciprocal_rank(["a", "b", "c"], "b") == 0.5
    assert reciprocal_rank(["a", "b", "c"], "c", k=2) == 0.0
    assert reciprocal_rank([], "a") == 0.0


def test_chunks_collapse_to_documents_in_order() -> None:
    assert unique_in_order(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]


@pytest.mark.parametrize(("text", "answers", "expected"), [
    ("Sent up to fifty   troops.", ["fifty troops"], True),
    ("Sent up to fifty troops.", ["FIFTY"], True),
    ("Sent up to fifty troops.", ["sixty", "seventy"], False),
    ("Anything", ["", "  "], False),
])
def test_contains_any_ignores_case_and_spacing(text: str, answers: list[str], expected: bool) -> None:
    assert contains_any(text, answers) is expected


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) == 0.0


def test_load_squad_makes_one_document_per_paragraph(tmp_path: Path) -> None:
    data = {"data": [{"title": "Some_Topic", "paragraphs": [
        {"context": "First paragraph.", "qas": [
            {"question": "Q1?", "answers": [{"text": "First", "answer_start": 0}], "is_impossible": False},
            {"question": "Q2?", "answers": [], "is_impossible": True}]},
        {"context": "Second paragraph.", "qas": []}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    documents, questions = load_squad(path)
    assert [d.doc_id for d in documents] == ["Some_Topic-0", "Some_Topic-1"]
    assert documents[0].title == "Some Topic"
    assert [(q.doc_id, q.impossible, q.answers) for q in questions] == [
        ("Some_Topic-0", False, ("First",)), ("Some_Topic-0", True, ())]


def test_missing_eval_file_gives_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "squad", str(tmp_path / "absent.json")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "../shared/eval" in err[0]


def test_eval_squad_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    if not SQUAD_DEV.is_file():
        pytest.skip(f"{SQUAD_DEV} not found")
    assert main(["eval", "squad", str(SQUAD_DEV), "--limit", "20", "--articles", "0:1"]) == 0
    out = capsys.readouterr().out
    for row in ("| BM25 only |", "| dense only |", "| hybrid (default) |", "citation [1] contains",
                "citation [1] length", "(the model's threshold)", "ask latency p50", "short answer F1 / EM",
                "given the gold paragraph", "confidence ECE", "unchanged after an unrelated turn"):
        assert row in out
    hybrid = next(line for line in out.splitlines() if line.startswith("| hybrid"))
    recall_at_20 = float(hybrid.split("|")[4])
    assert recall_at_20 >= 0.8  # 20 easy questions over one article's paragraphs
    cited = next(line for line in out.splitlines() if "citations per answer" in line)
    assert 1.0 <= float(cited.split("|")[2]) <= 3.0  # at most max_citations


def test_eval_article_reports_failures_with_what_was_cited(article_index_dir: Path, capsys) -> None:
    from qa import Assistant, Retriever
    from qa.evaluation import evaluate_article

    if not ARTICLE_DEV.is_file():
        pytest.skip(f"{ARTICLE_DEV} not found")
    result = evaluate_article(ARTICLE_DEV, assistant=Assistant(Retriever.load(article_index_dir)))
    out = capsys.readouterr().out
    assert "| evidence in [1] |" in out
    assert result["counts"]["off-topic refused"] == result["totals"]["off-topic refused"]
    for failure in result["failures"]:
        assert failure in out and "cited" in failure


def test_eval_article_asks_a_set_over_its_own_documents(tmp_path: Path, capsys) -> None:
    from qa.evaluation import evaluate_article

    garden = ("Our allotment committee met on Tuesday. The water trough by the gate will be replaced in May. "
              "Plot rents go up to 42 pounds a year from April.")
    bakery = "the oven runs hot lol\nbake the loaf at 230 degrees for 20 minutes then drop it to 210\nworks every time"
    data = {"documents": [{"id": "garden", "title": "allotment-news.txt", "text": garden},
                          {"id": "bakery", "title": "bread-thread.txt", "text": bakery}],
            "single": [{"doc": "garden", "q": "How much will a plot cost per year?", "evidence": "42 pounds",
                        "key": ["42"]},
                       {"doc": "garden", "q": "At what temperature should the loaf be baked first?",
                        "evidence": "230 degrees", "key": ["230"]}],
            "unanswerable": [{"doc": "garden", "q": "What is the capital of Mongolia?"}],
            "conversations": []}
    path = tmp_path / "set.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = evaluate_article(path)
    out = capsys.readouterr().out
    assert result["totals"] == {"evidence in [1]": 2, "key in answer": 2, "off-topic refused": 1,
                                "conversation turns": 0}
    # The second question's evidence is in "bakery", not the "garden" it names: citing it is not enough.
    assert result["counts"]["evidence in [1]"] <= 1
    assert any("230 degrees" in failure for failure in result["failures"])
    assert "| evidence in [1] |" in out


def test_eval_article_set_with_bad_documents_says_what_is_missing(tmp_path: Path) -> None:
    from qa.errors import QAError
    from qa.evaluation import evaluate_article

    path = tmp_path / "set.json"
    path.write_text(json.dumps({"documents": [{"title": "x"}], "single": [], "unanswerable": [],
                                "conversations": []}), encoding="utf-8")
    with pytest.raises(QAError, match="needs an `id` and a `text`"):
        evaluate_article(path)
