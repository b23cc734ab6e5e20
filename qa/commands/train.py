"""`qa train`: parse the training flags into a `TrainConfig` and run `qa.training` (see docs/training.md).

    qa train                     # the shared SQuAD files, seed 20261127 -> qa/models/answer-ranker/
    qa train --resume            # continue from the last checkpoint
    qa train --device cuda       # the same, on a GPU where torch sees one
    qa train --confidence-only   # refit only the answer's confidence of the model at --out
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import QAError
from ..ranker import DEFAULT_RANKER
from ..training import SEED, TrainConfig, reading_point, recalibrate, train
from ..training.squad import DEFAULT_SQUAD_FILES, DEFAULT_TRAINING_FILES

#: The logger of every training module (`qa.training.*`): `qa train` shows its progress on stderr.
log = logging.getLogger("qa.training")


def add_train_command(commands: Any) -> None:
    """Register `qa train` on the CLI's subparsers."""
    parser = commands.add_parser("train", help="train the answer ranker from SQuAD files (see qa/training/)")
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
    parser.add_argument("--compounds", type=float, default=TrainConfig.compounds,
                        help="share of the questions holding 'the N of M' asked as a noun compound instead "
                             f"('troop numbers'; default {TrainConfig.compounds})")
    parser.add_argument("--compound-questions", type=int, default=TrainConfig.compound_questions,
                        help="with --mix: draw this many more SQuAD questions that hold such a phrase "
                             f"(default {TrainConfig.compound_questions})")
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
    from ..training.sets import LOADERS

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
    if not 0.0 <= args.compounds <= 1.0:
        raise QAError(f"--compounds is a share of the questions, from 0 to 1; got {args.compounds}")
    start = Path(args.start).resolve() if args.start else None
    config = TrainConfig(questions=args.questions, epochs=args.epochs, layers=args.layers, threads=args.threads,
                         device=args.device, checkpoint_minutes=args.checkpoint_minutes, seed=args.seed,
                         limit=args.limit, steps=args.steps, learning_rate=args.learning_rate,
                         swapped=args.swapped, compounds=args.compounds,
                         compound_questions=args.compound_questions, start=str(start or ""),
                         cooldown=args.cooldown, until=args.until,
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
