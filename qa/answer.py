"""Answering: pick the sentences that answer a question and cite them.

The composer is extractive, so every claim is the document's own words:
1. A follow-up question ("Why should that be viewed warily?") is resolved
   against the chat history: if it refers back (a pronoun or demonstrative,
   or it is very short), the previous question is appended to it, so
   retrieval sees the subject spelled out.
2. The retriever returns the best chunks; every sentence in them is scored
   by its own dense similarity to the question, its IDF-weighted share of the
   question's stemmed terms, its chunk's fused score, and whether it holds the
   kind of thing the question asks for (a number for "how many", a name for
   "who"). Sentences already given as the answer to the previous turn count
   less, since a follow-up asks for something new.
3. If the best sentence scores below `Settings.min_answer_score`, the answer
   says the document does not say, and nothing is cited as support.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import Settings
from .lexical import terms
from .retrieval import Passage, Retriever, check_question

NOT_FOUND = "The document does not say. I could not find a passage that answers this question."

# Words that make a question lean on the one before it.
_REFERRING = re.compile(
    r"\b(it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|there|then|"
    r"the same|such|one|ones|former|latter|also|else|too|other|another)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred|thousand|million|billion|dozen|half|percent)\b",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"\b(1[0-9]{3}|20[0-9]{2}|January|February|March|April|May|June|July|August|September|October|"
    r"November|December|century|decade|year|years|today|yesterday|week|month)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")

# Weights of the sentence score; fitted on the article development set and the
# first five SQuAD articles (see bench/ and README "Quality").
W_DENSE, W_TERMS, W_PASSAGE, W_CUE = 0.55, 0.30, 0.15, 0.08
FOLLOW_UP_PENALTY = 0.5


@dataclass(frozen=True)
class Citation:
    """A cited span: `text == document.text[start:end]`; `context` is its chunk, for display.

    `context_start`/`context_end` locate the chunk in the document, so the
    cited span sits at `start - context_start` inside `context`.
    """

    n: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    context: str
    context_start: int
    context_end: int


@dataclass(frozen=True)
class Answer:
    """What the assistant says, and on what it rests.

    Attributes:
        question: the question as asked.
        text: the answer, with markers [n] after each cited sentence.
        found: False when the document does not answer; then `citations` is empty.
        citations: numbered supports, [1] first.
        query: the text actually searched (the question with any follow-up context).
        closest: when not found, the nearest passages, which do not answer.
    """

    question: str
    text: str
    found: bool
    citations: tuple[Citation, ...] = ()
    query: str = ""
    closest: tuple[Passage, ...] = ()


class Assistant:
    """Answers questions over a `Retriever`'s documents with cited sentences."""

    def __init__(self, retriever: Retriever, *, settings: Settings | None = None) -> None:
        self.retriever = retriever
        self.settings = settings or retriever.settings

    def ask(self, question: str, history: Sequence[tuple[str, str]] = ()) -> Answer:
        """Answer `question`; `history` holds earlier (question, answer text) turns, oldest first."""
        question = check_question(question, self.settings)
        query = resolve_follow_up(question, [q for q, _ in history])
        said_before = _normalise(history[-1][1]) if history else ""
        query_vector = self.retriever.embedder.embed_query(query)
        passages = self.retriever.rank(query, query_vector, k=self.settings.answer_passages)
        scored = self._score_sentences(question, query, query_vector, passages, said_before)
        if not scored or scored[0][0] < self.settings.min_answer_score:
            return Answer(question, NOT_FOUND, False, (), query, tuple(passages))
        citations = self._cite(scored)
        text = " ".join(f"{_normalise(c.text)} [{c.n}]" for c in citations)
        return Answer(question, text, True, tuple(citations), query)

    def _score_sentences(
        self, question: str, query: str, query_vector: np.ndarray, passages: list[Passage], said_before: str
    ) -> list[tuple[float, int, Passage]]:
        retriever = self.retriever
        query_terms = terms([query])[0]
        cue = _answer_cue(question)
        best_passage = max((p.score for p in passages), default=1.0) or 1.0
        scored: dict[int, tuple[float, int, Passage]] = {}
        for passage in passages:
            for sentence_id in retriever.chunk_sentences[passage.chunk].tolist():
                if sentence_id in scored:
                    continue
                sentence = retriever.sentences[sentence_id]
                dense = float(retriever.sentence_vectors[sentence_id] @ query_vector)
                overlap = retriever.term_weights.overlap(query_terms, retriever.sentence_terms[sentence_id])
                score = W_DENSE * dense + W_TERMS * overlap + W_PASSAGE * passage.score / best_passage
                if cue is not None and cue.search(sentence.text):
                    score += W_CUE
                if said_before and _normalise(sentence.text) in said_before:
                    score *= FOLLOW_UP_PENALTY
                scored[sentence_id] = (score, sentence_id, passage)
        return sorted(scored.values(), key=lambda item: (-item[0], item[1]))

    def _cite(self, scored: list[tuple[float, int, Passage]]) -> list[Citation]:
        """[1] is the best sentence; more follow if they score close to it."""
        best = scored[0][0]
        chosen = [item for item in scored[: self.settings.max_citations] if item[0] >= 0.85 * best]
        citations = []
        for n, (score, sentence_id, passage) in enumerate(chosen, start=1):
            sentence = self.retriever.sentences[sentence_id]
            citations.append(Citation(n, sentence.doc_id, passage.title, sentence.start, sentence.end,
                                      sentence.text, round(score, 4), passage.text, passage.start, passage.end))
        return citations


def resolve_follow_up(question: str, earlier_questions: Sequence[str]) -> str:
    """The question, extended with the (resolved) previous question when it refers back to it."""
    resolved = ""
    for earlier in earlier_questions:
        resolved = _extend(earlier, resolved)
    return _extend(question, resolved)


def _extend(question: str, previous: str) -> str:
    if previous and (_REFERRING.search(question) or len(terms([question])[0]) <= 2):
        return f"{question} {previous}"
    return question


def _answer_cue(question: str) -> re.Pattern[str] | None:
    """What kind of text would answer: a number, a date or a name, if the question says."""
    lowered = question.lower()
    if re.search(r"\bhow (many|much|long|far|old|large|big)\b|\bnumbers?\b|\bpercentage\b", lowered):
        return _NUMBER
    if re.search(r"\bwhen\b|\bwhat (year|date|time|day|month|century)\b", lowered):
        return _DATE
    if re.search(r"\bwho\b|\bwhose\b|\bwhom\b|\bwhere\b|\bwhich (city|country|person|place)\b", lowered):
        return _NAME
    return None


def _normalise(text: str) -> str:
    return " ".join(text.split())
