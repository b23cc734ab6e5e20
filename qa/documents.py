"""Documents: the texts the assistant answers from, and how files become them.

A `Document` holds the exact text that every offset in the project points
into. Files are read with well-kept parsers (BeautifulSoup for HTML, pypdf
for PDF, python-docx for Word, in `qa.wordfiles`); plain text and Markdown
are kept exactly as decoded (UTF-8, or an encoding recognised by
charset-normalizer) so citations can be highlighted in the original. A file
that is UTF-8 but for a few damaged bytes (even one with no whole multi-byte
character, only sequences that break off) is read with replacement
characters there, and a warning (logged, shown by `qa index`) names the
byte positions.

A document also knows where its pages start (PDF: `pages`, so a citation
says "page 2") and where its headings are (Markdown, HTML, Word:
`headings`, so a citation says "Budget › 2025"). Both are offsets into the
same text, which stays exactly what the sentences index.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import DocumentError
from .extracted import Extracted, Heading

log = logging.getLogger(__name__)

BUNDLED_ARTICLE = "libya-policy-newsweek.txt"
SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_DOCUMENT_CHARS = 2_000_000

# HTML elements laid out as blocks; they become paragraphs of the extracted text.
_BLOCK_TAGS = [
    "address", "article", "aside", "blockquote", "caption", "center", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
]
# Private-use characters that mark breaks while the HTML tree is flattened to text.
_BLOCK_MARK, _LINE_MARK = "\ue000", "\ue001"
# Private-use characters around a heading's text (the opening one followed by the level, 1..6).
_HEAD_OPEN, _HEAD_CLOSE = "\ue002", "\ue003"
_HEAD_MARKS = re.compile(f"{_HEAD_OPEN}([1-6])|{_HEAD_CLOSE}")
# A Markdown ATX heading line: up to three spaces, one to six '#', a space, the text (closing '#'s trimmed later).
_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+([^\n]*)$", re.MULTILINE)
SECTION_SEPARATOR = " \u203a "  # "Budget › 2025"

@dataclass(frozen=True)
class Document:
    """One text to answer from.

    Attributes:
        doc_id: stable identifier, unique within an index.
        text: the full text; every `start`/`end` offset in the project indexes it.
        title: a human-readable name shown next to citations.
        path: the file it was read from, absolute, if any.
        modified: the file's modification time (seconds since the epoch) when it was read.
        pages: where each page starts in `text` (PDF files; empty for others): page n (1-based) is
            `text[pages[n - 1]:pages[n]]`; an empty page starts where the next one does.
        headings: (level, start, end) of each heading's text in `text`, in order (Markdown, HTML, Word).
    """

    doc_id: str
    text: str
    title: str = ""
    path: str | None = None
    modified: float | None = None
    pages: tuple[int, ...] = ()
    headings: tuple[Heading, ...] = ()
    fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.doc_id or not self.doc_id.strip():
            raise DocumentError("a document needs a non-empty doc_id")
        if not self.text.strip():
            raise DocumentError(f"document {self.doc_id!r} is empty: it has no text to answer from")
        if len(self.text) > MAX_DOCUMENT_CHARS:
            raise DocumentError(
                f"document {self.doc_id!r} has {len(self.text):,} characters; "
                f"the limit is {MAX_DOCUMENT_CHARS:,}: split it into smaller files"
            )
        if not self.title:
            object.__setattr__(self, "title", self.doc_id)
        pages = tuple(int(p) for p in self.pages)
        backwards = any(b < a for a, b in zip(pages, pages[1:], strict=False))
        if pages and (pages[0] != 0 or backwards or pages[-1] > len(self.text)):
            raise DocumentError(f"document {self.doc_id!r}: page starts {pages[:5]}… must begin at 0, never "
                                "decrease and lie within the text")
        headings = tuple((int(level), int(start), int(end)) for level, start, end in self.headings)
        if any(not (1 <= level <= 6 and 0 <= start < end <= len(self.text)) for level, start, end in headings):
            raise DocumentError(f"document {self.doc_id!r}: a heading lies outside the text")
        object.__setattr__(self, "pages", pages)
        object.__setattr__(self, "headings", headings)
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        object.__setattr__(self, "fingerprint", digest)

    @classmethod
    def from_path(cls, path: str | Path, *, doc_id: str | None = None, title: str | None = None) -> Document:
        """Read a .txt, .md, .html, .pdf or .docx file; raise `DocumentError` naming the file and reason."""
        path = Path(path)
        found = read_file(path)
        return cls(doc_id=doc_id or slugify(path.stem), text=found.text,
                   title=title or found.title or _shown(path.stem), path=str(path.resolve()),
                   modified=_modified(path), pages=found.pages, headings=found.headings)

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding `offset`, or None for a document without pages."""
        return bisect_right(self.pages, offset) if self.pages else None

    def page_span(self, page: int) -> tuple[int, int]:
        """(start, end) of a 1-based page's text."""
        if not 1 <= page <= len(self.pages):
            raise ValueError(f"document {self.doc_id!r} has no page {page}")
        end = self.pages[page] if page < len(self.pages) else len(self.text)
        return self.pages[page - 1], end

    def section_at(self, offset: int) -> str | None:
        """The path of headings above `offset` ("Budget › 2025"), or None where no heading comes before it."""
        path: list[tuple[int, str]] = []
        for level, start, end in self.headings:
            if start > offset:
                break
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, " ".join(self.text[start:end].split())))
        return SECTION_SEPARATOR.join(text for _, text in path) or None


