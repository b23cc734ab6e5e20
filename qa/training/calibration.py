"""Calibration: the logistic layers after the cross-encoder, fitted on validation questions.

`fit_first_stage` fits the shortlist (does a retrieved sentence answer, from its evidence alone). The
exported cross-encoder then scores the validation candidates (`qa.training.examples`), as single
questions, follow-ups and questions asked of the corpus without their article, and `calibrate` fits
P(sentence answers), P(the document answers) with the refusal threshold, and P(the short answer is right).
Last, `calibrate_confidence` fits the answer's confidence, P(citation [1] answers), on the answering path
itself: the validation questions asked over their whole corpus.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import Settings
from ..metrics import expected_calibration_error
from ..ranker import (
    ANSWERABLE_FEATURES,
    CONFIDENCE_FEATURES,
    FIRST_STAGE_FEATURES,
    PHRASE_FEATURES,
    QUESTION_FEATURES,
    SENTENCE_FEATURES,
    AnswerRanker,
    Confidence,
    Span,
    _Logistic,
    _logit,
    confidence_features,
    first_stage_features,
    number_agreement,
    phrase_features,
    question_features,
    sentence_features,
    shortlist,
    span_text,
)
from .config import TrainConfig
from .examples import Example
from .squad import SquadQuestion, contains_any, f1

log = logging.getLogger(__name__)


def fit_first_stage(examples: Sequence[Example]) -> _Logistic:
    """The shortlisting logistic regression: does a retrieved sentence answer, from its evidence alone."""
    from sklearn.linear_model import LogisticRegression

    rows, labels = [], []
    for example in examples:
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        rows.append(first_stage_features([example.evidence[k] for k in keep]))
        labels.extend(example.labels[k] for k in keep)
    return _fit(LogisticRegression, np.concatenate(rows), np.asarray(labels), FIRST_STAGE_FEATURES)


def shortlisted(example: Example, first_stage: _Logistic, size: int) -> Example:
    """The example cut to what the cross-encoder reads at answer time (`qa.ranker.shortlist`)."""
    keep = [k for k, e in enumerate(example.evidence) if e is not None]
    read = [keep[k] for k in shortlist(first_stage, [example.evidence[k] for k in keep], size)]
    return dataclasses.replace(example, sentences=tuple(example.sentences[k] for k in read),
                               texts=tuple(example.texts[k] for k in read),
                               labels=tuple(example.labels[k] for k in read),
                               evidence=tuple(example.evidence[k] for k in read))


def calibrate(read: Sequence[tuple[np.ndarray, list[Span | None]]], examples: Sequence[Example],
              config: TrainConfig) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the logistic layers on validation examples; returns (calibration for the manifest, figures).

    In order: P(sentence answers) per candidate; P(the document answers) per
    question and the refusal threshold; P(the short answer is right) for the
    best span of citation [1], where right means token F1 >= 0.5 against a
    gold answer. The answer's confidence comes after, from the answering path
    itself (`calibrate_confidence`).
    """
    from sklearn.linear_model import LogisticRegression

    ranker_scores = [relevance for relevance, _ in read]
    rows, labels = [], []
    agreements = [number_agreement(example.question, [
        span_text(text.split(" [SEP] ")[0], span)
        for text, span in zip(example.texts, spans or [None] * len(example.texts), strict=True)])
        for (_, spans), example in zip(read, examples, strict=True)]
    for scores, example, agreement in zip(ranker_scores, examples, agreements, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        rows.append(sentence_features(scores[keep], [example.evidence[k] for k in keep], agreement=agreement[keep]))
        labels.extend(example.labels[k] for k in keep)
    sentence = _fit(LogisticRegression, np.concatenate(rows), np.asarray(labels), SENTENCE_FEATURES)
    question_rows, answerable, outcomes, firsts = [], [], [], []
    phrase_rows, phrase_right = [], []
    absent = [max(e.dense for e in example.evidence if e is not None) for example in examples
              if example.kind == "absent" and any(e is not None for e in example.evidence)]
    dense_ceiling = float(np.quantile(absent, DENSE_CEILING_QUANTILE)) if absent else 1.0
    for (scores, spans), example, agreement in zip(read, examples, agreements, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        evidence = [example.evidence[k] for k in keep]
        probabilities = sentence.probability(sentence_features(scores[keep], evidence, agreement=agreement[keep]))
        question_rows.append(question_features(scores[keep], probabilities, evidence, dense_ceiling=dense_ceiling))
        answerable.append(example.answerable)
        outcomes.append((example, [example.sentences[k] for k in keep], probabilities))
        top = keep[int(np.argmax(probabilities))]
        firsts.append((float(probabilities.max()), bool(example.labels[top])))
        span = spans[top] if spans else None
        if span is not None:
            phrase = example.texts[top].split(" [SEP] ")[0][span.start:span.end]
            phrase_rows.append(phrase_features(span, float(probabilities.max())))
            phrase_right.append(bool(example.labels[top]) and f1(phrase, example.answers) >= 0.5)
    question = _fit(LogisticRegression, np.asarray(question_rows), np.asarray(answerable), QUESTION_FEATURES)
    p_answerable = question.probability(np.asarray(question_rows))
    phrase = _fit(LogisticRegression, np.asarray(phrase_rows), np.asarray(phrase_right), PHRASE_FEATURES)
    singles = np.asarray([example.kind == "single" and example.answerable for example, _, _ in outcomes], dtype=bool)
    answerable_p = np.sort(p_answerable[singles])
    threshold = float(answerable_p[int(math.floor(config.max_refusals * len(answerable_p)))]) if len(
        answerable_p) else 0.5
    figures = _figures(outcomes, p_answerable, threshold)
    figures["short answer right (F1 >= 0.5) when [1] is shown"] = float(np.mean(phrase_right)) if phrase_right else 0.0
    calibration = {"sentence": sentence.to_json(), "question": question.to_json(), "dense_ceiling": dense_ceiling,
                   "min_answerable": threshold,
                   "phrase": {"model": phrase.to_json(), "min_probability": PHRASE_MIN_PROBABILITY}}
    return calibration, figures


#: The question layer's dense similarity counts only below the level that this share of the questions asked of
#: a corpus without their article stay under: similarity lower than that of almost every unanswered SQuAD question
#: says "off-topic", while the level above it says more about how SQuAD's questions were written (looking at their
#: paragraph) than about whether the documents answer (see `qa.ranker.QUESTION_FEATURES`).
DENSE_CEILING_QUANTILE = 0.1

#: A short answer is shown unless it is unlikely to be right: at 0.5 ("more likely right than wrong") most short
#: answers on informal text were withheld though those shown had F1 85-87; 0.1 is the lowest probed threshold
#: (0.1, 0.2, 0.3, 0.5) that keeps the F1 of the short answers shown at 70 or more on the calibration halves of
#: the Reddit, Amazon and tweet sets (docs/training.md, "Text beyond Wikipedia").
PHRASE_MIN_PROBABILITY = 0.1


def calibrate_confidence(ranker: AnswerRanker, corpora: Sequence[tuple[Any, Sequence[SquadQuestion]]],
                         settings: Settings) -> tuple[Confidence, dict[str, float]]:
    """Fit the answer's confidence on what answering does: validation questions asked over their whole corpus.

    The layers before this one are fitted on training-style candidates, with questions asked of a corpus
    without their article among them; the confidence a reader sees must fit the answering path instead.
    Each question is ranked as `Assistant` ranks a question asked alone. P(the documents answer) is refitted
    on the question layer's output, and P(the best sentence answers | the documents answer) on the
    answerable questions (see `qa.ranker.Confidence`).
    """
    from sklearn.linear_model import LogisticRegression

    from ..answer import Assistant

    firsts, answerables, answers, rights = [], [], [], []
    started = time.perf_counter()
    asked = [(retriever, question) for retriever, questions in corpora for question in questions]
    assistants = {id(retriever): Assistant(retriever, settings=dataclasses.replace(settings, min_answerable=0.0),
                                           ranker=ranker) for retriever, _ in corpora}
    for n, (retriever, question) in enumerate(asked, start=1):
        found, ranking = assistants[id(retriever)].rank(question.question)
        if len(ranking.probabilities):
            best = int(np.argmax(ranking.probabilities))
            text = retriever.sentences[found.sentences[ranking.read[best]]].text
            firsts.append(float(ranking.probabilities[best]))
            answerables.append(ranking.answerable)
            answers.append(not question.impossible)
            rights.append(not question.impossible and contains_any(text, question.answers))
        if n % 200 == 0:
            log.info("confidence: %d of %d questions, %.0f s", n, len(asked), time.perf_counter() - started)
    answers_array = np.asarray(answers, dtype=bool)
    answerable = _fit(LogisticRegression, np.asarray([[_logit(p)] for p in answerables]), answers_array,
                      ANSWERABLE_FEATURES)
    rows = np.asarray([confidence_features(first, p) for first, p in zip(firsts, answerables, strict=True)])
    right = _fit(LogisticRegression, rows[answers_array], np.asarray(rights)[answers_array], CONFIDENCE_FEATURES)
    confidence = Confidence(right, answerable, float(answers_array.mean()))
    answered = [i for i, p in enumerate(answerables) if p >= ranker.min_answerable]
    figures = {
        "questions the documents answer, among the confidence's calibration questions": confidence.answerable_share,
        "confidence ECE (answered validation questions, as answered)": expected_calibration_error(
            [confidence.probability(firsts[i], answerables[i]) for i in answered], [rights[i] for i in answered]),
    }
    return confidence, figures


def _fit(model: Any, rows: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> _Logistic:
    mean, scale = rows.mean(0), rows.std(0)
    scale[scale == 0] = 1.0
    if len(set(labels.tolist())) < 2:  # a smoke run's few questions: the observed rate, whatever the features
        rate = min(max(float(np.mean(labels)) if len(labels) else 0.5, 0.01), 0.99)
        return _Logistic(tuple(names), mean, scale, np.zeros(len(names)), math.log(rate / (1 - rate)))
    fitted = model(C=1.0, max_iter=5000).fit((rows - mean) / scale, labels)
    return _Logistic(tuple(names), mean, scale, fitted.coef_[0], float(fitted.intercept_[0]))


def _figures(outcomes: list[tuple[Example, list[int], np.ndarray]], p_answerable: np.ndarray,
             threshold: float) -> dict[str, float]:
    """Validation figures: best sentence right and one of three right (single questions), refusals by kind."""
    first = three = 0
    asked: dict[str, int] = {}
    refused: dict[str, int] = {}
    for (example, _, probabilities), p in zip(outcomes, p_answerable, strict=True):
        kind = example.kind if example.kind != "single" else "answerable" if example.answerable else "unanswerable"
        asked[kind] = asked.get(kind, 0) + 1
        refused[kind] = refused.get(kind, 0) + int(p < threshold)
        if kind == "answerable":
            order = np.argsort(-probabilities, kind="stable")
            labels = [label for label, e in zip(example.labels, example.evidence, strict=True) if e is not None]
            first += labels[order[0]]
            three += any(labels[k] for k in order[:3])
    answerable = max(1, asked.get("answerable", 0))
    figures = {"best sentence answers": first / answerable, "one of the best three answers": three / answerable}
    for kind, name in (("answerable", "answerable refused"), ("unanswerable", "SQuAD 2.0 unanswerable refused"),
                       ("absent", "asked of a corpus without their article: refused"),
                       ("follow-up", "follow-ups refused")):
        figures[name] = refused.get(kind, 0) / max(1, asked.get(kind, 0))
    figures |= {f"{kind} questions": asked.get(kind, 0) for kind in ("answerable", "unanswerable", "absent",
                                                                     "follow-up")}
    return figures


def score_examples(ranker: AnswerRanker, examples: Sequence[Example], precise: int = Settings.precise_reads
                   ) -> list[tuple[np.ndarray, list[Span | None]]]:
    """The shipped (exported) cross-encoder's scores and short answers of every candidate of every example, those
    too close to the best to order in int8 read again in float as when answering (`AnswerRanker.reread_close`)."""
    return [ranker.reread_close(e.question, e.texts, *ranker.read_pairs(e.question, e.texts), precise)
            for e in examples]


#: Examples whose candidates `close_margin` reads in float as well (about 12 ms a pair: 1-2 minutes).
MARGIN_EXAMPLES = 800


def close_margin(ranker: AnswerRanker, examples: Sequence[Example], limit: int = MARGIN_EXAMPLES) -> float:
    """How far apart two int8 scores can be and still come out in the other order when read in float: the
    largest int8 gap between an example's best candidate and another that the float reading puts above it, over
    `limit` examples (evenly drawn), rounded up to 0.05.

    The activations' quantization moves each score by about 0.15 (docs/training.md); within this margin of
    the best, the int8 order is that noise, and answering reads those candidates again in float."""
    step = max(1, len(examples) // limit)
    ranker.close_margin = float("inf")  # read every pair in float below
    widest = 0.0
    for example in examples[::step][:limit]:
        if len(example.texts) < 2:
            continue
        quantized, _ = ranker.read_pairs(example.question, example.texts)
        full, _ = ranker.reread_close(example.question, example.texts, quantized, [None] * len(quantized),
                                      len(quantized))
        best = int(np.argmax(quantized))
        reversed_ = [quantized[best] - quantized[k] for k in range(len(full)) if k != best and full[k] > full[best]]
        widest = max([widest, *map(float, reversed_)])
    ranker.close_margin = math.ceil(widest * 20) / 20
    return ranker.close_margin


def calibration_corpora(retriever: Any, validation: Sequence[SquadQuestion], config: TrainConfig,
                        settings: Settings) -> list[tuple[Any, list[SquadQuestion]]]:
    """What the layers after the cross-encoder are fitted on: SQuAD's validation articles over their corpus,
    and, for each set of the mix, its calibration part (at most `CALIBRATION_QUESTIONS`, seeded) over the
    collection of that part's documents."""
    from ..retrieval import Retriever
    from .sets import load_split

    corpora = [(retriever, list(validation))]
    for name, _ in config.mix:
        part = load_split(name, "calibration")
        questions = list(part.questions)
        if len(questions) > CALIBRATION_QUESTIONS:
            kept = set(random.Random(f"{config.seed}-{name}-calibration").sample(range(len(questions)),
                                                                                  CALIBRATION_QUESTIONS))
            questions = [q for n, q in enumerate(questions) if n in kept]
        corpora.append((Retriever.build(list(part.documents), settings=settings), questions))
    return corpora


#: Questions of each mixed set's calibration part that the layers are fitted on.
CALIBRATION_QUESTIONS = 300
