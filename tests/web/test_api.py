"""The /ask endpoint through gradio_client, against the real app (real model, real FAISS)."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

# Gradio's queue analytics use pandas options and keywords that pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
TROOPS = "What did CNN report about troop numbers?"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_troop_question_is_answered_with_citation(client, retriever):
    result = client.predict(TROOPS, api_name="/ask")
    assert result["question"] == TROOPS
    assert result["found"] is True
    assert "fifty" in result["answer"]
    assert "[1]" in result["answer"]
    first = result["citations"][0]
    assert first["n"] == 1
    assert "up to fifty US special operations" in flat(first["text"])
    assert first["text"] == retriever.document(first["doc_id"]).text[first["start"]:first["end"]]
    assert set(first) >= {"n", "doc_id", "title", "start", "end", "text", "score"}


def test_off_topic_question_is_not_found(client):
    result = client.predict("What is the speed of light?", api_name="/ask")
    assert result["found"] is False
    assert result["citations"] == []
    assert "does not say" in result["answer"]


def test_follow_up_uses_history(client):
    asked = "What did the CNN report say about Haftar?"
    first = client.predict(asked, api_name="/ask")
    result = client.predict("Why should that be viewed warily?", [[asked, first["answer"]]], api_name="/ask")
    assert result["found"] is True
    assert asked in result["query"]
    assert "would damage the credibility of the PC/GNA" in flat(result["citations"][0]["text"])


@pytest.mark.parametrize(("question", "expected"), [
    ("", "question is empty"),
    ("   ", "question is empty"),
    ("why " * 400, "the limit is"),
])
def test_bad_question_gives_clear_error(client, question, expected):
    with pytest.raises(AppError, match=expected):
        client.predict(question, api_name="/ask")


def test_only_ask_is_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/ask"}
    assert not api["unnamed_endpoints"]
