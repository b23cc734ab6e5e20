"""Web chat over the bundled article or a `qa index` collection, and the visitor's own uploads (Gradio).

    python app.py [--index DIR] [--host 127.0.0.1] [--port 7860] [--share] [--max-upload-mb N ...]  # = qa serve

This module only wires Gradio to `qa`: the retriever is loaded once, each user
action has one handler (`Handlers`), and every `QAError` becomes a message the
user sees: a notice for the chat, an error for API callers.
Uploads live in the browser session's `gr.State` (a new `Retriever` from
`extend`/`subset`), never in the shared retriever or the index on disk; the
uploaded file itself is deleted as soon as it is read or rejected.
Everything shown from a document or a question is HTML-escaped first.

Questions and indexing run in separate concurrency groups, each in Gradio's
worker threads with torch on one thread (`qa.threads`), so one visitor's
large upload does not hold up other visitors' questions.

Serving (`Gate`, `Sessions`): only /ask can be called by name; the page's own
events answer only an open page; a closed page's session is freed after
`Settings.session_linger` seconds and an /ask call's at once. Limits come
from `Settings` (flags of `qa serve`, or QA_MAX_UPLOAD_MB and the rest).
"""

from __future__ import annotations

import contextvars
import dataclasses
import html
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from qa import Answer, Assistant, Document, QAError, Retriever, Settings
from qa.answer import Citation, answer_dict
from qa.config import LIMIT_ENV
from qa.documents import read_text, slugify
from qa.retrieval import check_question

EXAMPLES = [
    "How many troops would the new US policy send to Libya?",
    "What security threats does Libya pose to southern Europe?",
    "Who is Khalifa Haftar?",
]
VIEW_CHARS = 4000  # document viewer: characters shown either side of a cited span
CACHE_CLEANUP = (900, 900)  # Gradio deletes its temporary files older than 15 minutes, every 15 minutes
QUESTIONS = {"concurrency_id": "questions", "concurrency_limit": 2}  # one torch thread each, two cores
TAKING = {"concurrency_id": "taking", "concurrency_limit": 1}  # queueing a question: instant, in the order sent
INDEXING = {"concurrency_id": "indexing"}  # uploads: CPU-heavy, `Settings.upload_workers` at a time
INDEXING_NICE = 10  # added to the indexing thread's nice value: it yields the CPU to questions
PRIVATE = {"api_visibility": "private"}  # UI events are not callable through the API

# A phone (narrow screen): the chat is shorter, so a question and the start of its answer fit on the screen
# with the question box under them, and the sources come right after the question box, before the examples
# (the two columns give up their boxes, so their parts can be ordered as one list).
PHONE = """
@media (max-width: 720px) {
  #qa-main { flex-direction: column; flex-wrap: nowrap; }
  #qa-left, #qa-right { display: contents; }
  #qa-chat { order: 1; height: min(460px, 50vh) !important; }
  #qa-ask-row { order: 2; }
  #qa-sources { order: 3; }
  #qa-examples { order: 4; }
}
"""

CSS = """
.qa-marker { color: var(--color-accent); font-weight: 600; cursor: pointer; white-space: nowrap; }
.qa-marker:hover { text-decoration: underline; }
.qa-for { font-weight: 600; margin-bottom: .5em; }
.qa-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6em .8em; margin: .5em 0;
  cursor: pointer; }
.qa-source.qa-active { border-color: var(--color-accent); box-shadow: 0 0 0 2px var(--color-accent-soft); }
.qa-num { font-weight: 700; color: var(--color-accent); }
.qa-title { font-weight: 600; }
.qa-group { margin: .6em 0 .9em; }
.qa-doc-head { margin-bottom: .2em; }
.qa-file { font-size: .85em; opacity: .75; margin-left: .5em; font-family: var(--font-mono); }
.qa-also { font-size: .85em; opacity: .75; margin-top: .3em; }
.qa-where { font-size: .85em; opacity: .75; margin: .2em 0 .4em; }
.qa-context { line-height: 1.5; }
.qa-source mark, .qa-doc mark { background: #fde68a; color: inherit; padding: 0 .1em; border-radius: 2px; }
.qa-source:has(details.qa-viewer[open]) .qa-context { display: none; }  /* one highlight per card */
.qa-doc { white-space: pre-wrap; max-height: 320px; overflow-y: auto; font-size: .9em; line-height: 1.5;
  border-top: 1px dashed var(--border-color-primary); margin-top: .4em; padding-top: .4em; }
.qa-none { font-weight: 600; }
.qa-closest { opacity: .8; margin-top: .5em; }
.qa-closest .qa-passage { border-left: 3px solid var(--border-color-primary); padding-left: .6em; margin: .5em 0; }
.qa-label { font-size: .8em; font-weight: 600; opacity: .75; margin-bottom: .3em; }
.qa-notice { font-size: .85em; opacity: .8; margin-top: .3em; }
.qa-copy { margin-top: .4em; font-size: .85em; padding: .2em .7em; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; background: var(--background-fill-secondary); }
.qa-working, .qa-waiting { opacity: .7; font-style: italic; }
#qa-status .html-container.pending { display: none; }  /* while indexing, the progress line stands alone, */
#qa-status:has(.html-container.pending) > .wrap { position: static !important; }  /* as tall as it needs */
#qa-status .progress-text { display: none; }  /* Gradio's seconds counter, drawn over the progress text on a phone */
#qa-question textarea::placeholder { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }  /* one line */
""" + PHONE

