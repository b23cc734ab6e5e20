"""What each user action does: one method per event of the page, and /ask for API callers.

`Handlers` works over the shared served `Retriever` and the visitor's `Session`; the shared retriever is
never changed (uploads make a new one for the session). Every `QAError` becomes what the user sees: a
notice (toast) in the chat, an error for an API caller.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from qa import Answer, Assistant, QAError, Retriever, Settings
from qa.retrieval import check_question
from qa.web.api import as_dict, history_pairs, json_preview
from qa.web.render import NO_SOURCES, draft_html, esc, served_name, sources_html
from qa.web.sessions import Session, Turn
from qa.web.uploads import discard, in_background, read_upload

DOUBLE_SEND = 1.0  # seconds: an empty box sent this soon after a question is a double-click's second click


def message(exc: Exception) -> str:
    """An error's text for a toast (Gradio renders toasts as HTML)."""
    return html.escape(str(exc), quote=False)


def near_a_question(session: Session, sent: float) -> bool:
    """Whether the session takes a question within `DOUBLE_SEND` seconds of `sent`, before or after it
    (waiting for the rest of the window after it)."""
    while True:
        if abs(session.questions.taken_at - sent) < DOUBLE_SEND:
            return True
        if time.monotonic() - sent >= DOUBLE_SEND:
            return False
        time.sleep(0.05)


