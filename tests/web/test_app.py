"""The page (qa/web/app.py): its theme and example questions, and `python app.py` taking the flags of `qa serve`."""

from __future__ import annotations

import pytest

from qa.web import app
from qa.web.handlers import Handlers


def test_the_theme_uses_system_fonts_only():
    theme = app.theme()
    assert theme._font_css == [] and theme._stylesheets == []  # no @font-face, nothing fetched
    assert theme.font.startswith("ui-sans-serif") and "Source Sans" not in theme.font


def test_python_app_py_takes_the_written_answer_flags_of_qa_serve(retriever, monkeypatch):
    import app as entry  # the file README's first command runs

    launched = {}
    monkeypatch.setattr(app, "launch", lambda **kwargs: launched.update(kwargs))  # no server: only what it gets
    for name in ("QA_LLM_URL", "QA_LLM_MODEL", "QA_LLM_KEY"):
        monkeypatch.setenv(name, "")  # whatever `qa serve` sets is undone after the test
    with pytest.raises(SystemExit) as done:
        entry.main(["--port", "7999", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "tiny", "--llm-key", "k"])
    assert done.value.code == 0 and launched["port"] == 7999
    llm = Handlers(retriever).llm  # what the chat's handlers write with
    assert (llm["llm_url"], llm["llm_model"], llm["llm_key"]) == ("http://127.0.0.1:9/v1", "tiny", "k")


def test_example_questions_about_the_article_are_offered_only_when_it_is_served(retriever):
    """The example buttons ask about the bundled article; over someone's own collection they would be
    questions the documents cannot answer."""
    from qa import Document, Retriever

    assert app.examples_for(retriever) == app.EXAMPLES
    notes = Retriever.build([Document("notes.md", "The gate code is 4512. The shed key is under the mat.")])
    assert app.examples_for(notes) == []
    page = app.build_app(notes)
    labels = [getattr(block, "value", None) for block in page.blocks.values()]
    assert not [label for label in labels if label in app.EXAMPLES]
    chat = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "qa-chat")
    assert "the documents" in str(chat.placeholder)
