"""A question about what a term is goes to where the document introduces the term.

The principle: a writer defines a name or an abbreviation once, where it first appears, and uses it bare
afterwards. "What is the PC/GNA?" is answered by "The UN-backed Presidency Council and Government of National
Accord (PC/GNA) …", not by a later sentence that only uses "PC/GNA". The answer ranker reads one sentence at
a time and sees the term in both; this module says which sentences introduce it:

- the term in parentheses after what it stands for: "… Government of National Accord (PC/GNA)";
- the term followed by an apposition: "Khalifa Haftar, the commander of …", "Haftar (a former general)";
- the term followed by a definition: "PC/GNA is the …", "LNA stands for …", "Haftar, who leads …".

Only questions that ask what a named thing is count: "What is/are/was X?", "Who is X?", "What does X stand
for / mean?", where X is a name or an abbreviation (every word capitalised but connectors such as "of";
not "the capital of France" or "Robert's son"), in at most `MAX_TERM_WORDS` words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_TERM_WORDS = 6

_ASKS = (
    re.compile(r"^\s*(?:what|who)\s+(?:is|are|was|were)\s+(?:an?\s+|the\s+)?(?P<term>[^?]+?)\s*\??\s*$", re.I),
    re.compile(r"^\s*what\s+(?:does|do|did)\s+(?:an?\s+|the\s+)?(?P<term>[^?]+?)\s+(?:stand\s+for|mean)\s*\??\s*$",
               re.I),
)
_APPOSITION = r"\s*(?:,|\(|–|—|-)\s*(?:an?|the|who|which|whose|known|also|formerly)\b"
_DEFINITION = r"\s+(?:is|are|was|were)\s+(?:an?|the)\b|\s+stands?\s+for\b|\s+refers?\s+to\b"


def asked_term(question: str) -> str | None:
    """The term a question asks the meaning of ("What is the PC/GNA?" → "PC/GNA"), or None."""
    for pattern in _ASKS:
        match = pattern.match(question)
        if match:
            term = match.group("term").strip(" \"'“”‘’")
            if term and len(term.split()) <= MAX_TERM_WORDS and _is_name(term):
                return term
    return None


_CONNECTORS = {"of", "the", "and", "for", "de", "du", "la", "von", "van", "der", "in", "on", "&"}


def _is_name(term: str) -> bool:
    """A name or an abbreviation: every word capitalised (or a digit, or a connector such as "of"), none possessive."""
    words = term.split()
    return ("'s" not in term and "’s" not in term and (words[0][0].isupper() or words[0][0].isdigit())
            and all(w[0].isupper() or w[0].isdigit() or w.lower() in _CONNECTORS for w in words))


def introduces(sentence: str, term: str) -> bool:
    """Whether `sentence` introduces `term`: in parentheses after what it stands for, or followed by an
    apposition or a definition (see the module's docstring). Whitespace runs count as one space."""
    text = " ".join(sentence.split())
    name = re.escape(" ".join(term.split()))
    bounded = rf"(?<![\w/]){name}(?![\w/])"
    return bool(re.search(rf"\w[^()]*\(\s*{name}\s*\)", text)
                or re.search(bounded + rf"(?:{_APPOSITION}|{_DEFINITION})", text))


def introducing(question: str, sentences: Sequence[str]) -> list[int]:
    """Positions of the `sentences` that introduce the term `question` asks about, in order (none when the
    question does not ask what a term is)."""
    term = asked_term(question)
    if term is None:
        return []
    return [k for k, sentence in enumerate(sentences) if introduces(sentence, term)]
