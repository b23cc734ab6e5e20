"""SQuAD data: the public question sets that train and measure the answer ranker.

Both `qa train` and `qa eval squad` read SQuAD JSON through this module, so
the arrows run one way: training and evaluation depend on the data, never on
each other. The article split lives here too, because training must never
read what evaluation holds out.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..documents import Document
from ..errors import QAError

SHARED_EVAL = Path("..") / "shared" / "eval"
DEFAULT_SQUAD = SHARED_EVAL / "squad-v2.0-dev-part-a.json"
#: Validation, calibration and the held-out check (SQuAD's development data).
DEFAULT_SQUAD_FILES = (SHARED_EVAL / "squad-v1.1-dev-train.json", DEFAULT_SQUAD)
#: Training only: SQuAD's training data (no article in common with the development files).
DEFAULT_TRAINING_FILES = (SHARED_EVAL / "squad-v1.1-train.json", SHARED_EVAL / "squad-v2.0-train-first10.json")
SPLIT_SEED = 20261127
#: Articles of the development files drawn for validation: (with unanswerable questions, without).
VALIDATION_ARTICLES = (2, 4)


@dataclass(frozen=True)
class SquadQuestion:
    """A SQuAD question: its paragraph (`doc_id`), gold answers, and article title."""

    question: str
    doc_id: str
    answers: tuple[str, ...]
    impossible: bool
    article: str


def load_squad(paths: str | Path | Sequence[str | Path], *, articles: slice = slice(None)
               ) -> tuple[list[Document], list[SquadQuestion]]:
    """Paragraphs as documents and their questions from one or more SQuAD JSON files (v1.1 or 2.0).

    The files form one corpus: a paragraph found in several files is one
    document, and a question asked of it in several files is one question.
    `articles` slices the articles, in the order they first appear.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    documents: dict[str, Document] = {}
    questions: dict[tuple[str, str], SquadQuestion] = {}
    titles: list[str] = []
    for path in paths:
        data = read_json(path, "SQuAD JSON (data[].paragraphs[].context/qas)")
        try:
            for article in data["data"]:
                if article["title"] not in titles:
                    titles.append(article["title"])
                for number, paragraph in enumerate(article["paragraphs"]):
                    context = paragraph["context"]
                    if context not in documents:
                        documents[context] = Document(doc_id=f"{article['title']}-{number}", text=context,
                                                      title=article["title"].replace("_", " "))
                    doc_id = documents[context].doc_id
                    for qa in paragraph["qas"]:
                        answers = tuple(a["text"] for a in qa.get("answers", []))
                        questions.setdefault((qa["question"], doc_id), SquadQuestion(
                            qa["question"], doc_id, answers, bool(qa.get("is_impossible")), article["title"]))
        except (KeyError, TypeError) as exc:
            raise QAError(f"{path} is not SQuAD JSON: missing {exc}") from exc
    kept = set(titles[articles])
    article_of = {d.doc_id: d.doc_id.rsplit("-", 1)[0] for d in documents.values()}
    return ([d for d in documents.values() if article_of[d.doc_id] in kept],
            [q for q in questions.values() if q.article in kept])


