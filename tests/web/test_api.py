"""The /ask endpoint through gradio_client, against the real app (real model, real FAISS), and what it
checks of its input (qa/web/api.py)."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import ValidationError

from qa import QAError
from qa.web.api import history_pairs

# Gradio's queue analytics use pandas options and keywords that pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
TROOPS = "How many troops would the new US policy send to Libya?"


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
    assert first["page"] is None and first["section"] is None  # a text file: no pages, no headings
    assert {"phrase", "confidence", "answerable", "follow_up"} <= set(result)
    assert 0.0 <= result["confidence"] <= 1.0


def test_off_topic_question_is_not_found(client):
    result = client.predict("What is the speed of light?", api_name="/ask")
    assert result["found"] is False
    assert result["citations"] == []
    assert "does not say" in result["answer"]


def test_follow_up_uses_history(client):
    asked = "What did CNN report about a new US policy for Libya?"
    first = client.predict(asked, api_name="/ask")
    result = client.predict("How many troops would it send?", [[asked, first["answer"]]], api_name="/ask")
    assert result["found"] is True
    assert asked in result["query"]
    assert "fifty" in flat(result["citations"][0]["text"])


@pytest.mark.parametrize(("question", "expected"), [
    ("", "question is empty"),
    ("   ", "question is empty"),
    ("why " * 400, "the limit is"),
])
def test_bad_question_gives_clear_error(client, question, expected):
    with pytest.raises(ValidationError, match=expected):  # refused with HTTP 422 before it is queued
        client.predict(question, api_name="/ask")


def test_only_ask_is_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/ask"}
    assert not api["unnamed_endpoints"]


def call_over_http(app_url: str, data: list) -> tuple[str, str]:
    """POST /gradio_api/call/ask as curl would, then read the event stream; (event name, data), or
    ("HTTP <status>", body) when the POST itself is refused."""
    import httpx

    posted = httpx.post(f"{app_url}/gradio_api/call/ask", json={"data": data}, timeout=60)
    if posted.status_code != 200:
        return f"HTTP {posted.status_code}", posted.text
    event_id = posted.json()["event_id"]
    stream = httpx.get(f"{app_url}/gradio_api/call/ask/{event_id}", timeout=120).text
    events = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], payloads[-1]


def test_plain_http_call_with_only_the_question(app_url, capfd):
    import json

    event, data = call_over_http(app_url, [TROOPS])
    assert event == "complete", data
    result = json.loads(data)[0]
    assert result["found"] is True and "fifty" in result["answer"]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(("data", "status", "expected"), [
    ([TROOPS, [["only one element"]]], 422, "history must be a list of \\[question, answer\\] pairs"),
    ([TROOPS, "not a list"], 422, "history must be a list"),
    ([TROOPS, [["q", 5]]], 422, "history must be a list"),
    ([], 422, "question must be text"),
    ([None], 422, "question must be text"),
    ([42], 422, "the question must be text, got 42"),
    ([[TROOPS]], 422, "the question must be text"),
    (["   "], 422, "the question is empty"),
    (["why " * 300], 422, "the question has 1,199 characters; the limit is 1,000"),
    ([TROOPS, None, "extra"], 400, "takes the question and, optionally, the history: 3 values"),
    ([TROOPS, [["q", "a"]] * 51], 422, "history has 51 turns; the limit is 50"),
    ([TROOPS, [["q" * 60_000, "a" * 60_000]]], 422, "history has 120,000 characters; the limit is 100,000"),
])
def test_plain_http_call_with_bad_input_gets_a_4xx_and_one_line_of_json(app_url, capfd, data, status, expected):
    import json
    import re

    event, body = call_over_http(app_url, data)
    assert event == f"HTTP {status}", body
    assert "\n" not in body.strip()
    detail = json.loads(body)["detail"]
    messages = [d["message"] for d in detail if not d["is_valid"]] if isinstance(detail, list) else [detail]
    assert any(re.search(expected, m) for m in messages), messages
    assert "Traceback" not in capfd.readouterr().err


def test_a_huge_body_is_refused_before_it_is_read(app_url):
    import httpx

    posted = httpx.post(f"{app_url}/gradio_api/call/ask", json={"data": [TROOPS, [["q" * 2_000_000, "a"]]]})
    assert posted.status_code == 413
    assert "the request is over" in posted.json()["detail"]


@pytest.mark.parametrize("history", [None, [], [["Who?", "Haftar."]], (("Who?", "Haftar."),)])
def test_history_pairs_accepts_pairs_of_text(history):
    assert history_pairs(history) == [tuple(turn) for turn in history or []]


@pytest.mark.parametrize("history", [[["only one element"]], "text", [["q", 1]], [["q", "a", "extra"]], {"q": "a"},
                                     [None]])
def test_history_pairs_explains_what_it_expects(history):
    with pytest.raises(QAError, match=r"history must be a list of \[question, answer\] pairs of text"):
        history_pairs(history)
