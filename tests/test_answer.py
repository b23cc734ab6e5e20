"""The answer composer: development targets, refusals, follow-ups, citations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qa import Assistant, Document, InvalidQuestionError, ModelUnavailableError, Retriever, Settings
from qa.answer import NOT_FOUND, cited, collapsed_to_original, continuation, opens_with_reference
from qa.candidates import cited_sentences, refers_back
from qa.evaluation import normalise

ROOT = Path(__file__).resolve().parent.parent

KNOWN_SINGLE_MISSES = 2
KNOWN_CONVERSATION_MISSES = 3


def evidence_in(text: str, evidence: str) -> bool:
    return normalise(evidence) in normalise(text)


def test_the_cnn_report_cites_its_sentence_and_a_follow_up_finds_the_troops(assistant: Assistant) -> None:
    first = assistant.ask("What did CNN report about a new US policy for Libya?")
    assert first.found
    assert "CNN report" in first.citations[0].text
    assert first.text.startswith(" ".join(first.citations[0].text.split()))
    assert "[1]" in first.text
    follow_up = assistant.ask("How many troops would it send?", history=[(first.question, first.text)])
    assert evidence_in(follow_up.citations[0].text, "up to fifty US special operations troops")


def test_citations_point_at_the_exact_document_text(assistant: Assistant) -> None:
    retriever = assistant.retriever
    for question in ("What did CNN report about troop numbers?", "Where does fighting continue between rival militias?",
                     "What has Italy asked the international community to do?"):
        answer = assistant.ask(question)
        assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
        for citation in answer.citations:
            text = retriever.document(citation.doc_id).text
            assert text[citation.start:citation.end] == citation.text
            assert text[citation.context_start:citation.context_end] == citation.context
            assert citation.context_start <= citation.start < citation.end <= citation.context_end
            assert f"[{citation.n}]" in answer.text


def test_neighbouring_chosen_sentences_become_one_span(assistant: Assistant) -> None:
    from qa.answer import neighbour_runs

    retriever = assistant.retriever
    # Sentences 11 and 10 are neighbours; 20 stands apart. Runs keep document order inside and best-first order.
    chosen = [(11, 0.9), (20, 0.6), (10, 0.5)]
    assert neighbour_runs(retriever, chosen) == [[(10, 0.5), (11, 0.9)], [(20, 0.6)]]
    answer = assistant.ask("What is the first challenge the plan could face?")
    for citation in answer.citations:
        assert retriever.document(citation.doc_id).text[citation.start:citation.end] == citation.text


def test_citations_of_one_answer_are_apart(assistant: Assistant, article_dev: dict) -> None:
    """Two citations in one document never overlap and have a whole sentence between them."""
    retriever = assistant.retriever
    for question in [item["q"] for item in article_dev["single"]]:
        citations = assistant.ask(question).citations
        for a in citations:
            for b in (b for b in citations if b.n > a.n and b.doc_id == a.doc_id):
                low, high = sorted((a, b), key=lambda c: c.start)
                assert low.end <= high.start, question
                between = [i for i in retriever.sentence_ids(a.doc_id)
                           if low.end <= retriever.sentences[i].start and retriever.sentences[i].end <= high.start]
                assert between, question


def test_development_questions(assistant: Assistant, article_dev: dict) -> None:
    failures = []
    for item in article_dev["single"]:
        answer = assistant.ask(item["q"])
        cited = answer.citations[0].text if answer.citations else ""
        if not (answer.found and evidence_in(cited, item["evidence"])
                and any(k.lower() in answer.text.lower() for k in item["key"])):
            failures.append((item["q"], normalise(cited)[:100]))
    # Known misses are listed in docs/quality-history.md; the count must not grow.
    assert len(failures) <= KNOWN_SINGLE_MISSES, failures


def test_off_topic_questions_are_refused_without_support(assistant: Assistant, article_dev: dict) -> None:
    for question in article_dev["unanswerable"] + ["What is the capital of France?"]:
        answer = assistant.ask(question)
        assert not answer.found, (question, answer.text)
        assert answer.citations == ()
        assert answer.text == NOT_FOUND
        assert answer.answerable < assistant.ranker.min_answerable
        assert answer.phrase is None


def test_conversations_use_the_history(assistant: Assistant, article_dev: dict) -> None:
    failures = []
    for conversation in article_dev["conversations"]:
        history: list[tuple[str, str]] = []
        for turn in conversation["turns"]:
            answer = assistant.ask(turn["q"], history=history)
            cited = answer.citations[0].text if answer.citations else ""
            if not (answer.found and evidence_in(cited, turn["evidence"])):
                failures.append((turn["q"], normalise(cited)[:100]))
            history.append((turn["q"], answer.text))
    # Known misses are listed in docs/quality-history.md; the count must not grow.
    assert len(failures) <= KNOWN_CONVERSATION_MISSES, failures


def test_follow_up_is_searched_with_the_previous_question(assistant: Assistant) -> None:
    first = assistant.ask("What did CNN report about a new US policy for Libya?")
    follow_up = assistant.ask("How many troops would it send?", history=[(first.question, first.text)])
    assert follow_up.found
    assert "fifty" in follow_up.citations[0].text
    assert "new US policy for Libya" in follow_up.query


def test_a_new_question_after_history_is_answered_on_its_own(assistant: Assistant) -> None:
    history = [("What did CNN report about troop numbers?", assistant.ask("What did CNN report about troop "
                                                                           "numbers?").text)]
    assert not assistant.ask("What is the speed of light?", history=history).found
    answer = assistant.ask("Which city did Haftar's forces retake from jihadists?", history=history)
    assert answer.found and "Benghazi" in answer.citations[0].text


def test_the_previous_answer_s_sentences_are_found_from_its_text(assistant: Assistant) -> None:
    retriever = assistant.retriever
    answer = assistant.ask("What did CNN report about troop numbers?")
    cited = cited_sentences(retriever, answer.text)
    assert cited
    for sentence_id in cited:
        assert " ".join(retriever.sentences[sentence_id].text.split()) in answer.text
    assert cited_sentences(retriever, NOT_FOUND) == []


@pytest.mark.parametrize("question", ["", "   ", "x" * 5000])
def test_bad_questions_raise_clear_errors(assistant: Assistant, question: str) -> None:
    with pytest.raises(InvalidQuestionError, match="question"):
        assistant.ask(question)


# -- the short answer -------------------------------------------------------------------------


def test_the_short_answer_lies_inside_citation_one(assistant: Assistant, article_dev: dict) -> None:
    """With the calibrated floor off, every answer has a phrase; each lies in [1] and indexes the document."""
    from qa.frame import question_role

    eager = Assistant(assistant.retriever, settings=Settings(min_phrase=0.0))
    for item in article_dev["single"]:
        answer = eager.ask(item["q"])
        if not answer.found or question_role(item["q"]) is not None:
            assert answer.phrase is None  # refused, or answered from the document's frame lines
            continue
        assert answer.phrase is not None, item["q"]
        phrase, first = answer.phrase, answer.citations[0]
        assert phrase.doc_id == first.doc_id
        assert first.start <= phrase.start < phrase.end <= first.end, item["q"]
        assert assistant.retriever.document(phrase.doc_id).text[phrase.start:phrase.end] == phrase.text
        assert 0.0 <= phrase.score <= 1.0


def test_a_short_answer_is_shown_only_when_likely_right(assistant: Assistant, article_dev: dict) -> None:
    answers = [assistant.ask(item["q"]) for item in article_dev["single"]]
    shown = [a.phrase for a in answers if a.phrase is not None]
    assert shown, "no short answer shown on the development questions"
    assert all(p.score >= assistant.ranker.min_phrase for p in shown)
    assert len(shown) < len(answers) or all(p.score >= 0.5 for p in shown)


def test_the_readme_example_cites_the_troops_and_leads_with_the_number(assistant: Assistant) -> None:
    answer = assistant.ask("How many troops would the new US policy send to Libya?")
    assert answer.text.startswith("According to the CNN report,")
    assert evidence_in(answer.citations[0].text, "up to fifty US special operations troops")
    assert answer.phrase is not None and "fifty" in answer.phrase.text


def test_troop_numbers_have_a_short_answer(assistant: Assistant) -> None:
    first = assistant.ask("What did CNN report about a new US policy for Libya?")
    answer = assistant.ask("How many troops would it send?", history=[(first.question, first.text)])
    assert answer.phrase is not None and "fifty" in answer.phrase.text


@pytest.mark.parametrize(("text", "start", "end", "expected"), [
    ("sent fifty troops, then", 5, 15, "fifty troops"),  # "troop" + "s": a word piece inside a word
    ("sent fifty troops, then", 5, 18, "fifty troops"),  # the comma trimmed
    ("cost $4.5 million.", 5, 18, "$4.5 million"),
])
def test_a_short_answer_is_whole_words(text: str, start: int, end: int, expected: str) -> None:
    from qa.answer import whole_words

    low, high = whole_words(text, start, end)
    assert text[low:high] == expected


@pytest.mark.parametrize(("text", "start", "end", "expected"), [
    ("plain words here", 6, 11, "words"),
    ("spread    out\n  words", 7, 16, "out\n  words"),
    ("  leading space", 0, 7, "leading"),
])
def test_offsets_in_collapsed_text_map_back_to_the_original(text: str, start: int, end: int, expected: str) -> None:
    low, high = collapsed_to_original(text, start, end)
    assert text[low:high] == expected


# -- history only for follow-ups -----------------------------------------------------------------


@pytest.mark.parametrize(("question", "leans"), [
    ("How many troops would it send?", True), ("Why?", True), ("And what about Benghazi?", True),
    ("Why should that be viewed warily?", True), ("What did they agree?", True),
    ("What is the GNA?", False), ("How much is the rent?", False), ("Who is Khalifa Haftar?", False),
    ("What did CNN report about troop numbers?", False),
])
def test_a_question_refers_back_when_it_points_at_what_it_does_not_name(question: str, leans: bool) -> None:
    assert refers_back(question) is leans


def test_a_standalone_question_keeps_its_citations_after_an_unrelated_turn(assistant: Assistant) -> None:
    alone = assistant.ask("What is the GNA?")
    first = assistant.ask("Why is Libya important to the US?")
    after = assistant.ask("What is the GNA?", history=[(first.question, first.text)])
    assert not after.follow_up
    assert [(c.start, c.end) for c in after.citations] == [(c.start, c.end) for c in alone.citations]


def test_an_elliptic_follow_up_leans_on_the_last_answer(assistant: Assistant) -> None:
    first = assistant.ask("What did CNN report about a new US policy for Libya?")
    follow_up = assistant.ask("How many troops?", history=[(first.question, first.text)])
    assert follow_up.found
    assert "fifty" in follow_up.citations[0].text


def test_a_short_question_gets_its_candidates_with_the_conversation_in_the_same_call(retriever: Retriever) -> None:
    from qa.candidates import question_candidates

    history = [("What did CNN report about a new US policy for Libya?", "According to the CNN report ... [1]")]
    short = question_candidates(retriever, "How many troops?", history, retriever.settings)
    assert short.with_history is not None and short.with_history.follow_up and not short.follow_up
    assert short.with_history.previous_question == history[0][0]
    # A question that refers back is searched with the conversation only; one that stands alone, alone.
    referring = question_candidates(retriever, "Why did they do it?", history, retriever.settings)
    assert referring.follow_up and referring.with_history is None
    standalone = question_candidates(retriever, "Which country is the largest crossing point for migrants?", history,
                                     retriever.settings)
    assert not standalone.follow_up and standalone.with_history is None and standalone.previous_question is None


def test_a_question_walks_down_the_layers_once(assistant: Assistant) -> None:
    """bench/question_path.py's measure (issue 32): following the question through `Assistant.ask`, it climbs
    back to a higher layer at most twice (to be ranked, then answered), a short follow-up included."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("question_path", ROOT / "bench" / "question_path.py")
    assert spec and spec.loader
    question_path = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(question_path)
    for question, history in question_path.QUESTIONS:
        path = question_path.follow(assistant.ask, question, history, set())
        assert path[0] == "qa.answer"
        assert question_path.climbs(path) <= 2, (question, path)


