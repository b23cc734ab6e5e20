"""Query embeddings through ONNX Runtime: the vectors torch makes, without importing torch.

Importing torch, transformers and sentence-transformers took most of a cold
`qa ask` (6.7 s of it on an idle 2-core machine, 14 s on a busy one; README,
"Speed"). ONNX Runtime and the `tokenizers` library load in about 0.5 s and
embed a query in about half the time. The model is exported once from the
local weights with `torch.onnx` (offline, a few seconds) into the user's
cache directory and reused from then on; its vectors match
sentence-transformers' within 1e-6 (tests/test_onnx_backend.py).

Only models laid out as sentence-transformers' Transformer -> mean Pooling
(-> Normalize) over a BERT-style encoder are served this way, which covers
the bundled all-MiniLM-L6-v2; anything else, or any failure to export, uses
sentence-transformers as before. Indexing (batches) stays on torch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def supported(model_dir: str | Path) -> bool:
    """Whether `model_dir` is a local sentence-transformers model this module can serve."""
    model_dir = Path(model_dir)
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        pooling.get(f"pooling_mode_{mode}") for mode in ("cls_token", "max_tokens", "mean_sqrt_len_tokens"))
    return (kinds[:2] == ["Transformer", "Pooling"] and kinds[2:] in ([], ["Normalize"]) and bool(mean_only)
            and config.get("model_type") == "bert" and (model_dir / "tokenizer.json").is_file())


def onnx_path(model_dir: str | Path, cache_dir: str | Path) -> Path:
    """The exported model for `model_dir` under `cache_dir`, exported first if it is not there yet."""
    model_dir = Path(model_dir)
    weights = next((model_dir / name for name in ("model.safetensors", "pytorch_model.bin")
                    if (model_dir / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no weights in {model_dir}")
    stat = weights.stat()
    key = f"{model_dir.name}-{stat.st_size}-{int(stat.st_mtime)}"  # new weights, new export
    target = Path(cache_dir) / "onnx" / key / "model.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".model-", suffix=".onnx", dir=target.parent)
        os.close(handle)
        try:
            export(model_dir, Path(tmp))
            os.replace(tmp, target)  # atomic: a reader sees a whole file or none
        finally:
            Path(tmp).unlink(missing_ok=True)
        log.info("exported %s to ONNX at %s", model_dir, target)
    return target


def export(model_dir: Path, out: Path) -> None:
    """Export the encoder's last hidden state to ONNX with dynamic batch and sequence axes (imports torch)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local weights only
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar on the user's terminal or log
    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    sample = tokenizer(["A sentence to trace.", "A second, longer sentence to trace the padding."],
                       return_tensors="pt", padding=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python branches; the tests compare the results
        torch.onnx.export(Encoder(), tuple(sample[name] for name in _INPUTS), str(out), input_names=list(_INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)


class OnnxQueryEncoder:
    """Mean-pooled, L2-normalised sentence vectors from an exported encoder; shape (n, dim), float32."""

    def __init__(self, model_dir: str | Path, onnx_file: str | Path, *, threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        settings = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8")) \
            if (model_dir / "sentence_bert_config.json").is_file() else {}
        self.lower_case = bool(settings.get("do_lower_case"))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(settings.get("max_seq_length") or 512))
        self.tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting threads
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts as sentence-transformers does (stripped, truncated, mean over real tokens, unit length)."""
        texts = [t.strip().lower() if self.lower_case else t.strip() for t in texts]
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.ascontiguousarray(pooled / norms, dtype=np.float32)
