"""Query embeddings through ONNX Runtime: the vectors torch makes, without importing torch.

Importing torch, transformers and sentence-transformers took most of a cold
`qa ask` (6.7 s of it on an idle 2-core machine, 14 s on a busy one; README,
"Speed"). ONNX Runtime and the `tokenizers` library load in about 0.5 s and
embed a query in about half the time. The model is exported once from the
local weights with `torch.onnx` (offline, a few seconds) into the user's
cache directory and reused from then on; its vectors match
sentence-transformers' within 1e-6 (tests/test_onnx_backend.py).

Exports are keyed by content: `onnx/<model>-<hash>/` where the hash covers
the weights and config.json, so reinstalling the same model (new file
times) reuses its export and a changed model gets a new one. Each export
records, in `sources.json`, the model directories it serves with their
files' size, time and inode, so a warm start only stats the files and
hashes nothing. An export no model directory uses any more (its model
changed or is gone), exports from before content keys
(`<model>-<size>-<mtime>/`, 87 MB each, never removed) and exports left
half-written by a killed process are removed whenever a new key is found.

Only models laid out as sentence-transformers' Transformer -> mean Pooling
(-> Normalize) over a BERT-style encoder are served this way, which covers
the bundled all-MiniLM-L6-v2; anything else, or any failure to export, uses
sentence-transformers as before. Indexing (batches) stays on torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SOURCES = "sources.json"
# Export directories named before content keys: <model>-<weights size>-<weights mtime in seconds>.
_LEGACY_KEY = re.compile(r".+-\d+-\d{10}")
# A half-written export (`.model-*.onnx`) older than this was left by a process that died.
_STALE_EXPORT_S = 3600


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
    """The exported model for `model_dir` under `cache_dir`, exported first if it is not there yet.

    Keyed by the model's content (see the module docstring); exports nothing
    uses any more are removed when a new key is found.
    """
    model_dir = Path(model_dir)
    root = Path(cache_dir) / "onnx"
    files = _key_files(model_dir)
    source, signature = str(model_dir.resolve()), _signature(files)
    known = _known_export(root, source, signature)
    if known is not None:
        return known
    target = root / f"{model_dir.name}-{_content_hash(files)[:16]}" / "model.onnx"
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
    try:  # bookkeeping only: a read-only cache still serves its export
        _update_sources(target.parent, {source: signature})
        _prune(root, keep=target.parent, moved=source)
    except OSError as exc:
        log.info("cannot record or prune ONNX exports under %s: %s", root, exc)
    return target


def export_key(model_dir: str | Path) -> str:
    """The name of the export directory for the model's current content: `<model>-<hash of weights and config>`."""
    model_dir = Path(model_dir)
    return f"{model_dir.name}-{_content_hash(_key_files(model_dir))[:16]}"


def _key_files(model_dir: Path) -> list[Path]:
    """The files an export is made from: config.json (the architecture) and the weights."""
    weights = next((model_dir / name for name in ("model.safetensors", "pytorch_model.bin")
                    if (model_dir / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no weights in {model_dir}")
    return [model_dir / "config.json", weights]


def _signature(files: list[Path]) -> dict[str, list[int]]:
    """What changes when a file is replaced or rewritten: size, modification time (ns) and inode, by name."""
    signature = {}
    for path in files:
        stat = path.stat()
        signature[path.name] = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    return signature


def _content_hash(files: list[Path]) -> str:
    """SHA-256 over the files' names and bytes (about 0.1 s for the bundled model's 87 MB)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _read_sources(directory: Path) -> dict[str, object] | None:
    """The model directories an export serves, with their files' signatures; None if not recorded or unreadable."""
    try:
        sources = json.loads((directory / _SOURCES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return sources if isinstance(sources, dict) else None


def _known_export(root: Path, source: str, signature: dict[str, list[int]]) -> Path | None:
    """An export recorded for `source` with these exact file signatures: reused without hashing anything."""
    try:
        directories = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return None
    for directory in directories:
        if (_read_sources(directory) or {}).get(source) == signature and (directory / "model.onnx").is_file():
            return directory / "model.onnx"
    return None


def _update_sources(directory: Path, changes: dict[str, object | None]) -> None:
    """Set (or, for None, drop) entries of `directory`'s sources.json, written whole (temp file, rename)."""
    sources = _read_sources(directory) or {}
    for source, signature in changes.items():
        if signature is None:
            sources.pop(source, None)
        else:
            sources[source] = signature
    handle, tmp = tempfile.mkstemp(prefix=".sources-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(sources, out, indent=1)
        os.replace(tmp, directory / _SOURCES)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _prune(root: Path, *, keep: Path, moved: str) -> None:
    """Remove exports nothing uses any more: `moved` now uses `keep`, and model directories that are gone use
    nothing. Legacy `<model>-<size>-<mtime>` exports and stale half-written ones go too. Errors are ignored:
    another process may be pruning as well."""
    try:
        directories = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return
    for directory in directories:
        for partial in directory.glob(".model-*.onnx"):
            try:
                if time.time() - partial.stat().st_mtime > _STALE_EXPORT_S:
                    partial.unlink()
            except OSError:
                pass
        if directory == keep:
            continue
        sources = _read_sources(directory)
        if sources is None:
            if _LEGACY_KEY.fullmatch(directory.name) and not (directory / _SOURCES).exists():
                shutil.rmtree(directory, ignore_errors=True)
            continue
        unused = [s for s in sources if s == moved or not Path(s).is_dir()]
        if len(unused) == len(sources):
            shutil.rmtree(directory, ignore_errors=True)
            log.info("removed the ONNX export %s: no model uses it any more", directory)
        elif unused:
            try:
                _update_sources(directory, dict.fromkeys(unused))
            except OSError:
                pass


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
