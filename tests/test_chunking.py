"""Chunking: exact offsets, whole-sentence chunks, overlap, and the article's awkward spots."""

from __future__ import annotations

import dataclasses
import re
from itertools import pairwise

import pytest

from qa import Document, Retriever, Settings, bundled_article
from qa.chunking import _MAX_BLOCK_CHARS, Chunk, Sentence, _blocks, chunk_document, estimate_tokens, split_sentences

INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def crosses_a_paragraph_break(text: str) -> bool:
    """Whether `text` holds a blank line (spaces of any kind or invisible characters only) or a page or
    paragraph separator, with line breaks as `str.splitlines` knows them (\\r\\n, \\r, U+2028, ...)."""
    lines = text.splitlines()
    return "\f" in text or "\u2029" in text or any(not line.translate(INVISIBLE).strip() for line in lines[1:-1])

PARAGRAPHS = (
    "Libya Policy Review\n"
    "\n"
    "The United States is considering a new policy. It would send up to fifty troops.\n"
    "\n"
    "A caption without a full stop\n"
    "\n"
    "The next paragraph starts here. It ends here."
)

EDGE_CASES = {
    "irregular whitespace": "  Libya   is\tlarge.   \n\n\n  It has   oil.\t\tTripoli is the   capital.  \n\n",
    "line breaks mid-paragraph": (
        "The United States is considering\nramping up its involvement\nin Libya. CNN reported\n"
        "the plan on July 10, and Italy\nwelcomed it."
    ),
    "one sentence without punctuation": "a single sentence without any punctuation at all",
    "very long sentence": " ".join(f"word{i}" for i in range(700)) + ".",
    "long table of numbers": "Imports by year: " + " ".join(f"{i},234.{i % 100:02d}" for i in range(400)),
    "unicode": "Café résumé — naïve coöperation in Ṭarābulus. 日本語の文です。 Emoji 😀 here! Ünïcödé ends?",
    "windows line endings": PARAGRAPHS.replace("\n", "\r\n"),
    "paragraphs": PARAGRAPHS,
}


def check_sentences(document: Document, sentences: list[Sentence], max_tokens: int) -> None:
    text = document.text
    assert sentences, "a non-empty document has at least one sentence"
    for sentence in sentences:
        assert sentence.doc_id == document.doc_id
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.text and sentence.text == sentence.text.strip()
        assert estimate_tokens(sentence.text) <= max_tokens, f"sentence over the budget: {sentence.text[:80]!r}"
        assert not crosses_a_paragraph_break(sentence.text), f"sentence crosses a blank line: {sentence.text!r}"
    for before, after in pairwise(sentences):
        assert before.end <= after.start, "sentences are in order and do not overlap"
    # Every visible character belongs to exactly one sentence, in order.
    def visible(t: str) -> str:
        return "".join(t.translate(INVISIBLE).split())

    assert "".join(visible(s.text) for s in sentences) == visible(text)


def check_chunks(document: Document, sentences: list[Sentence], chunks: list[Chunk], settings: Settings) -> None:
    assert chunks
    for chunk in chunks:
        first, last = chunk.sentences[0], chunk.sentences[-1]
        assert chunk.sentences == tuple(range(first, last + 1)), "a chunk is consecutive whole sentences"
        assert 1 <= len(chunk.sentences) <= settings.chunk_sentences
        assert (chunk.start, chunk.end) == (sentences[first].start, sentences[last].end)
        assert document.text[chunk.start : chunk.end] == chunk.text
        if len(chunk.sentences) > 1:
            assert sum(estimate_tokens(sentences[i].text) for i in chunk.sentences) <= settings.chunk_tokens
    for before, after in pairwise(chunks):
        assert after.sentences[0] > before.sentences[0]
        shared = len(set(before.sentences) & set(after.sentences))
        assert shared == min(settings.chunk_overlap, len(before.sentences) - 1)
        assert after.sentences[0] <= before.sentences[-1] + 1, "no sentence is skipped"
    covered = sorted({i for chunk in chunks for i in chunk.sentences})
    assert covered == list(range(len(sentences)))


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_keep_exact_offsets_and_whole_sentences(name: str) -> None:
    settings = Settings()
    document = Document(doc_id="edge", text=EDGE_CASES[name])
    sentences = split_sentences(document, max_tokens=settings.chunk_tokens)
    check_sentences(document, sentences, settings.chunk_tokens)
    check_chunks(document, sentences, chunk_document(document, sentences, settings), settings)


@pytest.mark.parametrize(
    ("chunk_sentences", "chunk_overlap", "chunk_tokens"), [(4, 1, 200), (1, 0, 200), (3, 2, 200), (6, 0, 60)]
)
def test_bundled_article_offsets_and_overlap(chunk_sentences: int, chunk_overlap: int, chunk_tokens: int) -> None:
    settings = Settings(chunk_sentences=chunk_sentences, chunk_overlap=chunk_overlap, chunk_tokens=chunk_tokens)
    article = bundled_article()
    sentences = split_sentences(article, max_tokens=settings.chunk_tokens)
    check_sentences(article, sentences, settings.chunk_tokens)
    check_chunks(article, sentences, chunk_document(article, sentences, settings), settings)


