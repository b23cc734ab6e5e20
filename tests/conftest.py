"""Shared fixtures: the real bundled model and one small index per test session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa import Assistant, Retriever
from qa.embedding import Embedder
from qa.ranker import DEFAULT_RANKER

SHARED = Path(__file__).resolve().parents[2] / "shared"
ARTICLE_DEV = SHARED / "eval" / "article_dev.json"
SQUAD_DEV = SHARED / "eval" / "squad-v2.0-dev-part-a.json"


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The per-user cache (where the default index goes) in a temp dir, so tests never touch the real one."""
    path = tmp_path_factory.mktemp("user-cache")
    # QA_RANKER too: the tests check the shipped answer ranker's answers.
    saved = {name: os.environ.pop(name, None) for name in ("XDG_CACHE_HOME", "QA_INDEX_DIR", "QA_RANKER")}
    os.environ["XDG_CACHE_HOME"] = str(path)
    yield path
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture(scope="session")
def article_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled article indexed once, saved in a session temp dir (never the repo's index/)."""
    path = tmp_path_factory.mktemp("index") / "article"
    Retriever.default(index_dir=path)
    return path


@pytest.fixture(scope="session")
def retriever(article_index_dir: Path) -> Retriever:
    return Retriever.load(article_index_dir)


@pytest.fixture(scope="session")
def assistant(retriever: Retriever) -> Assistant:
    return Assistant(retriever)


@pytest.fixture(scope="session")
def ranker_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped answer ranker copied elsewhere, as `qa train --out DIR` leaves one."""
    path = tmp_path_factory.mktemp("ranker") / "answer-ranker"
    shutil.copytree(DEFAULT_RANKER, path)
    return path


@pytest.fixture(scope="session")
def article_dev() -> dict:
    if not ARTICLE_DEV.is_file():
        pytest.skip(f"{ARTICLE_DEV} not found (the shared evaluation data sits beside the repository)")
    return json.loads(ARTICLE_DEV.read_text(encoding="utf-8"))


@pytest.fixture
def spy_embed_passages(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record every call of the real `Embedder.embed_passages` (the real method still runs)."""
    calls: list[list[str]] = []
    original = Embedder.embed_passages

    def spy(self: Embedder, texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(list(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Embedder, "embed_passages", spy)
    return calls
