"""Answering: pick the sentences that answer a question and cite them.

The composer is extractive, so every claim is the document's own words:
1. Candidates. The sentences of the retriever's best passages for the
   question, and the first and last sentences of the best document, where
   most documents say what they are, who wrote them and where they appeared.
   In a conversation the question is also searched together with the
   previous question, and the sentences the previous answer cited, each with
   the sentence after it, are candidates too: a follow-up often asks about
   what was just said, or about what comes next.
2. Ranking. The learned answer ranker (`qa.ranker`) gives every candidate
   the probability that it answers: it reads the question (with the previous
   one), the sentence and its document's title, and weighs retrieval
   evidence and whether the sentence was just cited. A document's title and
   author lines are ranked like any sentence, so questions about the
   document itself are answered the same way.
3. Refusing. When the ranker's probability that the document answers is
   below its calibrated threshold, the answer says the document does not
   say, and nothing is cited as support.
4. Citing. The most probable sentence is cited first; more follow while the
   chance that none of the cited sentences answers is above
   1 - `Settings.cite_confidence`. Chosen sentences that are neighbours in a
   document are cited as one span.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import Settings
from .lexical import terms
from .ranker import AnswerRanker, Evidence, load_ranker
from .retrieval import Passage, Retriever, Where, check_question

NOT_FOUND = "The document does not say. I could not find a passage that answers this question."

_MARKER = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True)
class Citation:
    """A cited span: `text == document.text[start:end]`; `context` is its chunk, for display.

    `context_start`/`context_end` locate the chunk in the document, so the
    cited span sits at `start - context_start` inside `context`. `score` is
    the ranker's probability that the span's best sentence answers.
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
        query: the text searched (in a conversation, the question with the previous question).
        closest: when not found, the nearest passages, which do not answer.
        confidence: the ranker's calibrated probability that the document answers the question;
            below the model's threshold the assistant refuses.
    """

    question: str
    text: str
    found: bool
    citations: tuple[Citation, ...] = ()
    query: str = ""
    closest: tuple[Passage, ...] = ()
    confidence: float = 0.0


@dataclass(frozen=True)
class Candidates:
    """The sentences a question's answer is chosen from, and what retrieval says of each.

    Attributes:
        sentences: sentence ids in the retriever, in retrieval order.
        evidence: one `Evidence` per sentence.
        passages: the best passage holding each sentence (for its context).
        ranked: the retrieved passages, best first.
        query: the text searched.
        previous_question: the question before, in a conversation.
    """

    sentences: tuple[int, ...]
    evidence: tuple[Evidence, ...]
    passages: tuple[Passage, ...]
    ranked: tuple[Passage, ...]
    query: str
    previous_question: str | None


class Assistant:
    """Answers questions over a `Retriever`'s documents with cited sentences."""

    def __init__(self, retriever: Retriever, *, settings: Settings | None = None,
                 ranker: AnswerRanker | None = None) -> None:
        self.retriever = retriever
        self.settings = settings or retriever.settings
        self.ranker = ranker or load_ranker(threads=self.settings.query_threads)

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), *, where: Where = None) -> Answer:
        """Answer `question`; `history` holds earlier (question, answer text) turns, oldest first;
        `where` limits the answer to some documents (see `Retriever.allowed`)."""
        question = check_question(question, self.settings)
        found = find_candidates(self.retriever, question, history, self.settings, where=where)
        if not found.sentences:
            return Answer(question, NOT_FOUND, False, (), found.query, found.ranked, 0.0)
        retriever = self.retriever
        texts = [retriever.sentences[i].text for i in found.sentences]
        titles = [retriever.document(retriever.sentences[i].doc_id).title for i in found.sentences]
        ranking = self.ranker.rank(question, texts, titles, found.evidence, previous_question=found.previous_question,
                                   size=self.settings.rerank_sentences)
        threshold = self.settings.min_answerable
        if ranking.answerable < (self.ranker.min_answerable if threshold is None else threshold):
            return Answer(question, NOT_FOUND, False, (), found.query, found.ranked, ranking.answerable)
        chosen = self.ranker.cited(ranking.probabilities, self.settings.max_citations,
                                   self.settings.cite_confidence)
        citations = self._cite(found, [(found.sentences[ranking.read[i]], float(ranking.probabilities[i]))
                                       for i in chosen])
        text = " ".join(f"{normalise(c.text)} [{c.n}]" for c in citations)
        return Answer(question, text, True, tuple(citations), found.query, (), ranking.answerable)

    def _cite(self, found: Candidates, chosen: list[tuple[int, float]]) -> list[Citation]:
        """Citations for the chosen (sentence id, probability) pairs, best first.

        Chosen sentences that stand next to each other in a document are cited
        as one span, in document order, at the place of the better of them: a
        sentence such as "The first of which is …" reads right only after the
        one it continues, and a reader sees one highlight instead of two.
        """
        retriever = self.retriever
        passage_of = dict(zip(found.sentences, found.passages, strict=True))
        citations = []
        for n, span in enumerate(neighbour_runs(retriever, chosen), start=1):
            first, last = retriever.sentences[span[0][0]], retriever.sentences[span[-1][0]]
            best = max(span, key=lambda item: item[1])
            passage = passage_of[best[0]]
            document = retriever.document(first.doc_id)
            context_start, context_end = min(passage.start, first.start), max(passage.end, last.end)
            citations.append(Citation(n, first.doc_id, document.title, first.start, last.end,
                                      document.text[first.start:last.end], round(best[1], 4),
                                      document.text[context_start:context_end], context_start, context_end))
        return citations


