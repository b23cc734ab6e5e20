"""Reading, splitting and embedding on a Ray cluster, for collections one machine embeds too slowly.

What runs where: the driver (the process running `qa index --ray`, or
`build_on_ray` from Python) walks the paths and decides which files need
work (`qa.collection.sync`), then hands batches of them to Ray actors. Each
actor holds the model once and runs torch on one thread; it reads its files,
splits and tokenizes them, embeds the sentences, and returns a shard: a
`Corpus` and its vectors. The driver joins the shards in order and builds
the FAISS and BM25 indexes, so the result is an ordinary index directory,
the same as a single-process build of the same documents gives. Files are
read by the workers, so they must see the same paths (a shared file system);
`build_on_ray` given `Document`s sends their text instead.

Needs the optional extra: `pip install -e '.[ray]'`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from .collection import Builder, Built, SourceFile, read_files
from .config import Settings
from .corpus import Corpus
from .documents import Document
from .errors import QAError

log = logging.getLogger(__name__)

FILES_PER_TASK = 64
DOCUMENTS_PER_TASK = 100


class _Worker:
    """A Ray actor: the model loaded once, then shards made from batches of files or documents."""

    def __init__(self, settings: dict[str, Any], threads: int) -> None:
        import torch

        from .retrieval import embedder_for

        torch.set_num_threads(threads)
        self.settings = Settings(**settings)
        self.embedder = embedder_for(self.settings)

    def files(self, files: list[SourceFile], fingerprints: dict[str, str]) -> Built:
        changed, same, skipped = read_files(files, fingerprints)
        return dataclasses.replace(self.documents(changed), same_text=same, skipped=skipped)

    def documents(self, documents: list[Document]) -> Built:
        from .retrieval import embed_corpus

        if not documents:
            return Built()
        corpus = Corpus.from_documents(documents, self.settings)
        return Built(corpus, [embed_corpus(corpus, self.embedder)])


def ray_builder(*, address: str | None = None, workers: int | None = None, threads: int = 1,
                per_task: int = FILES_PER_TASK) -> Builder:
    """A `qa.collection` builder that reads, splits and embeds files on a Ray cluster.

    Args:
        address: the cluster to join ("ray://host:10001", "host:6379"); None joins the cluster this
            machine belongs to, or starts a local one.
        workers: model-holding actors (default: one per CPU of the cluster).
        threads: torch threads per actor (one was measured fastest on a busy machine, README).
        per_task: files per task; each task's result is one shard.
    """

    def build(files: Sequence[SourceFile], fingerprints: dict[str, str], settings: Settings, bar: Any) -> Built:
        if not files:
            return Built()
        batches = [list(files[i:i + per_task]) for i in range(0, len(files), per_task)]
        if bar is not None:
            bar.reset(total=len(files))
            bar.set_description("reading and embedding on Ray")
        ray = _ray(address)
        known = ray.put(fingerprints)
        shards = _map(ray, settings, workers, threads, batches, lambda actor, batch: actor.files.remote(batch, known),
                      bar, len)
        return merge(shards)

    return build


def build_on_ray(documents: Iterable[Document], *, address: str | None = None, workers: int | None = None,
                 settings: Settings | None = None, threads: int = 1, per_task: int = DOCUMENTS_PER_TASK) -> Any:
    """`Retriever.build` with the splitting and embedding done on a Ray cluster (see `ray_builder`)."""
    from .retrieval import Retriever, _check_distinct, embedder_for

    settings = settings or Settings()
    documents = list(documents)
    if not documents:
        raise QAError("no documents to index")
    _check_distinct(documents)
    batches = [documents[i:i + per_task] for i in range(0, len(documents), per_task)]
    ray = _ray(address)
    built = merge(_map(ray, settings, workers, threads, batches, lambda actor, batch: actor.documents.remote(batch),
                       None, len))
    if built.corpus is None:
        raise QAError("the documents have no sentences to index")
    return Retriever.from_parts(built.corpus, built.vectors, embedder_for(settings), settings)


def merge(shards: Iterable[Built]) -> Built:
    """One `Built` from shards, in their order."""
    shards = list(shards)
    parts = [s for s in shards if s.corpus is not None]
    return Built(
        Corpus.concat([s.corpus for s in parts]) if parts else None,  # type: ignore[misc]
        [v for s in parts for v in s.vectors],
        [d for s in shards for d in s.same_text],
        [k for s in shards for k in s.skipped],
    )


def _ray(address: str | None) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise QAError("--ray needs Ray: pip install -e '.[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return ray


def _map(ray: Any, settings: Settings, workers: int | None, threads: int, batches: list[Any], call: Any,
         bar: Any, size: Any) -> list[Built]:
    """Run `call(actor, batch)` for every batch on a pool of model-holding actors; results in batch order."""
    from ray.util import ActorPool

    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = max(1, min(count, len(batches)))
    actor = ray.remote(num_cpus=1)(_Worker)
    actors = [actor.remote(dataclasses.asdict(settings), threads) for _ in range(count)]
    pool = ActorPool(actors)
    results = []
    try:
        for batch, built in zip(batches, pool.map(call, batches), strict=True):
            results.append(built)
            if bar is not None:
                bar.update(size(batch))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, QAError):
            raise cause from None
        raise
    finally:
        for member in actors:
            ray.kill(member)
    return results
