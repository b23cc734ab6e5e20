"""Torch thread counts: chosen by settings or environment, applied in the thread that runs torch."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from qa import QAError, Settings
from qa.config import DEFAULT_MODEL
from qa.retrieval import get_embedder
from qa.threads import env_threads


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("QA_THREADS", "QA_QUERY_THREADS", "QA_INDEX_THREADS", "QA_RANKER_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_one_thread_each(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.query_threads, settings.index_threads) == (1, 1)


def test_the_ranker_reads_two_pairs_at_once_where_there_are_two_cpus(clean_env: pytest.MonkeyPatch) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert Settings().ranker_workers == min(2, cpus)
    clean_env.setenv("QA_THREADS", "3")
    assert Settings().ranker_workers == 3
    clean_env.setenv("QA_RANKER_WORKERS", "1")
    assert Settings().ranker_workers == 1
    with pytest.raises(ValueError, match="ranker_workers"):
        Settings(ranker_workers=0)


def test_environment_overrides_the_default_and_code_overrides_both(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QA_THREADS", "2")
    assert (Settings().query_threads, Settings().index_threads) == (2, 2)
    clean_env.setenv("QA_QUERY_THREADS", "3")
    assert (Settings().query_threads, Settings().index_threads) == (3, 2)
    assert Settings(query_threads=1).query_threads == 1


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_bad_environment_value_is_a_clear_error(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("QA_THREADS", value)
    with pytest.raises(QAError, match="QA_THREADS"):
        env_threads("QA_QUERY_THREADS", 1)


def test_bad_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="query_threads"):
        Settings(query_threads=0)


def in_new_thread(function) -> object:
    """Run `function` in a fresh OS thread (torch keeps thread counts per thread) and return its result."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(function()))
    worker.start()
    worker.join()
    return result[0]


def test_embedder_sets_its_counts_in_the_calling_thread() -> None:
    embedder = get_embedder(DEFAULT_MODEL, 1, 2, "torch")
    assert (embedder.query_threads, embedder.index_threads) == (1, 2)

    def query_then_count() -> int:
        torch.set_num_threads(2)
        embedder.embed_query("a question no other test asks about thread counts")
        return torch.get_num_threads()

    def batch_then_count() -> int:
        torch.set_num_threads(1)
        embedder.embed_passages(["One sentence.", "Another sentence."])
        return torch.get_num_threads()

    assert in_new_thread(query_then_count) == 1
    assert in_new_thread(batch_then_count) == 2


def test_batches_report_progress_and_keep_the_order() -> None:
    embedder = get_embedder(DEFAULT_MODEL)
    texts = [f"Sentence number {i} is {'long ' * (i % 7)}here." for i in range(150)]
    calls: list[tuple[int, int]] = []
    vectors = embedder.embed_passages(texts, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64, 150), (128, 150), (150, 150)]
    one_by_one = embedder.embed_passages([texts[5]])
    assert vectors[5] == pytest.approx(one_by_one[0], abs=1e-5)


def test_onnx_queries_use_the_query_thread_count() -> None:
    embedder = get_embedder(DEFAULT_MODEL, 1, 1, "onnx")
    assert embedder._onnx.session.get_session_options().intra_op_num_threads == 1
