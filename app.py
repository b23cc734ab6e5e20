"""Web chat over the bundled article and the visitor's own uploads (Gradio).

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--index DIR]    # or: qa serve

This module only wires Gradio to `qa`: the retriever is loaded once, each user
action has one handler, and every `QAError` becomes a message the user sees.
Uploads live in the browser session's `gr.State` (a new `Retriever` from
`extend`/`subset`), never in the shared retriever or the index on disk.
Everything shown from a document or a question is HTML-escaped first.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from qa import Answer, Assistant, Document, QAError, Retriever

EXAMPLES = [
    "What did CNN report about troop numbers?",
    "What security threats does Libya pose to southern Europe?",
    "Who is Khalifa Haftar?",
]
MAX_UPLOADS = 10  # documents per session
MAX_FILE_MB = 10
MAX_UPLOAD_CHARS = 500_000  # all of a session's uploads together
VIEW_CHARS = 4000  # document viewer: characters shown either side of a cited span

CSS = """
.qa-marker { color: var(--color-accent); font-weight: 600; cursor: pointer; white-space: nowrap; }
.qa-marker:hover { text-decoration: underline; }
.qa-for { font-weight: 600; margin-bottom: .5em; }
.qa-source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6em .8em; margin: .5em 0;
  cursor: pointer; }