# Runs once when the sources panel loads. Clicking a marker [n] in the chat or a source card opens
# that source's place in the document and scrolls to it; a marker of an older answer first makes the
# server show that answer's sources (Chatbot.select), and `watch` finishes the job after re-rendering.
SOURCES_JS = """
const reveal = () => {
  const want = window.__qaWant;
  const card = want && element.querySelector(`.qa-source[data-cite="${want}"]`);
  if (!card) return;
  window.__qaWant = null;
  element.querySelectorAll('.qa-source.qa-active').forEach((c) => c.classList.remove('qa-active'));
  card.classList.add('qa-active');
  const viewer = card.querySelector('details.qa-viewer');
  if (viewer) viewer.open = true;
  const hit = card.querySelector('.qa-doc mark') || card;
  hit.scrollIntoView({block: 'center', behavior: 'instant'});
};
if (!window.__qaMarkers) {
  window.__qaMarkers = true;
  document.addEventListener('click', (event) => {
    const marker = event.target.closest && event.target.closest('.qa-marker');
    if (!marker) return;
    const t = marker.className.match(/qa-t(\\d+)/), n = marker.className.match(/qa-n(\\d+)/);
    if (t && n) { window.__qaWant = `${t[1]}-${n[1]}`; setTimeout(() => window.__qaReveal(), 0); }
  });
}
window.__qaReveal = reveal;
element.addEventListener('click', (event) => {
  const copy = event.target.closest('.qa-copy');
  if (copy) {
    navigator.clipboard.writeText(copy.dataset.text).then(() => { copy.textContent = 'Copied'; });
    return;
  }
  if (event.target.closest('summary')) return;
  const card = event.target.closest('.qa-source');
  if (card) { window.__qaWant = card.dataset.cite; reveal(); }
});
watch('value', reveal);
"""

# Also run once on load: when a question starts being answered, the chat scrolls so that the question is at
# its top and the answer grows below it (instead of the chat following the end of a long answer, which
# pushed the question out of view). It keeps the question there while the answer comes in, until it is at
# the top; the visitor's own scrolling is left alone until the next question.
CHAT_JS = """
if (!window.__qaFollow) {
  window.__qaFollow = true;
  let shown = -1, wanted = null;  // the question scrolled to (by its number in the chat), the scroll set for it
  const follow = () => {
    const wrap = document.querySelector('#qa-chat .bubble-wrap');
    if (!wrap) return;
    const users = [...wrap.querySelectorAll('.message-row.user-row')];
    const bots = [...wrap.querySelectorAll('.message-row.bot-row')];
    let latest = -1;  // the question answered now, or last: not one still waiting
    users.forEach((row, i) => { if (!bots[i] || !bots[i].querySelector('.qa-waiting')) latest = i; });
    const fresh = latest !== shown;
    if (fresh) { shown = latest; wanted = null; }
    else if (wanted === null || Math.abs(wrap.scrollTop - wanted) > 2) return;  // there, or the visitor scrolled
    if (latest < 0) return;
    const row = users[latest];
    const below = () => row.getBoundingClientRect().top - wrap.getBoundingClientRect().top - 32;  // clear of the icons
    wrap.scrollTop += below();
    wanted = Math.abs(below()) > 2 ? wrap.scrollTop : null;  // the answer is still too short to lift it to the top
    const top = row.getBoundingClientRect().top;
    if (fresh && (top < 0 || top > window.innerHeight - 80)) row.scrollIntoView({block: 'nearest'});
  };
  const start = () => {
    const chat = document.querySelector('#qa-chat');
    if (!chat) { setTimeout(start, 100); return; }
    new MutationObserver(follow).observe(chat, {childList: true, subtree: true, characterData: true});
  };
  start();
}
"""

log = logging.getLogger(__name__)
T = TypeVar("T")


def esc(text: str) -> str:
    """Text as inert HTML: tags, entities and template syntax all shown literally."""
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def message(exc: Exception) -> str:
    """An error's text for a toast (Gradio renders toasts as HTML)."""
    return html.escape(str(exc), quote=False)


def as_dict(answer: Answer) -> dict:
    """The JSON shape of `qa ask --json`."""
    return answer_dict(answer)


