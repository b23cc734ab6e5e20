"""`qa.web.live` over real saved indexes: new versions swapped in, damaged ones refused, uploads kept on top,
and the old version let go."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import weakref

import numpy as np
import pytest

from qa import Document, Retriever
from qa.web.handlers import Handlers
from qa.web.live import Live, relayer
from qa.web.sessions import Session

OKAPI = Document("okapi", "The okapi lives in the Ituri forest. It eats leaves and fruit.", "Okapi notes")
BUDGET = Document("budget", "The budget for the garden project is 55,000 euros.", "Budget")


@pytest.fixture(scope="module")
def versions(retriever, tmp_path_factory):
    """An index folder holding the article, and a second retriever (article + budget) to save over it."""
    path = tmp_path_factory.mktemp("live") / "idx"
    retriever.save(path)
    return path, retriever.add([BUDGET])


def test_a_new_version_is_swapped_in_and_a_damaged_one_refused_once(versions, retriever, caplog):
    path, newer = versions
    swaps = []
    live = Live(path, Retriever.load(path), on_swap=lambda old, new: swaps.append((old, new)))
    assert not live.check()
    newer.save(path)
    assert live.check() and len(live.current.documents) == len(retriever.documents) + 1
    assert swaps and swaps[0][1] is live.current
    served = path.parent / os.readlink(path)
    damaged = path.parent / f".{path.name}.v-broken"
    shutil.copytree(served, damaged, ignore=shutil.ignore_patterns(".*"))
    (damaged / "documents.jsonl").write_text("{}\n", encoding="utf-8")  # no longer matches its checksum
    os.symlink(damaged.name, damaged / ".pointer")
    os.replace(damaged / ".pointer", path)
    kept = live.current
    with caplog.at_level(logging.WARNING, logger="qa.web.live"):
        assert not live.check() and not live.check()
    assert live.current is kept
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "documents.jsonl" in refused[0]
    newer.save(path)  # a good version after a bad one is taken up
    assert live.check()


def test_uploads_stay_on_top_of_the_new_version_without_being_embedded_again(retriever):
    corpus = retriever.extend([OKAPI])
    article = retriever.documents[0].doc_id
    newer = retriever.add([BUDGET])
    layered, selected = relayer(corpus, ["okapi"], ["okapi"], newer)
    assert {d.doc_id for d in layered.documents} == {article, "budget", "okapi"}
    assert selected == ["budget", "okapi"]  # the unticked article stays unticked, the new document is ticked
    old, new = corpus.sentence_ids("okapi"), layered.sentence_ids("okapi")
    assert np.array_equal(corpus.vectors_of(list(old)), layered.vectors_of(list(new)))


def test_sessions_move_to_the_new_version_and_the_old_one_is_let_go(tmp_path, retriever):
    old = Retriever.load(retriever.save(tmp_path / "a") and tmp_path / "a")
    handlers = Handlers(old)
    session = handlers.session(Session.start(old))
    gone = weakref.ref(old)
    newer = old.add([BUDGET])
    handlers.base = newer  # what `Live`'s swap does
    del old
    session = handlers.fresh(session)
    assert session.base is newer and "budget" in session.selected
    gc.collect()
    assert gone() is None
