"""The HTML of answers and sources (qa/web/render.py): escaped text, clickable markers, highlighted spans."""

from __future__ import annotations

import re

from qa import Answer, Assistant, Citation, Document, Phrase
from qa.web.render import (
    VIEW_CHARS,
    answer_html,
    confidence_words,
    document_name,
    document_view,
    esc,
    marked,
    sources_html,
)
from qa.web.uploads import read_upload


def test_escape_makes_markup_inert():
    assert esc('<script>x</script> <img src=x onerror="y"> ${1} {{v}} &amp;') == (
        "&lt;script&gt;x&lt;/script&gt; &lt;img src=x onerror=&quot;y&quot;&gt; &#36;&#123;1&#125; "
        "&#123;&#123;v&#125;&#125; &amp;amp;")


def test_answer_markers_become_spans_and_text_is_escaped():
    citation = Citation(1, "d", "T", 0, 9, "<b>hi</b>", 0.9, "<b>hi</b>", 0, 9)
    answer = Answer("q", "<b>hi</b> [1] and [7]", True, (citation,))
    shown = answer_html(3, answer)
    assert "&lt;b&gt;hi&lt;/b&gt;" in shown and "<b>" not in shown
    assert '<span class="qa-marker qa-t3 qa-n1"' in shown
    assert "[7]" in shown and "qa-n7" not in shown  # only real citations are markers


def test_sources_highlight_the_cited_span_in_context_and_document(retriever):
    answer = Assistant(retriever).ask("How many troops would the new US policy send to Libya?")
    shown = sources_html(0, answer, retriever)
    c = answer.citations[0]
    assert f"characters {c.start}–{c.end}" in shown
    assert shown.count("<mark>") == 2 * len(answer.citations)  # each: once in its passage, once in the viewer
    assert "<mark>According to the CNN report" in shown
    assert 'data-cite="0-1"' in shown


def test_document_view_windows_long_documents():
    document = Document("long", "a " * 20000 + "NEEDLE" + " b" * 20000)
    start = document.text.index("NEEDLE")
    view = document_view(document, start, start + 6)
    assert "<mark>NEEDLE</mark>" in view
    assert view.startswith("… ") and view.endswith(" …")
    assert len(view) < 2 * VIEW_CHARS + 100
    short = Document("short", "one  two\n  NEEDLE three")
    at = short.text.index("NEEDLE")
    assert document_view(short, at, at + 6) == "one two\n<mark>NEEDLE</mark> three"


def test_the_short_answer_leads_in_bold_and_is_marked_inside_its_source():
    text = "The bridge was finished in 1563 under Duke Anselm."
    citation = Citation(1, "d", "T", 0, len(text), text, 0.9, text, 0, len(text))
    phrase = Phrase("1563", "d", text.index("1563"), text.index("1563") + 4, 0.8)
    answer = Answer("When?", f"{text} [1]", True, (citation,), confidence=0.9, phrase=phrase)
    shown = answer_html(0, answer)
    assert shown.startswith("<strong>1563</strong>")
    assert "very likely right (90%)" in shown
    assert '<strong class="qa-phrase">1563</strong>' in marked(citation, answer)
    assert confidence_words(0.3) == "unsure: check the source"


def cite(n: int, document: Document, sentence: str, *, also_in: tuple[str, ...] = ()) -> Citation:
    start = document.text.index(sentence)
    return Citation(n, document.doc_id, document.title, start, start + len(sentence), sentence, 0.9, sentence,
                    start, start + len(sentence), also_in)


