"""PDF pages, Word files and sections (issue 31, items 1-4), on real files made by real libraries.

PDFs are written with fpdf2 and read back with pypdf; Word files are written with python-docx. Every
page and section is checked against offsets into the document's whole text, which must stay exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from qa import Retriever
from qa.answer import Assistant
from qa.chunking import split_sentences
from qa.cli import main
from qa.docrows import document_from_row, document_row
from qa.documents import Document
from qa.errors import DocumentError

REPORT_PAGES = [
    "Annual report of the Tobruk harbour authority. It covers the years 2024 and 2025.",
    "The revenue in 2025 was 4.2 million euros. Fishing fees brought in most of it.",
    "Staff numbers grew to forty people. The new quay opened in the spring.",
]


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF with one page per text (an empty text gives an empty page)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    """A real Word file: a title, headings on two levels, paragraphs, list items and a table."""
    document = docx.Document()
    document.add_paragraph("Harbour plan", style="Title")
    document.add_heading("Budget", level=1)
    document.add_paragraph("The budget was reviewed in March. It grew after the review.")
    document.add_heading("2025", level=2)
    document.add_paragraph("The budget for 2025 is 55,000 euros.")
    document.add_paragraph("Dredging the outer basin", style="List Bullet")
    document.add_paragraph("Repairing the lighthouse", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Item", (0, 1): "Cost", (1, 0): "Lighthouse", (1, 1): "9,000 euros"}.items():
        table.cell(row, col).text = text
    document.add_heading("Staff", level=1)
    document.add_paragraph("Nine people work at the harbour office.")
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


# -- PDF pages --------------------------------------------------------------------------------


def test_every_sentence_of_a_pdf_knows_its_page(tmp_path: Path) -> None:
    document = Document.from_path(make_pdf(tmp_path / "report.pdf", REPORT_PAGES))
    assert len(document.pages) == 3 and document.pages[0] == 0
    for page, text in enumerate(REPORT_PAGES, start=1):
        start, end = document.page_span(page)
        assert document.text[start:end].strip() == text  # offsets index the whole text exactly
    pages = {s.text: document.page_at(s.start) for s in split_sentences(document)}
    assert pages == {"Annual report of the Tobruk harbour authority.": 1, "It covers the years 2024 and 2025.": 1,
                     "The revenue in 2025 was 4.2 million euros.": 2, "Fishing fees brought in most of it.": 2,
                     "Staff numbers grew to forty people.": 3, "The new quay opened in the spring.": 3}


def test_an_empty_page_keeps_the_numbers_of_the_pages_after_it(tmp_path: Path) -> None:
    document = Document.from_path(make_pdf(tmp_path / "gap.pdf", ["", REPORT_PAGES[0], "", REPORT_PAGES[1]]))
    assert document.pages == (0, 0, len(REPORT_PAGES[0]), len(REPORT_PAGES[0]) + 2)
    assert document.page_at(document.text.index("Annual")) == 2
    assert document.page_at(document.text.index("Fishing")) == 4
    assert document.text[slice(*document.page_span(3))].strip() == ""


def test_other_files_have_no_pages(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Plain notes. Nothing more.", encoding="utf-8")
    document = Document.from_path(path)
    assert document.pages == () and document.page_at(3) is None and document.section_at(3) is None


@pytest.mark.parametrize(("pages", "headings"), [((1, 5), ()), ((0, 9, 4), ()), ((0, 99), ()), ((), ((1, 5, 3),)),
                                                 ((), ((7, 0, 3),)), ((), ((1, 0, 999),))])
def test_pages_and_headings_must_fit_the_text(pages: tuple[int, ...], headings: tuple) -> None:
    with pytest.raises(DocumentError, match="page starts|heading"):
        Document("d", "Some text that is long enough.", pages=pages, headings=headings)


# -- Word files ------------------------------------------------------------------------------


def test_word_structure_becomes_sentences_with_sections(tmp_path: Path) -> None:
    document = Document.from_path(make_docx(tmp_path / "plan.docx"))
    assert document.title == "Harbour plan"
    sentences = [(s.text, document.section_at(s.start)) for s in split_sentences(document)]
    assert sentences == [
        ("Harbour plan", None),
        ("Budget", "Budget"),
        ("The budget was reviewed in March.", "Budget"),
        ("It grew after the review.", "Budget"),
        ("2025", "Budget › 2025"),
        ("The budget for 2025 is 55,000 euros.", "Budget › 2025"),
        ("Dredging the outer basin", "Budget › 2025"),  # list items: a sentence each, without the marker
        ("Repairing the lighthouse", "Budget › 2025"),
        ("Item | Cost", "Budget › 2025"),  # table rows: a sentence each, without the outer pipes
        ("Lighthouse | 9,000 euros", "Budget › 2025"),
        ("Staff", "Staff"),
        ("Nine people work at the harbour office.", "Staff"),
    ]
    assert all(document.text[s.start:s.end] == s.text for s in split_sentences(document))


@pytest.mark.parametrize("data", [b"not a zip at all", b"PK\x03\x04broken", b""], ids=["text", "cut zip", "empty"])
def test_a_bad_word_file_gives_one_clear_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(data)
    with pytest.raises(DocumentError) as caught:
        Document.from_path(path)
    message = str(caught.value)
    assert message.startswith("broken.docx: ") and "\n" not in message
    assert "not a readable Word file" in message or "no text" in message


def test_a_zip_that_is_not_a_word_file_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "fake.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(DocumentError, match=r"^fake\.docx: not a readable Word file"):
        Document.from_path(path)


# -- sections in Markdown and HTML -----------------------------------------------------------


def test_markdown_and_html_headings_give_sections(tmp_path: Path) -> None:
    markdown = tmp_path / "budget.md"
    markdown.write_text("# Budget #\n\nIntro.\n\n## 2025\n\nThe budget is 55,000 euros.\n\n### Q1 ###\nSpent little."
                        "\n\n# Staff\nNine.\n", encoding="utf-8")
    page = tmp_path / "budget.html"
    page.write_text("<html><head><title>Plan</title></head><body><h1>Budget</h1><p>Intro.</p>"
                    "<h2> 2025 <em>plan</em></h2><p>The budget is 55,000 euros.</p><h2></h2><h1>Staff</h1>"
                    "<p>Nine.</p></body></html>", encoding="utf-8")
    for path, section in ((markdown, "Budget › 2025"), (page, "Budget › 2025 plan")):
        document = Document.from_path(path)
        at = document.text.index("The budget is")
        assert document.section_at(at) == section
        assert document.section_at(document.text.index("Nine")) == "Staff"
    html_document = Document.from_path(page)
    assert html_document.text == "Budget\n\nIntro.\n\n2025 plan\n\nThe budget is 55,000 euros.\n\nStaff\n\nNine."
    assert Document.from_path(markdown).section_at(Document.from_path(markdown).text.index("Spent")) == (
        "Budget › 2025 › Q1")


# -- persistence -----------------------------------------------------------------------------


def test_rows_keep_pages_and_headings_and_older_rows_still_load(tmp_path: Path) -> None:
    pdf = Document.from_path(make_pdf(tmp_path / "report.pdf", REPORT_PAGES))
    word = Document.from_path(make_docx(tmp_path / "plan.docx"))
    for document in (pdf, word):
        assert document_from_row(json.loads(json.dumps(document_row(document)))) == document
    old = {"doc_id": "old", "title": "Old", "text": "Written before pages were kept.", "path": None, "modified": None}
    assert document_from_row(old).pages == () and document_from_row(old).headings == ()


# -- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reports")
    make_pdf(folder / "report.pdf", REPORT_PAGES)
    make_docx(folder / "plan.docx")
    out = folder.parent / (folder.name + "-index")
    assert main(["index", str(folder), "--out", str(out)]) == 0
    return out


def test_a_loaded_index_keeps_pages_and_sections(folder_index: Path) -> None:
    retriever = Retriever.load(folder_index)
    report = retriever.document("report")
    assert len(report.pages) == 3
    passages = retriever.search("revenue in 2025", k=3)
    assert passages[0].doc_id == "report" and passages[0].page == 2
    for chunk in retriever.corpus.chunks:  # a PDF's passages never run across a page break
        if chunk.doc_id == "report":
            assert report.page_at(chunk.start) == report.page_at(chunk.end - 1)
    answer = Assistant(retriever).ask("How much is the budget for 2025?")
    assert answer.found and answer.citations[0].doc_id == "plan"
    assert answer.citations[0].section == "Budget › 2025" and answer.citations[0].page is None


def test_ask_json_carries_page_and_section(folder_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What was the revenue in 2025?", "--index", str(folder_index), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["citations"][0]
    assert first["doc_id"] == "report" and first["page"] == 2 and first["section"] is None
    assert "4.2 million euros" in first["text"]
    assert main(["ask", "How much is the budget for 2025?", "--index", str(folder_index), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["citations"][0]
    assert first["page"] is None and first["section"] == "Budget › 2025"
    assert main(["ask", "What was the revenue in 2025?", "--index", str(folder_index)]) == 0
    assert "(page 2, characters " in capsys.readouterr().out
    assert main(["search", "revenue", "-k", "1", "--index", str(folder_index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"][0]["page"] == 2


def test_index_counts_skipped_files_by_type_and_names_a_bad_word_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "notes"
    make_docx(folder / "plan.docx")
    (folder / "broken.docx").write_bytes(b"not a zip at all")
    for name in ("photo.jpg", "scan.JPG", "sheet.xlsx", "README", ".hidden.jpg", ".git/config.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\x89 binary")
    assert main(["index", str(folder), "--out", str(tmp_path / "idx")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("indexed 1 documents")
    assert lines[2] == "  skipped 5 files: 2 .jpg, 1 .xlsx, 1 no extension, 1 that could not be used:"
    assert lines[3] == f"    {(folder / 'broken.docx').resolve()}: not a readable Word file (File is not a zip file)"
    assert len(lines) == 4  # hidden files and folders: not a word


def test_an_index_from_before_pages_gets_them_on_the_next_qa_index(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    folder, out = tmp_path / "reports", tmp_path / "idx"
    make_pdf(folder / "report.pdf", REPORT_PAGES)
    assert main(["index", str(folder), "--out", str(out)]) == 0
    current = Retriever.load(out)
    report = current.document("report")
    older = Document(report.doc_id, report.text, report.title, report.path, report.modified)  # no pages
    current.with_documents([older]).save(out)  # the rows an index written before pages has
    assert Retriever.load(out).document("report").pages == ()
    capsys.readouterr()
    assert main(["index", str(folder), "--out", str(out)]) == 0
    assert "changed 1" in capsys.readouterr().err  # split again (chunks within pages), though its text is the same
    upgraded = Retriever.load(out)
    assert upgraded.document("report").pages == report.pages
    assert [dataclasses.astuple(p)[:5] for p in upgraded.search("revenue", k=1)] == [
        dataclasses.astuple(p)[:5] for p in current.search("revenue", k=1)]
