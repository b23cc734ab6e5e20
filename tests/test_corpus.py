"""The corpus arrays, incremental changes to a retriever (encoder calls counted) and the document filter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qa import Assistant, Document, QAError, Retriever, Settings
from qa.corpus import Corpus

DOCS = [
    Document("ports", "Tobruk has a deep natural harbour. Fishing boats leave the quay at dawn. "
                      "The port ships crude oil to Europe.", title="Ports", path="/data/libya/ports.txt"),
    Document("desert", "The Sahara covers most of southern Libya. Summer temperatures exceed forty degrees. "
                       "Oases support small towns.", path="/data/libya/land/desert.txt"),
    Document("history", "Tripoli was founded by the Phoenicians. Roman ruins stand at Leptis Magna. "
                        "Italy ruled Libya from 1911.", title="History", path="/data/other/history.txt"),
]
CHANGED_PORTS = Document("ports", "Tobruk has a deep natural harbour. The port ships crude oil to Italy and Malta.",
                         title="Ports", path="/data/libya/ports.txt")
NEW = Document("food", "Couscous is served on Fridays. Bazin is a dough of barley flour.", title="Food")
QUERIES = ["Where does the oil go?", "How hot is the desert?", "Who founded Tripoli?", "What is bazin made of?"]


@pytest.fixture(scope="module")
def base() -> Retriever:
    return Retriever.build(DOCS)


def same_results(left: Retriever, right: Retriever) -> None:
    """Equal passages (by document and span) with equal scores, for every query."""
    for query in QUERIES:
        a, b = left.search(query, k=4), right.search(query, k=4)
        assert [(p.doc_id, p.start, p.end) for p in a] == [(p.doc_id, p.start, p.end) for p in b], query
        assert [p.score for p in a] == pytest.approx([p.score for p in b], abs=1e-5)


def test_concat_and_select_agree_with_splitting_from_scratch() -> None:
    settings = Settings()
    whole = Corpus.from_documents(DOCS, settings)
    joined = Corpus.concat([Corpus.from_documents(DOCS[:1], settings), Corpus.from_documents(DOCS[1:], settings)])
    picked = whole.select([True, False, True])
    alone = Corpus.from_documents([DOCS[0], DOCS[2]], settings)
    for made, expected in ((joined, whole), (picked, alone)):
        assert list(made.sentences) == list(expected.sentences)
        assert list(made.chunks) == list(expected.chunks)
        assert [made.chunk_sentences[i].tolist() for i in range(len(made.chunks))] == \
               [expected.chunk_sentences[i].tolist() for i in range(len(expected.chunks))]
        assert list(made.sentence_terms) == list(expected.sentence_terms)
        assert made.sentence_chunk.tolist() == expected.sentence_chunk.tolist()
        assert sorted(made.vocab) == sorted(expected.vocab)
        assert dict(zip(made.vocab, made.term_counts().tolist(), strict=True)) == \
               dict(zip(expected.vocab, expected.term_counts().tolist(), strict=True))


def test_add_embeds_only_new_and_changed_documents(base: Retriever, spy_embed_passages: list[list[str]]) -> None:
    same_text_new_title = dataclasses.replace(DOCS[1], title="The desert")
    updated = base.add([CHANGED_PORTS, NEW, same_text_new_title, DOCS[2]])
    embedded = [text for call in spy_embed_passages for text in call]
    assert sorted(embedded) == sorted(s.text for s in Corpus.from_documents([CHANGED_PORTS, NEW], Settings()).sentences)
    assert [d.doc_id for d in updated.documents] == ["desert", "history", "ports", "food"]
    assert updated.document("desert").title == "The desert"
    assert updated.document("ports").text == CHANGED_PORTS.text
    assert [d.doc_id for d in base.documents] == ["ports", "desert", "history"], "the original is unchanged"

    spy_embed_passages.clear()
    fresh = Retriever.build([same_text_new_title, DOCS[2], CHANGED_PORTS, NEW])
    assert updated.sentence_vectors == pytest.approx(fresh.sentence_vectors, abs=1e-5)
    same_results(updated, fresh)
    spy_embed_passages.clear()
    assert base.add(DOCS) is base, "nothing new: nothing embedded, nothing rebuilt"
    assert spy_embed_passages == []


def test_remove_embeds_nothing_and_matches_a_fresh_build(base: Retriever,
                                                         spy_embed_passages: list[list[str]]) -> None:
    smaller = base.remove(["desert"])
    assert spy_embed_passages == []
    assert [d.doc_id for d in smaller.documents] == ["ports", "history"]
    same_results(smaller, Retriever.build([DOCS[0], DOCS[2]]))
    with pytest.raises(QAError, match="unknown documents: nowhere"):
        base.remove(["nowhere"])
    with pytest.raises(QAError, match="empty"):
        base.remove([d.doc_id for d in DOCS])


def test_sentence_vectors_are_a_read_only_view_of_the_index(base: Retriever) -> None:
    vectors = base.sentence_vectors
    assert not vectors.flags.owndata and not vectors.flags.writeable
    assert vectors.shape == (len(base.sentences), base.embedder.dim)
    assert base.vectors_of([2, 0]) == pytest.approx(vectors[[2, 0]])
    ids = base.vectors.search(vectors[4], 1)[1]
    assert ids.tolist() == [4]


@pytest.mark.parametrize(("where", "expected"), [
    ("history", {"history"}),
    (["ports", "history"], {"ports", "history"}),
    ("/data/libya", {"ports", "desert"}),
    ("/data/libya/land/", {"desert"}),
])
def test_where_limits_search_to_documents(base: Retriever, where: str | list[str], expected: set[str]) -> None:
    passages = base.search("Libya oil desert Tripoli", k=10, where=where)
    assert {p.doc_id for p in passages} == expected


def test_where_that_matches_nothing_is_an_error(base: Retriever) -> None:
    with pytest.raises(QAError, match="no document has the id 'port'"):
        base.search("oil", where="port")  # a prefix of a doc_id is not a path prefix
    with pytest.raises(QAError, match="/data/lib"):
        base.search("oil", where="/data/lib")


def test_ask_with_where_cites_only_those_documents(base: Retriever) -> None:
    answer = Assistant(base).ask("Who founded Tripoli?", where="ports")
    assert all(c.doc_id == "ports" for c in answer.citations)
    answer = Assistant(base).ask("Who founded Tripoli?", where=["history"])
    assert answer.found and answer.citations[0].doc_id == "history"


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_approximate_indexes_filter_and_match_exact_search(index_type: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    from qa.vectors import VectorIndex

    index = VectorIndex.build(vectors, index_type=index_type)  # type: ignore[arg-type]
    assert index.kind == index_type
    assert np.array_equal(index.vectors(), vectors)
    allowed = np.zeros(3000, dtype=bool)
    allowed[100:140] = allowed[2000:2010] = True
    hits = 0
    for query in vectors[:50] + 0.1 * rng.standard_normal((50, 32)).astype(np.float32):
        exact = set(np.argsort(-(vectors @ query))[:10].tolist())
        hits += len(exact & set(index.search(query, 10)[1].tolist()))
        scores, ids = index.search(query, 5, allowed=allowed)
        order = np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ query))[:5]]
        assert ids.tolist() == order.tolist()
    assert hits / 500 >= 0.9


def test_auto_index_type_switches_by_size() -> None:
    from qa.vectors import resolve_index_type

    settings = Settings(approximate_above=1000)
    assert resolve_index_type("auto", 1000, settings) == "flat"
    assert resolve_index_type("auto", 1001, settings) == "ivfpq"
    assert resolve_index_type("auto", 1001, dataclasses.replace(settings, approximate_index="hnsw")) == "hnsw"
    assert resolve_index_type("flat", 10**7, settings) == "flat"


def test_a_collection_that_grows_past_the_threshold_becomes_approximate(base: Retriever) -> None:
    small = Retriever(base.corpus, base.vectors, base.embedder, Settings(approximate_above=10))
    assert small.vectors.kind == "flat" and len(small.sentences) == 9
    grown = small.add([NEW])
    assert grown.vectors.kind == "ivfpq" and len(grown.sentences) == 11
    assert grown.sentence_vectors == pytest.approx(np.concatenate([base.sentence_vectors, grown.sentence_vectors[9:]]))
    assert grown.search("What is bazin made of?", k=1)[0].doc_id == "food"
    assert grown.remove(["food"]).vectors.kind == "flat"