# -- citing ---------------------------------------------------------------------------------


def test_a_second_sentence_is_cited_only_when_it_adds_support() -> None:
    assert cited([0.95, 0.5, 0.4], 3, 0.9, 0.5) == [0]  # the first is convincing
    assert cited([0.6, 0.5, 0.4, 0.3], 3, 0.9, 0.5) == [0, 1, 2]  # none is, and the others are close
    assert cited([0.6, 0.2, 0.1], 3, 0.9, 0.5) == [0]  # the others are much less likely
    assert cited([0.2, 0.7, 0.1], 3, 0.7, 0.5) == [1]
    assert cited([0.5, 0.5, 0.5], 2, 0.99, 0.5) == [0, 1]


def test_confidence_is_a_probability_and_higher_when_right(assistant: Assistant) -> None:
    right = assistant.ask("What did CNN report about troop numbers?")
    off = assistant.ask("What is the boiling point of mercury?")
    assert 0.0 <= off.confidence < right.confidence <= 1.0


def test_a_user_who_expects_many_unanswered_questions_gets_lower_confidence(assistant: Assistant) -> None:
    import dataclasses

    question = "How many troops would the new US policy send to Libya?"
    wary = Assistant(assistant.retriever, settings=dataclasses.replace(assistant.settings, answerable_share=0.3))
    usual, told = assistant.ask(question), wary.ask(question)
    assert told.citations == usual.citations and told.answerable == usual.answerable
    assert told.confidence < usual.confidence
    with pytest.raises(ValueError, match="answerable_share"):
        dataclasses.replace(assistant.settings, answerable_share=1.0)


