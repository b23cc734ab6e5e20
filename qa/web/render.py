"""The HTML the chat shows: answers with clickable markers [n], source cards, the document view.

Pure functions of `qa` values (an `Answer`, its `Citation`s, the `Retriever` holding the documents): they
read no state and call no model. Everything shown from a document or a question is escaped first (`esc`),
so a document's tags, entities and template syntax appear as text and never run.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from qa import Answer, Document, Passage, Retriever
from qa.answer import Citation, location

VIEW_CHARS = 4000  # document viewer: characters shown either side of a cited span
T = TypeVar("T")


def esc(text: str) -> str:
    """Text as inert HTML: tags, entities and template syntax all shown literally."""
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def confidence_words(confidence: float) -> str:
    """How likely citation [1] answers, in words a reader understands."""
    if confidence >= 0.85:
        return "very likely right"
    if confidence >= 0.6:
        return "likely right"
    if confidence >= 0.4:
        return "may be right: check the source"
    return "unsure: check the source"


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


def document_view(document: Document, start: int, end: int, page: int | None = None) -> str:
    """The document around [start, end) with that span highlighted; line breaks kept. With `page` (a PDF), only
    that page's text, under a line saying which page it is."""
    text = document.text
    first, last = document.page_span(page) if page is not None else (0, len(text))
    left, right = max(first, start - VIEW_CHARS), min(last, end + VIEW_CHARS)
    head = (f'<div class="qa-page-head">Page {page} of {len(document.pages)}</div>' if page is not None else "")

    def tidy(part: str) -> str:
        return esc(re.sub(r"[ \t]*\n\s*", "\n", re.sub(r"[ \t\f\v\r]+", " ", part)))

    return (head + ("… " if left > first else "") + tidy(text[left:start]).lstrip()
            + f"<mark>{tidy(text[start:end])}</mark>"
            + tidy(text[end:right]).rstrip() + (" …" if right < last else ""))


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
                    parts.append(f'<div class="qa-passage"><div class="qa-where">{place(p)}characters '
                                 f'{p.start}–{p.end}</div>{esc(flat(p.text))}</div>')
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
                f'<span class="qa-where">{place(c)}characters {c.start}–{c.end} of {len(document.text)}</span></div>'
                f'<div class="qa-context">{esc(flat(c.context[:at]))} <mark>{marked(c, answer)}</mark> '
                f'{esc(flat(c.context[to:]))}</div>{also}'
                f'<details class="qa-viewer"><summary>Show in document</summary>'
                f'<div class="qa-doc">{document_view(document, c.start, c.end, c.page)}</div></details></div>'
            )
        parts.append("</div>")
    plain = answer.text + "\n" + "".join(
        f"\n{document_name(corpus, doc_id)}\n" + "".join(
            f"[{c.n}] {location(c) + ', ' if location(c) else ''}characters {c.start}-{c.end}: {flat(c.text)}\n"
            for c in citations)
        for doc_id, citations in by_document(answer.citations))
    parts.append(f'<button class="qa-copy" data-text="{esc(plain.rstrip())}">Copy answer</button>')
    return "".join(parts) + "</div>"


def place(item: Citation | Passage) -> str:
    """The page and section of a source card, each in its own span, then " · " ("" when it has neither)."""
    parts = [f'<span class="qa-page">page {item.page}</span>'] if item.page is not None else []
    if item.section:
        parts.append(f'<span class="qa-section">{esc(item.section)}</span>')
    return "".join(f"{part} · " for part in parts)


WORKING = '<span class="qa-working">Looking in the documents…</span>'
WAITING = '<span class="qa-waiting">Waiting: answered after the question above.</span>'


def served_name(base: Retriever) -> str:
    """What the server serves, in words: the bundled article, or a collection (`qa serve --index`)."""
    from qa.documents import BUNDLED_ARTICLE

    if [d.doc_id for d in base.documents] == [Path(BUNDLED_ARTICLE).stem]:
        return "the bundled article"
    return f"the served documents ({len(base.documents):,})"


NO_SOURCES = '<p class="qa-empty">Ask a question: the sentences that support the answer appear here.</p>'
