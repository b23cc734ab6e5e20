"""How the answer ranker is trained: `TrainConfig`, whose defaults made the shipped model, and the seed.

Every stage of `qa.training` reads its settings from one `TrainConfig`; a checkpoint records it, so that
`qa train --resume` refuses to continue a run with other settings (`qa.training.loop.Checkpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass

SEED = 20261127


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
        compounds: share of the training questions holding "the N of M" asked as a noun compound instead
            ("troop numbers": `qa.training.compounds`).
        compound_questions: with a mix, this many more SQuAD questions holding such a phrase are drawn (seeded)
            beside the others, so that the compound form is seen often enough to be learned.
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
    compounds: float = 0.0
    compound_questions: int = 0
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
