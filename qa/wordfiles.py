"""Word files (.docx): their text laid out the way the chunker reads Markdown.

python-docx reads them: it is the long-standing, well-kept reader of the
Office Open XML format for Python (MIT, pure Python on top of lxml, a
stable 1.x API), and it gives paragraphs with their styles and tables with
their rows and cells in document order (`iter_inner_content`), which is the
structure wanted here. Heavier converters (pandoc, LibreOffice, mammoth to
HTML) would add a program to install or a detour through another format.

Each paragraph becomes a paragraph of the text (a blank line between), a
heading ("Heading 1".."Heading 6") a paragraph of its own that is recorded
in `headings` (a "Title" paragraph, or else the first level-1 heading, is
the title), a list item a "- " line, and a table row a "| a | b |" line:
the chunker then makes each heading, list item and table row a sentence of
its own without its markers, as it does for Markdown.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from .errors import DocumentError
from .extracted import Extracted

_HEADING_STYLE = re.compile(r"heading ([1-6])", re.IGNORECASE)


def docx_text(name: str, data: bytes) -> Extracted:
    """The text of a Word file, its title and its headings; `DocumentError` (one line) if it cannot be read."""
    from docx import Document as open_docx
    from docx.opc.exceptions import OpcError
    from lxml.etree import LxmlError

    try:
        document = open_docx(io.BytesIO(data))
        blocks = list(_blocks(document))
        title = (document.core_properties.title or "").strip()
    except (OpcError, zipfile.BadZipFile, LxmlError, KeyError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DocumentError(f"{name}: not a readable Word file ({reason})") from exc
    text, headings, kind_before = "", [], ""
    for kind, level, line in blocks:
        if text:
            text += "\n" if kind == kind_before and kind in ("item", "row") else "\n\n"
        if kind == "heading":
            headings.append((level, len(text), len(text) + len(line)))
        if kind == "title" or kind == "heading" and level == 1:
            title = title or line
        text += "- " + line if kind == "item" else line
        kind_before = kind
    return Extracted(text, title or None, headings=tuple(headings))


def _blocks(document: Any) -> Any:
    """(kind, heading level, text) of each paragraph, heading, list item and table row, in document order."""
    from docx.table import Table

    for part in document.iter_inner_content():
        if isinstance(part, Table):
            yield from _rows(part)
            continue
        line = _flat(part.text)
        if not line:
            continue
        style = (part.style.name if part.style is not None else "") or ""
        heading = _HEADING_STYLE.fullmatch(style)
        if heading:
            yield "heading", int(heading.group(1)), line
        elif style == "Title":
            yield "title", 0, line
        elif style.startswith("List") or part._p.pPr is not None and part._p.pPr.numPr is not None:
            yield "item", 0, line
        else:
            yield "paragraph", 0, line


def _rows(table: Any) -> Any:
    """Each row of a table as "| a | b |" (a cell merged across columns once); nested tables' text in their cell."""
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(_flat(cell.text).replace("|", "/"))
        if any(cells):
            yield "row", 0, "| " + " | ".join(cells) + " |"


def _flat(text: str) -> str:
    return " ".join(text.split())
