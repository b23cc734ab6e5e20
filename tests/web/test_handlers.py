"""app.py's helpers without a browser: API history, reading and deleting uploads, a quiet log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import app
from qa import QAError


@pytest.mark.parametrize("history", [None, [], [["Who?", "Haftar."]], (("Who?", "Haftar."),)])
def test_history_pairs_accepts_pairs_of_text(history):
    assert app.history_pairs(history) == [tuple(turn) for turn in history or []]


@pytest.mark.parametrize("history", [[["only one element"]], "text", [["q", 1]], [["q", "a", "extra"]], {"q": "a"},
                                     [None]])
def test_history_pairs_explains_what_it_expects(history):
    with pytest.raises(QAError, match=r"history must be a list of \[question, answer\] pairs of text"):
        app.history_pairs(history)


def test_broken_pdf_upload_is_named_without_library_warnings(retriever, tmp_path, caplog):
    app.build_app(retriever)  # what the server does before its first request
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with caplog.at_level(logging.WARNING), pytest.raises(QAError, match="broken.pdf: not a readable PDF"):
        app.read_upload(str(broken), taken=set(), chars=0, count=0)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")], caplog.text


def test_read_upload_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(QAError, match="gone.txt: the uploaded file is gone"):
        app.read_upload(str(tmp_path / "gone.txt"), taken=set(), chars=0, count=0)


def test_discard_removes_the_file_and_its_emptied_folder(tmp_path: Path):
    alone, shared, plain = tmp_path / ("a" * 64), tmp_path / ("b" * 64), tmp_path / "uploads"
    for folder in (alone, shared, plain):
        folder.mkdir()
    (plain / "three.txt").write_text("x")
    app.discard(str(plain / "three.txt"))
    assert plain.is_dir(), "only the hash-named folder Gradio made for the file is removed"
    (alone / "one.txt").write_text("x")
    (shared / "two.txt").write_text("x")
    (shared / "other.txt").write_text("x")
    app.discard(str(alone / "one.txt"))
    app.discard(str(shared / "two.txt"))
    app.discard(str(shared / "never-there.txt"))
    assert not alone.exists()
    assert [p.name for p in shared.iterdir()] == ["other.txt"]


def test_indexing_runs_on_a_lower_priority_thread_that_sees_the_event_context():
    import contextvars
    import os
    import threading

    marker = contextvars.ContextVar("marker")
    marker.set("the event")
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    niceness, seen, name = app.in_background(lambda: (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                                                      marker.get(), threading.current_thread().name))
    assert seen == "the event"  # Gradio's progress finds its event this way
    assert name.startswith("qa-indexing")
    assert niceness == min(19, here + app.INDEXING_NICE)


TROOPS = "How many troops would the new US policy send to Libya?"
EMBASSY = "Where would it reopen the US embassy?"


def test_questions_are_answered_one_at_a_time_in_the_order_sent(retriever):
    handlers = app.Handlers(retriever)
    session = handlers.take(TROOPS, None)
    first = handlers.respond(session)
    chat, _ = next(first)  # the question is shown at once, before its answer is ready
    assert chat[-2]["content"] == TROOPS and chat[-1]["content"] == app.WORKING
    assert handlers.take(EMBASSY, session) is session  # sent while the first is being answered
    second = list(handlers.respond(session))  # its own call only shows it waiting: the first call answers it
    assert len(second) == 1 and second[0][0][-1]["content"] == app.WAITING
    *_, (chat, sources) = list(first)
    assert [t.question for t in session.turns] == [TROOPS, EMBASSY]
    assert "fifty" in session.turns[0].answer.text and "Tripoli" in session.turns[1].answer.text  # a follow-up
    assert len(chat) == 4 and "Sources for: " + EMBASSY in sources
    assert not session.questions.busy and not session.questions.waiting
    assert list(handlers.respond(session)) == [(app.gr.skip(), app.gr.skip())]  # nothing left to answer


def test_clearing_the_chat_drops_the_answer_on_its_way_and_the_waiting_questions(retriever):
    handlers = app.Handlers(retriever)
    session = handlers.take(TROOPS, None)
    answering = handlers.respond(session)
    next(answering)
    handlers.take(EMBASSY, session)
    handlers.clear(session)
    for _ in answering:
        pass
    assert session.turns == [] and not session.questions.waiting and not session.questions.busy


def test_a_9_mb_upload_is_told_the_limit_it_hit(tmp_path):
    from qa import Settings

    big = tmp_path / "big.txt"
    big.write_text("The okapi eats leaves. " * (9 * 1024 * 1024 // 23))  # 9 MB: under the 10 MB file limit
    with pytest.raises(QAError, match=r"big.txt: 9,437,\d{3} characters of text, over the 500,000 characters a "
                                      r"session's uploads may hold together$"):
        app.read_upload(str(big), taken=set(), chars=0, count=0, settings=Settings())
    with pytest.raises(QAError, match=r"big.txt: 9.0 MB is over the 8 MB limit for one file"):
        app.read_upload(str(big), taken=set(), chars=0, count=0, settings=Settings(max_upload_mb=8))


def test_upload_limits_come_from_settings(tmp_path):
    from qa import Settings

    note = tmp_path / "note.txt"
    note.write_text("The okapi eats leaves.")
    limits = Settings(max_session_documents=3, max_session_chars=30)
    assert app.read_upload(str(note), taken={"note"}, chars=8, count=2, settings=limits).doc_id == "note-2"
    with pytest.raises(QAError, match="a session holds at most 3 uploaded documents"):
        app.read_upload(str(note), taken=set(), chars=0, count=3, settings=limits)
    with pytest.raises(QAError, match="over the 30 characters a session's uploads may hold together; 9 are taken"):
        app.read_upload(str(note), taken=set(), chars=9, count=0, settings=limits)
