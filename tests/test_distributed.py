"""Building on a local Ray cluster gives the same index as a single-process build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa import Document, Retriever
from qa.collection import sync

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
pytestmark = pytest.mark.ray

DOCS = [
    Document(f"town-{i}", f"Town {i} lies {10 * i} kilometres from Tripoli. Its market sells {fruit} on Tuesdays. "
                          f"The road to town {i} crosses a dry river bed.", title=f"Town {i}")
    for i, fruit in enumerate(["dates", "figs", "olives", "oranges", "lemons", "almonds", "grapes"])
]
QUERIES = ["Where can I buy figs?", "How far is town 5 from Tripoli?", "dry river bed road"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_build_matches_a_single_process_build(cluster: None, tmp_path: Path) -> None:
    """`qa index --ray`: files are read, split and embedded on the workers, in shards merged into one index."""
    from qa.distributed import ray_builder

    folder = tmp_path / "docs"
    folder.mkdir()
    for document in DOCS:
        (folder / f"{document.doc_id}.txt").write_text(document.text, encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    summary = sync([folder], tmp_path / "idx", builder=ray_builder(workers=1, per_task=3))  # three shards
    assert summary.documents == len(DOCS) and len(summary.skipped) == 1
    distributed = Retriever.load(tmp_path / "idx")
    local = Retriever.build([Document.from_path(folder / f"{d.doc_id}.txt") for d in DOCS])

    assert [d.text for d in distributed.documents] == [d.text for d in local.documents]
    assert list(distributed.sentences) == list(local.sentences)
    assert list(distributed.chunks) == list(local.chunks)
    assert np.abs(distributed.sentence_vectors - local.sentence_vectors).max() < 1e-5
    for query in QUERIES:
        assert [p.chunk for p in distributed.search(query, k=4)] == [p.chunk for p in local.search(query, k=4)]
