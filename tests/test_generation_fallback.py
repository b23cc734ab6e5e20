"""A written-answer model that cannot be used at all still gives an answer: the quoted one, with one line saying why.

No language model runs here (these tests need neither SmolLM2 nor, except where marked, the `[llm]` extra): the
optional part is missing, broken or unreachable, and the CLI, the Python API and the chat must each answer with the
real bundled model, ranker and index, never with a traceback. Failures of a running model (timeouts, HTTP errors,
malformed or cut streams) are in tests/test_generation.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qa import Answer, Assistant, Retriever
from qa.answer import answer_dict

ANSWERED = "How many troops would the new US policy send to Libya?"
OFF_TOPIC = "What is the boiling point of mercury?"
REPO = Path(__file__).resolve().parents[1]
HAS_OPENAI = importlib.util.find_spec("openai") is not None
needs_openai = pytest.mark.skipif(not HAS_OPENAI, reason="the [llm] extra is not installed: pip install -e '.[llm]'")


def refused_url() -> str:
    with socket.socket() as s:  # a free loopback port: nothing listens there, so the connection is refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def writer_for(retriever: Retriever, assistant: Assistant, model=None, **llm):
    from qa.generation import Writer

    settings = dataclasses.replace(retriever.settings, **llm)
    return Writer(retriever, settings=settings, model=model,
                  assistant=Assistant(retriever, settings=settings, ranker=assistant.ranker))


def assert_quoted(answer: Answer, assistant: Assistant, why: str) -> None:
    """The extractive answer exactly, with one line that says why and that the document is quoted."""
    assert answer.mode == "extractive" and not answer.written
    assert why in answer.notice, answer.notice
    assert "\n" not in answer.notice and "Showing the document's own sentences." in answer.notice
    assert answer == dataclasses.replace(assistant.ask(ANSWERED), notice=answer.notice)


def test_python_api_without_the_openai_package(retriever: Retriever, assistant: Assistant,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` fails as when it is not installed
    writer = writer_for(retriever, assistant, llm_url=refused_url(), llm_model="m")
    assert writer.model is None and "openai package is not installed" in writer.unavailable
    assert_quoted(writer.ask(ANSWERED), assistant, "The language model is not available: the openai package is not "
                                                   "installed (pip install -e '.[llm]')")
    refused = writer.ask(OFF_TOPIC)  # the ranker refuses: no model would have been asked, nothing to say about it
    assert not refused.found and refused.notice == "" and refused == assistant.ask(OFF_TOPIC)


def test_python_api_with_a_missing_or_damaged_gguf_file(retriever: Retriever, assistant: Assistant,
                                                        tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    assert_quoted(writer_for(retriever, assistant, llm_gguf=str(missing)).ask(ANSWERED), assistant,
                  f"no GGUF file at {missing}")
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + bytes(range(256)) * 8)  # the magic number, then nothing a reader can use
    answer = writer_for(retriever, assistant, llm_gguf=str(damaged)).ask(ANSWERED)
    # transformers' reader fails on it (or, without the [llm] extra, the libraries to read it are missing)
    why = "could not load the GGUF file" if importlib.util.find_spec("gguf") else "running a GGUF file needs"
    assert_quoted(answer, assistant, why)


class Crashing:
    """A `ChatModel` of the caller's that breaks in a way qa does not foresee, after its first words."""

    label = "crashing"

    def stream(self, messages, *, max_tokens):
        yield "Up to fifty"
        raise KeyError("choices")


def test_python_api_with_a_model_that_raises_anything(retriever: Retriever, assistant: Assistant) -> None:
    tokens: list[str] = []
    answer = writer_for(retriever, assistant, model=Crashing()).ask(ANSWERED, on_token=tokens.append)
    assert tokens == ["Up to fifty"]
    assert_quoted(answer, assistant, "The language model failed (KeyError: 'choices')")


@needs_openai
def test_python_api_with_an_endpoint_that_refuses(retriever: Retriever, assistant: Assistant) -> None:
    from qa.generation import chat_model

    url = refused_url()
    writer = writer_for(retriever, assistant, model=chat_model(dataclasses.replace(
        retriever.settings, llm_url=url, llm_model="m")))
    assert_quoted(writer.ask(ANSWERED), assistant, f"could not reach the model at {url}")


