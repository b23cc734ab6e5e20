"""The sets beyond Wikipedia: read into SQuAD's shape with every answer in its document, split by document
with nothing shared between the parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.training.sets import LOADERS, PARTS, QuestionSet, draw, load_molweni, load_split, split_set

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
FILES = {"reddit": "squadshifts-reddit-train.json", "amazon": "squadshifts-amazon-train.json",
         "molweni": "molweni-ubuntu-chat-train.json", "tweets": "tweetqa-train.json",
         "covid": "covidqa-papers-train.json"}

pytestmark = pytest.mark.skipif(not all((SHARED_EVAL / f).is_file() for f in FILES.values()),
                                reason=f"the shared training sets are not in {SHARED_EVAL}")


def _squashed(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.fixture(scope="module")
def sets() -> dict[str, QuestionSet]:
    return {name: load() for name, load in LOADERS.items()}


@pytest.mark.parametrize("name", list(FILES))
def test_every_answer_lies_in_its_document_and_articles_group_documents(sets: dict[str, QuestionSet],
                                                                          name: str) -> None:
    questions = sets[name]
    documents = {d.doc_id: d for d in questions.documents}
    assert len(documents) == len(questions.documents) > 10
    assert len(questions.questions) > 100
    for q in questions.questions:
        if q.impossible:
            assert q.answers == ()
            continue
        assert any(_squashed(a) in _squashed(documents[q.doc_id].text) for a in q.answers), q
        # Training draws hard negatives from a question's article, found from the doc_id as "ARTICLE-N".
        assert q.doc_id.rsplit("-", 1)[0] == q.article


def test_molweni_keeps_its_unanswerable_questions_and_writes_a_turn_a_line(sets: dict[str, QuestionSet]) -> None:
    chats = sets["molweni"]
    assert sum(q.impossible for q in chats.questions) == 152
    first = chats.documents[0].text.splitlines()
    assert first[0].startswith("JuJuBee_: ") and len(first) > 5
    flat = load_molweni(flat=True)
    assert "\n" not in flat.documents[0].text
    assert [q.question for q in flat.questions] == [q.question for q in chats.questions]


def test_tweets_keep_only_answers_found_word_for_word(sets: dict[str, QuestionSet]) -> None:
    # About 58% of TweetQA's answers occur in their tweet; the rest are free-form and left out.
    assert 0.45 < len(sets["tweets"].questions) / 10692 < 0.70


@pytest.mark.parametrize("name", list(FILES))
def test_the_split_shares_no_document_or_article_and_is_the_same_every_time(sets: dict[str, QuestionSet],
                                                                             name: str) -> None:
    training, validation = split_set(sets[name])
    again, _ = split_set(sets[name])
    assert [d.doc_id for d in training.documents] == [d.doc_id for d in again.documents]
    unit = (lambda q: q.doc_id) if sets[name].split_by == "document" else (lambda q: q.article)
    assert not {unit(q) for q in training.questions} & {unit(q) for q in validation.questions}
    assert not {d.doc_id for d in training.documents} & {d.doc_id for d in validation.documents}
    assert len(training.questions) + len(validation.questions) == len(sets[name].questions)
    assert 0.1 < len(validation.documents) / len(sets[name].documents) < 0.3


def test_calibration_and_check_halves_part_the_validation_part() -> None:
    parts = {part: load_split("molweni", part) for part in PARTS}
    calibration = {d.doc_id for d in parts["calibration"].documents}
    check = {d.doc_id for d in parts["check"].documents}
    assert calibration and check and not calibration & check
    assert calibration | check == {d.doc_id for d in parts["validation"].documents}
    with pytest.raises(ValueError, match="unknown part"):
        load_split("molweni", "held-out")
    with pytest.raises(ValueError, match="unknown question set"):
        load_split("newsqa", "training")


def test_a_draw_keeps_every_unanswerable_question(sets: dict[str, QuestionSet]) -> None:
    chats = sets["molweni"]
    drawn = draw(chats, 100)
    assert sum(not q.impossible for q in drawn) == 100
    assert sum(q.impossible for q in drawn) == 152
    assert draw(chats, 100) == drawn
    assert len(draw(chats, 0)) == len(chats.questions)