def _shown(name: str) -> str:
    """A file name fit to show and print: bytes that are not UTF-8 (lone surrogates in Python) become U+FFFD."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "replace").decode("utf-8")


def _modified(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def bundled_article() -> Document:
    """The default corpus: the Newsweek article shipped inside the package, titled by its last line."""
    text = resources.files("qa.data").joinpath(BUNDLED_ARTICLE).read_text(encoding="utf-8")
    last_line = text.strip().splitlines()[-1].strip()
    return Document(doc_id=Path(BUNDLED_ARTICLE).stem, text=text, title=last_line)


def read_text(path: Path) -> tuple[str, str | None]:
    """Extract the text of a file and a title if the format carries one."""
    found = read_file(path)
    return found.text, found.title


def read_file(path: Path) -> Extracted:
    """Extract the text of a file, a title if the format carries one, and its pages and headings."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(
            f"{path.name}: unsupported file type {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(f"{path.name}: {size:,} bytes is over the {MAX_FILE_BYTES:,}-byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot read file ({exc.strerror or exc})") from exc
    if suffix == ".pdf":
        found = _pdf_text(path.name, data)
    elif suffix == ".docx":
        from .wordfiles import docx_text

        found = docx_text(path.name, data)
    else:
        raw = _decode(path.name, data)
        if suffix in (".html", ".htm"):
            found = _html_text(raw)
        else:
            found = Extracted(raw, _markdown_title(raw),
                              headings=markdown_headings(raw) if suffix in (".md", ".markdown") else ())
    if not found.text.strip():
        raise DocumentError(f"{path.name}: no text found in the file")
    return found


