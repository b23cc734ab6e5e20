"""Retrieval over the bundled article with the real model: offsets, ranking, validation, corpus changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qa import Document, InvalidQuestionError, QAError, Retriever, Settings
from qa.retrieval import check_question

ARTICLE_ID = "libya-policy-newsweek"
NOTES = Document(
    "tobruk-notes",
    "The zorbax desalination plant near Tobruk produces violet water. "
    "Engineers call it the quietest plant in Cyrenaica.",
    title="Tobruk notes",
)


def squash(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.fixture(scope="module")
def extended(retriever: Retriever) -> Retriever:
    return retriever.extend([NOTES])


# -- search ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
def test_search_returns_k_exact_passages_best_first(retriever: Retriever, k: int) -> None:
    passages = retriever.search("What is Italy asking the United States to do?", k=k)
    assert len(passages) == k
    for passage in passages:
        document = retriever.document(passage.doc_id)
        assert document.text[passage.start : passage.end] == passage.text
        assert passage.title == document.title
        assert 0.0 <= passage.lexical <= 1.0
        weight = retriever.settings.dense_weight
        assert passage.score == pytest.approx(weight * passage.dense + (1 - weight) * passage.lexical)
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert len({p.chunk for p in passages}) == k


def test_k_beyond_the_corpus_returns_each_chunk_at_most_once(retriever: Retriever) -> None:
    passages = retriever.search("Libya", k=10_000)
    assert 0 < len(passages) <= len(retriever.chunks)
    assert len({p.chunk for p in passages}) == len(passages)


def test_troop_numbers_question_finds_the_cnn_passage(retriever: Retriever) -> None:
    top = retriever.search("What did CNN report about troop numbers?", k=3)[0]
    assert "fifty us special operations" in squash(top.text)
    assert top.doc_id == ARTICLE_ID


def test_development_questions_find_their_evidence_in_the_top_five(retriever: Retriever, article_dev: dict) -> None:
    missed = []
    for item in article_dev["single"]:
        passages = retriever.search(item["q"], k=5)
        if not any(squash(item["evidence"]) in squash(p.text) for p in passages):
            missed.append(item["q"])
    assert missed == []


def test_surrounding_whitespace_does_not_change_results(retriever: Retriever) -> None:
    question = "Where does fighting continue between rival militias?"
    assert retriever.search(f"  \n{question}\t ", k=3) == retriever.search(question, k=3)


def test_query_without_known_words_still_ranks_densely(retriever: Retriever) -> None:
    passages = retriever.search("xyzzyq plughwx", k=2)
    assert len(passages) == 2
    assert all(p.lexical == 0.0 for p in passages)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n\t \r\n", "x" * 1001, " " + "y" * 1001 + " "])
def test_bad_questions_raise(retriever: Retriever, question: str) -> None:
    with pytest.raises(InvalidQuestionError):
        retriever.search(question)


def test_question_length_limit_is_inclusive_and_configurable() -> None:
    settings = Settings()
    assert check_question("  " + "a" * settings.max_question_chars + "  ", settings) == "a" * 1000
    short = dataclasses.replace(settings, max_question_chars=10)
    assert check_question("0123456789", short) == "0123456789"
    with pytest.raises(InvalidQuestionError, match="limit is 10"):
        check_question("0123456789x", short)


def test_invalid_question_is_a_value_error(retriever: Retriever) -> None:
    with pytest.raises(ValueError):
        retriever.search("")


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises(retriever: Retriever, k: int) -> None:
    with pytest.raises(ValueError, match="k"):
        retriever.search("Libya", k=k)


# -- extend and subset -----------------------------------------------------------------------


def test_extend_embeds_only_the_new_document(retriever: Retriever, spy_embed_passages: list[list[str]]) -> None:
    before = (len(retriever.documents), len(retriever.sentences))
    grown = retriever.extend([NOTES])
    assert spy_embed_passages == [[s.text for s in grown.sentences if s.doc_id == NOTES.doc_id]]
    assert [d.doc_id for d in grown.documents] == [ARTICLE_ID, NOTES.doc_id]
    old = len(retriever.sentences)
    assert np.array_equal(grown.sentence_vectors[:old], retriever.sentence_vectors)
    assert (len(retriever.documents), len(retriever.sentences)) == before, "extend returns a new retriever"


def test_extended_content_is_searchable(extended: Retriever) -> None:
    top = extended.search("What does the zorbax plant produce?", k=3)[0]
    assert top.doc_id == NOTES.doc_id
    assert top.title == "Tobruk notes"
    assert "violet water" in top.text
    assert extended.document(top.doc_id).text[top.start : top.end] == top.text
    # The article is still answered from the article.
    assert extended.search("What did CNN report about troop numbers?", k=1)[0].doc_id == ARTICLE_ID


def test_extend_rejects_a_doc_id_already_indexed(retriever: Retriever) -> None:
    with pytest.raises(QAError, match=ARTICLE_ID):
        retriever.extend([Document(ARTICLE_ID, "A different text with the same id.")])


@pytest.mark.parametrize("doc_id", [ARTICLE_ID, NOTES.doc_id])
def test_subset_restricts_results(extended: Retriever, doc_id: str, spy_embed_passages: list[list[str]]) -> None:
    only = extended.subset([doc_id])
    assert spy_embed_passages == []
    assert [d.doc_id for d in only.documents] == [doc_id]
    for query in ("What does the zorbax plant produce?", "What did CNN report about troop numbers?"):
        passages = only.search(query, k=50)
        assert passages
        assert {p.doc_id for p in passages} == {doc_id}


def test_subset_of_unknown_or_no_documents_raises(extended: Retriever) -> None:
    with pytest.raises(QAError, match="nonexistent"):
        extended.subset(["nonexistent"])
    with pytest.raises(QAError):
        extended.subset([])


def test_duplicate_doc_ids_raise() -> None:
    twin = Document(NOTES.doc_id, "Another text that reuses the same identifier.")
    with pytest.raises(QAError, match="doc_id"):
        Retriever.build([NOTES, twin])