def test_sources_show_each_document_once_above_its_cards(retriever, tmp_path):
    article = retriever.documents[0]
    sentences = ["This plan could face several immediate challenges.",
                 "The Libya policy would also seek to reopen the US embassy in"]
    citations = tuple(cite(n, article, s) for n, s in enumerate(sentences, 1))
    answer = Answer("q", "One. [1] Two. [2]", True, citations, confidence=0.9)
    shown = sources_html(0, answer, retriever)
    assert shown.count('class="qa-source"') == 2
    assert shown.count('class="qa-doc-head"') == 1  # the 16-word title once, not on every card
    cards = re.sub(r"<details.*?</details>", "", shown, flags=re.S)  # less the document viewers, closed
    assert cards.count(esc(article.title)) == 2  # the heading, and the copied text's one line for it
    assert 'data-cite="0-1"' in shown and 'data-cite="0-2"' in shown
    assert shown.index('class="qa-doc-head"') < shown.index('class="qa-source"')


def test_uploaded_documents_are_named_by_their_file_and_copies_are_named(retriever, tmp_path):
    notes = "Field notes.\nThe herd of Okavango zebras migrated exactly 412 kilometres in the spring of 2021.\n"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "zebra-notes.txt").write_text(notes)
    # read as the app reads uploads: each keeps its file's name, not where it lay on the server
    first = read_upload(str(tmp_path / "a" / "zebra-notes.txt"), taken=set(), chars=0, count=0)
    copy = read_upload(str(tmp_path / "b" / "zebra-notes.txt"), taken={"zebra-notes"}, chars=0, count=1)
    corpus = retriever.extend([first, copy])
    sentence = "The herd of Okavango zebras migrated exactly 412 kilometres in the spring of 2021."
    article = retriever.documents[0]
    citations = (cite(1, first, sentence, also_in=("zebra-notes-2",)),
                 cite(2, article, "This plan could face several immediate challenges."))
    shown = sources_html(0, Answer("q", "Zebras. [1] Plans. [2]", True, citations, confidence=0.9), corpus)
    heads = shown.split('class="qa-doc-head"')[1:]
    assert len(heads) == 2
    assert '<span class="qa-title">zebra-notes</span><span class="qa-file">zebra-notes.txt</span>' in heads[0]
    assert "also in: zebra-notes (zebra-notes.txt, zebra-notes-2)" in shown
    assert str(tmp_path) not in shown.split('class="qa-copy"')[0]  # a file's name, never where it lay on the server
    assert document_name(corpus, "libya-policy-newsweek") == article.title  # no file: the title alone


def test_a_pdf_source_card_says_its_page_and_shows_that_page(retriever, tmp_path):
    from fpdf import FPDF

    pages = ["Annual report of the Tobruk harbour authority.", "The revenue in 2025 was 4.2 million euros.",
             "Staff numbers grew to forty people."]
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(tmp_path / "report.pdf"))
    report = read_upload(str(tmp_path / "report.pdf"), taken=set(), chars=0, count=0)  # as the app reads uploads
    corpus = retriever.extend([report])
    answer = Assistant(corpus).ask("What was the revenue in 2025?", where=["report"])
    assert answer.citations[0].page == 2
    shown = sources_html(0, answer, corpus)
    assert '<span class="qa-page">page 2</span> · characters' in shown
    viewer = shown.split('class="qa-doc"')[1]
    assert viewer.startswith('><div class="qa-page-head">Page 2 of 3</div>')
    assert "<mark>The revenue in 2025 was 4.2 million euros.</mark>" in viewer
    assert "Tobruk" not in viewer and "Staff" not in viewer  # that page's text only
    assert "[1] page 2, characters" in shown.split('class="qa-copy"')[1]


def test_a_source_card_shows_the_section_it_comes_from(retriever, tmp_path):
    (tmp_path / "budget.md").write_text("# Budget\n\n## 2025\n\nThe harbour budget for 2025 is 55,000 euros.\n")
    notes = read_upload(str(tmp_path / "budget.md"), taken=set(), chars=0, count=0)
    corpus = retriever.extend([notes])
    answer = Assistant(corpus).ask("What is the harbour budget for 2025?", where=["budget"])
    assert answer.citations[0].section == "Budget › 2025"
    assert '<span class="qa-section">Budget › 2025</span> · characters' in sources_html(0, answer, corpus)
