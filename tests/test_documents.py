"""Documents: validation, the bundled article, and reading each supported file type."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import qa.documents
from qa import Document, DocumentError, QAError, bundled_article

REPO = Path(__file__).resolve().parents[1]
SHARED_ARTICLE = REPO.parent / "shared" / "corpus" / "libya-policy-newsweek.txt"
PACKAGED_ARTICLE = REPO / "qa" / "data" / "libya-policy-newsweek.txt"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF whose page shows `lines` in Helvetica (ASCII only)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# -- Document validation ------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n"])
def test_empty_text_is_rejected(text: str) -> None:
    with pytest.raises(DocumentError, match="empty"):
        Document(doc_id="notes", text=text)


@pytest.mark.parametrize("doc_id", ["", "   "])
def test_empty_doc_id_is_rejected(doc_id: str) -> None:
    with pytest.raises(DocumentError, match="doc_id"):
        Document(doc_id=doc_id, text="Some text.")


def test_document_error_is_a_qa_error_and_a_value_error() -> None:
    with pytest.raises(QAError):
        Document(doc_id="x", text="")
    with pytest.raises(ValueError):
        Document(doc_id="x", text="")


def test_over_long_document_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qa.documents, "MAX_DOCUMENT_CHARS", 10)
    Document(doc_id="ok", text="x" * 10)
    with pytest.raises(DocumentError, match="limit"):
        Document(doc_id="big", text="x" * 11)


def test_title_defaults_to_doc_id_and_fingerprint_is_text_sha256() -> None:
    document = Document(doc_id="notes", text="Tobruk is a port.")
    assert document.title == "notes"
    assert document.fingerprint == sha256(b"Tobruk is a port.")
    assert Document(doc_id="notes", text="Tobruk is a port.", title="Ports").title == "Ports"


# -- the bundled article -------------------------------------------------------------


def test_bundled_article_is_byte_identical_to_the_shared_corpus() -> None:
    if not SHARED_ARTICLE.is_file():
        pytest.skip(f"{SHARED_ARTICLE} not found (the shared corpus sits beside the repository)")
    reference = sha256(SHARED_ARTICLE.read_bytes())
    assert sha256(PACKAGED_ARTICLE.read_bytes()) == reference
    article = bundled_article()
    assert sha256(article.text.encode("utf-8")) == reference
    assert article.fingerprint == reference


def test_bundled_article_id_and_title() -> None:
    article = bundled_article()
    last_line = PACKAGED_ARTICLE.read_text(encoding="utf-8").strip().splitlines()[-1].strip()
    assert article.doc_id == "libya-policy-newsweek"
    assert article.title == last_line
    assert article.title.startswith("With ISIS on the Brink of Defeat")
    assert article.title.endswith("Newsweek")


# -- reading files ---------------------------------------------------------------------


def test_txt_is_kept_exactly(tmp_path: Path) -> None:
    text = "First line.\n\n   Indented   second line.\n"
    path = tmp_path / "My Field Notes.txt"
    path.write_bytes(text.encode("utf-8"))
    document = Document.from_path(path)
    assert document.text == text
    assert document.doc_id == "my-field-notes"
    assert document.title == "My Field Notes"


def test_txt_with_utf8_bom_and_cp1252(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfCaf\xc3\xa9 in Tripoli.")
    assert Document.from_path(bom).text == "Café in Tripoli."
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("Caf\u00e9 \u201cquoted\u201d.".encode("cp1252"))
    assert Document.from_path(legacy).text == "Café \u201cquoted\u201d."


FRENCH = "Le café de la gare: crème brûlée, naïve façade. Über große Straßen, “quoted”.\n"
RUSSIAN = "Привет, как дела? Это текст на русском языке, о городе Триполи и его порте.\n"


JAPANESE = "日本語の文章です。東京は大きな都市です。私は毎朝コーヒーを飲みます。今日は天気がいいので公園に行きました。"
CHINESE = "中文文本，北京是首都。我们今天去公园散步，天气很好。这是一个很长的句子，用来测试编码检测。"
KOREAN = "한국어 텍스트입니다. 서울은 대한민국의 수도입니다. 오늘은 날씨가 좋습니다."


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(FRENCH, "cp1252"), (FRENCH * 20, "cp1252"), ("Caf\u00e9", "latin-1"), (FRENCH, "utf-16"),
     (FRENCH, "utf-32"), (RUSSIAN * 5, "cp1251"), ("Señor Muñoz paid 5 € for the piñata.", "cp1252"),
     # Short Western text fits no language: it was read as Baltic ("Cafķ") or UTF-16 before.
     ("Caf\u00e9 au lait.", "latin-1"), ("\u00abcaf\u00e9\u00bb", "cp1252"), ("Il fait beau \u00e0 Paris.", "latin-1"),
     # Legacy Asian encodings form some valid UTF-8 by chance; that must not pass for damaged UTF-8.
     (JAPANESE * 3, "shift_jis"), (CHINESE * 3, "gb2312"), (KOREAN * 3, "euc_kr")],
)
def test_text_that_is_not_utf8_is_decoded_not_garbled(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode(encoding))  # Python's utf-16 and utf-32 write a byte-order mark
    assert Document.from_path(path).text == text


@pytest.mark.parametrize(
    ("data", "text", "where"),
    [
        # The file: "Ã(" and "â‚" in the index before, under a legacy code page.
        (b"Valid start. Then broken: \xc3\x28 and \xe2\x82 here\xe2\x80\xa6",
         "Valid start. Then broken: \ufffd( and \ufffd here\u2026",
         "byte 0xc3 at position 26, bytes 0xe2 0x82 at position 33"),
        ("Le café, la crème. ".encode() * 5 + b"\xc3(" + b" Fin.",
         "Le café, la crème. " * 5 + "\ufffd( Fin.", "byte 0xc3 at position 105"),
        # Issue 33's note: no valid multi-byte character anywhere, only sequences that begin like UTF-8 and
        # break off. It was read as Windows-1252 ("Ã(", "â‚") without a warning.
        (b"Valid start of the memo. Then broken: \xc3\x28 and \xe2\x82 here. The vault code is 4417.",
         "Valid start of the memo. Then broken: \ufffd( and \ufffd here. The vault code is 4417.",
         "byte 0xc3 at position 38, bytes 0xe2 0x82 at position 45"),
        (b"Cut off at the end: \xf0\x9f\x98", "Cut off at the end: \ufffd", "bytes 0xf0 0x9f 0x98 at position 20"),
    ],
    ids=["the issue's file", "one broken byte in French", "only cut-off sequences", "a cut emoji"],
)
def test_damaged_utf8_reads_with_replacement_characters_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, text: str, where: str
) -> None:
    path = write(tmp_path / "damaged.txt", data)
    with caplog.at_level("WARNING", logger="qa.documents"):
        assert Document.from_path(path).text == text
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith("damaged.txt: damaged UTF-8")
    assert where in message


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("café naïve", "cp1252"), ("The Café… and a naïve man went home.", "cp1252"),
     ("Señor Muñoz", "cp1252"), (RUSSIAN * 5, "cp1251"), ("\u00abcaf\u00e9\u00bb", "cp1252")],
)
def test_legacy_text_is_not_taken_for_damaged_utf8(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, encoding: str
) -> None:
    """An accented letter inside a word ("na\xefve") or a lone symbol byte keeps the legacy reading, quietly."""
    path = write(tmp_path / "legacy.txt", text.encode(encoding))
    with caplog.at_level("WARNING", logger="qa.documents"):
        assert Document.from_path(path).text == text
    assert caplog.records == []


def test_valid_utf8_reads_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "fine.txt", "Le café, la crème… “quoted”.".encode())
    with caplog.at_level("WARNING"):
        assert Document.from_path(path).text == "Le café, la crème… “quoted”."
    assert caplog.records == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe\xc3( caf\xc3\xa9", "byte-order mark but is not UTF-16"),  # shown as "ÿþÃ( café" before
        # Too short for any detector, and not Western text: refused, not guessed (it came out as Chinese).
        ("Привет".encode("cp1251"), "encoding cannot be recognised"),
    ],
    ids=["false UTF-16 byte-order mark", "six Cyrillic bytes"],
)
def test_text_of_unknown_encoding_is_rejected_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    path = write(tmp_path / "odd.txt", data)
    with pytest.raises(DocumentError, match=reason) as caught:
        Document.from_path(path)
    assert "odd.txt" in str(caught.value) and "save it" in str(caught.value)


def test_file_name_that_is_not_utf8_gives_a_printable_title(tmp_path: Path) -> None:
    """The file is found again by its path; the title shown and printed as JSON has U+FFFD for the bad byte."""
    name = os.fsdecode(b"caf\xe9 notes.txt")
    path = write(tmp_path / name, b"Tobruk is a port.")
    document = Document.from_path(path)
    assert document.title == "caf\ufffd notes"
    assert Path(document.path).read_bytes() == b"Tobruk is a port."
    document.title.encode("utf-8")  # printable


def test_explicit_id_and_title_win(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# Heading\n\nBody.", encoding="utf-8")
    document = Document.from_path(path, doc_id="custom", title="Custom title")
    assert (document.doc_id, document.title) == ("custom", "Custom title")


def test_markdown_title_from_heading(tmp_path: Path) -> None:
    text = "Intro line without heading.\n\n# Libya Policy Notes\n\n## Details\n\nThe embassy may reopen.\n"
    path = tmp_path / "notes.md"
    path.write_text(text, encoding="utf-8")
    document = Document.from_path(path)
    assert document.title == "Libya Policy Notes"
    assert document.text == text


@pytest.mark.parametrize(("text", "title"), [("# Bike care ##\n\nBody.\n", "Bike care"),
                                            ("#\n\nNot a title.\n\n# Real title\n", "Real title")])
def test_markdown_title_leaves_out_closing_hashes_and_stays_on_its_line(tmp_path: Path, text: str,
                                                                       title: str) -> None:
    path = write(tmp_path / "notes.md", text.encode())
    assert Document.from_path(path).title == title


def test_markdown_without_heading_is_titled_by_file_name(tmp_path: Path) -> None:
    path = tmp_path / "plain-notes.md"
    path.write_text("Just a paragraph.\n", encoding="utf-8")
    assert Document.from_path(path).title == "plain-notes"


def test_html_drops_scripts_and_styles_and_uses_title(tmp_path: Path) -> None:
    html = """<!doctype html>
