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
   less, since a follow-up asks for something new, unless they hold the
   number or date asked for ("How many troops would it send?" after an
   answer that already said "fifty"; names are too common to tell).
3. Only sentences whose support (similarity and shared terms with the
   question, not their rank) reaches `Settings.min_answer_score` may be
   cited; if none does, the answer says the document does not say, and
   nothing is cited as support.
4. The best sentence is cited first, with up to two more that score close
   to it; chosen sentences that are neighbours in a document become one
   cited span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import Settings
from .lexical import terms
from .retrieval import Passage, Retriever, Where, check_question

NOT_FOUND = "The document does not say. I could not find a passage that answers this question."

# Words that make a question lean on the one before it.
_REFERRING = re.compile(
    r"\b(it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|there|then|"
    r"the same|such|one|ones|former|latter|also|else|too|other|another)\b",
    re.IGNORECASE,
)
_CONTINUING = re.compile(r"\s*(and|but|so|also|what about|how about|why|why not)\b", re.IGNORECASE)
# "Which publication carried this piece?": asked about the document itself,
# answered by the line that carries its title.
_ABOUT_DOCUMENT = re.compile(
    r"\b(this|the) (piece|article|document|text|story|essay|post|page|paper|book)\b", re.IGNORECASE)
_ABOUT_PUBLICATION = re.compile(
    r"\b(publication|publish\w*|carr(y|ied|ies)|appear\w*|outlet|magazine|newspaper|site|website|"
    r"title\w*|headline|called|named)\b", re.IGNORECASE)
_MARKER = re.compile(r"\s*\[\d+\]")
_NUMBER = re.compile(
    r"\d[\d,.]*|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred|thousand|million|billion|dozen|half|percent)\b",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"\b(1[0-9]{3}|20[0-9]{2}|[0-9]{1,2}(st|nd|rd|th)|January|February|March|April|May|June|July|August|"
    r"September|October|November|December|centur(y|ies)|decades?|years?|today|yesterday|weeks?|months?)\b",
    re.IGNORECASE,
)
# A capitalised word after the first one: a rough but dependable sign of a name or place.
_NAME = re.compile(r"(?<=[\s(\"'])[A-Z][\w-]+")
_CUES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (re.compile(r"\bhow (many|much|long|far|old|large|big|tall|high|often|fast)\b|\bnumbers?\b|"
                r"\bpercent(age)?\b|\bwhat (amount|proportion|size)\b"), _NUMBER),
    (re.compile(r"\bwhen\b|\bwhat (year|date|time|day|month|decade|century|period)\b|"
                r"\bwhich (year|decade|century)\b"), _DATE),
    (re.compile(r"\bwho\b|\bwhose\b|\bwhom\b|\bwhere\b|\bwhat is the name\b|"
                r"\b(what|which) (city|country|person|place|state|region|company|organi[sz]ation|group|"
                r"university|team|language|river|nation)\b"), _NAME),
)

