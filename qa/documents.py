"""Documents: the texts the assistant answers from, and how files become them.

A `Document` holds the exact text that every offset in the project points
into. Files are read with well-kept parsers (BeautifulSoup for HTML, pypdf
for PDF); plain text and Markdown are kept exactly as decoded (UTF-8, or an encoding
recognised by charset-normalizer) so citations can be highlighted in the
original.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import DocumentError

BUNDLED_ARTICLE = "libya-policy-newsweek.txt"
SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
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


@dataclass(frozen=True)
class Document:
    """One text to answer from.

    Attributes:
        doc_id: stable identifier, unique within an index.
        text: the full text; every `start`/`end` offset in the project indexes it.
        title: a human-readable name shown next to citations.
        path: the file it was read from, absolute, if any.
        modified: the file's modification time (seconds since the epoch) when it was read.
    """

    doc_id: str
    text: str
    title: str = ""
    path: str | None = None
    modified: float | None = None
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
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        object.__setattr__(self, "fingerprint", digest)

    @classmethod
    def from_path(cls, path: str | Path, *, doc_id: str | None = None, title: str | None = None) -> Document:
        """Read a .txt, .md, .html or .pdf file; raise `DocumentError` naming the file and reason."""
        path = Path(path)
        text, found_title = read_text(path)
        return cls(doc_id=doc_id or slugify(path.stem), text=text, title=title or found_title or path.stem,
                   path=str(path.resolve()), modified=_modified(path))


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
        text, title = _pdf_text(path.name, data), None
    else:
        raw = _decode(path.name, data)
        text, title = _html_text(raw) if suffix in (".html", ".htm") else (raw, _markdown_title(raw))
    if not text.strip():
        raise DocumentError(f"{path.name}: no text found in the file")
    return text, title


def _decode(name: str, data: bytes) -> str:
    """Text from bytes: UTF-8, a byte-order mark's encoding, or what charset-normalizer recognises.

    Raises `DocumentError` for binary data, damaged UTF-8 and bytes whose
    encoding cannot be told, rather than guessing into mojibake.
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
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        damaged = exc
    repaired = data.decode("utf-8", errors="replace")
    if sum(ord(ch) > 127 and ch != "\ufffd" for ch in repaired) >= repaired.count("\ufffd"):
        raise DocumentError(f"{name}: not valid UTF-8 (byte 0x{data[damaged.start]:02x} at position {damaged.start}) "
                            "although the rest of it is UTF-8, so the file is damaged; save it again as UTF-8")
    text = _legacy_text(data)
    if text is None:
        raise DocumentError(f"{name}: not UTF-8, and its encoding cannot be recognised; save it as UTF-8")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > 0.01 * min(len(text), 8192):
        raise DocumentError(f"{name}: looks like a binary file, not text")
    return text


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # UTF-32 LE starts like UTF-16 LE


def _messy(text: str) -> bool:
    from charset_normalizer.md import mess_ratio

    return mess_ratio(text[:20_000]) > 0.2


def _legacy_text(data: bytes) -> str | None:
    """Decode a legacy 8-bit or multi-byte encoding with charset-normalizer, None if it cannot tell.

    Short texts fit several code pages equally well; among those tied for
    best, Windows-1252 (Western European, the commonest legacy encoding) wins.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    best = matches[0]
    if best.chaos > 0.2:
        return None
    for match in matches:
        tied = match.chaos <= best.chaos and match.coherence >= best.coherence
        if tied and "cp1252" in (match.encoding, *match.could_be_from_charset):
            return str(match) if match.encoding == "cp1252" else data.decode("cp1252", errors="replace")
    return str(best)


def _html_text(html: str) -> tuple[str, str | None]:
    """Text as a browser lays it out: inline tags flow within their paragraph, blocks are paragraphs.

    Block elements become paragraphs separated by a blank line (so the chunker
    sees them), `<br>` and the lines of `<pre>` become line breaks, and other
    whitespace collapses to single spaces.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    _mark_breaks(soup)
    blocks = (_flow(block) for block in soup.get_text().split(_BLOCK_MARK))
    return "\n\n".join(block for block in blocks if block), title or None


def _mark_breaks(soup: Any) -> None:
    """Put markers where layout breaks the text: around block elements, at `<br>` and `<pre>` lines."""
    for pre in soup("pre"):
        for string in list(pre.strings):
            string.replace_with(string.replace("\n", _LINE_MARK))
    for tag in soup(_BLOCK_TAGS):
        tag.insert_before(_BLOCK_MARK)
        tag.insert_after(_BLOCK_MARK)
    for tag in soup(["td", "th"]):
        tag.insert_after(" ")  # cells of a row are words apart, not glued together
    for tag in soup("br"):
        tag.replace_with(_LINE_MARK)


def _flow(block: str) -> str:
    """One block's text: each line's whitespace runs collapsed to one space, empty lines dropped."""
    lines = (" ".join(line.split()) for line in block.split(_LINE_MARK))
    return "\n".join(line for line in lines if line)


def _pdf_text(name: str, data: bytes) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"{name}: not a readable PDF ({exc})") from exc
    return "\n\n".join(page.strip() for page in pages if page.strip())


def _markdown_title(text: str) -> str | None:
    match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def slugify(name: str) -> str:
    """A doc_id from a file name: lower case, words joined by '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "document"