<html><head><title>Libya Briefing</title>
<style>body { color: red; } .secret-style {}</style>
<script>var secretScript = "do not index";</script></head>
<body>
<h1>Heading text</h1>
<p>The US may reopen its embassy in <b>Tripoli</b>.</p>
<script>console.log("also hidden")</script>
<noscript>Enable JavaScript</noscript>
<p>Second paragraph.</p>
</body></html>"""
    path = tmp_path / "briefing.html"
    path.write_text(html, encoding="utf-8")
    document = Document.from_path(path)
    assert document.title == "Libya Briefing"
    for hidden in ("secretScript", "do not index", "secret-style", "color: red", "also hidden", "Enable JavaScript"):
        assert hidden not in document.text
    assert "Heading text" in document.text
    assert "Tripoli" in document.text
    assert "Second paragraph." in document.text
    assert "<" not in document.text


def test_html_inline_markup_does_not_break_sentences(tmp_path: Path) -> None:
    path = tmp_path / "inline.html"
    path.write_text(
        "<p>The US may reopen its embassy in <b>Tripoli</b>. See <a href='r.html'>the report</a>, page 2.</p>",
        encoding="utf-8",
    )
    text = " ".join(Document.from_path(path).text.split())
    assert text == "The US may reopen its embassy in Tripoli. See the report, page 2."


def test_html_blocks_become_paragraphs_and_inline_tags_flow(tmp_path: Path) -> None:
    path = tmp_path / "layout.html"
    path.write_text(
        "<body><!-- a comment --><div><h2>Derna   flood</h2><p>The dam <em>broke</em> on\n"
        "<span>11 September</span>.<br>Thousands died.</p></div><ul><li>First <b>item</b></li><li>Second</li></ul>"
        "<table><tr><th>City</th><th>Population</th></tr><tr><td>Tripoli</td><td>1.1m</td></tr></table>"
        "<pre>line one\nline two</pre>Loose text</body>",
        encoding="utf-8",
    )
    assert Document.from_path(path).text.split("\n\n") == [
        "Derna flood",
        "The dam broke on 11 September.\nThousands died.",
        "First item",
        "Second",
        "City Population",
        "Tripoli 1.1m",
        "line one\nline two",
        "Loose text",
    ]


def test_html_without_title_is_titled_by_file_name(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<p>Only a paragraph.</p>", encoding="utf-8")
    document = Document.from_path(path)
    assert document.title == "page"
    assert document.text == "Only a paragraph."


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(["Tobruk has a deep harbour.", "The second line is here."]))
    document = Document.from_path(path)
    assert " ".join(document.text.split()) == "Tobruk has a deep harbour. The second line is here."
    assert document.doc_id == "report"
    assert document.title == "report"


# -- errors name the file ----------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("slides.xlsx", b"PK\x03\x04 some zip", "unsupported file type"),
        ("slides.docx", b"PK\x03\x04 some zip", "not a readable Word file"),
        ("no-suffix", b"plain text", "unsupported file type"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
        ("empty.txt", b"", "no text"),
        ("blank.md", b"  \n\n\t\n", "no text"),
        ("scripts-only.html", b"<html><script>var x = 1;</script></html>", "no text"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
    ],
)
def test_unreadable_content_names_the_file(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(DocumentError, match=reason) as caught:
        Document.from_path(path)
    assert name in str(caught.value)


def test_a_nul_byte_anywhere_marks_a_binary_file(tmp_path: Path) -> None:
    text = b"Plain notes about the okapi. " * 5000  # 145,000 bytes of text, then one NUL far past the first 8 KB
    path = write(tmp_path / "notes.txt", text + b"\x00" + text)
    with pytest.raises(DocumentError, match=r"notes.txt: looks like a binary file, not text \(a NUL byte at byte "
                                            r"145,000\)"):
        Document.from_path(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot read") as caught:
        Document.from_path(tmp_path / "missing-notes.txt")
    assert "missing-notes.txt" in str(caught.value)


def test_directory_is_not_readable(tmp_path: Path) -> None:
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(DocumentError, match="folder.txt"):
        Document.from_path(tmp_path / "folder.txt")


def test_oversized_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qa.documents, "MAX_FILE_BYTES", 100)
    small = write(tmp_path / "small.txt", b"x" * 100)
    assert Document.from_path(small).text == "x" * 100
    big = write(tmp_path / "big.txt", b"x" * 101)
    with pytest.raises(DocumentError, match="limit") as caught:
        Document.from_path(big)
    assert "big.txt" in str(caught.value)
