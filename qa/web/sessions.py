"""Per-visitor state and its lifetime: a session's documents and chat, its question queue, its freeing.

`Session` is what one browser page holds in its `gr.State`: the documents it searches (the served ones
and its own uploads) and its chat. Its `Questions` are answered one at a time, in the order sent.
`Sessions` watches which pages are open (by their heartbeat stream) and frees what a closed page
left behind after `Settings.session_linger` seconds; an /ask call's session at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import gradio as gr

from qa import Answer, Retriever
from qa.web.render import WAITING, WORKING, answer_html, esc

log = logging.getLogger(__name__)


@dataclass
class Turn:
    question: str
    answer: Answer
    sources: str  # rendered when answered, so it survives later changes to the documents


@dataclass
class Questions:
    """A session's questions not yet answered, in the order they were sent; one is answered at a time.

    The question box is cleared in the browser the moment a question is sent, so what is typed next is
    never erased. A question sent while another is answered waits here, shown in the chat as waiting.
    """

    waiting: deque[str] = field(default_factory=deque)
    current: str | None = None  # being answered now
    busy: bool = False  # one `Handlers.respond` answers this session's questions, in order
    cleared: int = 0  # counts "Clear chat": an answer begun before it is dropped, not shown
    taken_at: float = float("-inf")  # when the last question was taken (time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class Session:
    """One browser session: its corpus (article + uploads), the documents searched, the chat so far.

    Uploads are kept as extracted text inside `corpus`; the uploaded files themselves are gone.
    """

    corpus: Retriever
    selected: list[str]
    active: Retriever
    uploads: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    questions: Questions = field(default_factory=Questions)
    base: Retriever | None = field(default=None, repr=False)  # the served version `corpus` is built on

    @classmethod
    def start(cls, base: Retriever) -> Session:
        return cls(base, [d.doc_id for d in base.documents], base, base=base)

    def use(self, corpus: Retriever, selected: list[str]) -> None:
        """Search `selected` of `corpus` from now on (raises QAError for an empty or unknown choice)."""
        everything = len(selected) == len(corpus.documents) and set(selected) == {d.doc_id for d in corpus.documents}
        self.active = corpus if everything else corpus.subset(selected)
        self.corpus, self.selected = corpus, list(selected)

    def upload_chars(self) -> int:
        return sum(len(self.corpus.document(i).text) for i in self.uploads)

    def messages(self) -> list[dict]:
        chat = []
        for number, turn in enumerate(self.turns):
            chat += [{"role": "user", "content": esc(turn.question)},
                     {"role": "assistant", "content": answer_html(number, turn.answer)}]
        return chat

    def shown(self, partial: str | None = None) -> list[dict]:
        """The chat: the turns so far, the question being answered (with the start of its reply), the waiting ones."""
        with self.questions.lock:
            current, waiting = self.questions.current, list(self.questions.waiting)
        chat = self.messages()
        if current is not None:
            chat += [{"role": "user", "content": esc(current)},
                     {"role": "assistant", "content": partial if partial is not None else WORKING}]
        for question in waiting:
            chat += [{"role": "user", "content": esc(question)},
                     {"role": "assistant", "content": WAITING}]
        return chat


class Sessions:
    """Which browser pages are open, and freeing the sessions of closed ones.

    A page holds its session while its heartbeat stream (`/gradio_api/heartbeat/<session>`, which Gradio's
    page opens) is connected. Gradio itself keeps a closed page's state for an hour and every session's
    bookkeeping (about 68 KB) until 10,000 newer ones push it out; here a session without an open page is
    dropped `linger` seconds after its last use or its page's closing, and an /ask call's at once.
    """

    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.open: dict[str, int] = {}  # session -> open heartbeat streams (a reconnect may overlap)
        self.closed: dict[str, float] = {}  # session -> when its last stream ended
        self.lock = threading.Lock()
        self.blocks: gr.Blocks | None = None
        self.stop = threading.Event()

    def opened(self, session: str) -> None:
        with self.lock:
            self.open[session] = self.open.get(session, 0) + 1
            self.closed.pop(session, None)

    def ended(self, session: str) -> None:
        with self.lock:
            self.open[session] -= 1
            if not self.open[session]:
                del self.open[session]
                self.closed[session] = time.monotonic()

    def is_open(self, session: str | None) -> bool:
        return session in self.open

    async def wait_open(self, session: str | None, seconds: float = 3.0) -> bool:
        """Whether `session` is an open page; the page opens its heartbeat as it sends its first event, so
        the two requests may arrive in either order."""
        import asyncio

        for _ in range(int(seconds / 0.05)):
            if self.is_open(session):
                return True
            await asyncio.sleep(0.05)
        return self.is_open(session)

    def drop_unless_open(self, session: str | None) -> None:
        if session and self.blocks is not None and not self.is_open(session):
            self.drop(session)

    def drop(self, session: str) -> None:
        holder = self.blocks.state_holder
        holder.delete_state(session)  # each gr.State's delete_callback runs
        with holder.lock:
            holder.session_data.pop(session, None)
            holder.time_last_used.pop(session, None)
        with self.lock:
            self.closed.pop(session, None)

    def sweep(self) -> int:
        """Drop every session that no open page holds, unused for `linger` seconds; how many were dropped."""
        holder, queue = self.blocks.state_holder, self.blocks._queue
        now, wall = time.monotonic(), time.time()
        dropped = 0
        for session in list(holder.session_data):
            if self.is_open(session) or queue.pending_event_ids_session.get(session):
                continue
            used = holder.time_last_used.get(session)
            idle = wall - used.timestamp() if used else self.linger
            closed = now - self.closed.get(session, now - self.linger)
            if min(idle, closed) >= self.linger:
                self.drop(session)
                dropped += 1
        # Gradio's queue keeps an empty set and a message queue for every session that ever sent an event
        # (an /ask call over plain HTTP is a session of its own): dropped once nothing is pending.
        # A caller that posts and never reads its result leaves ids behind: dropped once Gradio has finished
        # the events and let their message queue go (it keeps the 2,000 latest).
        for session in list(queue.pending_event_ids_session):
            ids = queue.pending_event_ids_session.get(session, {""})
            if self.is_open(session) or any(i in queue.event_ids_to_events for i in ids):
                continue
            if not ids or session not in queue.pending_messages_per_session:
                queue.pending_event_ids_session.pop(session, None)
                queue.pending_messages_per_session.pop(session, None)
        with self.lock:  # pages that closed without ever holding state
            for session in [s for s, at in self.closed.items()
                            if now - at >= self.linger and s not in holder.session_data]:
                del self.closed[session]
        return dropped

    def start(self, blocks: gr.Blocks) -> None:
        self.blocks = blocks
        every = min(5.0, max(0.5, self.linger / 4))

        def run() -> None:
            while not self.stop.wait(every):
                try:
                    self.sweep()
                except Exception:  # a sweep racing Gradio's own bookkeeping: the next one finishes the job
                    log.debug("session sweep failed", exc_info=True)

        threading.Thread(target=run, name="qa-sessions", daemon=True).start()
