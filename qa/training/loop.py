"""The training loop: `train_encoder` fine-tunes the cross-encoder step by step, with checkpoints and resume.

A seeded order of groups per epoch, AdamW with a linear warm-up and decay (or a cool-down that ends a run
early: `learning_rate_factor`), progress with an ETA, and a checkpoint every `checkpoint_minutes`
(`Checkpoints`, written atomically) from which `qa train --resume` continues. `reading_point` says where a
run that continues another (`qa train --start`) reads in the seeded order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import QAError
from ..ranker import MANIFEST
from .config import BASE_MODEL, TrainConfig
from .groups import TrainingSentences, training_groups
from .model import batch_loss, build_encoder, model_weights
from .squad import SquadQuestion

log = logging.getLogger(__name__)


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

    from ..embedding import resolve_model
    from ..threads import use_threads

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
        loss = batch_loss(torch, model, tokenizer, batch, config, device)
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


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
