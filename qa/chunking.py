"""Chunking: documents into sentences, sentences into overlapping chunks.

Sentences come from pysbd (rule-based, English abbreviations handled, no
model download). pysbd sees one block at a time: text is first cut into
blocks at blank lines, indented lines, list items and headings, so a photo
caption or a boilerplate line does not glue onto the next paragraph. Newlines
inside a block become spaces before segmentation, which keeps every offset
valid. Each sentence and chunk records `start`/`end` such that
`document.text[start:end]` is exactly its text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from .config import Settings
from .documents import Document

# A newline starts a new block when the next line is blank, indented,
# a list item or heading, or when the line before it ends with a colon.
_BLOCK_BREAK = re.compile(r"\n(?=[ \t]*\n|[ \t]+\S|[#>*+-]|\d+[.)]\s)|(?<=:)[ \t]*\n")
_WORD_PIECE = re.compile(r"\w+|[^\w\s]")
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Sentence:
    """A sentence of a document: `document.text[start:end] == text`."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Chunk:
    """A window of consecutive whole sentences of one document.

    Attributes:
        doc_id: the document the chunk comes from.
        start, end: character offsets; `document.text[start:end] == text`.
        text: the chunk text, exactly as in the document.
        sentences: indices into the document's sentence list.
    """

    doc_id: str
    start: int
    end: int
    text: str
    sentences: tuple[int, ...]


def split_sentences(document: Document, *, max_tokens: int = 200) -> list[Sentence]:
    """Split a document into sentences with exact offsets.

    Sentences over `max_tokens` estimated word pieces (PDF text without
    punctuation, tables) are cut at whitespace so each fits the model.
    """
    text = document.text
    sentences: list[Sentence] = []
    for block_start, block_end in _blocks(text):
        block = text[block_start:block_end].replace("\n", " ").replace("\r", " ")
        cursor = 0
        block_first = len(sentences)
        for piece in _segmenter().segment(block):
            stripped = piece.strip()
            if not stripped:
                continue
            found = block.find(stripped, cursor)
            if found < 0:  # pysbd altered the text; fall back to its own length
                found = cursor
            cursor = found + len(stripped)
            start, end = block_start + found, block_start + cursor
            if len(sentences) > block_first and len(_WORDS.findall(stripped)) < 2:
                # A stray fragment such as "- Newsweek" joins the sentence before it.
                start = sentences.pop().start
            for s, e in _cut_long(text, start, end, max_tokens):
                sentences.append(Sentence(document.doc_id, s, e, text[s:e]))
    return sentences


def chunk_document(document: Document, sentences: list[Sentence], settings: Settings) -> list[Chunk]:
    """Group sentences into windows of `chunk_sentences` with `chunk_overlap`, within `chunk_tokens`."""
    chunks: list[Chunk] = []
    first = 0
    while first < len(sentences):
        last = first + 1
        budget = estimate_tokens(sentences[first].text)
        while last < len(sentences) and last - first < settings.chunk_sentences:
            cost = estimate_tokens(sentences[last].text)
            if budget + cost > settings.chunk_tokens:
                break
            budget += cost
            last += 1
        start, end = sentences[first].start, sentences[last - 1].end
        chunks.append(Chunk(document.doc_id, start, end, document.text[start:end], tuple(range(first, last))))
        if last == len(sentences):
            break
        first = max(first + 1, last - settings.chunk_overlap)
    return chunks


def estimate_tokens(text: str) -> int:
    """A cheap over-estimate of word pieces: words and punctuation, plus a fifth for sub-words."""
    return int(len(_WORD_PIECE.findall(text)) * 1.2) + 1


def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """Spans of non-blank text between block breaks, trimmed of surrounding whitespace."""
    position = 0
    for match in _BLOCK_BREAK.finditer(text):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, len(text))


def _trimmed(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


def _cut_long(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    """Cut an over-long span at whitespace into pieces of at most `max_tokens` estimated tokens."""
    if estimate_tokens(text[start:end]) <= max_tokens:
        yield start, end
        return
    words = [m.span() for m in re.finditer(r"\S+", text[start:end])]
    per_piece = max(1, int(max_tokens / 1.5))
    for i in range(0, len(words), per_piece):
        group = words[i : i + per_piece]
        yield start + group[0][0], start + group[-1][1]


@lru_cache(maxsize=1)
def _segmenter():  # type: ignore[no-untyped-def]
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)