def _decode(name: str, data: bytes) -> str:
    """Text from bytes: a byte-order mark's encoding, else UTF-8 first, then a recognised legacy encoding.

    UTF-8 with a few damaged bytes (a cut multi-byte character, one stray
    Latin-1 byte) is still UTF-8: those bytes become U+FFFD and a warning
    names their positions, instead of the whole file turning into mojibake
    ("Ã(", "â‚") under a legacy code page. Text with no UTF-8 in it goes to
    charset-normalizer, trusted only above a confidence floor; short Western
    text it cannot place ("Caf\xe9") is read as Windows-1252. Raises
    `DocumentError` for binary data, a false byte-order mark, and bytes whose
    encoding cannot be told, rather than guessing.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError:
                text = None
            if text is None or _messy(text):
                raise DocumentError(f"{name}: starts with a {encoding.upper()} byte-order mark but is not "
                                    f"{encoding.upper()} text; save it as UTF-8")
            return text
    nul = data.find(b"\x00")  # anywhere in the file: text has none, and indexing half a binary is worse than none
    if nul >= 0:
        raise DocumentError(f"{name}: looks like a binary file, not text (a NUL byte at byte {nul:,})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    damaged = _damaged_utf8(data)
    if damaged is not None:
        text, spans = damaged
        count = sum(end - start for start, end in spans)
        log.warning("%s: damaged UTF-8, %d byte%s not valid (%s); each broken spot reads as U+FFFD, the "
                    "replacement character: repair the file to restore them", name, count,
                    " is" if count == 1 else "s are", _describe_spans(data, spans))
    else:
        text = _legacy_text(data)
        if text is None:
            raise DocumentError(f"{name}: not UTF-8, and its encoding cannot be recognised; save it as UTF-8")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > 0.01 * min(len(text), 8192):
        raise DocumentError(f"{name}: looks like a binary file, not text")
    return text


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # UTF-32 LE starts like UTF-16 LE
# How `bytes.decode("utf-8", "surrogateescape")` shows a byte that is not UTF-8: 0x80..0xff as U+DC80..U+DCFF.
_ESCAPED = re.compile("[\udc80-\udcff]+")
# A file counts as damaged UTF-8 when it has valid multi-byte UTF-8 characters (which Western legacy
# text almost never forms by chance) and its broken spots are few: at most one per `_DAMAGE_RATIO` valid
# characters, or at most `_FEW_DAMAGED` in text that is mostly ASCII. Legacy Asian encodings, all high
# bytes, form some valid UTF-8 by chance but break it far more often.
# With no valid multi-byte character at all, mostly-ASCII text with at most `_FEW_DAMAGED` broken spots is
# still damaged UTF-8 when every spot begins like UTF-8 (a lead byte 0xc2..0xf4) and at least as many of
# them are cut-off sequences (a lead byte, then valid continuation bytes, then too few of them: "\xe2\x82 ")
# as are lone lead bytes (0xc3 before "("). A Windows-1252 accented letter is a lone lead byte, and inside a
# word, between two ASCII letters ("na\xefve"), it keeps the file with charset-normalizer; so does a legacy
# symbol byte 0x80..0xbf on its own ("\xabcaf\xe9\xbb"), which never begins UTF-8.
_DAMAGE_RATIO, _FEW_DAMAGED = 10, 3
# charset-normalizer's guess is used when its decoded text fits a language at least this well, with at most
# this much "chaos" (odd character sequences); short texts fit no language, so the floor rejects its guesses there.
_MIN_COHERENCE, _MAX_CHAOS = 0.1, 0.2
# Or when one encoding clearly wins on a text this long (multi-byte Asian encodings, where coherence is low).
_MIN_CLEAR_BYTES, _CLEAR_MARGIN = 100, 0.1


def _damaged_utf8(data: bytes) -> tuple[str, list[tuple[int, int]]] | None:
    """(text with U+FFFD for each broken spot, byte spans of those spots) if `data` is UTF-8 with a few damaged
    bytes; None if it does not read as UTF-8 at all."""
    escaped = data.decode("utf-8", "surrogateescape")
    multibyte = sum(1 for ch in escaped if ord(ch) > 127 and not "\udc80" <= ch <= "\udcff")
    spots = list(_ESCAPED.finditer(escaped))
    mostly_ascii = 4 * sum(1 for byte in data if byte > 127) <= len(data)
    few = len(spots) * _DAMAGE_RATIO <= multibyte or (mostly_ascii and len(spots) <= _FEW_DAMAGED)
    if not few:
        return None
    spans, pieces, position, offset = [], [], 0, 0
    for spot in spots:
        before = escaped[position:spot.start()]
        offset += len(before.encode("utf-8"))
        spans.append((offset, offset + len(spot.group())))
        offset += len(spot.group())
        pieces += [before, "\ufffd"]
        position = spot.end()
    pieces.append(escaped[position:])
    if not multibyte and not _cut_off_utf8(data, spans):
        return None
    return "".join(pieces), spans


def _cut_off_utf8(data: bytes, spans: list[tuple[int, int]]) -> bool:
    """Whether the broken spots look like UTF-8 sequences that break off, not like a legacy code page: each
    begins with a UTF-8 lead byte, none is a lone lead byte inside a word, and cut-off sequences (lead, then
    continuation bytes) are at least as many as lone lead bytes."""
    cut = lone = 0
    for start, end in spans:
        lead = data[start]
        if not 0xC2 <= lead <= 0xF4:
            return False
        if end - start > 1 and _continues(lead, data[start + 1]):
            cut += 1
        elif 0 < start and end < len(data) and _letter(data[start - 1]) and _letter(data[end]):
            return False  # an accented letter inside a word, as Windows-1252 writes "na\xefve"
        else:
            lone += 1
    return cut > 0 and cut >= lone


def _letter(byte: int) -> bool:
    return 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _continues(lead: int, byte: int) -> bool:
    """Whether `byte` may follow `lead` in UTF-8 (0x80..0xbf, narrower after 0xe0, 0xed, 0xf0 and 0xf4)."""
    low, high = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(
        lead, (0x80, 0xBF))
    return low <= byte <= high


def _describe_spans(data: bytes, spans: list[tuple[int, int]], shown: int = 5) -> str:
    """"byte 0xc3 at position 26, bytes 0xe2 0x82 at position 32" for the first few spans, then how many more."""
    parts = [f"byte{'s' if end - start > 1 else ''} {' '.join(f'0x{b:02x}' for b in data[start:end])} "
             f"at position {start}" for start, end in spans[:shown]]
    if len(spans) > shown:
        parts.append(f"and {len(spans) - shown} more")
    return ", ".join(parts)


def _messy(text: str) -> bool:
    from charset_normalizer.md import mess_ratio

    return mess_ratio(text[:20_000]) > 0.2


def _legacy_text(data: bytes) -> str | None:
    """Decode a legacy 8-bit or multi-byte encoding, None if it cannot be told.

    charset-normalizer's best guess is taken when it is confident: its text
    fits a language (`_MIN_COHERENCE`), or one encoding clearly beats the
    rest on a text long enough to judge. Short texts fit several code pages
    equally well and no language at all (it read "Caf\xe9" as Baltic
    "Cafķ" or as UTF-16), so below the floor a text that reads as mostly
    ASCII letters in Windows-1252, the commonest legacy encoding of Western
    European text, is taken as that; among guesses tied for best,
    Windows-1252 also wins.
    """
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data) if m.chaos <= _MAX_CHAOS]
    best = matches[0] if matches else None
    if best is not None and best.coherence >= _MIN_COHERENCE:
        for match in matches:
            tied = match.chaos <= best.chaos and match.coherence >= best.coherence
            if tied and "cp1252" in (match.encoding, *match.could_be_from_charset):
                return str(match) if match.encoding == "cp1252" else data.decode("cp1252", errors="replace")
        return str(best)
    western = _western_text(data)
    if western is not None:
        return western
    if best is not None and len(data) >= _MIN_CLEAR_BYTES and (
            len(matches) == 1 or matches[1].chaos >= best.chaos + _CLEAR_MARGIN):
        return str(best)
    return None


def _western_text(data: bytes) -> str | None:
    """`data` as Windows-1252 if that reads as Western text: no undefined bytes or controls, and at least half
    of its letters plain ASCII (Cyrillic or Greek read in Windows-1252 is all accented letters)."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined there
        return None
    letters = [ch for ch in text if ch.isalpha()]
    ascii_letters = sum(1 for ch in letters if ch.isascii())
    return text if letters and 2 * ascii_letters >= len(letters) else None