def run_cli(args: list[str], env: dict[str, str], pythonpath: str | None = None) -> subprocess.CompletedProcess:
    """`qa …` in a fresh interpreter, as a user runs it (stdin closed, no terminal)."""
    env = {**os.environ, **env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", "import sys; from qa.cli import main; sys.exit(main())", *args],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def assert_cli_quotes(done: subprocess.CompletedProcess, why: str, assistant: Assistant) -> None:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("Note: ")]
    assert len(notes) == 1 and why in notes[0], done.stderr
    assert done.stdout.startswith("Short answer: fifty\n")  # the quoted answer, as without a model
    assert assistant.ask(ANSWERED).text in done.stdout


#: Stand-ins for an installed `openai` that qa cannot use, put first on the path of a fresh `qa ask`: one whose
#: client no longer takes what qa passes (as openai 1.40 with httpx 0.28, or any future major), one that fails on
#: import (a dependency of its own missing).
INCOMPATIBLE = {
    "construct": ('__version__ = "9.0.0"\nclass Timeout:\n    def __init__(self, *args, **kwargs):\n        pass\n'
                  'class OpenAI:\n    def __init__(self, **kwargs):\n'
                  '        raise TypeError("Invalid timeout: expected a number, `None`, a tuple or "\n'
                  '                        "`httpx9.Timeout`")\n',
                  "the installed openai 9.0.0 does not work with qa (Invalid timeout"),
    "import": ("import qa_no_such_dependency_of_openai\n",
               "the openai package failed to load (No module named 'qa_no_such_dependency_of_openai')"),
}


@pytest.mark.parametrize("case", sorted(INCOMPATIBLE))
def test_cli_with_an_openai_package_it_cannot_use(case: str, article_index_dir: Path, assistant: Assistant,
                                                  tmp_path: Path) -> None:
    source, why = INCOMPATIBLE[case]
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / "__init__.py").write_text(source, encoding="utf-8")
    done = run_cli(["ask", ANSWERED, "--index", str(article_index_dir)],
                   {"QA_LLM_URL": refused_url(), "QA_LLM_MODEL": "m"}, pythonpath=str(tmp_path))
    assert_cli_quotes(done, why, assistant)


def test_cli_with_a_missing_gguf_file(article_index_dir: Path, assistant: Assistant, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    missing = tmp_path / "SmolLM2.gguf"
    assert main(["ask", ANSWERED, "--index", str(article_index_dir), "--json", "--llm-gguf", str(missing)]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = answer_dict(assistant.ask(ANSWERED))
    assert data["mode"] == "extractive" and f"no GGUF file at {missing}" in data["notice"]
    assert data["citations"] == expected["citations"] and data["answer"] == expected["answer"]


@needs_openai
def test_cli_with_an_endpoint_that_refuses(article_index_dir: Path, assistant: Assistant) -> None:
    url = refused_url()
    done = run_cli(["ask", ANSWERED, "--index", str(article_index_dir), "--llm-url", url, "--llm-model", "m"], {})
    assert_cli_quotes(done, f"could not reach the model at {url}", assistant)


@pytest.mark.parametrize("case", ["missing gguf", "refused endpoint"])
def test_chat_and_http_api_quote_the_document(case: str, retriever: Retriever, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`qa serve`'s handlers: the chat shows the quoted answer under its label with the notice; /ask returns it."""
    from qa.web.handlers import Handlers
    from qa.web.render import QUOTED_LABEL, esc

    for name in ("QA_LLM_URL", "QA_LLM_MODEL", "QA_LLM_GGUF"):
        monkeypatch.delenv(name, raising=False)
    if case == "missing gguf":
        monkeypatch.setenv("QA_LLM_GGUF", str(tmp_path / "nowhere.gguf"))
        why = "no GGUF file at"
    else:
        if not HAS_OPENAI:
            pytest.skip("the [llm] extra is not installed: pip install -e '.[llm]'")
        monkeypatch.setenv("QA_LLM_URL", refused_url())
        monkeypatch.setenv("QA_LLM_MODEL", "m")
        why = "could not reach the model"
    handlers = Handlers(retriever)
    session = handlers.take(ANSWERED, None)
    chat, sources = list(handlers.respond(session))[-1]
    answer = session.turns[-1].answer
    assert answer.mode == "extractive" and why in answer.notice and "\n" not in answer.notice
    final = chat[-1]["content"]
    assert QUOTED_LABEL in final and esc(answer.notice) in final and "qa-source" in sources
    api = handlers.ask_api(ANSWERED)
    assert api["mode"] == "extractive" and why in api["notice"] and api["citations"]