# Weights of the sentence score, fitted on the first five SQuAD articles and the
# article development set (bench/tune_answer.py prints the ablation).
W_DENSE = 0.45
W_TERMS = 0.2
W_TERMS_WITH_PREVIOUS = 0.35
W_PASSAGE = 0.2
W_CUE = 0.15
W_NOVELTY = 0.1
FOLLOW_UP_PENALTY = 0.5
CITE_RATIO = 0.75  # further sentences are cited if they score at least this share of the best


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
        confidence: the strongest support of any candidate sentence (see `support`);
            below `Settings.min_answer_score` the assistant refuses.
    """

    question: str
    text: str
    found: bool
    citations: tuple[Citation, ...] = ()
    query: str = ""
    closest: tuple[Passage, ...] = ()
    confidence: float = 0.0


class Assistant:
    """Answers questions over a `Retriever`'s documents with cited sentences."""

    def __init__(self, retriever: Retriever, *, settings: Settings | None = None) -> None:
        self.retriever = retriever
        self.settings = settings or retriever.settings

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), *, where: Where = None) -> Answer:
        """Answer `question`; `history` holds earlier (question, answer text) turns, oldest first.

        `where` limits the answer to some documents: doc_ids or path prefixes (see `Retriever.allowed`).
        """
        question = check_question(question, self.settings)
        query = resolve_follow_up(question, history)
        said_before = _normalise(history[-1][1]) if history else ""
        query_vector = self.retriever.embedder.embed_query(query)
        passages = self.retriever.rank(query, query_vector, k=self.settings.answer_passages, where=where)
        scored = self._score_sentences(question, query, query_vector, passages, said_before)
        if asks_about_document(question):
            scored = self._title_lines(passages) + scored
        confidence = max((item[3] for item in scored), default=0.0)
        supported = [item for item in scored if item[3] >= self.settings.min_answer_score]
        if not supported:
            return Answer(question, NOT_FOUND, False, (), query, tuple(passages), confidence)
        citations = self._cite(supported)
        text = " ".join(f"{_normalise(c.text)} [{c.n}]" for c in citations)
        return Answer(question, text, True, tuple(citations), query, (), confidence)

    def _score_sentences(
        self, question: str, query: str, query_vector: np.ndarray, passages: list[Passage], said_before: str
    ) -> list[tuple[float, int, Passage, float]]:
        """(score, sentence id, passage, support) for every sentence of the passages, best first."""
        retriever = self.retriever
        query_terms = terms([query])[0]
        cue = answer_cue(question)
        question_words = set(re.findall(r"\w+", question.lower()))
        best_passage = max((p.score for p in passages), default=1.0) or 1.0
        bare = None if query == question else (terms([question])[0], retriever.embedder.embed_query(question))
        scored: dict[int, tuple[float, int, Passage, float]] = {}
        for passage in passages:
            for sentence_id in retriever.chunk_sentences[passage.chunk].tolist():
                if sentence_id in scored:
                    continue
                features = sentence_features(retriever, sentence_id, query_terms, query_vector, said_before)
                evidence = features
                if bare is not None:  # a follow-up's own words also count as evidence that it is answered
                    evidence = _stronger(features, sentence_features(retriever, sentence_id, *bare, said_before))
                score = (W_DENSE * features.dense + W_TERMS * features.overlap
                         + W_TERMS_WITH_PREVIOUS * features.overlap_with_previous
                         + W_PASSAGE * passage.score / best_passage + W_NOVELTY * features.novelty)
                text = retriever.sentences[sentence_id].text
                typed = cue is not None and has_new_match(cue, text, question_words)
                if typed:
                    score += W_CUE
                if said_before and not (typed and cue is not _NAME) and _normalise(text) in said_before:
                    score *= FOLLOW_UP_PENALTY
                scored[sentence_id] = (score, sentence_id, passage, support(evidence))
        return sorted(scored.values(), key=lambda item: (-item[0], item[1]))

    def _title_lines(self, passages: list[Passage]) -> list[tuple[float, int, Passage, float]]:
        """Sentences holding the title of a retrieved document, ranked first with full support."""
        retriever = self.retriever
        found = []
        for doc_id in dict.fromkeys(p.doc_id for p in passages):
            title = _normalise(retriever.document(doc_id).title).lower()
            for sentence_id in retriever.sentence_ids(doc_id):
                text = _normalise(retriever.sentences[sentence_id].text).lower()
                if len(text) > 10 and (title in text or text in title):
                    chunk = int(retriever.sentence_chunk[sentence_id])
                    passage = retriever.passage(chunk, score=1.0)
                    found.append((1.0, sentence_id, passage, 1.0))
                    break
        return found[:1]

    def _cite(self, scored: list[tuple[float, int, Passage, float]]) -> list[Citation]:
        """[1] is the best sentence; more follow if they score close to it.

        Chosen sentences that stand next to each other in a document are cited
        as one span, in document order, at the place of the better of them: a
        sentence such as "The first of which is …" reads right only after the
        one it continues, and a reader sees one highlight instead of two.
        """
        best = scored[0][0]
        chosen: list[tuple[float, int, Passage, float]] = []
        for item in scored:  # a title line may also appear among the scored sentences
            if len(chosen) == self.settings.max_citations or item[0] < CITE_RATIO * best:
                break
            if all(item[1] != other[1] for other in chosen):
                chosen.append(item)
        spans = self._neighbour_runs(chosen)
        citations = []
        for n, span in enumerate(spans, start=1):
            first, last = self.retriever.sentences[span[0][1]], self.retriever.sentences[span[-1][1]]
            passage = max(span, key=lambda item: item[0])[2]
            document = self.retriever.document(first.doc_id).text
            context_start, context_end = min(passage.start, first.start), max(passage.end, last.end)
            citations.append(Citation(n, first.doc_id, passage.title, first.start, last.end,
                                      document[first.start:last.end], round(max(item[0] for item in span), 4),
                                      document[context_start:context_end], context_start, context_end))
        return citations

    def _neighbour_runs(
        self, chosen: list[tuple[float, int, Passage, float]]
    ) -> list[list[tuple[float, int, Passage, float]]]:
        """`chosen` grouped into runs of consecutive sentences of one document, each run in
        document order, the runs in the order of their best sentence."""
        sentences = self.retriever.sentences
        runs: list[list[tuple[float, int, Passage, float]]] = []
        for item in sorted(chosen, key=lambda item: item[1]):
            previous = runs[-1][-1][1] if runs else -2
            if item[1] == previous + 1 and sentences[item[1]].doc_id == sentences[previous].doc_id:
                runs[-1].append(item)
            else:
                runs.append([item])
        rank = {item[1]: n for n, item in enumerate(chosen)}
        return sorted(runs, key=lambda run: min(rank[item[1]] for item in run))