def test_default_article_chunks_share_exactly_the_overlap() -> None:
    settings = Settings()
    article = bundled_article()
    sentences = split_sentences(article)
    chunks = chunk_document(article, sentences, settings)
    assert len(sentences) > 20
    full = [c for c in chunks[:-1] if len(c.sentences) == settings.chunk_sentences]
    assert len(full) >= len(chunks) - 2, "the article's sentences are short: nearly every chunk is a full window"
    for before, after in pairwise(chunks):
        assert before.sentences[-settings.chunk_overlap :] == after.sentences[: settings.chunk_overlap]


def test_photo_caption_does_not_glue_onto_the_next_paragraph() -> None:
    article = bundled_article()
    sentences = split_sentences(article)
    caption = [s for s in sentences if "AFP/Getty" in s.text]
    assert len(caption) == 1
    assert "Terrorists" not in caption[0].text
    following = sentences[sentences.index(caption[0]) + 1]
    assert following.text.startswith("Terrorists and other extremist armed groups")


def test_markdown_table_rows_are_sentences_without_their_pipes_or_rule() -> None:
    """A table is one row per line: each row is cited on its own, and a long table's last rows are still read."""
    text = ("Settings:\n\n| Setting | Default | Meaning |\n|:--|--:|---|\n"
            "| `interval` | `15m` | How often feeds are checked |\n| `timeout` | `20s` | Time limit for one feed\n\n"
            "That is all.")
    sentences = split_sentences(Document("t", text))
    assert [s.text for s in sentences] == ["Settings:", "Setting | Default | Meaning",
                                           "`interval` | `15m` | How often feeds are checked",
                                           "`timeout` | `20s` | Time limit for one feed", "That is all."]
    assert all(text[s.start:s.end] == s.text for s in sentences)


@pytest.mark.parametrize("text, expected", [
    ("Start the chat:\n\n    python3 -m venv .venv && .venv/bin/pip install -e '.[app]' && .venv/bin/python app.py\n",
     ["Start the chat:", "python3 -m venv .venv && .venv/bin/pip install -e '.[app]' && .venv/bin/python app.py"]),
    ("Run ./run.sh now. Then wait.", ["Run ./run.sh now.", "Then wait."]),
    ("Open config.yaml and set the key. Then restart.", ["Open config.yaml and set the key.", "Then restart."]),
    ("The value is 3.14 here. Next one.", ["The value is 3.14 here.", "Next one."]),
    ("Unpack it to C:\\qa\\.cache before you start. Then run it.",
     ["Unpack it to C:\\qa\\.cache before you start.", "Then run it."]),
])
def test_a_sentence_is_not_cut_inside_a_word(text: str, expected: list[str]) -> None:
    """pysbd ends a sentence at the dot of ".venv" or "./run.sh"; with no space there, the pieces are one."""
    sentences = split_sentences(Document("d", text))
    assert [s.text for s in sentences] == expected
    assert all(text[s.start:s.end] == s.text for s in sentences)


def test_windows_line_endings_split_like_unix_ones() -> None:
    unix = split_sentences(Document(doc_id="unix", text=PARAGRAPHS))
    windows = split_sentences(Document(doc_id="windows", text=PARAGRAPHS.replace("\n", "\r\n")))
    assert [" ".join(s.text.split()) for s in windows] == [" ".join(s.text.split()) for s in unix]
    assert "Libya Policy Review" in [s.text for s in unix]


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_old_mac_and_windows_blank_lines_break_blocks(newline: str) -> None:
    text = PARAGRAPHS.replace("\n", newline)
    assert [" ".join(text[s:e].split()) for s, e in _blocks(text)] == [
        " ".join(PARAGRAPHS[s:e].split()) for s, e in _blocks(PARAGRAPHS)
    ]


@pytest.mark.parametrize("separator", [" ", "\r\n"])
def test_long_text_without_blank_lines_is_split_in_parts_at_sentence_ends(separator: str) -> None:
    """pysbd is super-linear in its input: ~300 KB in one block would hang without the cap."""
    generated = [
        f"Report {i} says the port of Misrata handled {i * 7 % 1000} ships in {1990 + i % 30}"
        + (", more than the year before." if i % 3 else ".")
        for i in range(5000)
    ]
    document = Document(doc_id="long", text=separator.join(generated))
    assert len(document.text) > 300_000
    assert all(e - s <= _MAX_BLOCK_CHARS for s, e in _blocks(document.text))
    sentences = split_sentences(document)
    check_sentences(document, sentences, 200)
    assert [s.text for s in sentences] == generated, "parts are cut at sentence ends"


def test_one_gigantic_word_is_cut_between_word_pieces() -> None:
    word = "x" + ",1" * 400
    document = Document(doc_id="word", text=f"It starts here. {word} and ends here.")
    sentences = split_sentences(document, max_tokens=50)
    check_sentences(document, sentences, 50)
    assert sentences[0].text == "It starts here."
    assert len(sentences) > 10