def confidence_words(confidence: float) -> str:
    """How likely citation [1] answers, in words a reader understands."""
    if confidence >= 0.85:
        return "very likely right"
    if confidence >= 0.6:
        return "likely right"
    if confidence >= 0.4:
        return "may be right: check the source"
    return "unsure: check the source"


# -- rendering ------------------------------------------------------------------------------------------


def answer_html(turn: int, answer: Answer) -> str:
    """The answer's text, escaped, with each marker [n] a clickable span."""
    numbers = {str(c.n) for c in answer.citations}

    def marker(match: re.Match[str]) -> str:
        n = match.group(1)
        if n not in numbers:
            return match.group(0)
        return f'<span class="qa-marker qa-t{turn} qa-n{n}" title="Show source {n}">[{n}]</span>'

    text = re.sub(r"\[(\d+)\]", marker, esc(answer.text))
    text = answer_label(answer) + text + (f'<div class="qa-notice">{esc(answer.notice)}</div>' if answer.notice else "")
    if not answer.found:
        return text
    lead = f"<strong>{esc(flat(answer.phrase.text))}</strong><br>" if answer.phrase is not None else ""
    note = (f'<div class="qa-confidence" title="calibrated probability that source [1] answers">'
            f'{confidence_words(answer.confidence)} ({answer.confidence:.0%})</div>')
    return lead + text + note


WRITTEN_LABEL = "Written by a language model; every sentence checked against the source it cites"
QUOTED_LABEL = "Quoted from the document"


def answer_label(answer: Answer) -> str:
    """Tells a written answer from a quoted one (a quoted answer is labelled when it stands in for a written one)."""
    if answer.mode == "generated":
        return f'<div class="qa-label qa-written">{WRITTEN_LABEL}</div>'
    return f'<div class="qa-label qa-quoted">{QUOTED_LABEL}</div>' if answer.notice and answer.found else ""


def draft_html(model: str, text: str) -> str:
    """The model's words as they stream in, before the check."""
    return (f'<div class="qa-label qa-writing">Writing with {esc(model)}; each sentence is checked against its '
            f'source when it is done</div>{esc(text)} …')


def flat(text: str) -> str:
    return " ".join(text.split())


def document_view(document: Document, start: int, end: int) -> str:
    """The document around [start, end) with that span highlighted; line breaks kept."""
    text = document.text
    left, right = max(0, start - VIEW_CHARS), min(len(text), end + VIEW_CHARS)

    def tidy(part: str) -> str:
        return esc(re.sub(r"[ \t]*\n\s*", "\n", re.sub(r"[ \t\f\v\r]+", " ", part)))

    return (("… " if left else "") + tidy(text[left:start]).lstrip() + f"<mark>{tidy(text[start:end])}</mark>"
            + tidy(text[end:right]).rstrip() + (" …" if right < len(text) else ""))


def marked(citation: Citation, answer: Answer) -> str:
    """The cited text, escaped, with the short answer in bold where it lies inside it."""
    phrase = answer.phrase
    if phrase is None or phrase.doc_id != citation.doc_id or not citation.start <= phrase.start < citation.end:
        return esc(flat(citation.text))
    at, to = phrase.start - citation.start, phrase.end - citation.start

    def spaced(part: str) -> str:
        return esc(re.sub(r"\s+", " ", part))

    text = citation.text
    return (f"{spaced(text[:at])}<strong class=\"qa-phrase\">{spaced(text[at:to])}</strong>"
            f"{spaced(text[to:])}").strip()


def by_document(items: Sequence[T]) -> list[tuple[str, list[T]]]:
    """Items that have a `doc_id` (citations, passages) grouped by document, in the order each document first comes."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(item.doc_id, []).append(item)  # type: ignore[attr-defined]
    return list(groups.items())


def document_label(corpus: Retriever, doc_id: str) -> tuple[str, str]:
    """A document's title and what tells it apart: the name of the file it came from (uploads), and its id when
    another document has the same title."""
    try:
        document = corpus.document(doc_id)
    except KeyError:  # not in this collection: its id is all there is
        return doc_id, ""
    details = [Path(document.path).name] if document.path else []
    if sum(d.title == document.title for d in corpus.documents) > 1:
        details.append(doc_id)
    return document.title, ", ".join(detail for detail in details if detail != document.title)


def document_name(corpus: Retriever, doc_id: str) -> str:
    title, detail = document_label(corpus, doc_id)
    return f"{title} ({detail})" if detail else title


def document_head(corpus: Retriever, doc_id: str) -> str:
    """The heading of one document's group of cards: the title once, the file name (uploads) beside it; for a
    document of a served collection (`qa serve --index`), its id and the path it was indexed from."""
    title, detail = document_label(corpus, doc_id)
    shown = f'<span class="qa-file">{esc(detail)}</span>' if detail else ""
    return (f'<div class="qa-doc-head"><span class="qa-title">{esc(title)}</span>{shown}'
            f'{source_line(corpus, doc_id)}</div>')


def source_line(corpus: Retriever, doc_id: str) -> str:
    """The id of a document indexed from a file and that file's path (absolute: uploads keep only their name)."""
    try:
        document = corpus.document(doc_id)
    except KeyError:
        return ""
    if not document.path or not Path(document.path).is_absolute():
        return ""
    return (f'<div class="qa-where qa-origin"><span class="qa-doc-id">{esc(doc_id)}</span> · '
            f'<span class="qa-path">{esc(document.path)}</span></div>')


