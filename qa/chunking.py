"""Chunking: documents into sentences, sentences into overlapping chunks.

Sentences come from pysbd (rule-based, English abbreviations handled, no
model download). pysbd sees one block at a time: text is first cut into
blocks at blank lines, indented lines, list items and headings, so a photo
caption or a boilerplate line does not glue onto the next paragraph and no
sentence runs across a paragraph break. A blank line may hold spaces of any
kind (no-break, ideographic, zero-width); `\r\n`, `\r` and the other Unicode
line separators count as line breaks like `\n`, and a form feed or U+2029
ends a paragraph by itself.

Markdown (and plain text written like it) has structure that is not text to
quote: a heading is a sentence of its own, and the markers `#`, `-`, `*`,
`+`, `1.`, `>` and thematic breaks (`---`) lie outside every sentence, so a
citation quotes "Pressure", not "## Pressure Road bikes...". A table row
(`| a | b |`) is a sentence of its own without its outer pipes, and the
rule under a table's header (`|---|---|`) is left out: a long table is not
one "sentence" whose later rows the answer ranker never reads.

pysbd slows down super-linearly on long inputs, so a block over
`_MAX_BLOCK_CHARS` is cut further at a likely sentence end. Line breaks
inside a block become spaces before segmentation, which keeps every offset
valid. Each sentence and chunk records `start`/`end` such that
`document.text[start:end]` is exactly its text. A PDF's chunks stay within
a page, so each passage has one page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from .config import Settings
from .documents import Document

# A line break: Unix, Windows, old Mac, or a Unicode one (vertical tab, NEL, U+2028 and the
# separators `str.splitlines` knows). `\r(?!\n)` keeps `\r\n` one break, not two.
_NEWLINE = r"(?:\r\n|\r(?!\n)|[\n\v\x1c-\x1e\x85\u2028])"
# A form feed (a page break) or U+2029 (paragraph separator) ends a paragraph on its own.
_PARAGRAPH = r"[\f\u2029]"
# Characters that show nothing: zero-width spaces and joiners, word joiner, a stray byte-order mark.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# Space within a line: any whitespace but a line break (so no-break and ideographic spaces too), or invisible.
_GAP = rf"(?:[^\S\n\r\v\f\x1c-\x1e\x85\u2028\u2029]|[{_INVISIBLE}])"
# A newline starts a new block when the next line is blank, indented,
# a list item, a heading or a table row, or when the line before it ends with a colon.
_BLOCK_BREAK = re.compile(
    rf"{_PARAGRAPH}|{_NEWLINE}(?={_GAP}*(?:{_NEWLINE}|{_PARAGRAPH})|[ \t]+\S|[#>*+|-]|\d+[.)]\s)"
    rf"|(?<=:)[ \t]*{_NEWLINE}"
)
_LINE_END = re.compile(_NEWLINE)
# What pysbd must see as plain spaces (same length, so offsets stay valid).
_AS_SPACES = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))
# Markdown structure. An ATX heading: one to six '#' and a space (or nothing) after them.
_HEADING = re.compile(r"#{1,6}(?=[ \t\r\n\v\x85\u2028]|$)")
# The optional closing '#'s of a heading line ("## Pressure ##").
_HEADING_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# Blockquote and list markers before the text of a block: "> ", "- ", "* ", "+ ", "1. ", "2) ", "- [x] ".
_MARKER = re.compile(r"(?:>[ \t]?)*(?:(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$))?(?:\[[ xX]\][ \t]+)?")
# Lines that are only markup: thematic breaks ("---", "* * *", "___") or setext underlines ("===", "--").
_RULE_LINE = r"[ \t]*(?:(?:-[ \t]*)+|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,}|(?:=[ \t]*)+)"
_RULE = re.compile(rf"{_RULE_LINE}(?:{_NEWLINE}{_RULE_LINE})*")
# A Markdown table: the row under its header ("|---|:---:|") is markup; a row's outer pipes lie outside its text.
_TABLE_RULE = re.compile(r"[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+(?:[ \t]*:?-+:?[ \t]*)?")
_TABLE_ROW = re.compile(r"\|(.*?)\|?[ \t]*$", re.DOTALL)
# A setext underline under a paragraph: the lines above it are a heading.
_UNDERLINE = re.compile(rf"{_NEWLINE}[ \t]*=+[ \t]*(?={_NEWLINE}|$)")
# pysbd's time grows faster than linearly with its input (80 KB in one call
# takes seconds), so no block handed to it is longer than this.
_MAX_BLOCK_CHARS = 5_000
# Where to cut an over-long block, best first: a sentence ending a line, a
# sentence end before a capital or digit, a line break, any whitespace. A
# sentence end follows two lower-case letters or digits, so "Mr." and "U.S." are not one.
_SENTENCE_END = r"(?<=[a-z0-9]{2})[.!?][\"'\u201d\u2019)\]]*"
_SAFE_CUTS = (
    re.compile(rf"{_SENTENCE_END}[ \t]*[\r\n]\s*"),
    re.compile(rf"{_SENTENCE_END}\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])"),
    re.compile(r"[\r\n]\s*"),
    re.compile(r"\s+"),
)
_WORD = re.compile(r"\S+")
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
    sentences = _sentences(document, _blocks(text), max_tokens)
    if not sentences:  # nothing but markup ("---"): quote the markup rather than have no sentence
        sentences = _sentences(document, _blocks(text, structure=False), max_tokens)
    return sentences


def _sentences(document: Document, blocks: Iterable[tuple[int, int]], max_tokens: int) -> list[Sentence]:
    text = document.text
    sentences: list[Sentence] = []
    for block_start, block_end in blocks:
        block = text[block_start:block_end].translate(_AS_SPACES)
        cursor = 0
        block_first = len(sentences)
        for piece in _segmenter().segment(block):
            stripped = piece.strip()
            if not stripped:
                continue
            found = block.find(stripped, cursor)
            if found < 0:  # pysbd altered the text; fall back to its own length
                found = cursor
            # No space before a piece that goes on with a word or a path: pysbd cut inside a word, at the dot
            # of ".venv/bin" or "./run.sh" (a footnote mark such as "[1]" after a full stop stays apart).
            glued = (0 < found == cursor and not block[found - 1].isspace()
                     and (stripped[0].isalnum() or stripped[0] in "/\\_~"))
            cursor = found + len(stripped)
            start, end = block_start + found, block_start + cursor
            if len(sentences) > block_first and (glued or len(_WORDS.findall(stripped)) < 2):
                # A stray fragment such as "- Newsweek", or the rest of a cut word, joins the sentence before it.
                start = sentences.pop().start
            for s, e in _cut_long(text, start, end, max_tokens):
                sentences.append(Sentence(document.doc_id, s, e, text[s:e]))
    return sentences


def chunk_document(document: Document, sentences: list[Sentence], settings: Settings) -> list[Chunk]:
    """Group sentences into windows of `chunk_sentences` with `chunk_overlap`, within `chunk_tokens`.

    A document with pages (PDF) is chunked page by page: no chunk runs across a page break, so every
    passage lies on the one page it cites.
    """
    pages = [document.page_at(s.start) for s in sentences] if document.pages else [None] * len(sentences)
    chunks: list[Chunk] = []
    first = 0
    while first < len(sentences):
        last = first + 1
        budget = estimate_tokens(sentences[first].text)
        while last < len(sentences) and last - first < settings.chunk_sentences and pages[last] == pages[first]:
            cost = estimate_tokens(sentences[last].text)
            if budget + cost > settings.chunk_tokens:
                break
            budget += cost
            last += 1
        start, end = sentences[first].start, sentences[last - 1].end
        chunks.append(Chunk(document.doc_id, start, end, document.text[start:end], tuple(range(first, last))))
        if last == len(sentences):
            break
        first = last if pages[last] != pages[first] else max(first + 1, last - settings.chunk_overlap)
    return chunks


def estimate_tokens(text: str) -> int:
    """A cheap over-estimate of word pieces: words and punctuation, plus a fifth for sub-words."""
    return _tokens_for(len(_WORD_PIECE.findall(text)))


def _tokens_for(pieces: int) -> int:
    """`estimate_tokens` of a text with this many words and punctuation marks."""
    return int(pieces * 1.2) + 1


def _blocks(text: str, *, structure: bool = True) -> Iterator[tuple[int, int]]:
    """Spans of non-blank text between block breaks, trimmed, none over `_MAX_BLOCK_CHARS`.

    With `structure`, Markdown markup is left out of the spans and a heading is a span of its own.
    """
    position = 0
    for match in [*_BLOCK_BREAK.finditer(text), None]:
        end = match.start() if match else len(text)
        for start, stop in _structure(text, position, end) if structure else _trimmed(text, position, end):
            yield from _capped(text, start, stop)
        position = match.end() if match else end


def _structure(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The text of one block without its Markdown markup: a heading line (ATX, or setext over `===`) as a span
    of its own, then the rest; blockquote and list markers left out; a thematic break left out entirely."""
    for first, last in _trimmed(text, start, end):
        if _RULE.fullmatch(text, first, last) or _TABLE_RULE.fullmatch(text, first, last):
            return
        row = _TABLE_ROW.fullmatch(text, first, last)
        if row:
            yield from _trimmed(text, row.start(1), row.end(1))
            return
        heading = _HEADING.match(text, first, last)
        if heading:
            line_end = _LINE_END.search(text, heading.end(), last)
            stop = line_end.start() if line_end else last
            close = _HEADING_CLOSE.search(text[heading.end():stop])
            yield from _trimmed(text, heading.end(), heading.end() + close.start() if close else stop)
            if line_end:
                yield from _structure(text, line_end.end(), last)
            return
        first = _MARKER.match(text, first, last).end()
        underline = _UNDERLINE.search(text, first, last)
        if underline:
            yield from _trimmed(text, first, underline.start())
            yield from _structure(text, underline.end(), last)
            return
        yield from _trimmed(text, first, last)