def test_long_sentence_is_cut_at_whitespace_into_pieces_within_budget() -> None:
    document = Document(doc_id="long", text=EDGE_CASES["very long sentence"])
    sentences = split_sentences(document, max_tokens=50)
    assert len(sentences) > 1
    for sentence in sentences:
        assert estimate_tokens(sentence.text) <= 50
        assert re.fullmatch(r"word\d+( word\d+)*\.?", sentence.text)


def test_single_unpunctuated_sentence_is_one_chunk() -> None:
    document = Document(doc_id="one", text="  a single sentence without any punctuation at all \n")
    sentences = split_sentences(document)
    assert [s.text for s in sentences] == ["a single sentence without any punctuation at all"]
    chunks = chunk_document(document, sentences, Settings())
    assert [(c.start, c.end, c.sentences) for c in chunks] == [(2, 50, (0,))]


# -- paragraphs: a blank line ends a sentence ------------------------------------------------------


@pytest.mark.parametrize(
    "blank_line",
    ["\n\n", "\r\n\r\n", "\r\r", "\n  \t\n", "\n\u00a0\n", "\n \u00a0 \n", "\n\u3000\n", "\n\u202f\n",
     "\n\u200b\n", "\n\ufeff\n", "\u2029", "\n\u2028\n", "\u2028\u2028", "\f", "\n\f\n", "\n\x0b\n", "\n\x85\n"],
    ids=repr,
)
@pytest.mark.parametrize(
    "first", ["Open the tap slowly until the water is shut off.", "Open the tap slowly until the water is shut off",
              "Call the plumber at 5 p.m.", "The valve (see p. 4"],
)
def test_a_blank_line_ends_a_sentence(blank_line: str, first: str) -> None:
    """Cited spans crossed paragraphs ("...water is shut off. Last year's tomato blight...") where the blank
    line held a no-break space, a zero-width space or a Unicode separator."""
    text = f"{first}{blank_line}last year's tomato blight was bad."
    document = Document(doc_id="garden", text=text)
    sentences = split_sentences(document)
    check_sentences(document, sentences, 200)
    assert [s.text for s in sentences] == [first, "last year's tomato blight was bad."]


# -- Markdown: structure, not quoted text -------------------------------------------------------------

MARKDOWN = """# Bike care

## Pressure
Road bikes need 80 psi. Check it weekly.

Wheels and tyres
================
Tubeless tyres seal small punctures.

- Pump before every ride
* Carry a spare tube
+ Oil the chain
1. Clean the rims
2) Replace worn pads
- [x] Bought a torque wrench
> Ride within your limits.

* * *
---
### Storage ###
Keep the bike dry.
"""


def test_markdown_headings_are_sentences_and_markers_are_outside_them() -> None:
    document = Document(doc_id="bikes", text=MARKDOWN)
    sentences = split_sentences(document)
    assert [s.text for s in sentences] == [
        "Bike care", "Pressure", "Road bikes need 80 psi.", "Check it weekly.", "Wheels and tyres",
        "Tubeless tyres seal small punctures.", "Pump before every ride", "Carry a spare tube", "Oil the chain",
        "Clean the rims", "Replace worn pads", "Bought a torque wrench", "Ride within your limits.", "Storage",
        "Keep the bike dry.",
    ]
    for sentence in sentences:
        assert MARKDOWN[sentence.start : sentence.end] == sentence.text  # offsets index the original file
    # What no sentence covers is markup and whitespace only.
    covered = set().union(*(range(s.start, s.end) for s in sentences))
    left_out = "".join(ch for i, ch in enumerate(MARKDOWN) if i not in covered and not ch.isspace())
    assert set(left_out) <= set("#=-*+>.)[]x12")
    settings = Settings()
    check_chunks(document, sentences, chunk_document(document, sentences, settings), settings)


def test_markdown_file_is_searched_and_cited_without_markup(tmp_path) -> None:
    """End to end with the real model and FAISS: the passage found for a question starts at the heading's text."""
    path = tmp_path / "bikes.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    retriever = Retriever.build([Document.from_path(path)])
    best = retriever.search("What pressure do road bikes need?", k=1)[0]
    assert MARKDOWN[best.start : best.end] == best.text
    assert not best.text.startswith("#")
    assert "Road bikes need 80 psi." in best.text


def test_a_document_of_markup_only_keeps_its_text() -> None:
    """Leaving markup out must not leave a document without sentences."""
    assert [s.text for s in split_sentences(Document(doc_id="rule", text="---\n\n***\n"))] == ["---", "***"]


@pytest.mark.parametrize(("chunk_sentences", "chunk_overlap"), [(3, 3), (3, 4), (1, 1), (2, -1), (0, 0)])
def test_invalid_window_settings_raise(chunk_sentences: int, chunk_overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk_"):
        Settings(chunk_sentences=chunk_sentences, chunk_overlap=chunk_overlap)
    with pytest.raises(ValueError):
        dataclasses.replace(Settings(), chunk_sentences=chunk_sentences, chunk_overlap=chunk_overlap)