def sources_html(turn: int, answer: Answer, corpus: Retriever) -> str:
    """The panel for one answer: its sources grouped by document (each title shown once), numbered, with the
    cited sentence highlighted in its passage."""
    parts = [f'<div class="qa-turn" data-turn="{turn}"><div class="qa-for">Sources for: {esc(answer.question)}</div>']
    if not answer.found:
        parts.append('<p class="qa-none">The documents do not answer this question; no source supports an answer.</p>')
        if answer.closest:
            parts.append('<details class="qa-closest"><summary>Closest passages (these do NOT answer the question)'
                         '</summary>')
            for doc_id, passages in by_document(answer.closest):
                parts.append(f'<div class="qa-group" data-doc="{esc(doc_id)}">{document_head(corpus, doc_id)}')
                for p in passages:
                    parts.append(f'<div class="qa-passage"><div class="qa-where">characters {p.start}–{p.end}</div>'
                                 f'{esc(flat(p.text))}</div>')
                parts.append("</div>")
            parts.append("</details>")
        return "".join(parts) + "</div>"
    for doc_id, citations in by_document(answer.citations):
        document = corpus.document(doc_id)
        parts.append(f'<div class="qa-group" data-doc="{esc(doc_id)}">{document_head(corpus, doc_id)}')
        for c in citations:
            at, to = c.start - c.context_start, c.end - c.context_start
            also = (f'<div class="qa-also">The same sentence is also in: '
                    f'{esc(", ".join(document_name(corpus, other) for other in c.also_in))}</div>' if c.also_in else "")
            parts.append(
                f'<div class="qa-source" id="qa-src-{turn}-{c.n}" data-cite="{turn}-{c.n}" '
                f'title="Show in the document"><div><span class="qa-num">[{c.n}]</span> '
                f'<span class="qa-where">characters {c.start}–{c.end} of {len(document.text)}</span></div>'
                f'<div class="qa-context">{esc(flat(c.context[:at]))} <mark>{marked(c, answer)}</mark> '
                f'{esc(flat(c.context[to:]))}</div>{also}'
                f'<details class="qa-viewer"><summary>Show in document</summary>'
                f'<div class="qa-doc">{document_view(document, c.start, c.end)}</div></details></div>'
            )
        parts.append("</div>")
    plain = answer.text + "\n" + "".join(
        f"\n{document_name(corpus, doc_id)}\n" + "".join(f"[{c.n}] characters {c.start}-{c.end}: {flat(c.text)}\n"
                                                         for c in citations)
        for doc_id, citations in by_document(answer.citations))
    parts.append(f'<button class="qa-copy" data-text="{esc(plain.rstrip())}">Copy answer</button>')
    return "".join(parts) + "</div>"


WORKING = '<span class="qa-working">Looking in the documents…</span>'
WAITING = '<span class="qa-waiting">Waiting: answered after the question above.</span>'


def served_name(base: Retriever) -> str:
    """What the server serves, in words: the bundled article, or a collection (`qa serve --index`)."""
    from qa.documents import BUNDLED_ARTICLE

    if [d.doc_id for d in base.documents] == [Path(BUNDLED_ARTICLE).stem]:
        return "the bundled article"
    return f"the served documents ({len(base.documents):,})"


NO_SOURCES = '<p class="qa-empty">Ask a question: the sentences that support the answer appear here.</p>'


# -- per-visitor state ----------------------------------------------------------------------------------


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

    @classmethod
    def start(cls, base: Retriever) -> Session:
        return cls(base, [d.doc_id for d in base.documents], base)

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


def unique_id(doc_id: str, taken: set[str]) -> str:
    candidate, n = doc_id, 2
    while candidate in taken:
        candidate, n = f"{doc_id}-{n}", n + 1
    return candidate


def history_pairs(history: Any, settings: Settings | None = None) -> list[tuple[str, str]]:
    """API history as (question, answer) pairs; a QAError saying what is expected for anything else,
    or when it is over the limits in `Settings` (turns and characters)."""
    settings = settings or Settings()
    if history is None:
        return []
    if isinstance(history, list | tuple) and all(
        isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(x, str) for x in turn) for turn in history
    ):
        if len(history) > settings.max_history_turns:
            raise QAError(f"history has {len(history):,} turns; the limit is {settings.max_history_turns} "
                          "(only the last turn is used for a follow-up)")
        chars = sum(len(q) + len(a) for q, a in history)
        if chars > settings.max_history_chars:
            raise QAError(f"history has {chars:,} characters; the limit is {settings.max_history_chars:,}")
        return [(q, a) for q, a in history]
    raise QAError("history must be a list of [question, answer] pairs of text, oldest first, "
                  f"for example [[\"Who is Haftar?\", \"...\"]]; got {json_preview(history)}")