.qa-source.qa-active { border-color: var(--color-accent); box-shadow: 0 0 0 2px var(--color-accent-soft); }
.qa-num { font-weight: 700; color: var(--color-accent); }
.qa-title { font-weight: 600; }
.qa-where { font-size: .85em; opacity: .75; margin: .2em 0 .4em; }
.qa-context { line-height: 1.5; }
.qa-source mark, .qa-doc mark { background: #fde68a; color: inherit; padding: 0 .1em; border-radius: 2px; }
.qa-doc { white-space: pre-wrap; max-height: 320px; overflow-y: auto; font-size: .9em; line-height: 1.5;
  border-top: 1px dashed var(--border-color-primary); margin-top: .4em; padding-top: .4em; }
.qa-none { font-weight: 600; }
.qa-closest { opacity: .8; margin-top: .5em; }
.qa-closest .qa-passage { border-left: 3px solid var(--border-color-primary); padding-left: .6em; margin: .5em 0; }
.qa-copy { margin-top: .4em; font-size: .85em; padding: .2em .7em; border: 1px solid var(--border-color-primary);
  border-radius: 6px; cursor: pointer; background: var(--background-fill-secondary); }
"""

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

log = logging.getLogger(__name__)


def esc(text: str) -> str:
    """Text as inert HTML: tags, entities and template syntax all shown literally."""
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def message(exc: Exception) -> str:
    """An error's text for a toast (Gradio renders toasts as HTML)."""
    return html.escape(str(exc), quote=False)


def as_dict(answer: Answer) -> dict:
    """The JSON shape of `qa ask --json`."""
    return {
        "question": answer.question, "answer": answer.text, "found": answer.found, "query": answer.query,
        "citations": [{"n": c.n, "doc_id": c.doc_id, "title": c.title, "start": c.start, "end": c.end,
                       "text": c.text, "score": c.score, "context_start": c.context_start,
                       "context_end": c.context_end} for c in answer.citations],
    }


# -- rendering ------------------------------------------------------------------------------------------


def answer_html(turn: int, answer: Answer) -> str:
    """The answer's text, escaped, with each marker [n] a clickable span."""
    numbers = {str(c.n) for c in answer.citations}

    def marker(match: re.Match[str]) -> str:
        n = match.group(1)
        if n not in numbers:
            return match.group(0)
        return f'<span class="qa-marker qa-t{turn} qa-n{n}" title="Show source {n}">[{n}]</span>'

    return re.sub(r"\[(\d+)\]", marker, esc(answer.text))


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


def sources_html(turn: int, answer: Answer, corpus: Retriever) -> str:
    """The panel for one answer: numbered sources with the cited sentence highlighted in its passage."""
    parts = [f'<div class="qa-turn" data-turn="{turn}"><div class="qa-for">Sources for: {esc(answer.question)}</div>']
    if not answer.found:
        parts.append('<p class="qa-none">The documents do not answer this question; no source supports an answer.</p>')
        if answer.closest:
            parts.append('<details class="qa-closest"><summary>Closest passages (these do NOT answer the question)'
                         '</summary>')
            for p in answer.closest:
                parts.append(f'<div class="qa-passage"><div class="qa-where">{esc(p.title)}, characters '
                             f'{p.start}–{p.end}</div>{esc(flat(p.text))}</div>')
            parts.append("</details>")
        return "".join(parts) + "</div>"
    for c in answer.citations:
        document = corpus.document(c.doc_id)
        at, to = c.start - c.context_start, c.end - c.context_start
        parts.append(
            f'<div class="qa-source" id="qa-src-{turn}-{c.n}" data-cite="{turn}-{c.n}" title="Show in the document">'
            f'<div><span class="qa-num">[{c.n}]</span> <span class="qa-title">{esc(c.title)}</span></div>'
            f'<div class="qa-where">characters {c.start}–{c.end} of {len(document.text)}</div>'
            f'<div class="qa-context">{esc(flat(c.context[:at]))} <mark>{esc(flat(c.context[at:to]))}</mark> '
            f'{esc(flat(c.context[to:]))}</div>'
            f'<details class="qa-viewer"><summary>Show in document</summary>'
            f'<div class="qa-doc">{document_view(document, c.start, c.end)}</div></details></div>'
        )
    plain = answer.text + "\n\n" + "\n".join(f"[{c.n}] {c.title}, characters {c.start}-{c.end}: {flat(c.text)}"
                                             for c in answer.citations)
    parts.append(f'<button class="qa-copy" data-text="{esc(plain)}">Copy answer</button>')
    return "".join(parts) + "</div>"


NO_SOURCES = '<p class="qa-empty">Ask a question: the sentences that support the answer appear here.</p>'


# -- per-visitor state ----------------------------------------------------------------------------------


@dataclass
class Turn:
    question: str
    answer: Answer
    sources: str  # rendered when answered, so it survives later changes to the documents


@dataclass
class Session:
    """One browser session: its corpus (article + uploads), the documents searched, the chat so far."""

    corpus: Retriever
    selected: list[str]
    active: Retriever
    uploads: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    @classmethod
    def start(cls, base: Retriever) -> Session:
        return cls(base, [d.doc_id for d in base.documents], base)

    def use(self, corpus: Retriever, selected: list[str]) -> None:
        """Search `selected` of `corpus` from now on (raises QAError for an empty or unknown choice)."""
        everything = len(selected) == len(corpus.documents) and set(selected) == {d.doc_id for d in corpus.documents}
        self.active = corpus if everything else corpus.subset(selected)
        self.corpus, self.selected = corpus, list(selected)

    def messages(self) -> list[dict]:
        chat = []
        for number, turn in enumerate(self.turns):
            chat += [{"role": "user", "content": esc(turn.question)},
                     {"role": "assistant", "content": answer_html(number, turn.answer)}]
        return chat


def unique_id(doc_id: str, taken: set[str]) -> str:
    candidate, n = doc_id, 2
    while candidate in taken:
        candidate, n = f"{doc_id}-{n}", n + 1
    return candidate


# -- the app ------------------------------------------------------------------------------------------


def build_app(retriever: Retriever | None = None, *, index_dir: str | Path | None = None) -> gr.Blocks:
    """The Gradio Blocks over `retriever` (default: the bundled article, index loaded from `index_dir`)."""
    base = retriever or Retriever.default(index_dir=index_dir)  # default: $QA_INDEX_DIR or the user's cache
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    model = {"concurrency_id": "model", "concurrency_limit": 1}  # one CPU-heavy job at a time
    private = {"api_visibility": "private"}

    def ask_api(question: str, history: list[list[str]] | None = None) -> dict:
        """Answer a question about the bundled article; returns question, answer, found and citations."""
        try:
            answer = Assistant(base).ask(question, history=[(q, a) for q, a in history or []])
        except QAError as exc:
            raise gr.Error(message(exc), print_exception=False) from exc
        return as_dict(answer)

    def respond(question: str, session: Session | None):
        session = session or Session.start(base)
        history = [(t.question, t.answer.text) for t in session.turns]
        try:
            answer = Assistant(session.active).ask(question, history=history)
        except QAError as exc:
            raise gr.Error(message(exc), print_exception=False) from exc
        turn = Turn(answer.question, answer, sources_html(len(session.turns), answer, session.active))
        shown = session.messages() + [{"role": "user", "content": esc(answer.question)}]
        words = esc(answer.text).split(" ")
        step = max(1, len(words) // 8)
        for end in range(step, len(words), step):  # stream the reply; the sources come with its end
            yield shown + [{"role": "assistant", "content": " ".join(words[:end]) + " …"}], "", gr.skip(), session
            time.sleep(0.03)
        session.turns.append(turn)
        yield session.messages(), "", turn.sources, session

    def show_turn(session: Session | None, event: gr.SelectData):
        index = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if not session or not isinstance(index, int) or not 0 <= index // 2 < len(session.turns):
            return gr.skip()
        return session.turns[index // 2].sources

    def clear(session: Session | None):
        session = session or Session.start(base)
        session.turns = []
        return [], NO_SOURCES, session

    def controls(session: Session, *notes: str):
        """The document checkboxes, the remove list and a status line for this session."""
        titles = [d.title for d in session.corpus.documents]
        label = {d.doc_id: d.title if titles.count(d.title) == 1 else f"{d.title} ({d.doc_id})"
                 for d in session.corpus.documents}
        chars = sum(len(session.corpus.document(i).text) for i in session.uploads)
        status = (f"Searching {len(session.selected)} of {len(session.corpus.documents)} documents. "
                  f"Uploads: {len(session.uploads)} of {MAX_UPLOADS} files, {chars:,} of {MAX_UPLOAD_CHARS:,} "
                  "characters.")
        lines = [*notes, status]
        return (session,
                gr.update(choices=[(label[i], i) for i in label], value=session.selected),
                gr.update(choices=[(label[i], i) for i in session.uploads], value=None),
                "<br>".join(esc(line) for line in lines))

    def upload(paths: list[str] | None, session: Session | None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        session = session or Session.start(base)
        problems, documents = [], []
        taken = {d.doc_id for d in session.corpus.documents}
        chars = sum(len(session.corpus.document(i).text) for i in session.uploads)
        for number, path in enumerate(paths or []):
            name = Path(path).name
            progress(number / max(1, len(paths)), desc=f"Reading {name}")
            try:
                if len(session.uploads) + len(documents) >= MAX_UPLOADS:
                    raise QAError(f"{name}: not added, a session holds at most {MAX_UPLOADS} uploaded documents")
                if os.path.getsize(path) > MAX_FILE_MB * 1024 * 1024:
                    raise QAError(f"{name}: the file is larger than {MAX_FILE_MB} MB")
                document = Document.from_path(path)
                if chars + len(document.text) > MAX_UPLOAD_CHARS:
                    raise QAError(f"{name}: {len(document.text):,} characters would take this session's uploads "
                                  f"over {MAX_UPLOAD_CHARS:,}; remove a document first")
            except QAError as exc:
                problems.append(str(exc))
                continue
            document = Document(unique_id(document.doc_id, taken), document.text, document.title)
            taken.add(document.doc_id)
            chars += len(document.text)
            documents.append(document)
        if documents:
            progress(0, desc=f"Indexing {len(documents)} document(s)")
            try:
                corpus = session.corpus.extend(documents, progress=True)
                session.use(corpus, session.selected + [d.doc_id for d in documents])
                session.uploads += [d.doc_id for d in documents]
            except QAError as exc:
                problems.append(str(exc))
        for problem in problems:
            gr.Warning(message(problem), title="Upload problem")
        added = [f"Added {d.title} ({len(d.text):,} characters)." for d in documents if d.doc_id in session.uploads]
        return *controls(session, *added, *problems), None

    def choose(selected: list[str], session: Session | None):
        session = session or Session.start(base)
        try:
            session.use(session.corpus, selected)
        except QAError as exc:
            gr.Warning(message(exc))
        return controls(session)

    def remove(doc_id: str | None, session: Session | None):
        session = session or Session.start(base)
        if doc_id not in session.uploads:
            gr.Warning("Choose an uploaded document to remove.")
            return controls(session)
        title = session.corpus.document(doc_id).title
        session.uploads.remove(doc_id)
        keep = [d.doc_id for d in session.corpus.documents if d.doc_id != doc_id]
        selected = [i for i in session.selected if i != doc_id] or keep[:1]
        session.use(session.corpus.subset(keep), selected)
        return controls(session, f"Removed {title}.")

    def reset(session: Session | None):
        fresh = Session.start(base)
        fresh.turns = session.turns if session else []
        return controls(fresh, "Back to the bundled article only.")

    with gr.Blocks(title="Ask the document") as demo:
        session = gr.State(None)
        gr.Markdown("## Ask the document\nAnswers quote the document; each marker **[n]** points to a source on "
                    "the right. Click a marker or a source to see it in the document.")
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id="qa-chat", height=460, render_markdown=False, buttons=[],
                                  feedback_options=None, placeholder="Ask about the article, or upload your own "
                                  "documents below.", show_label=False)
                with gr.Row():
                    question = gr.Textbox(elem_id="qa-question", placeholder="Type a question and press Enter",
                                          show_label=False, scale=5, max_lines=4)
                    send = gr.Button("Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=80)
                with gr.Row():
                    examples = [gr.Button(q, size="sm", elem_classes="qa-example") for q in EXAMPLES]
                    clear_button = gr.Button("Clear chat", size="sm", elem_id="qa-clear")
                with gr.Accordion("Documents", open=True):
                    docs = gr.CheckboxGroup(label="Search these documents", elem_id="qa-docs",
                                            choices=[(d.title, d.doc_id) for d in base.documents],
                                            value=[d.doc_id for d in base.documents])
                    files = gr.File(label=f"Upload .txt, .md, .html or .pdf (up to {MAX_UPLOADS} files, "
                                    f"{MAX_FILE_MB} MB each)", file_count="multiple", elem_id="qa-upload", height=110)
                    status = gr.HTML(controls(Session.start(base))[3], elem_id="qa-status", js_on_load=None)
                    with gr.Row():
                        removable = gr.Dropdown(label="Uploaded documents", choices=[], elem_id="qa-remove-choice",
                                                scale=3)
                        remove_button = gr.Button("Remove", elem_id="qa-remove", scale=1, size="sm")
                        reset_button = gr.Button("Reset to the bundled article", elem_id="qa-reset", scale=1, size="sm")
            with gr.Column(scale=2):
                sources = gr.HTML(NO_SOURCES, label="Sources", show_label=True, elem_id="qa-sources",
                                  js_on_load=SOURCES_JS, container=True, padding=True)

        asked = [chat, question, sources, session]
        for trigger in (question.submit, send.click):
            trigger(respond, [question, session], asked, **model, **private)
        for example in examples:
            example.click(respond, [example, session], asked, **model, **private)
        chat.select(show_turn, [session], sources, **private)
        clear_button.click(clear, [session], [chat, sources, session], **private)
        chat.clear(clear, [session], [chat, sources, session], **private)
        doc_outputs = [session, docs, removable, status]
        files.upload(upload, [files, session], [*doc_outputs, files], **model, **private)
        docs.input(choose, [docs, session], doc_outputs, **model, **private)
        remove_button.click(remove, [removable, session], doc_outputs, **model, **private)
        reset_button.click(reset, [session], doc_outputs, **private)
        gr.api(ask_api, api_name="ask", **model)
    return demo


def launch(host: str | None = None, port: int | None = None, share: bool = False, *,
           index_dir: str | Path | None = None, retriever: Retriever | None = None, block: bool = True) -> gr.Blocks:
    """Start the chat on host:port (env QA_HOST / QA_PORT, default 127.0.0.1:7860); no share link unless asked."""
    demo = build_app(retriever, index_dir=index_dir)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host or os.environ.get("QA_HOST", "127.0.0.1"),
        server_port=int(port or os.environ.get("QA_PORT", 7860)),
        share=share, prevent_thread_lock=not block, css=CSS, max_file_size=f"{2 * MAX_FILE_MB}mb",
        run_history=False, enable_monitoring=False, footer_links=["api", "gradio"],
    )
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start the qa web chat.")
    parser.add_argument("--host", help="interface to listen on (default $QA_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $QA_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    parser.add_argument("--index", metavar="DIR", help="index directory for the bundled article (default $QA_INDEX_DIR or the user's cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    launch(args.host, args.port, args.share, index_dir=args.index)


if __name__ == "__main__":
    main()
