"""SQuAD data: the loader's split never leaks held-out articles, SQuAD's own answer metrics, simulated follow-ups."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.training.squad import (
    DEFAULT_SQUAD_FILES,
    SquadQuestion,
    exact_match,
    f1,
    load_squad,
    names_and_numbers,
    pronominalise,
    split_articles,
    squad_normalise,
    swapped_question,
)

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def test_squad_normalisation_drops_case_punctuation_articles_and_spaces() -> None:
    assert squad_normalise("The  Denver Broncos!") == "denver broncos"
    assert squad_normalise("an apple, a pear") == "apple pear"


@pytest.mark.parametrize(("prediction", "answers", "em", "score"), [
    ("Denver Broncos", ("Denver Broncos", "The Broncos"), 1.0, 1.0),
    ("the Denver Broncos", ("Denver Broncos",), 1.0, 1.0),
    ("Broncos", ("Denver Broncos",), 0.0, 2 / 3),
    ("Carolina Panthers", ("Denver Broncos",), 0.0, 0.0),
    ("", ("Denver Broncos",), 0.0, 0.0),
])
def test_exact_match_and_f1_as_squad_counts_them(prediction: str, answers: tuple[str, ...], em: float,
                                                 score: float) -> None:
    assert exact_match(prediction, answers) == em
    assert f1(prediction, answers) == pytest.approx(score)


@pytest.mark.parametrize(("question", "previous", "expected"), [
    ("How many people died in the earthquake?", "What did the earthquake measure?", "How many people died in it?"),
    ("How tall is the tower?", "Who designed the tower?", "How tall is it?"),
    ("What is the capital of Peru?", "Who won the cup?", "What is the capital of Peru?"),
])
def test_a_shared_phrase_becomes_a_pronoun(question: str, previous: str, expected: str) -> None:
    assert pronominalise(question, previous) == expected


def test_the_split_holds_out_whole_articles_and_is_the_same_every_time() -> None:
    questions = [SquadQuestion(f"q{n}", f"{a}-0", ("x",), impossible=(n % 3 == 0 and a in "ABCDEF"), article=a)
                 for a in "ABCDEFGHIJ" for n in range(6)]
    first, second = split_articles(questions), split_articles(questions)
    assert first == second
    held_out = {a for a, split in first.items() if split == "held-out"}
    assert held_out == {"D", "E", "F"}  # the last half of the articles with unanswerable questions
    assert {"training", "validation"} <= set(first.values())


def test_the_shared_development_files_hold_out_articles_with_unanswerable_questions() -> None:
    if not all(f.is_file() for f in (SHARED_EVAL / f.name for f in DEFAULT_SQUAD_FILES)):
        pytest.skip("the shared SQuAD files are not beside the repository")
    _, questions = load_squad([SHARED_EVAL / f.name for f in DEFAULT_SQUAD_FILES])
    splits = split_articles(questions)
    held_out = [q for q in questions if splits[q.article] == "held-out"]
    assert len({q.article for q in held_out}) == 5
    assert any(q.impossible for q in held_out)


def test_names_and_numbers_skip_the_words_that_open_a_sentence() -> None:
    text = 'The Normans held Normandy. In 1066 they won at Hastings; "Duke William" led 7,000 men and 3.5 ships.'
    assert names_and_numbers(text) == ["Normans", "Normandy", "1066", "Hastings", "Duke William", "7,000", "3.5"]


def test_a_swapped_question_asks_about_something_its_paragraph_never_mentions() -> None:
    import random

    sentence = "In 1066 the Normans conquered England under William."
    paragraph = sentence + " They later went to Sicily."
    names = ["Scotland", "Sicily", "Robert Guiscard", "Ireland", "1070"]
    question = "In what year did the Normans conquer England?"
    made = {swapped_question(question, sentence, paragraph, names, random.Random(seed)) for seed in range(40)}
    # One shared name swapped for a one-word name of the article that the paragraph lacks.
    assert made == {"In what year did the Scotland conquer England?", "In what year did the Ireland conquer England?",
                    "In what year did the Normans conquer Scotland?", "In what year did the Normans conquer Ireland?"}
    moved = swapped_question("What happened in 1066?", sentence, paragraph, names, random.Random(0))
    assert moved is not None and moved.startswith("What happened in ") and moved != "What happened in 1066?"
    year = int(moved.split()[-1].rstrip("?"))
    assert 3 <= abs(year - 1066) <= 40
    # Nothing named in common with the sentence, or no name of the same kind left: nothing to swap.
    assert swapped_question("When did they win?", sentence, paragraph, names, random.Random(0)) is None
    assert swapped_question("Who ruled England?", sentence, paragraph, ["Sicily"], random.Random(0)) is None
