"""Candidates: the sentences an answer is chosen from, with what retrieval says of each.

This is the retrieval side's one call for answering (`question_candidates`): the answer step gets
the question's candidates, their passages, texts and evidence in one `Candidates`, then ranks,
refuses and cites without searching again.
1. The question is checked (`qa.retrieval.check_question`). A question
   about the document itself ("Who wrote this?") has the document's frame
   lines as its candidates (`qa.frame`), with their probability already set.
2. Otherwise the question is searched (dense + lexical, fused); the
   sentences of the best passages are candidates (`find_candidates`).
3. The first and last sentences of the best document are candidates too:
   most documents say there what they are, who wrote them and where they
   appeared.
4. A question leans on the conversation when it points at something it does
   not name (`refers_back`). It is then also searched together with the
   previous question, and the sentences the previous answer cited, each with
   the sentence after it, are candidates: a follow-up often asks about what
   was just said, or about what comes next. A short question that does not
   refer back (`elliptic`) is gathered both ways in the same call
   (`Candidates.with_history`); the answer step takes the second only if the
   question alone is not answered.
5. A question that asks what a named thing is ("What is the PC/GNA?") also
   has the sentences that introduce the term (`qa.definitions`), and each
   candidate that introduces it is marked (`defining`).
6. Each candidate gets its `Evidence`: meaning (embedding similarity),
   shared terms, the rank of its passage, and whether the conversation put
   it forward. The answer ranker reads that; nothing else of the index.

The question is made into what the search needs (its vector, BM25 scores,
terms and asked term) once, first (`read_question`), going down the layers
once; the rest works on that (`gather`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Settings
from .definitions import asked_term, introduces
from .frame import FRAME_CONFIDENCE, frame_lines
from .lexical import terms
from .ranker import Evidence
from .retrieval import Passage, Retriever, Where, check_question

_MARKER = re.compile(r"\s*\[\d+\]")

#: A question naming at most this many content terms may be elliptic ("How many troops?", "When?").
ELLIPTIC_TERMS = 2

_REFERS_BACK = re.compile(
    r"\b(it|its|they|them|their|theirs|he|him|his|she|her|hers|these|those)\b"
    r"|^\s*(and|but|so|also|then|what about|how about|why|why not|how so|really)\b"
    r"|\b(this|that)\s*\??$",
    re.IGNORECASE)


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
        introducing: positions (in `sentences`) of the sentences that introduce the term a "What is X?"
            question asks about: the ranker reads them whatever the first stage says.
        texts: each sentence's text; `titles`: its document's title; `previous`: the sentence before it in
            its document ("" for a document's first sentence).
        defining: positions of every candidate that introduces the asked term (`qa.definitions.introduces`).
        follow_up: whether the conversation was used (the question leans on it).
        framed: for a question about the document itself, the probability of each frame line cited
            (`qa.frame`); None for other questions.
        with_history: for a short question asked in a conversation that it does not refer back to
            (`elliptic`), its candidates searched with the conversation too, to be taken if it is not answered
            alone ("How many troops?" after a question about the troops); else None.
    """

    sentences: tuple[int, ...]
    evidence: tuple[Evidence, ...]
    passages: tuple[Passage, ...]
    ranked: tuple[Passage, ...]
    query: str
    previous_question: str | None
    introducing: tuple[int, ...] = ()
    texts: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()
    previous: tuple[str, ...] = ()
    defining: tuple[int, ...] = ()
    follow_up: bool = False
    framed: float | None = None
    with_history: Candidates | None = None


def refers_back(question: str) -> bool:
    """Whether the question points at something it does not name: a third-person pronoun, a closing
    "this"/"that", or an opening that continues a conversation ("And …", "What about …", "Why?")."""
    return bool(_REFERS_BACK.search(question))