# -- long and odd questions ------------------------------------------------------------------


@pytest.mark.parametrize("question", [
    ("What did CNN report about troop numbers " * 100)[:600],
    "米国はリビアにどれだけの部隊を送ると報じられたのか" * 10,
    "Who is Haftar? " + "0123456789abcdef" * 8 + " " + "fedcba9876543210" * 8,
    ("Why " + "really " * 160)[:999],
])
def test_every_question_up_to_the_limit_is_answered_or_refused(assistant: Assistant, question: str) -> None:
    assert len(question) <= assistant.settings.max_question_chars
    answer = assistant.ask(question)
    assert isinstance(answer.found, bool)
    long_turn = ("What did CNN report about the new policy " * 10)[:331]
    follow_up = assistant.ask(("And how many troops would it send " * 10)[:251], history=[(long_turn, answer.text)])
    assert isinstance(follow_up.found, bool)


# -- copies and paragraphs --------------------------------------------------------------------


GARDEN = ("The allotment opens at seven in the morning. The gate code is 4512.\n\n"
          "Last year's tomato blight hit the east beds. Members should rotate crops every season.")


def test_a_sentence_held_by_two_copies_of_a_file_is_cited_once_naming_both() -> None:
    from qa import Document, Retriever

    assistant = Assistant(Retriever.build([Document("notes.txt", GARDEN, title="Notes"),
                                           Document("notes-copy.txt", GARDEN, title="Notes (copy)")]))
    answer = assistant.ask("What is the gate code?")
    assert answer.found
    texts = [normalise(c.text) for c in answer.citations]
    assert len(texts) == len(set(texts))
    first = answer.citations[0]
    assert "4512" in first.text
    assert {first.doc_id, *first.also_in} == {"notes.txt", "notes-copy.txt"}