def _capped(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The trimmed span, cut at safe boundaries into parts of at most `_MAX_BLOCK_CHARS`."""
    for first, last in _trimmed(text, start, end):
        while last - first > _MAX_BLOCK_CHARS:
            cut = _safe_cut(text, first, first + _MAX_BLOCK_CHARS)
            yield from _trimmed(text, first, cut)
            first = cut
        yield from _trimmed(text, first, last)


def _safe_cut(text: str, start: int, end: int) -> int:
    """The last best boundary in the second half of `text[start:end]`, or `end` if there is none.

    Only the second half is searched so that no part is tiny.
    """
    for pattern in _SAFE_CUTS:
        ends = [match.end() for match in pattern.finditer(text, (start + end) // 2, end)]
        if ends:
            return ends[-1]
    return end


def _trimmed(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    """The span without whitespace or invisible characters at either end, if anything is left."""
    while start < end and (text[start].isspace() or text[start] in _INVISIBLE):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _INVISIBLE):
        end -= 1
    if start < end:
        yield start, end


def _cut_long(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    """Cut an over-long span into pieces of at most `max_tokens` estimated tokens.

    Words are added to a piece while they fit (word pieces of separate words
    add up, so the estimate of a piece is exact); a word too big for any
    piece on its own is cut between its word pieces.
    """
    if estimate_tokens(text[start:end]) <= max_tokens:
        yield start, end
        return
    limit = _max_pieces(max_tokens)
    piece: tuple[int, int] | None = None
    count = 0
    for word in _WORD.finditer(text, start, end):
        pieces = [m.span() for m in _WORD_PIECE.finditer(text, *word.span())]
        if piece is not None and count + len(pieces) <= limit:
            piece, count = (piece[0], word.end()), count + len(pieces)
            continue
        if piece is not None:
            yield piece
        while len(pieces) > limit:  # one word over the budget: cut it between word pieces
            yield pieces[0][0], pieces[limit - 1][1]
            pieces = pieces[limit:]
        piece, count = (pieces[0][0], pieces[-1][1]), len(pieces)
    if piece is not None:
        yield piece


def _max_pieces(max_tokens: int) -> int:
    """The most words and punctuation marks a text may hold to stay within `max_tokens` (at least 1)."""
    pieces = max_tokens
    while pieces > 1 and _tokens_for(pieces) > max_tokens:
        pieces -= 1
    return pieces


@lru_cache(maxsize=1)
def _segmenter():  # type: ignore[no-untyped-def]
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)
