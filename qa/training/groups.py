"""What the cross-encoder learns from: the training questions and their listwise groups of hard negatives.

`training_questions` draws (seeded) the questions of SQuAD's training files, and of the sets beyond
Wikipedia in a mix (`qa.training.sets`); the held-out and validation articles are never read.
`training_groups` puts each question's answering sentence among hard negatives: the rest of its paragraph
and the sentences of its article that share the most words with it. A learned "no answer" option wins for
unanswerable questions, for answerable ones asked without their paragraph and (a share) for ones whose name
or number was swapped; a share is posed as follow-ups ("When did it return?").
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..candidates import normalise
from ..ranker import pair_text, ranker_question
from .compounds import compounded
from .config import TrainConfig
from .squad import (
    SquadQuestion,
    article_of,
    contains_any,
    load_squad,
    names_and_numbers,
    pronominalise,
    swapped_question,
)


def training_questions(training_files: Sequence[str | Path], development: Sequence[SquadQuestion],
                       splits: dict[str, str], config: TrainConfig) -> tuple[list[Any], list[SquadQuestion]]:
    """The paragraphs and questions the cross-encoder learns from, in article order.

    SQuAD's training files, of which `config.questions` answerable questions
    are drawn (seeded) and every unanswerable one is kept, plus the
    development articles of the "training" split. A run that continues
    another (`config.after`) draws from what that run did not read. Held-out
    and validation articles are never read.
    """
    documents, questions = load_squad(training_files) if training_files else ([], [])
    impossible = {n for n, q in enumerate(questions) if q.impossible}
    answerable = [n for n, q in enumerate(questions) if not q.impossible]
    if config.mix:
        from .sets import draw, load_split

        drawn = set(random.Random(f"{config.seed}-mix").sample(answerable, min(config.questions or len(answerable),
                                                                                 len(answerable))))
        if config.compound_questions:
            rest = [n for n in answerable if n not in drawn
                    and compounded(questions[n].question, random.Random(0)) is not None]
            drawn |= set(random.Random(f"{config.seed}-compounds").sample(rest, min(config.compound_questions,
                                                                                     len(rest))))
        questions = [q for n, q in enumerate(questions) if n in drawn or n in impossible]
        questions += [q for q in development if splits[q.article] == "training" and q.impossible]
        for name, count in config.mix:
            part = load_split(name, "training")
            documents = [*documents, *part.documents]
            questions += draw(part, count, seed=config.seed)
        return documents, questions
    if config.after:
        seen = set(random.Random(config.seed).sample(answerable, min(config.after, len(answerable))))
        rest = [n for n in answerable if n not in seen]
        drawn = random.Random(f"{config.seed}-after").sample(rest, min(config.questions or len(rest), len(rest)))
        kept = set(drawn) | impossible
        questions = [q for n, q in enumerate(questions) if n in kept]
        own = [q for q in development if splits[q.article] == "training" and q.impossible]
        return documents, questions + own
    if config.questions and len(questions) > config.questions:
        rng = random.Random(config.seed)
        kept = set(rng.sample(answerable, min(config.questions, len(answerable)))) | impossible
        questions = [q for n, q in enumerate(questions) if n in kept]
    own = [q for q in development if splits[q.article] == "training"]
    return documents, questions + own


@dataclass(frozen=True)
class Group:
    """One question's listwise training item: the question side, sentence sides, and which answers.

    `target` is 0 when none answers (the "no answer" option), else 1 + the answering position.
    """

    question: str
    texts: tuple[str, ...]
    target: int
    answers: tuple[str, ...]


class TrainingSentences:
    """The training paragraphs split into sentences, with what picking hard negatives needs (each
    sentence's content terms, and the sentences of each article) and what swapping a question's name
    needs (each paragraph's text, and the names and numbers of each article)."""

    def __init__(self, documents: Sequence[Any]) -> None:
        from ..chunking import split_sentences
        from ..lexical import terms

        self.texts: list[str] = []
        self.titles: list[str] = []
        self.by_paragraph: dict[str, range] = {}
        self.paragraph_start: list[int] = []
        self.by_article: dict[str, list[int]] = {}
        self.paragraphs: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        for document in documents:
            self.paragraphs[document.doc_id] = document.text
            self.names.setdefault(article_of(document.doc_id), []).extend(names_and_numbers(document.text))
            first = len(self.texts)
            for sentence in split_sentences(document):
                self.texts.append(normalise(sentence.text))
                self.titles.append(document.title)
                self.paragraph_start.append(first)
            self.by_paragraph[document.doc_id] = range(first, len(self.texts))
            self.by_article.setdefault(article_of(document.doc_id), []).extend(range(first, len(self.texts)))
        self.terms = [frozenset(t) for t in terms(self.texts)]
        counts: dict[str, int] = {}
        for sentence_terms in self.terms:
            for term in sentence_terms:
                counts[term] = counts.get(term, 0) + 1
        self.idf = {term: math.log(1 + len(self.terms) / count) for term, count in counts.items()}

    def pair(self, sentence: int, reads_previous: bool = False) -> str:
        """The sentence side of `sentence`'s pair (`pair_text`), with the sentence before it in its paragraph
        if `reads_previous`."""
        before = self.texts[sentence - 1] if sentence > self.paragraph_start[sentence] else ""
        return pair_text(self.texts[sentence], self.titles[sentence], before if reads_previous else None)

    def closest_in_article(self, question_terms: Sequence[str], article: str, skip: range, size: int) -> list[int]:
        """The article's `size` sentences outside `skip` sharing the most IDF weight with the question."""
        wanted = set(question_terms)
        scored = [(sum(self.idf.get(t, 0.0) for t in wanted & self.terms[i]), i)
                  for i in self.by_article.get(article, []) if i not in skip]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [i for _, i in scored[:size]]


def training_groups(questions: Sequence[SquadQuestion], sentences: TrainingSentences, config: TrainConfig,
                    epoch: int) -> list[Group]:
    """One epoch of listwise items, shuffled; the same for the same seed and epoch (so `--resume` can skip ahead).

    Negatives are what retrieval puts next to the answer: the rest of the
    answer's paragraph and the sentences of its article that share the most
    words with the question. Three kinds of question must choose "no answer":
    SQuAD 2.0's unanswerable ones; answerable ones asked without their
    paragraph (only the article's closest other sentences are offered), which
    is the principle that the document at hand may simply not hold the
    answer; and (a `config.swapped` share) answerable ones whose name or
    number is swapped for one their paragraph never mentions, offered with
    their own paragraph: a document does not answer a question about a
    thing it does not mention, however close the rest of the words. A share
    is posed as a follow-up of the article's previous question (a shared
    phrase becomes a pronoun). A `config.compounds` share of those holding "the N of M" ask it as a noun
    compound ("troop numbers", `qa.training.compounds`).
    """
    from ..lexical import terms

    rng = random.Random(f"{config.seed}-{epoch}")
    question_terms = terms([q.question for q in questions])
    groups = []
    for n, question in enumerate(questions):
        paragraph = sentences.by_paragraph.get(question.doc_id)
        if paragraph is None:
            continue
        answering = [i for i in paragraph if not question.impossible
                     and contains_any(sentences.texts[i], question.answers)]
        closest = [i for i in sentences.closest_in_article(question_terms[n], question.article, paragraph,
                                                           2 * config.group)
                   if not contains_any(sentences.texts[i], question.answers)]
        if not question.impossible and not answering:
            continue  # the answer crosses a sentence boundary: no sentence holds it
        near = [i for i in paragraph if i not in answering]
        wanted = config.group - 1
        absent = bool(answering) and rng.random() < config.absent
        if absent:
            chosen, target = rng.sample(closest, min(config.group, len(closest))), 0
        else:
            from_paragraph = rng.sample(near, min(len(near), (wanted + 1) // 2))
            from_article = rng.sample(closest[:wanted * 2], min(len(closest[:wanted * 2]),
                                                                 wanted - len(from_paragraph)))
            chosen = from_paragraph + from_article
            target = 0
            if answering:
                chosen.insert(rng.randrange(len(chosen) + 1), rng.choice(answering))
                target = 1 + next(k for k, i in enumerate(chosen) if i in answering)
        if not chosen:
            continue
        asked = question.question
        if config.swapped and target and rng.random() < config.swapped:
            swapped = swapped_question(asked, sentences.texts[chosen[target - 1]],
                                       sentences.paragraphs[question.doc_id],
                                       sentences.names.get(question.article, []), rng)
            if swapped is not None:
                asked, target, absent = swapped, 0, True
        if config.compounds and rng.random() < config.compounds:
            asked = compounded(asked, rng) or asked
        previous = questions[n - 1] if n else None
        if previous is not None and previous.article == question.article and rng.random() < config.follow_ups:
            asked = ranker_question(pronominalise(asked, previous.question), previous.question)
        groups.append(Group(asked, tuple(sentences.pair(i, config.reads_previous) for i in chosen), target,
                            () if absent else question.answers))
    rng.shuffle(groups)
    return groups