def article_of(doc_id: str) -> str:
    """The article a paragraph belongs to: its doc_id without the paragraph's number (`Title-3` -> `Title`)."""
    return doc_id.rsplit("-", 1)[0]


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file, or a `QAError` that says which file is wanted and where the project's copy lives."""
    path = Path(path)
    if not path.is_file():
        raise QAError(f"{path} not found: pass the path to the {what} file "
                      f"(the project's copy lives in ../shared/eval/)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QAError(f"cannot read {path}: {exc}") from exc


def split_articles(questions: Sequence[SquadQuestion], *, seed: int = SPLIT_SEED,
                   validation_articles: tuple[int, int] = VALIDATION_ARTICLES) -> dict[str, str]:
    """Each development article's split: "held-out", "validation" or "training".

    The last half of the articles that have unanswerable questions is held
    out for evaluation and never read by `qa train`; of the rest, a seeded
    draw goes to validation (calibration) and the others to training.
    """
    order = list(dict.fromkeys(q.article for q in questions))
    with_unanswerable = [a for a in order if any(q.impossible for q in questions if q.article == a)]
    held_out = set(with_unanswerable[len(with_unanswerable) // 2:])
    rng = random.Random(seed)
    rest_with = [a for a in with_unanswerable if a not in held_out]
    rest_without = [a for a in order if a not in held_out and a not in with_unanswerable]
    first, second = validation_articles
    validation = set(rng.sample(rest_with, min(first, max(0, len(rest_with) - 1))))
    validation |= set(rng.sample(rest_without, min(second, max(0, len(rest_without) - 1))))
    return {a: "held-out" if a in held_out else "validation" if a in validation else "training" for a in order}


# -- simulated follow-ups ------------------------------------------------------------


_WORD = re.compile(r"[A-Za-z0-9][\w-]*")
_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those"}
_BEFORE_OBJECT = {"of", "to", "in", "on", "for", "with", "by", "from", "about", "at", "into", "over", "under",
                  "against", "between", "during", "after", "before", "did", "does", "do", "make", "made"}


def pronominalise(question: str, previous: str) -> str:
    """`question` with the longest whole phrase it shares with `previous` replaced by a pronoun.

    A phrase counts when it starts and ends with content words and is not part of a longer noun
    phrase (the words around it are function words); "Who made Ralph earl?" after "Where was Ralph
    earl of?" becomes "Who made it earl?". Without a shared phrase the question is unchanged.
    """
    from ..lexical import _stopwords

    stop = set(_stopwords()) | {"did", "does", "do", "was", "were", "is", "are", "has", "have", "had"}
    words = list(_WORD.finditer(question))
    earlier = " " + " ".join(w.lower() for w in _WORD.findall(previous)) + " "
    best: tuple[int, int] | None = None
    for i in range(len(words)):
        for j in range(min(len(words), i + 6), i, -1):
            first, last = words[i].group().lower(), words[j - 1].group().lower()
            if last in stop or (first in stop and first not in _DETERMINERS):
                continue
            left = words[i - 1].group().lower() if i > 0 else ""
            if left in _DETERMINERS and i > 1:
                left = words[i - 2].group().lower()
            right = words[j].group().lower() if j < len(words) else ""
            if (left and left not in stop) or (right and right not in stop):
                continue
            phrase = " ".join(w.group().lower() for w in words[i:j])
            if f" {phrase} " in earlier and (best is None or j - i > best[1] - best[0]):
                best = (i, j)
    if best is None:
        return question
    i, j = best
    start = words[i - 1].start() if i > 0 and words[i - 1].group().lower() in _DETERMINERS else words[i].start()
    end = words[j - 1].end()
    last = words[j - 1].group().lower()
    plural = last.endswith("s") and not last.endswith("ss") and len(last) > 3
    before = question[:start].split()
    if question[end:end + 2] == "'s":
        pronoun, end = ("their" if plural else "its"), end + 2
    elif before and before[-1].lower() in _BEFORE_OBJECT:
        pronoun = "them" if plural else "it"
    else:
        pronoun = "they" if plural else "it"
    return question[:start] + pronoun + question[end:]


# -- simulated unanswerable questions -------------------------------------------------


_NUMBER = re.compile(r"^\d[\d,.]*$")
_YEAR = re.compile(r"^(1\d{3}|20\d{2})$")
_SENTENCE_END = {".", "!", "?", "\"", ".\"", "?\"", "!\""}


_NAME_WORD = re.compile(r"[A-Za-z0-9][\w'-]*(?:[.,]\d+)*")


def names_and_numbers(text: str) -> list[str]:
    """What a question can ask about by name: runs of capitalised words that do not open a sentence, and numbers."""
    return [text[start:end] for start, end in _named(text)]


def _named(text: str) -> list[tuple[int, int]]:
    words = list(_NAME_WORD.finditer(text))
    found: list[tuple[int, int]] = []
    run: list[re.Match[str]] = []
    for k, word in enumerate(words):
        between = text[words[k - 1].end():word.start()] if k else ""
        capital = word.group()[0].isupper() and not (k == 0 or between.strip() in _SENTENCE_END)
        if capital and run and between == " ":
            run.append(word)
            continue
        if run:
            found.append((run[0].start(), run[-1].end()))
        run = [word] if capital else []
        if not capital and _NUMBER.match(word.group()):
            found.append((word.start(), word.end()))
    if run:
        found.append((run[0].start(), run[-1].end()))
    return found


def _kind(name: str) -> str:
    return "number" if _NUMBER.match(name) else f"{len(name.split())} words"


def swapped_question(question: str, sentence: str, paragraph: str, names: Sequence[str],
                     rng: random.Random) -> str | None:
    """`question` made to ask about something its paragraph never mentions, or None if it names nothing to swap.

    One of the names or numbers that the question shares with its answering
    `sentence` is replaced by one of the same kind (as many words; a year
    moved by 3 to 40 years) drawn from `names`, which come from the same
    article (so the new question stays plausible) but not from `paragraph`.
    The paragraph then no longer answers it: this is how SQuAD 2.0's writers
    made their "entity swap" unanswerable questions, done by rule.
    """
    shared = [(start, end) for start, end in _named(question) if normalise(question[start:end]) in normalise(sentence)]
    if not shared:
        return None
    start, end = rng.choice(shared)
    asked = question[start:end]
    here = normalise(paragraph) + " " + normalise(question)
    if _YEAR.match(asked):
        options = [str(int(asked) + step) for step in range(-40, 41) if abs(step) >= 3]
    else:
        options = sorted({name for name in names if _kind(name) == _kind(asked)})
    options = [name for name in options if normalise(name) not in here]
    if not options:
        return None
    return question[:start] + rng.choice(options) + question[end:]


# -- matching answers ---------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case with whitespace collapsed, for containment checks."""
    return " ".join(text.split()).lower()


def contains_any(text: str, answers: Sequence[str]) -> bool:
    """Whether `text` contains one of the answer strings (case and whitespace ignored)."""
    haystack = normalise(text)
    return any(normalise(a) in haystack for a in answers if a.strip())


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def squad_normalise(text: str) -> str:
    """SQuAD's official answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer (SQuAD's EM)."""
    return float(any(squad_normalise(prediction) == squad_normalise(a) for a in answers))


def f1(prediction: str, answers: Sequence[str]) -> float:
    """The best token F1 of the prediction against the gold answers (SQuAD's F1)."""
    best = 0.0
    predicted = squad_normalise(prediction).split()
    for answer in answers:
        gold = squad_normalise(answer).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
