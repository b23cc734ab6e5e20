"""The chat's handlers (qa/web/handlers.py) without a browser: questions queued and answered in order."""

from __future__ import annotations

import threading
import time
import warnings
from types import SimpleNamespace

import gradio as gr
import pytest

from qa.web.handlers import DOUBLE_SEND, Handlers
from qa.web.render import WAITING, WORKING

TROOPS = "How many troops would the new US policy send to Libya?"
EMBASSY = "Where would it reopen the US embassy?"


def test_questions_are_answered_one_at_a_time_in_the_order_sent(retriever):
    handlers = Handlers(retriever)
    session = handlers.take(TROOPS, None)
    first = handlers.respond(session)
    chat, _ = next(first)  # the question is shown at once, before its answer is ready
    assert chat[-2]["content"] == TROOPS and chat[-1]["content"] == WORKING
    assert handlers.take(EMBASSY, session) is session  # sent while the first is being answered
    second = list(handlers.respond(session))  # its own call only shows it waiting: the first call answers it
    assert len(second) == 1 and second[0][0][-1]["content"] == WAITING
    *_, (chat, sources) = list(first)
    assert [t.question for t in session.turns] == [TROOPS, EMBASSY]
    assert "fifty" in session.turns[0].answer.text and "Tripoli" in session.turns[1].answer.text  # a follow-up
    assert len(chat) == 4 and "Sources for: " + EMBASSY in sources
    assert not session.questions.busy and not session.questions.waiting
    assert list(handlers.respond(session)) == [(gr.skip(), gr.skip())]  # nothing left to answer


def test_clearing_the_chat_drops_the_answer_on_its_way_and_the_waiting_questions(retriever):
    handlers = Handlers(retriever)
    session = handlers.take(TROOPS, None)
    answering = handlers.respond(session)
    next(answering)
    handlers.take(EMBASSY, session)
    handlers.clear(session)
    for _ in answering:
        pass
    assert session.turns == [] and not session.questions.waiting and not session.questions.busy


def test_an_empty_box_sent_right_after_a_question_is_a_double_click_and_shows_nothing(retriever):
    handlers = Handlers(retriever)
    session = handlers.take(TROOPS, None)  # the first click sends the question and empties the box
    with warnings.catch_warnings(record=True) as notices:
        warnings.simplefilter("always")
        assert handlers.take("", session) is session  # the second click sends the emptied box
    assert not notices  # no "the question is empty" notice
    assert list(session.questions.waiting) == [TROOPS]  # and nothing more to answer
    session.questions.taken_at -= DOUBLE_SEND  # a moment later: an empty box sent on purpose is told why
    with pytest.warns(UserWarning, match="the question is empty"):
        handlers.take(" ", session)
    with pytest.warns(UserWarning, match="the question is empty"):  # a new session has sent nothing yet
        handlers.take("", None)
    assert list(session.questions.waiting) == [TROOPS]


def test_an_empty_box_that_arrives_just_before_its_question_shows_nothing(retriever):
    """On a loaded machine the browser delivered a double-click's emptied box before the question itself."""
    handlers = Handlers(retriever)
    session = handlers.take(TROOPS, None)
    session.questions.taken_at -= 10 * DOUBLE_SEND  # that question was long ago
    with warnings.catch_warnings(record=True) as notices:
        warnings.simplefilter("always")
        empty = threading.Thread(target=handlers.take, args=("", session))
        empty.start()
        time.sleep(DOUBLE_SEND / 5)
        handlers.take(EMBASSY, session)
        empty.join()
    assert not notices  # no "the question is empty" notice
    assert list(session.questions.waiting) == [TROOPS, EMBASSY]


def test_a_new_pages_events_sent_before_its_state_is_set_share_one_session(retriever):
    """A double-click on Ask as a page's first question: both events arrive before either has returned the
    new session to the page, so each finds its state empty."""
    handlers = Handlers(retriever)
    page, other_page = SimpleNamespace(session_hash="page-1"), SimpleNamespace(session_hash="page-2")
    first = handlers.take(TROOPS, None, page)
    with warnings.catch_warnings(record=True) as notices:
        warnings.simplefilter("always")
        assert handlers.take("", None, page) is first
    assert not notices and list(first.questions.waiting) == [TROOPS]
    assert handlers.take(EMBASSY, None, other_page) is not first