def question_candidates(retriever: Retriever, question: str, history: Sequence[tuple[str, str]], settings: Settings,
                        *, where: Where = None, follow_up: bool | None = None) -> Candidates:
    """Everything the answer step needs of retrieval for `question`, in one call (see the module docstring).

    `history` holds earlier (question, answer text) turns, oldest first; it is used when the question refers
    back (`refers_back`), or always with `follow_up=True` (never with False). A short question that does not
    refer back (`elliptic`: "How many troops?") is searched both alone and with the conversation, the second
    as `Candidates.with_history`, for the answer step to take if the question alone is not answered. Raises
    `InvalidQuestionError` for an empty or overlong question.
    """
    question = check_question(question, settings)
    lines = frame_lines(retriever, question, where=where)
    if lines is not None:
        return _with_texts(retriever, Candidates(
            tuple(lines), tuple(Evidence(0.0, 0.0, 0.0, 0.0, edge=1.0) for _ in lines),
            tuple(sentence_passage(retriever, i) for i in lines), (), normalise(question), None,
            framed=FRAME_CONFIDENCE))
    if not history or follow_up is False:
        return find_candidates(retriever, question, (), settings, where=where)
    leans = refers_back(question) if follow_up is None else follow_up
    read = read_question(retriever, question, history[-1][0], lean=True if leans else None)
    if leans:
        return dataclasses.replace(gather(retriever, read, history, settings, where=where), follow_up=True)
    alone = gather(retriever, read, (), settings, where=where)
    if read.query is None:
        return alone
    with_history = dataclasses.replace(gather(retriever, read, history, settings, where=where), follow_up=True)
    return dataclasses.replace(alone, with_history=with_history)


def elliptic(question_terms: Sequence[str]) -> bool:
    """Whether a question is too short to stand alone: it names at most `ELLIPTIC_TERMS` content terms (its
    `qa.lexical.terms`). A question with a subject of its own ("How far did the Okavango zebras migrate?")
    stands or falls alone."""
    return len(set(question_terms)) <= ELLIPTIC_TERMS


@dataclass(frozen=True)
class Searched:
    """One text as the search needs it: its content terms, embedding and BM25 scores (`qa.lexical.scores`)."""

    terms: list[str]
    vector: np.ndarray
    scores: Any


@dataclass(frozen=True)
class ReadQuestion:
    """A question made, once, into what the search needs (`read_question`).

    Attributes:
        question: the question searched alone; `alone` what the search needs of it; `searched` it normalised.
        previous_question: the question before, where the conversation is searched too; `query` then holds
            what the search needs of the question followed by it, `searched_with_previous` that normalised;
            else both None.
        term: the term a "What is X?" question asks about (`qa.definitions.asked_term`), else None.
    """

    question: str
    alone: Searched
    searched: str
    previous_question: str | None = None
    query: Searched | None = None
    searched_with_previous: str | None = None
    term: str | None = None


def read_question(retriever: Retriever, question: str, previous_question: str | None, *,
                  lean: bool | None = True) -> ReadQuestion:
    """`question` made into what the search needs, going down the layers once: normalised, its terms, its
    embedding and BM25 scores, then the term it asks about. With a `previous_question`, the question followed
    by it is read too when `lean` is True, or when `lean` is None and the question is `elliptic`."""
    with_previous = f"{question} {previous_question}" if previous_question else question
    searched = normalise(with_previous), normalise(question)
    question_terms, query_terms = terms([question, with_previous])
    alone = Searched(question_terms, retriever.embedder.embed_query(question), retriever.lexical.scores(question))
    wanted = previous_question is not None and (lean or (lean is None and elliptic(question_terms)))
    query = (Searched(query_terms, retriever.embedder.embed_query(with_previous),
                      retriever.lexical.scores(with_previous)) if wanted else None)
    return ReadQuestion(question, alone, searched[1], previous_question if wanted else None, query,
                        searched[0] if wanted else None, asked_term(question))


def find_candidates(retriever: Retriever, question: str, history: Sequence[tuple[str, str]], settings: Settings,
                    *, where: Where = None) -> Candidates:
    """The searched candidate sentences for `question` and their evidence (see the module docstring, steps 2-6);
    `history`, when given, is used."""
    read = read_question(retriever, question, history[-1][0] if history else None)
    return gather(retriever, read, history, settings, where=where)


