"""A document as one line of an index's documents.jsonl, and back.

Besides the text and where it came from, a row keeps the document's page
starts (PDF) and headings, so a loaded index still cites "page 2" and
"Budget › 2025". Rows written before those were kept have no such keys
and load with none: such an index still loads and answers, and `qa index`
reads its PDFs again to add their pages (nothing is embedded again).
"""

from __future__ import annotations

from typing import Any

from .documents import Document


def document_row(document: Document) -> dict[str, Any]:
    """The JSON object of one document (pages and headings only when it has them)."""
    row: dict[str, Any] = {"doc_id": document.doc_id, "title": document.title, "text": document.text,
                           "path": document.path, "modified": document.modified}
    if document.pages:
        row["pages"] = list(document.pages)
    if document.headings:
        row["headings"] = [list(heading) for heading in document.headings]
    return row


def document_from_row(row: dict[str, Any]) -> Document:
    """The document a row holds; `DocumentError` if its pages or headings do not fit its text."""
    return Document(doc_id=row["doc_id"], text=row["text"], title=row["title"], path=row.get("path"),
                    modified=row.get("modified"), pages=tuple(row.get("pages") or ()),
                    headings=tuple(tuple(h) for h in row.get("headings") or ()))
