"""The question sets beyond Wikipedia that the ranker learns from, read into SQuAD's shape.

SQuAD teaches the ranker on encyclopaedia prose; people bring reviews, forum threads, chats, tweets and
papers. Each loader here turns one public set (`../shared/eval/SOURCES.md`) into the same values SQuAD's
loader gives: paragraphs as `Document`s and questions as `SquadQuestion`s, whose `article` groups the
paragraphs that hard negatives and "asked without its paragraph" are drawn from. Then one function,
`split_set`, parts each set by document (seeded) into training and validation, so that no validation
document is ever read in training, and the validation half is what the mixture is chosen on.

| set | a document is | an article (where negatives come from) | validation split by |
|---|---|---|---|
| reddit | a comment | 100 comments (seeded groups) | comment |
| amazon | one review | a product's reviews | product |
| molweni | one Ubuntu IRC chat, a turn a line | all chats (its unanswerable questions are kept) | chat |
| tweets | a news tweet (answer found word for word) | 100 tweets (seeded groups) | tweet |
| covid | a paragraph of a paper | the paper | paper |
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..documents import Document
from .squad import SHARED_EVAL, SquadQuestion, load_squad, normalise, read_json

SPLIT_SEED = 20261207
#: Share of each set's documents (or products, chats, papers) kept for validation.
VALIDATION_SHARE = 0.2
GROUP_SIZE = 100


@dataclass(frozen=True)
class QuestionSet:
    """One set's paragraphs and questions, in SQuAD's shape."""

    name: str
    documents: tuple[Document, ...]
    questions: tuple[SquadQuestion, ...]
    split_by: str  # "document" or "article": the unit no split shares


def load_reddit(path: str | Path = SHARED_EVAL / "squadshifts-reddit-train.json") -> QuestionSet:
    documents, questions = load_squad(path)
    return _regrouped("reddit", documents, questions, "Reddit comment")


def load_amazon(path: str | Path = SHARED_EVAL / "squadshifts-amazon-train.json") -> QuestionSet:
    documents, questions = load_squad(path)
    documents = [Document(doc_id=f"amazon:{d.doc_id}", text=d.text, title="Amazon review") for d in documents]
    questions = [SquadQuestion(q.question, f"amazon:{q.doc_id}", q.answers, q.impossible, f"amazon:{q.article}")
                 for q in questions]
    return QuestionSet("amazon", tuple(documents), tuple(questions), "article")


def load_molweni(path: str | Path = SHARED_EVAL / "molweni-ubuntu-chat-train.json", *, flat: bool = False
                 ) -> QuestionSet:
    """Each chat one document, one turn a line ("speaker: words"), as a chat log is written; `flat` keeps the
    set's own text instead, every turn on one line."""
    data = read_json(path, "Molweni JSON (data.dialogues[].edus/qas)")
    documents, questions = [], []
    for number, dialogue in enumerate(data["data"]["dialogues"]):
        text = dialogue["context"] if flat else "\n".join(f"{turn['speaker']}: {turn['text']}"
                                                           for turn in dialogue["edus"])
        doc_id = f"molweni:chats-{number}"
        documents.append(Document(doc_id=doc_id, text=text, title="Ubuntu chat"))
        for qa in dialogue["qas"]:
            answers = tuple(a["text"] for a in qa.get("answers", []) if a["text"].strip())
            impossible = bool(qa.get("is_impossible")) or not answers
            if not impossible and not any(normalise(a) in normalise(text) for a in answers):
                continue
            questions.append(SquadQuestion(qa["question"], doc_id, answers if not impossible else (), impossible,
                                           "molweni:chats"))
    return QuestionSet("molweni", tuple(documents), tuple(questions), "document")


def load_tweets(path: str | Path = SHARED_EVAL / "tweetqa-train.json") -> QuestionSet:
    """TweetQA's questions whose answer occurs word for word in the tweet (the rest have free-form answers)."""
    rows = read_json(path, "TweetQA JSON (a list of Question/Answer/Tweet)")
    documents: dict[str, Document] = {}
    questions = []
    for row in rows:
        tweet = " ".join(str(row.get("Tweet", "")).split())
        answers = tuple(a for a in row.get("Answer", []) if a.strip() and normalise(a) in normalise(tweet))
        if not tweet or not answers:
            continue
        if tweet not in documents:
            documents[tweet] = Document(doc_id=f"tweets:{len(documents)}", text=tweet, title="News tweet")
        questions.append(SquadQuestion(row["Question"], documents[tweet].doc_id, answers, False, ""))
    return _regrouped("tweets", list(documents.values()), questions, "News tweet")


def load_covid(path: str | Path = SHARED_EVAL / "covidqa-papers-train.json") -> QuestionSet:
    """Each paper cut at its line breaks into paragraphs; an answer is found again by its text (about 17% of
    the set's offsets are off), the occurrence nearest its stated offset."""
    data = read_json(path, "COVID-QA JSON (SQuAD v1.1 shape)")
    documents, questions = [], []
    for number, article in enumerate(data["data"]):
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            title = context.split("\n", 1)[0].strip()[:120] or f"paper {number}"
            lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]*\S[^\n]*", context)]
            paper = f"covid:{number}"
            ids = []
            for k, (_, line) in enumerate(lines):
                ids.append(f"{paper}-{k}")
                documents.append(Document(doc_id=ids[-1], text=line, title=title))
            for qa in paragraph["qas"]:
                for answer in qa.get("answers", [])[:1]:
                    found = _relocate(context, answer["text"].strip(), int(answer.get("answer_start", 0)))
                    if found is None:
                        continue
                    line = next((k for k, (start, text) in enumerate(lines)
                                 if start <= found and found + len(answer["text"].strip()) <= start + len(text)), None)
                    if line is not None:
                        questions.append(SquadQuestion(qa["question"], ids[line], (answer["text"].strip(),), False,
                                                       paper))
    return QuestionSet("covid", tuple(documents), tuple(questions), "article")


