"""Web chat over the bundled article or a `qa index` collection, and the visitor's own uploads (Gradio).

Started by `qa serve` (and `python app.py`, the thin entry point at the project root, which runs `qa serve`).

This module only wires Gradio to `qa`: the page's layout, its events wired to one handler per user action
(`qa.web.handlers`), and the server started with the gate in front (`qa.web.gate`). What the handlers use
lives in `qa.web` too: per-visitor sessions and their lifetime (`sessions`), reading and indexing uploads
(`uploads`), the HTML of answers and sources (`render`), and what /ask accepts (`api`).

Questions and indexing run in separate concurrency groups, each in Gradio's
worker threads with torch on one thread (`qa.threads`), so one visitor's
large upload does not hold up other visitors' questions.
Limits come from `Settings` (flags of `qa serve`, or QA_MAX_UPLOAD_MB and the rest).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from qa import Assistant, QAError, Retriever, Settings, bundled_article
from qa.config import LIMIT_ENV
from qa.web.gate import PUBLIC_API, Gate
from qa.web.handlers import Handlers
from qa.web.render import NO_SOURCES, served_name
from qa.web.sessions import Session, Sessions
from qa.web.uploads import without_temp_files

EXAMPLES = [
    "How many troops would the new US policy send to Libya?",
    "What security threats does Libya pose to southern Europe?",
    "Who is Khalifa Haftar?",
]
CACHE_CLEANUP = (900, 900)  # Gradio deletes its temporary files older than 15 minutes, every 15 minutes
QUESTIONS = {"concurrency_id": "questions", "concurrency_limit": 2}  # two cores; they share the ranker's workers
TAKING = {"concurrency_id": "taking", "concurrency_limit": 2}  # queueing: instant, but an empty box waits (`take`)
INDEXING = {"concurrency_id": "indexing"}  # uploads: CPU-heavy, `Settings.upload_workers` at a time
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


def examples_for(base: Retriever) -> list[str]:
    """The example questions, which are about the bundled article: offered only when that is what is served."""
    article = bundled_article()
    served = base.documents
    return EXAMPLES if len(served) == 1 and served[0].fingerprint == article.fingerprint else []


def chat_panel(examples: list[str]) -> ChatPanel:
    about = "the article" if examples else "the documents"
    chat = gr.Chatbot(elem_id="qa-chat", height=460, render_markdown=False, buttons=[], feedback_options=None,
                      placeholder=f"Ask about {about}, or upload your own documents below.", show_label=False,
                      autoscroll=False)  # CHAT_JS scrolls to the question being answered instead
    with gr.Row(elem_id="qa-ask-row"):
        question = gr.Textbox(elem_id="qa-question", placeholder="Type a question",
                              show_label=False, scale=5, max_lines=4)
        send = gr.Button("Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=80)
    with gr.Row(elem_id="qa-examples"):
        buttons = [gr.Button(q, size="sm", elem_classes="qa-example") for q in examples]
        clear = gr.Button("Clear chat", size="sm", elem_id="qa-clear")
    return ChatPanel(chat, question, send, buttons, clear)


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
        files = gr.File(label=f"Upload .txt, .md, .html, .pdf or .docx (up to {limits.max_session_documents} files, "
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
    # The emptied box sent again at once (a double-click on Ask) is ignored by `take`.
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


# -- the app: the served documents, the page built and started --------------------------------------------------


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
                chat = chat_panel(examples_for(base))
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
           settings: Settings | None = None, block: bool = True, token: str | None = None,
           public: bool = False) -> Page:
    """Start the chat on host:port (env QA_HOST / QA_PORT, default 127.0.0.1:7860); no share link unless asked.

    Serves `retriever`, else the collection `qa index` wrote at `index` (taking up each new version it
    writes, `qa.web.live`), else the bundled article; the limits come from `settings` (default:
    `Settings()`, which reads QA_MAX_UPLOAD_MB and the rest). With `token` (default $QA_TOKEN) every request
    needs it (`qa.web.access`); without one, only loopback is served unless `public`.
    """
    from starlette.middleware import Middleware

    from qa.web.access import TOKEN_ENV, TokenGate, check_exposure

    host = host or os.environ.get("QA_HOST", "127.0.0.1")
    token = token or os.environ.get(TOKEN_ENV) or None
    check_exposure(host, share, token, public)
    demo = build_app(retriever, index=index, index_dir=index_dir, settings=settings)
    limits = demo.handlers.settings
    # What answering builds on first need (the ranker's float graph) is built now, before any visitor waits.
    Assistant(demo.handlers.base, settings=limits).ranker.prepare()
    callable_api = {i for i, fn in demo.fns.items() if fn.api_name in PUBLIC_API}
    max_body = 6 * (limits.max_question_chars + limits.max_history_chars) + 65_536  # JSON may escape each character
    gate = Middleware(Gate, sessions=demo.sessions, public=lambda: callable_api, max_body=max_body)
    middleware = [Middleware(TokenGate, token=token), gate] if token else [gate]
    if index is not None and retriever is None:  # a collection on disk: follow the versions `qa index` writes
        from qa.web.live import Live

        def swapped(old: Retriever, new: Retriever) -> None:
            demo.handlers.base = new

        demo.live = Live(index, demo.handlers.base, settings=settings, on_swap=swapped).start()
    demo.queue(default_concurrency_limit=4, api_open=False).launch(  # api_open: no /run/ask around the queue
        server_name=host,
        server_port=int(port or os.environ.get("QA_PORT", 7860)),
        share=share, prevent_thread_lock=True, css=CSS, theme=theme(),
        max_file_size=f"{2 * limits.max_upload_mb}mb",  # larger files are refused by read_upload, naming the limit
        run_history=False, enable_monitoring=False, footer_links=["api", "gradio"],
        app_kwargs={"middleware": middleware},
    )
    # Gradio's own blocking wait (prevent_thread_lock=False) never returns, so the sessions would never be
    # watched under `qa serve` and every /ask call's session would be kept (issue 33): start, then wait.
    demo.sessions.start(demo)
    if block and not getattr(sys, "ps1", sys.flags.interactive):  # as Gradio: no wait in an interactive shell
        demo.block_thread()
    return demo