def _html_text(html: str) -> Extracted:
    """Text as a browser lays it out: inline tags flow within their paragraph, blocks are paragraphs.

    Block elements become paragraphs separated by a blank line (so the chunker
    sees them), `<br>` and the lines of `<pre>` become line breaks, and other
    whitespace collapses to single spaces. `<h1>`..`<h6>` are the headings.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html.replace(_HEAD_OPEN, "").replace(_HEAD_CLOSE, ""), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    _mark_breaks(soup)
    parts: list[str] = []
    headings: list[Heading] = []
    length = 0
    for block in soup.get_text().split(_BLOCK_MARK):
        text, spans = _unmark(_flow(block))
        if not text:
            continue
        if parts:
            length += 2
        headings.extend((level, length + start, length + end) for level, start, end in spans)
        parts.append(text)
        length += len(text)
    return Extracted("\n\n".join(parts), title or None, headings=tuple(headings))


def _unmark(block: str) -> tuple[str, list[Heading]]:
    """A block without its heading marks, trimmed, and the headings' (level, start, end) in it."""
    pieces, spans, position, length = [], [], 0, 0
    opened: tuple[int, int] | None = None
    for mark in _HEAD_MARKS.finditer(block):
        pieces.append(block[position:mark.start()])
        length += mark.start() - position
        position = mark.end()
        if mark.group(1):
            opened = (int(mark.group(1)), length)
        elif opened is not None:
            spans.append((opened[0], opened[1], length))
            opened = None
    pieces.append(block[position:])
    text = "".join(pieces)
    lead = len(text) - len(text.lstrip())
    text = text.strip()
    headings = []
    for level, start, end in spans:
        start, end = max(0, start - lead), min(len(text), end - lead)
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            headings.append((level, start, end))
    return text, headings


