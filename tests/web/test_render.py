"""The HTML that app.py builds from answers: escaped text, clickable markers, highlighted spans."""

from __future__ import annotations

import app
from qa import Answer, Citation, Document, Phrase


def test_escape_makes_markup_inert():
    assert app.esc('<script>x</script> <img src=x onerror="y"> ${1} {{v}} &amp;') == (
        "&lt;script&gt;x&lt;/script&gt; &lt;img src=x onerror=&quot;y&quot;&gt; &#36;&#123;1&#125; "
        "&#123;&#123;v&#125;&#125; &amp;amp;")


def test_answer_markers_become_spans_and_text_is_escaped():
    citation = Citation(1, "d", "T", 0, 9, "<b>hi</b>", 0.9, "<b>hi</b>", 0, 9)
    answer = Answer("q", "<b>hi</b> [1] and [7]", True, (citation,))
    shown = app.answer_html(3, answer)
    assert "&lt;b&gt;hi&lt;/b&gt;" in shown and "<b>" not in shown
    assert '<span class="qa-marker qa-t3 qa-n1"' in shown
    assert "[7]" in shown and "qa-n7" not in shown  # only real citations are markers


def test_sources_highlight_the_cited_span_in_context_and_document(retriever):
    answer = app.Assistant(retriever).ask("How many troops would the new US policy send to Libya?")
    shown = app.sources_html(0, answer, retriever)
    c = answer.citations[0]
    assert f"characters {c.start}–{c.end}" in shown
    assert shown.count("<mark>") == 2 * len(answer.citations)  # each: once in its passage, once in the viewer
    assert "<mark>According to the CNN report" in shown
    assert 'data-cite="0-1"' in shown


def test_document_view_windows_long_documents():
    document = Document("long", "a " * 20000 + "NEEDLE" + " b" * 20000)
    start = document.text.index("NEEDLE")
    view = app.document_view(document, start, start + 6)
    assert "<mark>NEEDLE</mark>" in view
    assert view.startswith("… ") and view.endswith(" …")
    assert len(view) < 2 * app.VIEW_CHARS + 100
    short = Document("short", "one  two\n  NEEDLE three")
    at = short.text.index("NEEDLE")
    assert app.document_view(short, at, at + 6) == "one two\n<mark>NEEDLE</mark> three"


def test_unique_ids_are_suffixed():
    assert app.unique_id("notes", {"notes", "notes-2"}) == "notes-3"
    assert app.unique_id("other", {"notes"}) == "other"


def test_the_short_answer_leads_in_bold_and_is_marked_inside_its_source():
    text = "The bridge was finished in 1563 under Duke Anselm."
    citation = Citation(1, "d", "T", 0, len(text), text, 0.9, text, 0, len(text))
    phrase = Phrase("1563", "d", text.index("1563"), text.index("1563") + 4, 0.8)
    answer = Answer("When?", f"{text} [1]", True, (citation,), confidence=0.9, phrase=phrase)
    shown = app.answer_html(0, answer)
    assert shown.startswith("<strong>1563</strong>")
    assert "very likely right (90%)" in shown
    assert '<strong class="qa-phrase">1563</strong>' in app.marked(citation, answer)
    assert app.confidence_words(0.3) == "unsure: check the source"


def test_the_theme_uses_system_fonts_only():
    theme = app.theme()
    assert theme._font_css == [] and theme._stylesheets == []  # no @font-face, nothing fetched
    assert theme.font.startswith("ui-sans-serif") and "Source Sans" not in theme.font
