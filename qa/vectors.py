"""The vector index: FAISS behind one small class, for the search code.

`VectorIndex` handles FAISS's quirks in one place (contiguous float32,
dimension checks, `-1` labels, `k` capped at `ntotal`, filters) for an exact
flat index, HNSW, or IVF-PQ whose candidates are re-scored with the full
vectors. All three keep the full vectors in FAISS's flat storage, which
`vectors()` returns as a read-only view (no second copy) and which a loaded
index memory-maps (`IO_FLAG_MMAP_IFC`, see `qa.index.load_index`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from .config import IndexType, Settings

# A filter that keeps at most this many vectors is searched exactly (a few milliseconds).
_EXACT_FILTERED = 50_000

class VectorIndex:
    """Inner-product search over unit vectors: exact (flat) or approximate (HNSW, IVF-PQ)."""

    def __init__(self, index: faiss.Index) -> None:
        self.faiss = index

    @classmethod
    def build(cls, vectors: np.ndarray | Sequence[np.ndarray], *, index_type: IndexType = "flat",
              settings: Settings | None = None) -> VectorIndex:
        """Index unit vectors, float32, of shape (n, dim) or given as consecutive parts of shape (n_i, dim).

        Parts are added one by one, so views of a stored index need no joined copy.
        "auto" picks the index by size (see `Settings`).
        """
        settings = settings or Settings()
        faiss.omp_set_num_threads(settings.faiss_threads)
        parts = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
        parts = [np.ascontiguousarray(p, dtype=np.float32).reshape(len(p), -1) for p in parts]
        if not parts:
            raise ValueError("no vectors to index")
        n, dim = sum(len(p) for p in parts), parts[0].shape[1]
        kind = resolve_index_type(index_type, n, settings)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivfpq":
            lists = max(1, min(int(math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per list
            bits = 8 if n >= 4096 else max(1, int(math.log2(max(2, n // 16))))
            sub = next(m for m in (48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if dim % m == 0)
            base = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, sub, bits, faiss.METRIC_INNER_PRODUCT)
            base.train(_sample(parts, 100 * lists))
            index = faiss.IndexRefineFlat(base)
        else:
            index = faiss.IndexFlatIP(dim)
        for part in parts:
            if len(part):
                index.add(part)
        built = cls(index)
        built.configure(settings)
        return built

    def configure(self, settings: Settings) -> None:
        """Apply the query-time settings (FAISS threads, HNSW efSearch, IVF nprobe, re-scored candidates)."""
        faiss.omp_set_num_threads(settings.faiss_threads)
        kind = self.kind
        if kind == "hnsw":
            self.faiss.hnsw.efSearch = settings.hnsw_ef_search
        elif kind == "ivfpq":
            faiss.extract_index_ivf(self.faiss).nprobe = settings.ivf_nprobe
            self.faiss.k_factor = settings.ivf_rescore

    @property
    def kind(self) -> str:
        """"flat", "hnsw" or "ivfpq"."""
        if isinstance(self.faiss, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(self.faiss, faiss.IndexRefine):
            return "ivfpq"
        return "flat"

    @property
    def dim(self) -> int:
        return int(self.faiss.d)

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    def search(self, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector of shape (dim,); fewer if the index is small.

        `allowed`, shape (n,) bool, keeps only those ids. An approximate index
        scores a small allowed set exactly, since its graph or lists may hold
        too few allowed neighbours.
        """
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query has dimension {query.shape[1]}, index has {self.dim}")
        k = min(k, len(self) if allowed is None else int(np.count_nonzero(allowed)))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params = None
        if allowed is not None:
            if self.kind != "flat" and int(np.count_nonzero(allowed)) <= _EXACT_FILTERED:
                return self._exact(query[0], k, allowed)
            bitmap = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            params = self._params(faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap)))
        scores, ids = self.faiss.search(query, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _params(self, selector: Any) -> Any:
        kind = self.kind
        if kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.faiss.hnsw.efSearch)
        if kind == "ivfpq":
            base = faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(self.faiss).nprobe)
            return faiss.IndexRefineSearchParameters(k_factor=self.faiss.k_factor, base_index_params=base, sel=selector)
        return faiss.SearchParameters(sel=selector)

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.vectors()
        ids = np.flatnonzero(allowed)
        scores = np.concatenate([vectors[a:b] @ query for a, b in _runs(allowed)])
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top].astype(np.float32), ids[top].astype(np.int64)

    def vectors(self) -> np.ndarray:
        """All stored vectors, shape (n, dim), float32: a read-only view of FAISS's storage, not a copy."""
        storage = self.faiss
        if isinstance(storage, faiss.IndexHNSW):
            storage = faiss.downcast_index(storage.storage)
        elif isinstance(storage, faiss.IndexRefine):
            storage = faiss.downcast_index(storage.refine_index)
        n, dim = len(self), self.dim
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        view = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)
        view.flags.writeable = False  # a loaded index maps its file read-only
        return np.asarray(_Owned(view, self.faiss))


class _Owned:
    """Exposes an array view while keeping the FAISS index that owns its memory alive."""

    def __init__(self, view: np.ndarray, owner: Any) -> None:
        self.__array_interface__ = view.__array_interface__
        self._owner = owner


def resolve_index_type(index_type: IndexType, n: int, settings: Settings) -> str:
    """The concrete index kind: "auto" is flat up to `settings.approximate_above` vectors, then approximate."""
    if index_type == "auto":
        return settings.approximate_index if n > settings.approximate_above else "flat"
    return index_type


def _sample(parts: list[np.ndarray], count: int) -> np.ndarray:
    """Up to `count` rows drawn evenly at random (seeded) from consecutive parts, as one array."""
    n = sum(len(p) for p in parts)
    if n <= count:
        return np.concatenate(parts)
    chosen = np.sort(np.random.default_rng(0).choice(n, count, replace=False))
    bounds = np.cumsum([0] + [len(p) for p in parts])
    return np.concatenate([parts[i][chosen[(chosen >= bounds[i]) & (chosen < bounds[i + 1])] - bounds[i]]
                           for i in range(len(parts))])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The half-open ranges where `mask` is true."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))

