"""What a file reads as, before it becomes a `Document`: shared by the readers of each format
(`qa.documents` for text, Markdown, HTML and PDF; `qa.wordfiles` for Word), so none imports another."""

from __future__ import annotations

from dataclasses import dataclass

Heading = tuple[int, int, int]
"""A heading: (level 1..6, start, end) of its text in the document's text."""


@dataclass(frozen=True)
class Extracted:
    """What a file reads as: its text, a title if the format carries one, page starts and headings."""

    text: str
    title: str | None = None
    pages: tuple[int, ...] = ()
    headings: tuple[Heading, ...] = ()