def _mark_breaks(soup: Any) -> None:
    """Put markers where layout breaks the text: around block elements, at `<br>` and `<pre>` lines."""
    for pre in soup("pre"):
        for string in list(pre.strings):
            string.replace_with(string.replace("\n", _LINE_MARK))
    for tag in soup(_BLOCK_TAGS):
        tag.insert_before(_BLOCK_MARK)
        tag.insert_after(_BLOCK_MARK)
    for tag in soup(["h1", "h2", "h3", "h4", "h5", "h6"]):
        tag.insert(0, _HEAD_OPEN + tag.name[1])
        tag.append(_HEAD_CLOSE)
    for tag in soup(["td", "th"]):
        tag.insert_after(" ")  # cells of a row are words apart, not glued together
    for tag in soup("br"):
        tag.replace_with(_LINE_MARK)


def _flow(block: str) -> str:
    """One block's text: each line's whitespace runs collapsed to one space, empty lines dropped."""
    lines = (" ".join(line.split()) for line in block.split(_LINE_MARK))
    return "\n".join(line for line in lines if line)


def _pdf_text(name: str, data: bytes) -> Extracted:
    """The pages' text, a blank line between pages, and where each page starts (an empty page where the next)."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"{name}: not a readable PDF ({exc})") from exc
    text, starts = "", []
    for page in pages:
        page = page.strip()
        if page and text:
            text += "\n\n"
        starts.append(len(text))
        text += page
    return Extracted(text, pages=tuple(starts))


def markdown_headings(text: str) -> tuple[Heading, ...]:
    """(level, start, end) of each ATX heading's text ("## Budget ##" gives "Budget")."""
    headings = []
    for match in _MD_HEADING.finditer(text):
        start, end = match.span(2)
        line = text[start:end].rstrip()
        closing = re.search(r"(?:^|[ \t])#+$", line)
        if closing:
            line = line[:closing.start()]
        end = start + len(line.rstrip())
        if end > start:
            headings.append((len(match.group(1)), start, end))
    return tuple(headings)


def _markdown_title(text: str) -> str | None:
    """The first level-one heading's text ("# Title" or "# Title #"), on its own line."""
    match = re.search(r"^#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def slugify(name: str) -> str:
    """A doc_id from a file name: lower case, words joined by '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "document"