def test_neighbours_across_a_blank_line_are_cited_apart() -> None:
    from qa import Document, Retriever
    from qa.answer import neighbour_runs

    retriever = Retriever.build([Document("garden", GARDEN, title="Garden")])
    ids = list(retriever.sentence_ids("garden"))
    assert len(ids) == 4
    assert neighbour_runs(retriever, [(ids[1], 0.9), (ids[2], 0.8)]) == [[(ids[1], 0.9)], [(ids[2], 0.8)]]
    assert neighbour_runs(retriever, [(ids[0], 0.9), (ids[1], 0.8)]) == [[(ids[0], 0.9), (ids[1], 0.8)]]


def test_an_off_topic_question_after_a_turn_is_still_refused(assistant: Assistant) -> None:
    first = assistant.ask("How many troops would the new US policy send to Libya?")
    answer = assistant.ask("How far did the Okavango zebras migrate?", history=[(first.question, first.text)])
    assert not answer.found


# -- a sentence that continues citation [1] -------------------------------------------------------

BRIDGE = ("The Harlow footbridge reopened in May after a year of repairs. The council says the bridge still faces "
          "two problems. The first of which is rust in the main cables, which engineers found in March. "
          "The second is the cost of painting, now put at 2 million pounds. Walkers have welcomed the reopening.\n\n"
          "It was built in 1931 and carries about 4,000 people a day.")