def resolve_follow_up(question: str, history: Sequence[tuple[str, str]], *, with_answer: bool = True) -> str:
    """The text to search for `question`, given earlier (question, answer) turns.

    A question that refers back ("Why should that be viewed warily?") is
    extended with the previous turn: its own resolved question and (unless
    `with_answer` is False) what was answered, without citation markers.
    Other questions stand alone.
    """
    if not history or not refers_back(question):
        return question
    previous_question, previous_answer = history[-1]
    subject = resolve_follow_up(previous_question, history[:-1], with_answer=False)
    said = "" if not with_answer or previous_answer.startswith(NOT_FOUND) else _MARKER.sub("", previous_answer)
    return _normalise(f"{question} {subject} {said}")


def refers_back(question: str) -> bool:
    """Whether a question leans on the one before: a pronoun or demonstrative, or "and …" / "what about …"."""
    return bool(_REFERRING.search(question) or _CONTINUING.match(question))


@dataclass(frozen=True)
class SentenceFeatures:
    """How well one sentence matches a query, each in about 0..1.

    Attributes:
        dense: cosine similarity of the sentence and query embeddings.
        overlap: IDF-weighted share of the query's stemmed terms in the sentence.
        overlap_with_previous: the same over the sentence and the one before it,
            which often names what "it" or "the first of which" refers to.
        novelty: share of the sentence's terms that the query does not have;
            a sentence that only restates the question does not answer it.
    """

    dense: float
    overlap: float
    overlap_with_previous: float
    novelty: float


def sentence_features(retriever: Retriever, sentence_id: int, query_terms: list[str],
                      query_vector: np.ndarray, said_before: str = "") -> SentenceFeatures:
    """Features of one sentence; a previous sentence already said in the last answer lends no context."""
    sentence_terms = retriever.sentence_terms[sentence_id]
    weights = retriever.term_weights
    previous = sentence_id - 1
    sentences = retriever.sentences
    if (previous >= 0 and sentences[previous].doc_id == sentences[sentence_id].doc_id
            and not (said_before and _normalise(sentences[previous].text) in said_before)):
        with_previous = weights.overlap(query_terms, sentence_terms + retriever.sentence_terms[previous])
    else:
        with_previous = weights.overlap(query_terms, sentence_terms)
    own = set(sentence_terms)
    return SentenceFeatures(
        dense=float(retriever.sentence_vectors[sentence_id] @ query_vector),
        overlap=weights.overlap(query_terms, sentence_terms),
        overlap_with_previous=with_previous,
        novelty=len(own - set(query_terms)) / len(own) if own else 0.0,
    )


def _stronger(a: SentenceFeatures, b: SentenceFeatures) -> SentenceFeatures:
    """The better match of each feature (novelty is taken from `a`, the full query)."""
    return SentenceFeatures(max(a.dense, b.dense), max(a.overlap, b.overlap),
                            max(a.overlap_with_previous, b.overlap_with_previous), a.novelty)


def support(features: SentenceFeatures) -> float:
    """How much a sentence is about the question, for the refusal decision.

    Only absolute evidence counts: meaning (dense) and shared terms. Rank-relative
    signals (passage score, novelty, answer-type cue) make any sentence look best
    somewhere, so they order sentences but do not decide whether to answer.
    """
    return 0.5 * features.dense + 0.5 * max(features.overlap, features.overlap_with_previous)


def asks_about_document(question: str) -> bool:
    """Whether the question asks where the document itself appeared or what it is called."""
    return bool(_ABOUT_DOCUMENT.search(question) and _ABOUT_PUBLICATION.search(question))


def answer_cue(question: str) -> re.Pattern[str] | None:
    """What kind of text would answer: a number, a date or a name, if the question says."""
    lowered = question.lower()
    for asks, answer_pattern in _CUES:
        if asks.search(lowered):
            return answer_pattern
    return None


def has_new_match(pattern: re.Pattern[str], text: str, question_words: set[str]) -> bool:
    """Whether `text` has a match of `pattern` that is not a word of the question."""
    return any(match.group(0).lower().strip(",.") not in question_words for match in pattern.finditer(text))


def _normalise(text: str) -> str:
    return " ".join(text.split())