def json_preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_upload(path: str, *, taken: set[str], chars: int, count: int, settings: Settings | None = None) -> Document:
    """The text of one uploaded file as a Document with an id not in `taken`; QAError naming the file if unusable.

    `chars` and `count` are what the session already holds, checked against the limits in `settings`; the
    message names the limit that was hit (file size, characters per session, documents per session).
    """
    settings = settings or Settings()
    name = Path(path).name
    if count >= settings.max_session_documents:
        raise QAError(f"{name}: not added, a session holds at most {settings.max_session_documents} uploaded documents")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise QAError(f"{name}: the uploaded file is gone before it was read; upload it again") from exc
    if size > settings.max_upload_mb * 1024 * 1024:
        raise QAError(f"{name}: {size / 1024 / 1024:.1f} MB is over the {settings.max_upload_mb} MB limit for one file")
    text, title = read_text(Path(path))
    if chars + len(text) > settings.max_session_chars:
        held = f"; {chars:,} are taken, remove a document first" if chars else ""
        raise QAError(f"{name}: {len(text):,} characters of text, over the {settings.max_session_chars:,} characters "
                      f"a session's uploads may hold together{held}")
    stem = Path(path).stem
    return Document(unique_id(slugify(stem), taken), text, title or stem, path=name)  # name: shown on cards


def without_temp_files(files: gr.File) -> gr.File:
    """`files` without Gradio's stray temporary file: Gradio 6's `File._process_single_file` opens an empty
    NamedTemporaryFile in its cache for every uploaded file and never deletes it. The method is replaced on
    this one component (a subclass would make Gradio write an app.pyi stub beside this file)."""

    def process_single_file(f: Any) -> Any:
        from gradio.utils import NamedString
        from gradio_client.utils import is_valid_file

        if files.file_types and not is_valid_file(f.path, files.file_types):
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: {files.file_types}")
        return NamedString(f.path)

    if files.type == "filepath":
        files._process_single_file = process_single_file
    return files


def discard(path: str) -> None:
    """Delete an uploaded file (and the hash-named folder Gradio made for it, once empty): only its text is kept."""
    file = Path(path)
    try:
        file.unlink(missing_ok=True)
        if re.fullmatch(r"[0-9a-f]{32,}", file.parent.name):
            file.parent.rmdir()
    except OSError:  # the folder holds other files, or is already gone
        pass


def in_background(function: Callable[..., T], *args: Any, workers: int = 1, **kwargs: Any) -> T:
    """Run `function` on the indexing thread and wait for it; Gradio's progress and notices still reach the page.

    The indexing thread runs at a lower OS priority (Linux keeps a nice value per thread), so while an
    upload is indexed the CPU goes to other visitors' questions first.
    """
    context = contextvars.copy_context()  # Gradio finds the event to report progress to in context variables
    return _indexer(workers).submit(context.run, function, *args, **kwargs).result()