@pytest.fixture(scope="module")
def bridge() -> Retriever:
    return Retriever.build([Document("bridge", BRIDGE, title="Harlow footbridge")])


def test_the_sentence_that_continues_citation_one_is_cited_with_it(bridge: Retriever) -> None:
    """A sentence that opens by referring back to [1]'s ("The first of which …", "The second is …") is
    cited with it as one span; with the continuation turned off, [1] is that one sentence alone."""
    question = "What is the first problem the bridge faces?"
    joined = Assistant(bridge).ask(question).citations[0].text
    alone = Assistant(bridge, settings=Settings(continuation_share=1.0)).ask(question).citations[0].text
    assert "rust in the main cables" in joined
    assert alone != joined and joined.startswith(alone)
    assert opens_with_reference(joined[len(alone):].strip())


@pytest.mark.parametrize(("sentence", "refers"), [
    ("The first of which is rust in the main cables.", True), ("These include rust and paint.", True),
    ("It was built in 1931.", True), ('"Such repairs take a year," she said.', True),
    ("Italy has called for talks.", False), ("Thesis defences are in May.", False),
    ("The council met in March.", False),
])
def test_a_sentence_refers_back_when_it_opens_with_a_reference(sentence: str, refers: bool) -> None:
    assert opens_with_reference(sentence) is refers


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_continuation_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="continuation_share"):
        Settings(continuation_share=share)


def test_only_a_likely_next_sentence_of_the_same_paragraph_that_refers_back_continues(bridge: Retriever) -> None:
    ids = list(bridge.sentence_ids("bridge"))
    assert len(ids) == 6
    council, first, second, walkers, built = ids[1], ids[2], ids[3], ids[4], ids[5]
    assert continuation(bridge, [council, first], [0.6, 0.1], 0, 0.1) == 1
    assert continuation(bridge, [council, first], [0.6, 0.05], 0, 0.1) is None  # much less likely
    assert continuation(bridge, [council, second], [0.6, 0.5], 0, 0.1) is None  # not the next sentence
    assert continuation(bridge, [second, walkers], [0.6, 0.5], 0, 0.1) is None  # does not refer back
    assert continuation(bridge, [walkers, built], [0.6, 0.5], 0, 0.1) is None  # across a blank line


# -- a sentence that announces what follows -----------------------------------------------------

SETUP = ("# Kettle server\n\n"
         "Kettle serves tea orders over HTTP. It keeps every order in one SQLite file.\n\n"
         "To install the server, run:\n\n"
         "    pip install kettle-server && kettle init ./orders.db\n\n"
         "The steps after that are:\n"
         "- open port 8080 in the firewall\n"
         "- set KETTLE_TOKEN to a long random string\n"
         "- start it with kettle serve\n"
         "- check the log for errors\n\n"
         "Orders older than a year are deleted every night.")


@pytest.fixture(scope="module")
def setup_notes() -> Retriever:
    return Retriever.build([Document("setup.md", SETUP, title="Kettle server")])


def test_a_cited_sentence_ending_with_a_colon_brings_in_what_it_announces(setup_notes: Retriever) -> None:
    """"To install the server, run:" answers "How do I install it?" only together with the command after it.

    The shipped model cites the command itself first; the announcement is put first here, as a model that
    prefers it would, to check what citing it brings in."""
    assistant = Assistant(setup_notes)
    question = "How do I install the Kettle server?"
    assert "pip install kettle-server" in assistant.ask(question).citations[0].text
    found, ranking = assistant.rank(question)
    announcing = [k for k, i in enumerate(ranking.read) if found.texts[i] == "To install the server, run:"]
    assert announcing, "the announcement is among the candidates read"
    probabilities = ranking.probabilities.copy()
    probabilities[announcing[0]] = probabilities.max() + 0.1
    answer = assistant.cite(question, found, dataclasses.replace(ranking, probabilities=probabilities))
    assert answer.found
    first = answer.citations[0]
    assert "To install the server, run:" in first.text and "pip install kettle-server" in first.text
    assert setup_notes.document(first.doc_id).text[first.start:first.end] == first.text
    assert first.context_start <= first.start and first.end <= first.context_end
    assert "pip install kettle-server && kettle init ./orders.db [1]" in answer.text
    assert answer.phrase is None  # the short-answer model read only the announcement