#: Each set's file (the loaders' defaults), recorded with its sha256 in a model's manifest.
SET_FILES = {
    "reddit": SHARED_EVAL / "squadshifts-reddit-train.json", "amazon": SHARED_EVAL / "squadshifts-amazon-train.json",
    "molweni": SHARED_EVAL / "molweni-ubuntu-chat-train.json", "tweets": SHARED_EVAL / "tweetqa-train.json",
    "covid": SHARED_EVAL / "covidqa-papers-train.json",
}

LOADERS: dict[str, Callable[..., QuestionSet]] = {
    "reddit": load_reddit, "amazon": load_amazon, "molweni": load_molweni, "tweets": load_tweets,
    "covid": load_covid,
}


def split_set(questions: QuestionSet, *, seed: int = SPLIT_SEED, share: float = VALIDATION_SHARE
              ) -> tuple[QuestionSet, QuestionSet]:
    """(training, validation): a seeded `share` of the set's units (documents or articles) and everything
    of theirs goes to validation; no unit is on both sides."""
    unit = (lambda doc_id, article: doc_id) if questions.split_by == "document" else (lambda doc_id, article: article)
    article_of = {q.doc_id: q.article for q in questions.questions}
    units = sorted({unit(d.doc_id, _article_of(d.doc_id, article_of)) for d in questions.documents})
    rng = random.Random(f"{seed}-{questions.name}")
    validation = set(rng.sample(units, round(share * len(units))))

    def part(keep: bool) -> QuestionSet:
        documents = tuple(d for d in questions.documents
                          if (unit(d.doc_id, _article_of(d.doc_id, article_of)) in validation) == keep)
        kept = {d.doc_id for d in documents}
        return QuestionSet(questions.name, documents, tuple(q for q in questions.questions if q.doc_id in kept),
                           questions.split_by)

    return part(False), part(True)


PARTS = ("training", "validation", "calibration", "check")


def load_split(name: str, part: str, **options: bool) -> QuestionSet:
    """A part of the named set (`options` go to its loader): "training" (80% of its units), "validation" (the
    other 20%), which is cut again in two halves: "calibration", which the layers after the cross-encoder are
    fitted on, and "check", which nothing is fitted on and the figures are read from."""
    if name not in LOADERS:
        raise ValueError(f"unknown question set {name!r}; known: {', '.join(LOADERS)}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    training, validation = split_set(LOADERS[name](**options))
    if part in ("training", "validation"):
        return training if part == "training" else validation
    calibration, check = split_set(validation, seed=SPLIT_SEED + 1, share=0.5)
    return calibration if part == "calibration" else check


def draw(questions: QuestionSet, count: int, *, seed: int = SPLIT_SEED) -> list[SquadQuestion]:
    """`count` of the set's questions (seeded; all of them for 0 or more than there are), in set order, so a
    follow-up is asked after its article's previous question; unanswerable questions are always kept."""
    answerable = [n for n, q in enumerate(questions.questions) if not q.impossible]
    if count and count < len(answerable):
        kept = set(random.Random(f"{seed}-{questions.name}-draw").sample(answerable, count))
    else:
        kept = set(answerable)
    return [q for n, q in enumerate(questions.questions) if n in kept or q.impossible]


def _article_of(doc_id: str, article_of: dict[str, str]) -> str:
    return article_of.get(doc_id) or doc_id.rsplit("-", 1)[0]


def _regrouped(name: str, documents: Sequence[Document], questions: Sequence[SquadQuestion], title: str
               ) -> QuestionSet:
    """Unrelated short texts (comments, tweets) in seeded groups of `GROUP_SIZE`, each group an article."""
    order = list(range(len(documents)))
    random.Random(f"{SPLIT_SEED}-{name}-groups").shuffle(order)
    renamed = {}
    for position, n in enumerate(order):
        renamed[documents[n].doc_id] = (f"{name}:{position // GROUP_SIZE}-{position % GROUP_SIZE}",
                                        f"{name}:{position // GROUP_SIZE}")
    new_documents = tuple(Document(doc_id=renamed[d.doc_id][0], text=d.text, title=title) for d in documents)
    new_questions = sorted((SquadQuestion(q.question, renamed[q.doc_id][0], q.answers, q.impossible,
                                          renamed[q.doc_id][1]) for q in questions if q.doc_id in renamed),
                           key=lambda q: tuple(int(x) for x in q.doc_id.split(":", 1)[1].split("-")))
    return QuestionSet(name, new_documents, tuple(new_questions), "document")


def _relocate(context: str, answer: str, stated: int) -> int | None:
    """Where `answer` occurs in `context`: the occurrence nearest the stated offset, or None."""
    if not answer:
        return None
    starts = [m.start() for m in re.finditer(re.escape(answer), context)]
    return min(starts, key=lambda s: abs(s - stated)) if starts else None
