"""A question about what a named thing is goes to where the document introduces it."""

from __future__ import annotations

import pytest

from qa import Assistant, Document, Retriever
from qa.definitions import asked_term, introduces, introducing


@pytest.mark.parametrize(("question", "term"), [
    ("What is the PC/GNA?", "PC/GNA"),
    ("Who is Khalifa Haftar?", "Khalifa Haftar"),
    ("what was DATANET 1", "DATANET 1"),
    ("What does LNA stand for?", "LNA"),
    ("What does 'Pax Mongolica' mean?", "Pax Mongolica"),
    ("What is the capital of France?", None),   # not a name: asks for a fact
    ("Who was Robert's son?", None),
    ("Who was the Norse leader?", None),
    ("How many troops would it send?", None),
])
def test_only_questions_about_a_name_or_abbreviation_ask_for_a_term(question: str, term: str | None) -> None:
    assert asked_term(question) == term


def test_a_term_is_introduced_by_its_expansion_an_apposition_or_a_definition() -> None:
    assert introduces("The UN-backed Presidency Council and Government of National    Accord (PC/GNA), meanwhile",
                      "PC/GNA")
    assert introduces("General Khalifa Haftar, the commander of the LNA, said so.", "Khalifa Haftar")
    assert introduces("CSNET is a network that linked computer science departments.", "CSNET")
    assert not introduces("Stability could empower the PC/GNA to undertake reconstruction.", "PC/GNA")
    assert not introduces("The PC/GNAX (a typo) is not the term.", "PC/GNA")
    assert introducing("What is the PC/GNA?", ["It backs the PC/GNA.", "The Accord (PC/GNA) was formed."]) == [1]
    assert introducing("How big is the PC/GNA?", ["The Accord (PC/GNA) was formed."]) == []


def test_the_bundled_article_cites_where_it_introduces_a_term(assistant: Assistant) -> None:
    answer = assistant.ask("What is the PC/GNA?")
    assert answer.found
    assert "(PC/GNA)" in answer.citations[0].text
    assert "Presidency Council" in answer.citations[0].text
    # No search returned its passage, which is scored as a search would score it: with no passage evidence
    # at all, the sentence the cross-encoder scored best by far got a probability of 3%, and two sentences
    # that only use the term were cited after it.
    assert answer.confidence > 0.3
    assert len(answer.citations) == 1


def test_an_introduction_read_for_its_term_carries_its_passage_score() -> None:
    from qa.candidates import question_candidates
    from qa.config import Settings

    retriever = Retriever.default()
    found = question_candidates(retriever, "What is the PC/GNA?", (), Settings())
    assert found.introducing
    introduction = found.introducing[0]
    assert found.evidence[introduction].passage > 0.0
    assert found.passages[introduction].score > 0.0
    assert found.evidence[introduction].passage <= 1.0


def test_an_introduction_that_retrieval_ranks_low_is_still_read_and_cited() -> None:
    filler = " ".join(f"The board met on day {n} and discussed the PC/GNA budget, the PC/GNA staff and travel."
                      for n in range(1, 30))
    text = (f"{filler} The Presidency Council and Government of National Accord (PC/GNA) was set up in 2016 "
            "under a UN-brokered agreement. " + filler)
    retriever = Retriever.build([Document(doc_id="minutes", text=text, title="Minutes")])
    answer = Assistant(retriever).ask("What is the PC/GNA?")
    assert answer.found
    assert "(PC/GNA)" in answer.citations[0].text