def find_candidates(retriever: Retriever, question: str, history: Sequence[tuple[str, str]], settings: Settings,
                    *, where: Where = None) -> Candidates:
    """The candidate sentences for `question` and their evidence (see the module docstring, step 1)."""
    question_vector = retriever.embedder.embed_query(question)
    rankings = [retriever.rank(question, question_vector, k=settings.answer_passages, where=where)]
    previous_question, query, cited = None, question, []
    if history:
        previous_question, previous_answer = history[-1]
        query = f"{question} {previous_question}"
        query_vector = retriever.embedder.embed_query(query)
        rankings.append(retriever.rank(query, query_vector, k=settings.answer_passages,
                                       where=where))
        cited = cited_sentences(retriever, previous_answer)
    passage_of: dict[int, tuple[Passage, float]] = {}
    best = [max((p.score for p in passages), default=0.0) or 1.0 for passages in rankings]
    interleaved = [(passage, passage.score / best[r]) for rank in range(settings.answer_passages)
                   for r, passages in enumerate(rankings) if rank < len(passages) for passage in [passages[rank]]]
    for passage, relative in interleaved:
        for sentence_id in retriever.chunk_sentences[passage.chunk].tolist():
            if sentence_id not in passage_of and len(passage_of) < settings.answer_candidates:
                passage_of[sentence_id] = (passage, relative)
    cited_set = set(cited)
    extra = [i for s in cited for i in (s, s + 1) if i < len(retriever.sentences)
             and retriever.sentences[i].doc_id == retriever.sentences[s].doc_id]
    edges: set[int] = set()
    if rankings[0] and settings.document_edges:
        document = retriever.sentence_ids(rankings[0][0].doc_id)
        first, last = settings.document_edges
        edges = {*document[:first], *document[max(first, len(document) - last):]}
        extra += sorted(edges)
    sentence_ids = list(passage_of) + [i for i in dict.fromkeys(extra) if i not in passage_of]
    # A follow-up's evidence is the stronger of what the question says alone and what it says
    # together with the previous question ("Is it gone?" means the group of the last answer).
    queries = [(terms([question])[0], question_vector)]
    if history:
        queries.append((terms([query])[0], query_vector))
    evidence, passages = [], []
    for sentence_id in sentence_ids:
        passage, relative = passage_of.get(sentence_id) or (sentence_passage(retriever, sentence_id), 0.0)
        found = [sentence_evidence(retriever, sentence_id, query_terms, vector, relative,
                                   cited_before=sentence_id in cited_set, follows_cited=sentence_id - 1 in cited_set,
                                   edge=sentence_id in edges) for query_terms, vector in queries]
        evidence.append(_stronger(found))
        passages.append(passage)
    return Candidates(tuple(sentence_ids), tuple(evidence), tuple(passages), tuple(rankings[0]), normalise(query),
                      previous_question)


def _stronger(evidence: list[Evidence]) -> Evidence:
    """The per-field maximum of one sentence's evidence against several queries."""
    if len(evidence) == 1:
        return evidence[0]
    first = evidence[0]
    return dataclasses.replace(first, dense=max(e.dense for e in evidence), overlap=max(e.overlap for e in evidence),
                               overlap_with_previous=max(e.overlap_with_previous for e in evidence))


def sentence_evidence(retriever: Retriever, sentence_id: int, query_terms: list[str], query_vector: np.ndarray,
                      passage: float, *, cited_before: bool = False, follows_cited: bool = False,
                      edge: bool = False) -> Evidence:
    """Retrieval evidence for one sentence (see `qa.ranker.Evidence`)."""
    sentence_terms = retriever.sentence_terms[sentence_id]
    weights = retriever.term_weights
    sentences = retriever.sentences
    previous = sentence_id - 1
    with_previous = sentence_terms
    if previous >= 0 and sentences[previous].doc_id == sentences[sentence_id].doc_id:
        with_previous = sentence_terms + retriever.sentence_terms[previous]
    return Evidence(
        dense=float(retriever.sentence_vectors[sentence_id] @ query_vector),
        overlap=weights.overlap(query_terms, sentence_terms),
        overlap_with_previous=weights.overlap(query_terms, with_previous),
        passage=passage,
        cited_before=float(cited_before),
        follows_cited=float(follows_cited),
        edge=float(edge),
    )


def cited_sentences(retriever: Retriever, answer_text: str) -> list[int]:
    """Ids of the sentences an earlier answer's text quotes (the spans between its [n] markers)."""
    found: list[int] = []
    for span in _MARKER.split(answer_text):
        span = normalise(span)
        if not span or span.startswith(normalise(NOT_FOUND)):
            continue
        _, by_sentence, _ = retriever.lexical.scores(span)
        for sentence_id in np.argsort(-by_sentence)[:8].tolist():
            if by_sentence[sentence_id] > 0 and normalise(retriever.sentences[sentence_id].text) in span:
                found.append(int(sentence_id))
    return sorted(set(found))


def sentence_passage(retriever: Retriever, sentence_id: int) -> Passage:
    """The chunk that holds a sentence, as a passage (for sentences that no search returned)."""
    return retriever.passage(int(retriever.sentence_chunk[sentence_id]))


def neighbour_runs(retriever: Retriever, chosen: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """`chosen` (sentence id, probability), best first, grouped into runs of consecutive sentences of one
    document; each run in document order, the runs in the order of their best sentence."""
    sentences = retriever.sentences
    runs: list[list[tuple[int, float]]] = []
    for item in sorted(chosen):
        previous = runs[-1][-1][0] if runs else -2
        if item[0] == previous + 1 and sentences[item[0]].doc_id == sentences[previous].doc_id:
            runs[-1].append(item)
        else:
            runs.append([item])
    rank = {item[0]: n for n, item in enumerate(chosen)}
    return sorted(runs, key=lambda run: min(rank[item[0]] for item in run))


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return " ".join(text.split())
