"""The /ask endpoint through gradio_client, against the real app (real model, real FAISS)."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

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
    with pytest.raises(AppError, match=expected):
        client.predict(question, api_name="/ask")


def test_only_ask_is_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/ask"}
    assert not api["unnamed_endpoints"]


def call_over_http(app_url: str, data: list) -> tuple[str, str]:
    """POST /gradio_api/call/ask as curl would, then read the event stream; (event name, data)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{app_url}/gradio_api/call/ask", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{app_url}/gradio_api/call/ask/{event_id}", timeout=120) as response:
        stream = response.read().decode()
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


@pytest.mark.parametrize(("data", "expected"), [
    ([TROOPS, [["only one element"]]], "history must be a list of \\[question, answer\\] pairs"),
    ([TROOPS, "not a list"], "history must be a list"),
    ([TROOPS, [["q", 5]]], "history must be a list"),
    ([], "question must be text"),
    ([None], "question must be text"),
    ([42], "the question must be text"),
    ([[TROOPS]], "the question must be text"),
    ([TROOPS, None, "extra"], "takes the question and, optionally, the history"),
    ([TROOPS, [["q", "a"]] * 51], "the limit is 50"),
])
def test_plain_http_call_with_bad_input_gets_a_clear_message(app_url, capfd, data, expected):
    import re

    event, message = call_over_http(app_url, data)
    assert event == "error"
    assert re.search(expected, message), message
    assert "Traceback" not in capfd.readouterr().err
