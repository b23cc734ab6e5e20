"""The whole run: `train` (data, cross-encoder, calibration, export) and `recalibrate`.

`train` reads the SQuAD files, trains the cross-encoder (`qa.training.loop`), fits the first stage and
the layers after it (`calibrate_model`, `qa.training.calibration`) and writes the model directory
atomically (`qa.training.export`). `recalibrate` refits the layers after the cross-encoder of a model
already written (`qa train --calibration-only`), or only its confidence (`--confidence-only`).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import QAError
from ..ranker import FIRST_STAGE_FEATURES, MANIFEST, MODEL_FILE, AnswerRanker, _Logistic, read_manifest
from .calibration import (
    calibrate,
    calibrate_confidence,
    calibration_corpora,
    close_margin,
    fit_first_stage,
    score_examples,
    shortlisted,
)
from .config import TrainConfig
from .examples import absent_examples, make_example, make_examples
from .export import export_onnx, figures_table, model_manifest, replace_dir
from .groups import TrainingSentences, training_questions
from .loop import Checkpoints, train_encoder
from .squad import DEFAULT_TRAINING_FILES, SquadQuestion, article_of, load_squad, split_articles


def train(files: Sequence[str | Path], out: str | Path, config: TrainConfig = TrainConfig(), *,
          training_files: Sequence[str | Path] = DEFAULT_TRAINING_FILES, checkpoint: str | Path | None = None,
          resume: bool = False, echo: Any = None) -> dict[str, Any]:
    """Train, calibrate and export the ranker into `out` (atomically); returns the manifest.

    `files` are the development files (validation, calibration, and the held-out articles, which are never
    read); `training_files` teach the cross-encoder. `checkpoint` is where training state is saved;
    `resume` continues from it.
    """
    from ..retrieval import Retriever

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
        paragraphs = [d for d in paragraphs if article_of(d.doc_id) in articles]

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
    shortlisting = [make_example(retriever, q, settings, gold=True) for q in development["training"]]
    first_stage = fit_first_stage(shortlisting)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staging = Path(tmp) / out.name
        staging.mkdir()
        export_onnx(model, staging / MODEL_FILE)
        provisional = model_manifest(files, training_files, config, first_stage, {}, {}, staging, seconds=0.0)
        corpora = calibration_corpora(retriever, development["validation"], config, settings)
        calibration, figures = calibrate_model(staging, provisional, corpora, config,
                                               settings, echo)
        manifest = model_manifest(files, training_files, config, first_stage, calibration, figures, staging,
                             seconds=model.training_seconds + time.perf_counter() - trained)
        manifest["training"]["schedule"] = getattr(model, "schedule", {})
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        AnswerRanker(staging)  # loads and checks what is about to be shipped
        replace_dir(staging, out)
    echo(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    echo(figures_table(manifest["validation"]))
    return manifest


def absent_halves(retriever: Any, questions: Sequence[SquadQuestion]) -> list[list[SquadQuestion]]:
    """The questions to ask of the corpus without their own articles: all at once when other articles remain
    (SQuAD's validation articles in the whole development corpus), else in two halves of the articles, each
    asked of the corpus that holds the other half; none when the corpus has one article (all chats)."""
    articles = list(dict.fromkeys(q.article for q in questions))
    if {article_of(d.doc_id) for d in retriever.documents} - set(articles):
        return [list(questions)]
    if len(articles) < 2:
        return []
    first = set(articles[::2])
    return [[q for q in questions if q.article in first], [q for q in questions if q.article not in first]]


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
        for asked in absent_halves(retriever, validation):
            examples += absent_examples(retriever, asked, settings, reads_previous=reads_previous)
    examples = [shortlisted(e, first_stage, settings.rerank_sentences) for e in examples]
    uncalibrated = {k: v for k, v in manifest.items() if k != "calibration"}
    (staging / MANIFEST).write_text(json.dumps(uncalibrated), encoding="utf-8")
    unscaled = AnswerRanker(staging, threads=config.threads, relevance_only=True)
    margin = close_margin(unscaled, examples)
    echo(f"int8 scores closer than {margin:.2f} to the best are read again in float")
    calibration, figures = calibrate(score_examples(unscaled, examples, settings.precise_reads), examples, config)
    calibration["close_margin"] = margin
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
    from ..retrieval import Retriever

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
        replace_dir(staging, out)
    echo(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    echo(figures_table(manifest["validation"]))
    return manifest