@lru_cache(maxsize=4)
def _indexer(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-indexing", initializer=_lower_priority)


def _lower_priority() -> None:
    try:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + INDEXING_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: indexing simply runs at normal priority
        pass


# -- handlers: one per user action -----------------------------------------------------------------------


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

    def writer(self, corpus: Retriever) -> Any:
        """A `qa.generation.Writer` over `corpus` with the configured model, or None when none is set."""
        if self.llm is None:
            return None
        from dataclasses import replace

        from qa.generation import Writer

        return Writer(corpus, settings=replace(self.settings, **self.llm))

    def session(self, session: Session | None) -> Session:
        return session or Session.start(self.base)

    def ask_api(self, question: str, history: list[list[str]] | None = None) -> dict:
        """Answer a question about the served documents; returns question, answer, found and citations."""
        try:
            writer = self.writer(self.base)
            ask = writer.ask if writer is not None else Assistant(self.base, settings=self.settings).ask
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

    def take(self, question: str, session: Session | None) -> Session:
        """Queue a question sent from the box, the Ask button or an example; a rejected one is a notice."""
        session = self.session(session)
        try:
            question = check_question(question, self.settings)
        except QAError as exc:
            gr.Warning(message(exc), title="Not asked")
            return session
        with session.questions.lock:
            session.questions.waiting.append(question)
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
        try:
            if self.llm is not None:  # the model's words stream as they come
                answer = yield from self.write(session, question, history)
            else:
                answer = Assistant(session.active, settings=self.settings).ask(question, history=history)
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
            turn = Turn(answer.question, answer, sources_html(len(session.turns), answer, session.active))
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

    def clear(self, session: Session | None) -> tuple:
        session = self.session(session)
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

    def upload(self, paths: list[str] | None, session: Session | None,
               progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
        """Read each file (then delete it), index the readable ones, and report one progress bar."""
        session = self.session(session)
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

    def choose(self, selected: list[str], session: Session | None) -> tuple:
        session = self.session(session)
        try:
            session.use(session.corpus, selected)
        except QAError as exc:
            gr.Warning(message(exc))
        return self.controls(session)

    def remove(self, doc_id: str | None, session: Session | None) -> tuple:
        session = self.session(session)
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


# -- the page: each part built and wired on its own ----------------------------------------------------------


class Page(gr.Blocks):
    """The chat's Blocks. Plain HTTP callers of /ask may leave out the optional history; an API call leaves no
    session state behind (`Sessions`)."""

    handlers: Handlers
    sessions: Sessions

    def is_ask(self, block_fn: Any) -> bool:
        """/ask itself, or the validator Gradio runs for it before queueing the call."""
        return getattr(block_fn, "fn", None) in (self.handlers.ask_api, self.handlers.check_ask)

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        if self.is_ask(block_fn) and len(inputs) > len(block_fn.inputs):
            problem = (f"/ask takes the question and, optionally, the history: {len(inputs)} values were sent, "
                       f"at most {len(block_fn.inputs)} are read")
            if block_fn.is_validator_function:  # before queueing: Gradio answers 400 with this text
                raise QAError(problem)
            raise gr.Error(problem, print_exception=False)
        if self.is_ask(block_fn) and len(inputs) < len(block_fn.inputs):
            inputs.extend([None] * (len(block_fn.inputs) - len(inputs)))  # gradio_client sends the default
        super().validate_inputs(block_fn, inputs)

    async def process_api(self, *args: Any, **kwargs: Any) -> dict:
        try:
            return await super().process_api(*args, **kwargs)
        finally:  # /ask needs no session: what Gradio made for this call is dropped now, unless a page holds it
            if self.is_ask(kwargs.get("block_fn")):
                self.sessions.drop_unless_open(kwargs.get("session_hash"))


@dataclass
class ChatPanel:
    chat: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    examples: list[gr.Button]
    clear: gr.Button


@dataclass
class DocumentsPanel:
    docs: gr.CheckboxGroup
    files: gr.File
    status: gr.HTML
    removable: gr.Dropdown
    remove: gr.Button
    reset: gr.Button


def chat_panel() -> ChatPanel:
    chat = gr.Chatbot(elem_id="qa-chat", height=460, render_markdown=False, buttons=[], feedback_options=None,
                      placeholder="Ask about the article, or upload your own documents below.", show_label=False,
                      autoscroll=False)  # CHAT_JS scrolls to the question being answered instead
    with gr.Row(elem_id="qa-ask-row"):
        question = gr.Textbox(elem_id="qa-question", placeholder="Type a question",
                              show_label=False, scale=5, max_lines=4)
        send = gr.Button("Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=80)
    with gr.Row(elem_id="qa-examples"):
        examples = [gr.Button(q, size="sm", elem_classes="qa-example") for q in EXAMPLES]
        clear = gr.Button("Clear chat", size="sm", elem_id="qa-clear")
    return ChatPanel(chat, question, send, examples, clear)


def sources_panel() -> gr.HTML:
    return gr.HTML(NO_SOURCES, label="Sources", show_label=True, elem_id="qa-sources",
                   js_on_load=SOURCES_JS + CHAT_JS, container=True, padding=True)


def documents_panel(handlers: Handlers) -> DocumentsPanel:
    base = handlers.base
    with gr.Accordion("Documents", open=True, elem_id="qa-documents"):
        docs = gr.CheckboxGroup(label="Search these documents", elem_id="qa-docs",
                                choices=[(d.title, d.doc_id) for d in base.documents],
                                value=[d.doc_id for d in base.documents])
        limits = handlers.settings
        files = gr.File(label=f"Upload .txt, .md, .html or .pdf (up to {limits.max_session_documents} files, "
                              f"{limits.max_upload_mb} MB each)",
                        file_count="multiple", elem_id="qa-upload", height=110)
        status = gr.HTML(handlers.controls(Session.start(base))[3], elem_id="qa-status", js_on_load=None)
        with gr.Row():
            removable = gr.Dropdown(label="Uploaded documents", choices=[], elem_id="qa-remove-choice", scale=3)
            remove = gr.Button("Remove", elem_id="qa-remove", scale=1, size="sm")
            reset = gr.Button(f"Reset to {served_name(base)}", elem_id="qa-reset", scale=1, size="sm")
    return DocumentsPanel(docs, files, status, removable, remove, reset)


#: In the browser, on Enter or Ask: send the question and keep in the box only what was typed after it.
#: Keys pressed between Enter and this function (a fast typist, a busy page) land after the question in
#: the box; they are kept, not wiped with it.
TAKE_QUESTION_JS = """(question) => {
  const box = document.querySelector('#qa-question textarea');
  const now = box ? box.value : '';
  return [now.length > question.length && now.startsWith(question) ? now.slice(question.length) : '', question];
}"""


def wire_chat(handlers: Handlers, panel: ChatPanel, sources: gr.HTML, session: gr.State) -> None:
    # A question is taken from the box in the browser, at once, and the box cleared there: what is typed
    # after Enter is never erased. The server queues it (`take`, quick), then `respond` answers the
    # session's questions in order; a question sent meanwhile is shown waiting and answered next.
    sent = gr.Textbox(visible=False)
    quick = {"show_progress": "hidden", "trigger_mode": "multiple", **PRIVATE}
    answering = {"trigger_mode": "multiple", **QUESTIONS, **PRIVATE}
    for trigger in (panel.question.submit, panel.send.click):
        (trigger(None, [panel.question], [panel.question, sent], js=TAKE_QUESTION_JS, **quick)
         .then(handlers.take, [sent, session], [session], **TAKING, **quick)
         .then(handlers.respond, [session], [panel.chat, sources], **answering))
    for example in panel.examples:  # leaves the box as it is
        (example.click(handlers.take, [example, session], [session], **TAKING, **quick)
         .then(handlers.respond, [session], [panel.chat, sources], **answering))
    instant = {"show_progress": "hidden", **PRIVATE}  # no "processing" veil over the sources for a click
    panel.chat.select(handlers.show_turn, [session], sources, **instant)
    panel.clear.click(handlers.clear, [session], [panel.chat, sources, session], **instant)
    panel.chat.clear(handlers.clear, [session], [panel.chat, sources, session], **instant)


def wire_documents(handlers: Handlers, panel: DocumentsPanel, session: gr.State) -> None:
    shown = [session, panel.docs, panel.removable, panel.status]
    # One progress bar, on the status line; the upload has its own queue, apart from questions.
    indexing = {**INDEXING, "concurrency_limit": handlers.settings.upload_workers}  # uploads indexed side by side
    without_temp_files(panel.files)
    panel.files.upload(handlers.upload, [panel.files, session], [*shown, panel.files], show_progress_on=panel.status,
                       **indexing, **PRIVATE)
    panel.docs.input(handlers.choose, [panel.docs, session], shown, show_progress="hidden", **PRIVATE)
    panel.remove.click(handlers.remove, [panel.removable, session], shown, show_progress="hidden", **PRIVATE)
    panel.reset.click(handlers.reset, [session], shown, show_progress="hidden", **PRIVATE)


# -- serving: who may call what, and how long a visitor's session lives --------------------------------------

PUBLIC_API = ("ask",)  # the one endpoint plain HTTP and gradio_client callers may name
API = "/gradio_api"
NAMED_CALL = re.compile(rf"(?:{API})?/(?:call/v2|call|run|api)/([^/]+)/?")


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


class Gate:
    """ASGI middleware in front of Gradio: only the documented API is reachable by name.

    - A POST to /gradio_api/call/<name> (also /call/v2, /run, /api) for any other name than `PUBLIC_API`,
      the UI's own events included, gets 404 with a one-line JSON error instead of Gradio's 500 or an answer.
    - /gradio_api/queue/join (how the page and gradio_client send events) runs the UI's events only for an
      open page (`Sessions`); a caller naming one by number without a page gets the same 404.
    - A request body over `max_body` bytes gets 413 before it is read.
    - Heartbeat streams are tracked, so `Sessions` knows which pages are open.
    """

    def __init__(self, app: Any, *, sessions: Sessions, public: Callable[[], set[int]], max_body: int) -> None:
        self.app, self.sessions, self.public, self.max_body = app, sessions, public, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith(f"{API}/heartbeat/"):
            session = path.rsplit("/", 1)[-1]
            self.sessions.opened(session)
            try:
                return await self.app(scope, receive, send)
            finally:
                self.sessions.ended(session)
        if method != "POST":
            return await self.app(scope, receive, send)
        named = NAMED_CALL.fullmatch(path)
        if named and named.group(1) not in PUBLIC_API:
            return await refuse(send, 404, f"no API endpoint /{named.group(1)}; this server answers "
                                           f"{', '.join('/' + n for n in PUBLIC_API)} (see {API}/info)")
        if not named and path != f"{API}/queue/join":
            return await self.app(scope, receive, send)
        body = await read_body(receive, self.max_body)
        if body is None:
            return await refuse(send, 413, f"the request is over {self.max_body:,} bytes")
        if not named:
            try:
                event = json.loads(body)
                fn_index, session = event.get("fn_index"), event.get("session_hash")
            except (ValueError, AttributeError):
                fn_index = session = None
            if fn_index not in self.public() and not await self.sessions.wait_open(session):
                return await refuse(send, 404, f"no API endpoint number {json_preview(fn_index)} for a caller "
                                               f"without an open page; this server answers "
                                               f"{', '.join('/' + n for n in PUBLIC_API)} (see {API}/info)")
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def read_body(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None once it is over `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def refuse(send: Callable, status: int, detail: str) -> None:
    """A one-line JSON error, the shape FastAPI and Gradio use: {"detail": "..."}."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def served_settings(base: Retriever, settings: Settings | None) -> Settings:
    """The base's query settings with the serving limits of `settings` (default: `Settings()`, the environment)."""
    settings = settings or Settings()
    return dataclasses.replace(base.settings, **{name: getattr(settings, name) for name in LIMIT_ENV})


def load_base(index: str | Path | None, index_dir: str | Path | None, settings: Settings | None) -> Retriever:
    """The served documents: the collection `qa index` wrote at `index`, else the bundled article (its index
    kept in `index_dir`, default $QA_INDEX_DIR or the user's cache)."""
    if index is not None:
        return Retriever.load(index, settings=settings)
    return Retriever.default(index_dir=index_dir, settings=settings)


def build_app(retriever: Retriever | None = None, *, index: str | Path | None = None,
              index_dir: str | Path | None = None, settings: Settings | None = None) -> Page:
    """The Gradio Blocks over `retriever` (default: the collection at `index`, else the bundled article)."""
    base = retriever or load_base(index, index_dir, settings)
    quiet_libraries()
    handlers = Handlers(base, served_settings(base, settings))
    with Page(title="Ask the document", delete_cache=CACHE_CLEANUP) as demo:
        demo.handlers, demo.sessions = handlers, Sessions(handlers.settings.session_linger)
        session = gr.State(None)
        gr.Markdown("## Ask the document\nAnswers quote the document; each marker **[n]** points to a source "
                    "beside the chat. Click a marker or a source to see it in the document.")
        with gr.Row(equal_height=False, elem_id="qa-main"):  # narrow screens: see PHONE in CSS
            with gr.Column(scale=3, elem_id="qa-left"):
                chat = chat_panel()
            with gr.Column(scale=2, elem_id="qa-right"):
                sources = sources_panel()
        documents = documents_panel(handlers)
        wire_chat(handlers, chat, sources, session)
        wire_documents(handlers, documents, session)
        gr.api(handlers.ask_api, api_name="ask", **QUESTIONS)
    # Gradio checks an event's inputs with its validator before queueing it, answering 422 with the message;
    # `gr.api` takes no validator argument, so it is set on the endpoint it made.
    next(fn for fn in demo.fns.values() if fn.api_name == "ask").validator = handlers.check_ask
    return demo


def quiet_libraries() -> None:
    """Keep library chatter out of the server log: bm25s sets its logger to DEBUG; pypdf warns about every
    damaged PDF ("EOF marker not found") that the visitor is already told about."""
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    logging.getLogger("pypdf").setLevel(logging.ERROR)


# A system font stack: nothing is fetched for text, and every glyph of a heading comes from one font
# (Gradio's bundled web font has two weights, so bold headings mixed faces).
THEME_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
               "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts only."""
    return gr.themes.Default(font=THEME_FONTS, font_mono=MONO_FONTS)


def launch(host: str | None = None, port: int | None = None, share: bool = False, *,
           index: str | Path | None = None, index_dir: str | Path | None = None, retriever: Retriever | None = None,
           settings: Settings | None = None, block: bool = True) -> Page:
    """Start the chat on host:port (env QA_HOST / QA_PORT, default 127.0.0.1:7860); no share link unless asked.

    Serves `retriever`, else the collection `qa index` wrote at `index`, else the bundled article; the
    limits come from `settings` (default: `Settings()`, which reads QA_MAX_UPLOAD_MB and the rest).
    """
    from starlette.middleware import Middleware

    demo = build_app(retriever, index=index, index_dir=index_dir, settings=settings)
    limits = demo.handlers.settings
    public = {i for i, fn in demo.fns.items() if fn.api_name in PUBLIC_API}
    max_body = 6 * (limits.max_question_chars + limits.max_history_chars) + 65_536  # JSON may escape each character
    gate = Middleware(Gate, sessions=demo.sessions, public=lambda: public, max_body=max_body)
    demo.queue(default_concurrency_limit=4, api_open=False).launch(  # api_open: no /run/ask around the queue
        server_name=host or os.environ.get("QA_HOST", "127.0.0.1"),
        server_port=int(port or os.environ.get("QA_PORT", 7860)),
        share=share, prevent_thread_lock=not block, css=CSS, theme=theme(),
        max_file_size=f"{2 * limits.max_upload_mb}mb",  # larger files are refused by read_upload, naming the limit
        run_history=False, enable_monitoring=False, footer_links=["api", "gradio"], app_kwargs={"middleware": [gate]},
    )
    demo.sessions.start(demo)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    """`python app.py [flags]` is `qa serve [flags]`."""
    from qa.cli import main as cli

    raise SystemExit(cli(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
