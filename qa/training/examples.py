"""Validation examples: questions with their candidates as answering finds them, for the calibration.

Each question is asked as `qa.candidates.find_candidates` asks it, as a single question and (a share) as
the follow-up of its article's previous question; `absent_examples` asks questions of the corpus without
their article, which then does not answer them. An `Example` holds the candidates' pair texts, their
retrieval evidence and whether each answers, which is what the layers after the cross-encoder are fitted
on (`qa.training.calibration`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..candidates import find_candidates, normalise
from ..config import Settings
from ..ranker import Evidence, pair_text, ranker_question
from .squad import SquadQuestion, article_of, contains_any, pronominalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One question with its candidates, ready for the cross-encoder and the calibration.

    Attributes:
        question: the question side of the pairs (with the previous question, for a follow-up).
        sentences: candidate sentence ids.
        texts: candidate sentences' pair texts (sentence [SEP] title).
        labels: whether each candidate answers.
        evidence: retrieval evidence of each candidate (None for gold-paragraph sentences that retrieval missed).
        answerable: whether the corpus answers the question.
        kind: "single", "follow-up", or "absent" (asked of a corpus without the question's article).
        answers: the gold answers (empty when the corpus does not answer).
    """

    question: str
    sentences: tuple[int, ...]
    texts: tuple[str, ...]
    labels: tuple[bool, ...]
    evidence: tuple[Evidence | None, ...]
    answerable: bool
    kind: str
    answers: tuple[str, ...] = ()


def make_examples(retriever: Any, questions: Sequence[SquadQuestion], settings: Settings, *, gold: bool,
                  follow_ups: bool, rng: random.Random, progress: str = "", reads_previous: bool = False
                  ) -> list[Example]:
    """Examples of `questions`, each as a single question and (if `follow_ups`) as the follow-up of
    the article's previous question whose answer is cited before it; `reads_previous` as in `pair_text`."""
    examples, previous = [], None
    started = time.perf_counter()
    for n, question in enumerate(questions):
        examples.append(make_example(retriever, question, settings, gold=gold, reads_previous=reads_previous))
        if follow_ups and previous is not None and previous.article == question.article:
            cited = answering_sentences(retriever, previous)
            if cited:
                text = " ".join(normalise(retriever.sentences[i].text) for i in cited[:1]) + " [1]"
                # Posed as a follow-up is posed: leaning on the previous question (as in training).
                asked = dataclasses.replace(question, question=pronominalise(question.question, previous.question))
                examples.append(make_example(retriever, asked, settings, gold=gold, reads_previous=reads_previous,
                                         history=[(previous.question, text)]))
        previous = question
        if progress and (n + 1) % 500 == 0:
            log.info("%s: %d of %d questions, %.0f s", progress, n + 1, len(questions), time.perf_counter() - started)
    return examples


def make_example(retriever: Any, question: SquadQuestion, settings: Settings, *, gold: bool,
             history: Sequence[tuple[str, str]] = (), reads_previous: bool = False) -> Example:
    found = find_candidates(retriever, question.question, history, settings)
    sentences, evidence = list(found.sentences), list[Evidence | None](found.evidence)
    if gold:
        for sentence_id in retriever.sentence_ids(question.doc_id):
            if sentence_id not in sentences:
                sentences.append(sentence_id)
                evidence.append(None)
    labels = tuple(answers(retriever, question, i) for i in sentences)
    texts = tuple(pair_text(retriever.sentences[i].text, _title(retriever, i),
                            retriever.sentence_before(i) if reads_previous else None) for i in sentences)
    answerable = not question.impossible and question.doc_id in retriever.corpus.positions
    kind = "follow-up" if history else "single" if question.doc_id in retriever.corpus.positions else "absent"
    return Example(ranker_question(question.question, found.previous_question), tuple(sentences), texts, labels,
                   tuple(evidence), answerable, kind, question.answers if answerable else ())


def answers(retriever: Any, question: SquadQuestion, sentence_id: int) -> bool:
    """Whether the sentence lies in the question's paragraph and contains one of its gold answers."""
    sentence = retriever.sentences[sentence_id]
    return (not question.impossible and sentence.doc_id == question.doc_id
            and contains_any(sentence.text, question.answers))


def absent_examples(retriever: Any, questions: Sequence[SquadQuestion], settings: Settings, *,
                    reads_previous: bool = False) -> list[Example]:
    """`questions` asked of the corpus without their articles: the document does not answer them.

    Off-topic questions look unlike SQuAD 2.0's unanswerable ones (which reuse
    their paragraph's words), so the calibration sees both.
    """
    articles = {q.article for q in questions}
    elsewhere = retriever.remove([d.doc_id for d in retriever.documents if article_of(d.doc_id) in articles])
    return [make_example(elsewhere, q, settings, gold=False, reads_previous=reads_previous) for q in questions]


def answering_sentences(retriever: Any, question: SquadQuestion) -> list[int]:
    return [i for i in retriever.sentence_ids(question.doc_id) if answers(retriever, question, i)]


def _title(retriever: Any, sentence_id: int) -> str:
    return retriever.document(retriever.sentences[sentence_id].doc_id).title