def gather(retriever: Retriever, read: ReadQuestion, history: Sequence[tuple[str, str]], settings: Settings,
           *, where: Where = None) -> Candidates:
    """The candidate sentences of a read question and their evidence (the module docstring's steps 2-6): searched
    alone, or, with `history` (and `read.query`), together with the previous question and the last answer."""
    leans = bool(history) and read.query is not None
    queries = [(read.alone.terms, read.alone.vector)]
    rankings = [retriever.rank_scored(read.alone.scores, read.alone.vector, k=settings.answer_passages, where=where)]
    cited: list[int] = []
    if leans:
        assert read.query is not None
        # A follow-up's evidence is the stronger of what the question says alone and what it says
        # together with the previous question ("Is it gone?" means the group of the last answer).
        queries.append((read.query.terms, read.query.vector))
        rankings.append(retriever.rank_scored(read.query.scores, read.query.vector, k=settings.answer_passages,
                                              where=where))
        cited = cited_sentences(retriever, history[-1][1])
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
    introduced = introductions(retriever, read.term, where)
    extra += introduced
    sentence_ids = list(passage_of) + [i for i in dict.fromkeys(extra) if i not in passage_of]
    evidence, passages = [], []
    for sentence_id in introduced:  # read for the term it introduces: its passage scored as a search scores one
        if sentence_id not in passage_of:
            scored = retriever.passage_scored(read.alone.scores, read.alone.vector,
                                              int(retriever.sentence_chunk[sentence_id]), where=where)
            passage_of[sentence_id] = (scored, min(1.0, max(0.0, scored.score / best[0])))
    for sentence_id in sentence_ids:
        passage, relative = passage_of.get(sentence_id) or (sentence_passage(retriever, sentence_id), 0.0)
        found = [sentence_evidence(retriever, sentence_id, query_terms, vector, relative,
                                   cited_before=sentence_id in cited_set, follows_cited=sentence_id - 1 in cited_set,
                                   edge=sentence_id in edges) for query_terms, vector in queries]
        evidence.append(_stronger(found))
        passages.append(passage)
    candidates = _with_texts(retriever, Candidates(
        tuple(sentence_ids), tuple(evidence), tuple(passages), tuple(rankings[0]),
        read.searched_with_previous if leans and read.searched_with_previous else read.searched,
        read.previous_question if leans else None,
        tuple(sentence_ids.index(i) for i in introduced)))
    if read.term is None:
        return candidates
    return dataclasses.replace(candidates, defining=tuple(k for k, text in enumerate(candidates.texts)
                                                          if introduces(text, read.term)))


def _with_texts(retriever: Retriever, candidates: Candidates) -> Candidates:
    """The candidates with each sentence's text, its document's title and the sentence before it."""
    sentences = retriever.sentences
    return dataclasses.replace(
        candidates, texts=tuple(sentences[i].text for i in candidates.sentences),
        titles=tuple(retriever.document(sentences[i].doc_id).title for i in candidates.sentences),
        previous=tuple(retriever.sentence_before(i) for i in candidates.sentences))


def introductions(retriever: Retriever, term: str | None, where: Where = None, *, limit: int = 2,
                  searched: int = 200) -> list[int]:
    """For the term a question asks the meaning of (`qa.definitions.asked_term`: "PC/GNA" for "What is the
    PC/GNA?"), the sentences that introduce it: of the `searched` sentences that share most of the term's
    words, the first `limit` that introduce it, in document order. Empty when there is no term."""
    if term is None:
        return []
    _, by_sentence, _ = retriever.lexical.scores(term)
    allowed = retriever.allowed(where)
    top = np.argpartition(-by_sentence, searched)[:searched] if len(by_sentence) > searched else np.arange(
        len(by_sentence))
    best = [int(i) for i in top[np.argsort(-by_sentence[top], kind="stable")] if by_sentence[i] > 0]
    found = [i for i in best if (allowed is None or allowed[retriever.corpus.positions[retriever.sentences[i].doc_id]])
             and introduces(retriever.sentences[i].text, term)]
    return sorted(found[:limit])


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
    """Ids of the sentences an earlier answer's text quotes: the spans that a marker [n] follows
    (a refusal has no marker, so it cites nothing)."""
    found: list[int] = []
    for span in _MARKER.split(answer_text)[:-1]:
        span = normalise(span)
        if not span:
            continue
        _, by_sentence, _ = retriever.lexical.scores(span)
        for sentence_id in np.argsort(-by_sentence)[:8].tolist():
            if by_sentence[sentence_id] > 0 and normalise(retriever.sentences[sentence_id].text) in span:
                found.append(int(sentence_id))
    return sorted(set(found))


def sentence_passage(retriever: Retriever, sentence_id: int) -> Passage:
    """The chunk that holds a sentence, as a passage (for sentences that no search returned)."""
    return retriever.passage(int(retriever.sentence_chunk[sentence_id]))


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return " ".join(text.split())