def test_an_announcement_runs_on_through_its_block_and_no_further(setup_notes: Retriever) -> None:
    from qa.answer import ANNOUNCED_SENTENCES, announced

    ids = list(setup_notes.sentence_ids("setup.md"))
    texts = [setup_notes.sentences[i].text for i in ids]
    install, steps = texts.index("To install the server, run:"), texts.index("The steps after that are:")
    assert announced(setup_notes, ids[install]) == ids[install + 1]  # the command; a blank line ends its block
    assert announced(setup_notes, ids[steps]) == ids[steps + ANNOUNCED_SENTENCES]  # a list: its first items
    assert announced(setup_notes, ids[install - 1]) == ids[install - 1]  # no colon: the sentence alone


FAQ = ("# Kettle FAQ\n\n"
       "## Why is the order page slow?\n\n"
       "Kettle rebuilds the order summary on every visit. With many orders this takes a while. "
       "Set `summary_cache` to `10m` to rebuild it at most every ten minutes.\n\n"
       "## How do I reset the admin password?\n\n"
       "Stop the server and run:\n\n"
       "    kettle admin reset --user admin\n\n"
       "A new password is printed once.\n")


@pytest.fixture(scope="module")
def faq() -> Retriever:
    return Retriever.build([Document("faq.md", FAQ, title="Kettle FAQ")])


def test_a_question_in_the_document_is_cited_with_the_answer_after_it(faq: Retriever) -> None:
    """A FAQ's own question matches the user's best, but only what follows it answers."""
    answer = Assistant(faq).ask("I forgot the Kettle admin password. How can I reset it?")
    assert answer.found
    assert "kettle admin reset --user admin" in answer.citations[0].text
    texts = [normalise(c.text) for c in answer.citations]
    assert len(texts) == len(set(texts)) and all(a not in b for a in texts for b in texts if a != b)


def test_a_question_announces_its_whole_answer_block_and_a_colon_carries_on(faq: Retriever) -> None:
    from qa.answer import announced, announces

    ids = list(faq.sentence_ids("faq.md"))
    texts = [faq.sentences[i].text for i in ids]
    slow, reset = texts.index("Why is the order page slow?"), texts.index("How do I reset the admin password?")
    assert announced(faq, ids[slow]) == ids[slow + 3]  # the three sentences of its answer
    assert texts[reset + 2] == "kettle admin reset --user admin"
    assert announced(faq, ids[reset]) == ids[reset + 2]  # "Stop the server and run:" carries on to the command
    assert [announces(t) for t in ("Run:", "**Why?**", "It works.", "Note: it works.")] == [True, True, False, False]


def test_a_question_about_a_table_row_cites_that_row() -> None:
    rows = "".join(f"| `option_{n}` | `{n}` | Unused setting number {n} |\n" for n in range(12))
    text = ("# Feeds\n\n| Setting | Default | Meaning |\n|---|---|---|\n" + rows
            + "| `retry_failed_after` | `6h` | Wait before a feed that returned an error is tried again |\n")
    answer = Assistant(Retriever.build([Document("config.md", text, title="Feeds")])).ask(
        "How long does it wait before retrying a feed that failed?")
    assert answer.found
    row = "`retry_failed_after` | `6h` | Wait before a feed that returned an error is tried again"
    assert answer.citations[0].text == row
    assert answer.phrase is not None and answer.phrase.text == "6h"  # one cell, not "6h` | Wait before …"


def test_a_ranker_named_in_the_settings_answers_instead_of_the_shipped_one(
        retriever: Retriever, assistant: Assistant, ranker_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    question = "How many troops would the new US policy send to Libya?"
    chosen = Assistant(retriever, settings=dataclasses.replace(retriever.settings, ranker=str(ranker_copy)))
    assert chosen.ranker.path == ranker_copy
    assert chosen.ask(question) == assistant.ask(question)  # the same weights give the same answer
    monkeypatch.setenv("QA_RANKER", str(ranker_copy))
    assert Assistant(retriever, settings=Settings()).ranker.path == ranker_copy


def test_a_missing_ranker_is_a_clear_error(retriever: Retriever, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="no answer ranker at .*qa train --out"):
        Assistant(retriever, settings=dataclasses.replace(retriever.settings, ranker=str(tmp_path / "none")))
