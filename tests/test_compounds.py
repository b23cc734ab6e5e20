"""The noun-compound form of training questions (qa/training/compounds.py)."""

from __future__ import annotations

import random

from qa.training.compounds import compounded, plural, singular


def forms(question: str) -> set[str | None]:
    """Every form `compounded` gives over many seeds."""
    return {compounded(question, random.Random(seed)) for seed in range(40)}


def test_the_n_of_m_is_asked_as_a_compound_with_or_without_the_article() -> None:
    assert forms("What did CNN report about the number of troops?") == {
        "What did CNN report about the troop number?", "What did CNN report about troop numbers?"}
    assert forms("What was the population of Nanjing in 2010?") == {
        "What was the Nanjing population in 2010?", "What was Nanjing population in 2010?"}


def test_phrases_that_do_not_end_after_one_word_are_left_alone() -> None:
    assert compounded("What was the number of US troops sent?", random.Random(0)) is None  # M is two words
    assert compounded("What was the name of the man who wrote it?", random.Random(0)) is None  # a relative clause
    assert compounded("Who owned the rest of the land?", random.Random(0)) is None  # "rest" is no head
    assert compounded("Who founded the company?", random.Random(0)) is None  # no "of"


def test_plain_english_number() -> None:
    assert [singular(w) for w in ("troops", "countries", "business", "news", "bus")] == [
        "troop", "country", "business", "news", "bus"]
    assert [plural(w) for w in ("number", "city", "tax", "day")] == ["numbers", "cities", "taxes", "days"]