class Handlers:
    """What each user action does, over the shared `base` retriever and the visitor's `Session`."""

    def __init__(self, base: Retriever, settings: Settings | None = None) -> None:
        self.base = base
        self.settings = settings or base.settings  # the base's query settings with the serving limits
        # Written answers when a model is named ($QA_LLM_URL and $QA_LLM_MODEL, or $QA_LLM_GGUF; `qa serve` flags).
        from qa.generation import with_llm

        llm = with_llm(Settings())
        self.llm = {name: getattr(llm, name) for name in ("llm_url", "llm_model", "llm_key", "llm_gguf", "llm_timeout",
                                                          "llm_total_timeout")} if llm.llm_url or llm.llm_gguf else None
        # A new page's session, by its Gradio session hash, while the page's state may not hold it yet.
        self._new: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._new_lock = threading.Lock()

    def writer(self, corpus: Retriever) -> Any:
        """A `qa.generation.Writer` over `corpus` with the configured model, or None when none is set."""
        if self.llm is None:
            return None
        from dataclasses import replace

        from qa.generation import Writer

        return Writer(corpus, settings=replace(self.settings, **self.llm))

    def session(self, session: Session | None, request: gr.Request | None = None) -> Session:
        """The page's session. A new page's first events share one: a second event sent before the first
        has returned it to the page (a double-click on Ask, a question during the first upload) still
        finds the page's state empty, and would otherwise start a second session and lose one of them."""
        if session is not None:
            return self.fresh(session)
        key = getattr(request, "session_hash", None)
        if not key:
            return Session.start(self.base)
        with self._new_lock:
            found = self._new.get(key)
            if found is None:
                found = self._new[key] = Session.start(self.base)
            return self.fresh(found)

    def fresh(self, session: Session) -> Session:
        """The session moved onto the served version, if a new one was taken up (`qa.web.live`), uploads on top."""
        base = self.base
        if session.base is None or session.base is base:
            return session
        from qa.web.live import relayer

        with session.questions.lock:
            corpus, selected = relayer(session.corpus, session.uploads, session.selected, base)
            session.uploads = [i for i in session.uploads if i in corpus.corpus.positions]
            session.use(corpus, selected)
            session.base = base
        return session

    def ask_api(self, question: str, history: list[list[str]] | None = None) -> dict:
        """Answer a question about the served documents; returns question, answer, found and citations."""
        base = self.base  # one version for the whole answer, though a new one may be taken up meanwhile
        try:
            writer = self.writer(base)
            ask = writer.ask if writer is not None else Assistant(base, settings=self.settings).ask
            answer = ask(self.api_question(question), history=history_pairs(history, self.settings))
        except QAError as exc:
            raise gr.Error(message(exc), print_exception=False) from exc
        return as_dict(answer)

    def api_question(self, question: Any) -> str:
        if not isinstance(question, str):
            raise QAError(f"the question must be text, got {json_preview(question)}")
        return check_question(question, self.settings)

    def check_ask(self, question: Any, history: Any = None) -> tuple:
        """/ask's inputs checked before the call is queued: Gradio answers a bad one with HTTP 422."""
        checks = []
        for check, value in ((self.api_question, question), (lambda h: history_pairs(h, self.settings), history)):
            try:
                check(value)
                checks.append(gr.validate(True, ""))
            except QAError as exc:
                checks.append(gr.validate(False, str(exc)))
        return tuple(checks)

    def take(self, question: str, session: Session | None, request: gr.Request | None = None) -> Session:
        """Queue a question sent from the box, the Ask button or an example; a rejected one is a notice.

        An empty box sent within `DOUBLE_SEND` seconds of one of the session's questions, before or after it,
        is the other click of a double-click (or a second Enter): one click sent the question and emptied the
        box, so nothing is shown. On a loaded machine the browser can deliver the two in either order, so an
        empty box waits up to `DOUBLE_SEND` for a question before it is told why it was not asked (the
        taking group runs two at a time, so the question is not queued behind it). An empty box sent at any
        other time is a notice, like any other rejected question.
        """
        session = self.session(session, request)
        if isinstance(question, str) and not question.strip() and near_a_question(session, time.monotonic()):
            return session
        try:
            question = check_question(question, self.settings)
        except QAError as exc:
            gr.Warning(message(exc), title="Not asked")
            return session
        with session.questions.lock:
            session.questions.waiting.append(question)
            session.questions.taken_at = time.monotonic()
        return session

    def respond(self, session: Session | None) -> Iterator[tuple]:
        """Answer the session's waiting questions in order, streaming each reply; the sources come with its end.

        Runs after every `take`; when another call is already answering this session, it only shows the
        question as waiting, and that call answers it next.
        """
        if session is None:
            yield gr.skip(), gr.skip()
            return
        queue = session.questions
        with queue.lock:
            elsewhere, queue.busy = queue.busy, True
        if elsewhere:
            yield session.shown(), gr.skip()
            return
        done = answered = False
        try:
            while not done:
                with queue.lock:
                    if not queue.waiting:  # checked and given up under one lock: a question taken now gets its own call
                        queue.busy, done = False, True
                        break
                    question = queue.current = queue.waiting.popleft()
                    cleared = queue.cleared
                answered = True
                yield session.shown(), gr.skip()
                yield from self.answer(session, question, cleared)
        finally:
            if not done:  # the visitor left, or answering failed: the next question starts afresh
                with queue.lock:
                    queue.busy, queue.current = False, None
        if not answered:  # the question was refused (a notice says why)
            yield gr.skip(), gr.skip()

    def answer(self, session: Session, question: str, cleared: int) -> Iterator[tuple]:
        """Answer one question of the session; its turn is kept unless the chat was cleared meanwhile."""
        queue = session.questions
        history = [(t.question, t.answer.text) for t in session.turns]
        active = self.fresh(session).active  # the version this answer is given and its sources shown from
        try:
            if self.llm is not None:  # the model's words stream as they come
                answer = yield from self.write(session, question, history)
            else:
                answer = Assistant(active, settings=self.settings).ask(question, history=history)
        except QAError as exc:
            gr.Warning(message(exc), title="Not asked")
            queue.current = None
            yield session.shown(), gr.skip()
            return
        words = esc(answer.text).split(" ") if self.llm is None else []
        step = max(1, len(words) // 8)
        for end in range(step, len(words), step):  # stream the reply; the sources come with its end
            yield session.shown(" ".join(words[:end]) + " …"), gr.skip()
            time.sleep(0.03)
        with queue.lock:
            queue.current = None
            if queue.cleared != cleared:  # "Clear chat" was pressed meanwhile
                return
            turn = Turn(answer.question, answer, sources_html(len(session.turns), answer, active))
            session.turns.append(turn)
        yield session.shown(), turn.sources

    def write(self, session: Session, question: str, history: list[tuple[str, str]]
              ) -> Generator[tuple, None, Answer]:
        """Stream the model's words under a label; return the checked answer (or the quoted one, with a notice),
        which then takes their place."""
        writer = self.writer(session.active)
        draft = ""
        for item in writer.stream(question, history):
            if isinstance(item, Answer):
                return item
            draft += item
            yield session.shown(draft_html(writer.model.label, draft)), gr.skip()
        raise AssertionError("the writer ended without an answer")  # pragma: no cover

    def show_turn(self, session: Session | None, event: gr.SelectData) -> Any:
        index = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if not session or not isinstance(index, int) or not 0 <= index // 2 < len(session.turns):
            return gr.skip()
        return session.turns[index // 2].sources

    def clear(self, session: Session | None, request: gr.Request | None = None) -> tuple:
        session = self.session(session, request)
        with session.questions.lock:
            session.turns = []
            session.questions.waiting.clear()
            session.questions.current = None  # an answer on its way is dropped
            session.questions.cleared += 1
        return session.shown(), NO_SOURCES, session

    def controls(self, session: Session, *notes: str) -> tuple:
        """The document checkboxes, the remove list and a status line for this session."""
        titles = [d.title for d in session.corpus.documents]
        label = {d.doc_id: d.title if titles.count(d.title) == 1 else f"{d.title} ({d.doc_id})"
                 for d in session.corpus.documents}
        status = (f"Searching {len(session.selected)} of {len(session.corpus.documents)} documents. "
                  f"Uploads: {len(session.uploads)} of {self.settings.max_session_documents} files, "
                  f"{session.upload_chars():,} of {self.settings.max_session_chars:,} characters.")
        return (session,
                gr.update(choices=[(label[i], i) for i in label], value=session.selected),
                gr.update(choices=[(label[i], i) for i in session.uploads], value=None),
                "<br>".join(esc(line) for line in [*notes, status]))

    def upload(self, paths: list[str] | None, session: Session | None, request: gr.Request | None = None,
               progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
        """Read each file (then delete it), index the readable ones, and report one progress bar."""
        session = self.session(session, request)
        problems, documents = [], []
        taken = {d.doc_id for d in session.corpus.documents}
        try:
            for path in paths or []:
                progress(0, desc=f"Reading {Path(path).name}")
                held = session.upload_chars() + sum(len(d.text) for d in documents)
                try:
                    document = read_upload(path, taken=taken, chars=held, count=len(session.uploads) + len(documents),
                                           settings=self.settings)
                except QAError as exc:
                    problems.append(str(exc))
                    continue
                taken.add(document.doc_id)
                documents.append(document)
        finally:  # Gradio stores equal files at one path, so delete only once all are read
            for path in paths or []:
                discard(path)
        if documents:
            names = documents[0].title if len(documents) == 1 else f"{len(documents)} documents"
            progress(0, desc=f"{names}: splitting into sentences")

            def embedded(done: int, total: int) -> None:
                progress(done / total, desc=f"{names}: embedding {done:,} of {total:,} sentences")

            try:
                corpus = in_background(session.corpus.extend, documents, progress=embedded,
                                       workers=self.settings.upload_workers)
                session.use(corpus, session.selected + [d.doc_id for d in documents])
                session.uploads += [d.doc_id for d in documents]
            except QAError as exc:
                problems.append(str(exc))
        for problem in problems:
            gr.Warning(message(problem), title="Upload problem")
        added = [f"Added {d.title} ({len(d.text):,} characters)." for d in documents if d.doc_id in session.uploads]
        return *self.controls(session, *added, *problems), None

    def choose(self, selected: list[str], session: Session | None, request: gr.Request | None = None) -> tuple:
        session = self.session(session, request)
        try:
            session.use(session.corpus, selected)
        except QAError as exc:
            gr.Warning(message(exc))
        return self.controls(session)

    def remove(self, doc_id: str | None, session: Session | None, request: gr.Request | None = None) -> tuple:
        session = self.session(session, request)
        if doc_id not in session.uploads:
            gr.Warning("Choose an uploaded document to remove.")
            return self.controls(session)
        title = session.corpus.document(doc_id).title
        session.uploads.remove(doc_id)
        keep = [d.doc_id for d in session.corpus.documents if d.doc_id != doc_id]
        selected = [i for i in session.selected if i != doc_id] or keep[:1]
        session.use(session.corpus.subset(keep), selected)
        return self.controls(session, f"Removed {title}.")

    def reset(self, session: Session | None) -> tuple:
        fresh = Session.start(self.base)
        if session:
            fresh.turns, fresh.questions = session.turns, session.questions
        return self.controls(fresh, f"Back to {served_name(self.base)} only.")
