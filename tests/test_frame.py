"""Questions about the document itself, on documents of six styles (none of them the bundled article)."""

from __future__ import annotations

import pytest

from qa import Assistant, Document, Retriever
from qa.frame import question_role

DOCUMENTS = {
    "blog": Document("blog", (
        "Posted by Maria Lopez on March 3, 2024\n\n"
        "I finally fixed my sourdough after a winter of flat loaves. The trick was a warmer proofing spot and a "
        "stiffer starter fed twice a day.\n\n"
        "The first week the loaves still spread, so I cut the water by ten percent. By the third week the crumb "
        "was open and the crust blistered.\n\n"
        "If your kitchen is cold, you should proof the dough in the oven with only the light switched on.\n\n"
        "Maria Lopez is a baker and food writer based in Lisbon."), title="Winter sourdough"),
    "wire": Document("wire", (
        "By Tom Hughes\n\n"
        "LONDON, May 2 - Britain's largest port operator reported a sharp rise in container traffic in April, "
        "helped by shipping lines avoiding congested routes elsewhere.\n\n"
        "Volumes rose 14 percent from a year earlier, the company said on Thursday. Analysts had expected a "
        "smaller gain after a weak first quarter.\n\n"
        "The operator said it must invest in larger cranes to keep pace with bigger ships.\n\n"
        "This story first appeared on the Harbour Ledger website."), title="Port traffic jumps"),
    "review": Document("review", (
        "Reviewed by: Sam Carter\n\n"
        "The Trailblazer 2 is a lightweight hiking boot with a stiff sole and a waterproof lining. I wore it for "
        "three weeks on rocky trails in the Pyrenees.\n\n"
        "The grip on wet granite was excellent, and the lacing never came loose. The toe box is narrow, and my "
        "feet ached after long descents.\n\n"
        "Buyers with wide feet should try the half size up before committing to a long trip."),
        title="Trailblazer 2 review"),
    "essay": Document("essay", (
        "This essay was originally published in The Civic Review.\n\n"
        "Cities across the region have spent a decade widening roads, and traffic is worse than ever. Wider "
        "roads invite more cars, a pattern that transport researchers call induced demand.\n\n"
        "Bus lanes tell a different story: where they were painted, journeys became faster for everyone on "
        "board.\n\n"
        "Councils should stop widening roads and put the money into frequent buses and safe cycle routes.\n\n"
        "Jane Roe is a professor of urban planning at Northfield University."), title="Stop widening roads"),
    "forum": Document("forum", (
        "Originally posted by greenthumb42 on the Allotment Forum\n\n"
        "my tomatoes keep splitting just before they ripen. they get full sun and I water every evening, "
        "sometimes twice when it's hot\n\n"
        "Splitting is usually uneven watering, so you need to water deeply every other morning instead of a "
        "little every evening, and mulch to keep the soil moist."), title="Tomatoes splitting"),
    "page": Document("page", (
        "This piece was originally published in Houseplant Monthly.\n\n"
        "Newsletter - Get the best of Green Living delivered every Friday\n\n"
        "Most flats get far less light than a plant label assumes. A snake plant or a ZZ plant will sit in a "
        "north-facing corner for years and ask for water once a month.\n\n"
        "Pothos trails happily from a bookshelf, and a cast iron plant earns its name in a cold hallway.\n\n"
        "Read the full story:\n"
        "Five houseplants that survive a dark flat | Green Living Weekly"), title="Dark flat houseplants"),
}

# (document, question, a phrase of the sentence that answers)
CHECKS = [
    ("blog", "Who wrote this?", "Posted by Maria Lopez"),
    ("blog", "What does the post recommend?", "proof the dough in the oven"),
    ("blog", "What is the post about?", "fixed my sourdough"),
    ("wire", "Who wrote the article?", "By Tom Hughes"),
    ("wire", "Where did this story first appear?", "Harbour Ledger"),
    ("review", "Who is the author?", "Sam Carter"),
    ("review", "What does the review recommend?", "half size up"),
    ("review", "What is this review about?", "lightweight hiking boot"),
    ("essay", "Who are the authors?", "Jane Roe is a professor"),
    ("essay", "Where was this essay originally published?", "The Civic Review"),
    ("essay", "What does the essay recommend?", "stop widening roads"),
    ("forum", "Who wrote this?", "greenthumb42"),
    ("forum", "What does the post suggest?", "water deeply"),
    ("wire", "Which outlet published this story?", "Harbour Ledger"),
    ("page", "Which publication carried this piece?", "Green Living Weekly"),
    ("page", "Where was this piece originally published?", "Houseplant Monthly"),
    ("page", "What is this piece about?", "less light than a plant label"),
]


@pytest.fixture(scope="module")
def assistants() -> dict[str, Assistant]:
    return {name: Assistant(Retriever.build([document])) for name, document in DOCUMENTS.items()}


@pytest.mark.parametrize(("name", "question", "evidence"), CHECKS)
def test_questions_about_the_document_are_answered_from_its_own_lines(
        assistants: dict[str, Assistant], name: str, question: str, evidence: str) -> None:
    answer = assistants[name].ask(question)
    assert answer.found, question
    assert evidence in answer.citations[0].text
    document = DOCUMENTS[name]
    citation = answer.citations[0]
    assert document.text[citation.start:citation.end] == citation.text


@pytest.mark.parametrize("question", [
    "Who wrote the letter to Congress?", "What did CNN report about troop numbers?", "Who does the PC/GNA battle?",
    "Where is the harbour?", "How many troops would it send?",
])
def test_questions_about_the_content_are_not_taken_for_questions_about_the_document(question: str) -> None:
    assert question_role(question) is None


def test_in_a_collection_the_document_meant_is_the_best_match() -> None:
    assistant = Assistant(Retriever.build([DOCUMENTS["blog"], DOCUMENTS["essay"]]))
    answer = assistant.ask("Who wrote the essay about widening roads?")
    assert answer.found
    assert answer.citations[0].doc_id == "essay"


# -- content questions on the same documents: a check on text that is not Wikipedia ---------------

CONTENT = [
    ("blog", "What was the trick for the sourdough?", "warmer proofing spot"),
    ("blog", "How much was the water cut?", "ten percent"),
    ("wire", "How much did container volumes rise?", "14 percent"),
    ("wire", "What must the operator invest in?", "larger cranes"),
    ("review", "How was the grip on wet granite?", "excellent"),
    ("review", "Where was the boot tested?", "Pyrenees"),
    ("essay", "What do wider roads invite?", "more cars"),
    ("essay", "What happened where bus lanes were painted?", "journeys became faster"),
    ("forum", "Why do tomatoes split?", "uneven watering"),
    ("forum", "How often did the poster water the tomatoes?", "every evening"),
]
#: Measured with the shipped ranker (README, Quality); the count must not fall.
CONTENT_RIGHT = 8


def test_content_questions_on_other_styles_of_text(assistants: dict[str, Assistant]) -> None:
    right = []
    for name, question, evidence in CONTENT:
        answer = assistants[name].ask(question)
        right.append(answer.found and evidence in answer.citations[0].text)
    assert sum(right) >= CONTENT_RIGHT, [q for (_, q, _), ok in zip(CONTENT, right, strict=True) if not ok]
