"""Answering: rank the candidate sentences, cite the ones that answer, lead with the short answer.

The composer is extractive, so every claim is the document's own words:
1. Candidates come from the retrieval side in one call
   (`qa.candidates.question_candidates`): the question checked, the
   candidate sentences with their texts, passages and evidence. From then
   on the question only goes to the ranker and into the answer; nothing
   searches again (citing reads the retriever's sentences and documents).
2. History only for follow-ups. A question is first asked alone. The
   previous turn joins it only when the question refers back to something
   it does not name (a third-person pronoun or demonstrative, or an opening
   such as "and" or "what about"), or when a short question (at most two
   content terms, "How many troops?") cannot be answered alone and the
   conversation makes it answerable. So a standalone question keeps its
   citations after an unrelated turn, and an off-topic one is still refused.
3. Questions about the document itself (who wrote it, where it appeared,
   what it recommends, what it is about) are answered from the document's
   own frame lines (`qa.frame`, which the retrieval side asks first).
4. Ranking. The learned answer ranker (`qa.ranker`) gives every candidate
   the probability that it answers, and the probability that the document
   answers at all. Below its calibrated threshold the answer says the
   document does not say, and nothing is cited as support.
5. Citing. The most probable sentence is cited first; for a question that asks
   what a named thing is ("What is the PC/GNA?"), the likeliest candidate
   that introduces the term is (`qa.definitions`). Another is cited only
   when it adds support the first lacks: the first is not yet convincing
   (the chance that none cited answers is above 1 - `cite_confidence`) and
   the other is likely enough (at least `cite_ratio` of the first's
   probability). Chosen neighbours in a document are cited as one span. The
   sentence after [1] joins it when it opens by referring back to it ("The
   first of which is …") and the ranker gives it some chance of answering
   (`continuation_share`): [1] often only announces what that sentence says.
   A cited sentence that ends with a colon or is a question brings in what
   it announces or what answers it (the command after "To install it,
   run:", the answer after a FAQ's question).
6. The short answer. The cross-encoder also marks the phrase inside
   citation [1] that answers (a span of its words); it leads the answer when
   its calibrated probability of being right is at least one half.
7. Confidence is the calibrated probability that citation [1] answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .candidates import Candidates, find_candidates, normalise, question_candidates
from .config import Settings
from .ranker import DEFAULT_RANKER, AnswerRanker, Ranking, Span, load_ranker
from .retrieval import Passage, Retriever, Where, check_question

NOT_FOUND = "The document does not say. I could not find a passage that answers this question."


@dataclass(frozen=True)
class Citation:
    """A cited span: `text == document.text[start:end]`; `context` is its chunk, for display.

    `context_start`/`context_end` locate the chunk in the document, so the
    cited span sits at `start - context_start` inside `context`. `score` is
    the ranker's probability that the span's best sentence answers. `also_in`
    names other documents that hold the same sentence word for word (a copy
    of a file): it is cited once. `page` is the 1-based PDF page where the
    span starts (None for other files); `section` the headings above it
    ("Budget › 2025"; None where there are none).
    """

    n: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    score: float
    context: str
    context_start: int
    context_end: int
    also_in: tuple[str, ...] = ()
    page: int | None = None
    section: str | None = None


@dataclass(frozen=True)
class Phrase:
    """The short answer inside citation [1]: `text == document.text[start:end]`.

    `score` is the calibrated probability that it is the answer (token F1 of
    at least 0.5 against an answer a person would give, as SQuAD measures it).
    """

    text: str
    doc_id: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Answer:
    """What the assistant says, and on what it rests.

    Attributes:
        question: the question as asked.
        text: the answer, with markers [n] after each cited sentence.
        found: False when the document does not answer; then `citations` is empty.
        citations: numbered supports, [1] first.
        query: the text searched (with the previous question when the question leans on it).
        closest: when not found, the nearest passages, which do not answer.
        confidence: the calibrated probability that citation [1] answers the question (when not found, that
            the best candidate would have).
        phrase: the short answer inside citation [1], or None when the model is unsure of one.
        follow_up: whether the previous turn was used (the question leans on it).
        answerable: the ranker's calibrated probability that the documents answer the question; the
            assistant refuses below the model's threshold (`Settings.min_answerable` overrides it).
        mode: "extractive" (the document's sentences) or "generated" (written by a language model from the
            citations, every sentence checked: `qa.generation`).
        written: when generated, each written sentence with its citations and support score.
        notice: one line on how the answer was made when it matters (sentences dropped, the model failed).
    """

    question: str
    text: str
    found: bool
    citations: tuple[Citation, ...] = ()
    query: str = ""
    closest: tuple[Passage, ...] = ()
    confidence: float = 0.0
    phrase: Phrase | None = None
    follow_up: bool = False
    answerable: float = 0.0
    mode: str = "extractive"
    written: tuple[Any, ...] = ()  # qa.generation.WrittenSentence
    notice: str = ""


def location(item: Citation | Passage) -> str:
    """Where a citation or passage lies, in words: "page 2, Budget › 2025" ("" without pages or headings)."""
    parts = [f"page {item.page}"] if item.page is not None else []
    return ", ".join([*parts, item.section] if item.section else parts)


def answer_dict(answer: Answer) -> dict[str, Any]:
    """The JSON shape of an answer, as `qa ask --json` and the HTTP API give it."""
    phrase = answer.phrase
    return {
        "question": answer.question, "answer": answer.text, "found": answer.found, "query": answer.query,
        "phrase": None if phrase is None else {"text": phrase.text, "doc_id": phrase.doc_id, "start": phrase.start,
                                               "end": phrase.end, "score": phrase.score},
        "confidence": answer.confidence, "answerable": answer.answerable, "follow_up": answer.follow_up,
        "citations": [{"n": c.n, "doc_id": c.doc_id, "title": c.title, "start": c.start, "end": c.end,
                       "text": c.text, "score": c.score, "context_start": c.context_start,
                       "context_end": c.context_end, "also_in": list(c.also_in), "page": c.page,
                       "section": c.section} for c in answer.citations],
        "mode": answer.mode, "notice": answer.notice,
        "written": [{"text": w.text, "citations": list(w.citations), "support": w.support} for w in answer.written],
    }


class Assistant:
    """Answers questions over a `Retriever`'s documents with cited sentences."""

    def __init__(self, retriever: Retriever, *, settings: Settings | None = None,
                 ranker: AnswerRanker | None = None) -> None:
        self.retriever = retriever
        self.settings = settings or retriever.settings
        self.ranker = ranker or load_ranker(self.settings.ranker or str(DEFAULT_RANKER),
                                            threads=self.settings.query_threads, workers=self.settings.ranker_workers)

    @property
    def threshold(self) -> float:
        """P(the document answers) below which the assistant refuses."""
        return self.ranker.min_answerable if self.settings.min_answerable is None else self.settings.min_answerable

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), *, where: Where = None) -> Answer:
        """Answer `question`; `history` holds earlier (question, answer text) turns, oldest first;
        `where` limits the answer to some documents (see `Retriever.allowed`)."""
        question = check_question(question, self.settings)
        found = question_candidates(self.retriever, question, history, self.settings, where=where)
        if found.framed is not None:  # a question about the document itself, answered by its frame lines
            return self._answer(question, found, [(i, found.framed) for i in found.sentences], None,
                                confidence=found.framed, answerable=found.framed)
        leans = found.follow_up
        ranking = self.ranker.rank(question, **self._reading(found))
        if found.with_history is not None and ranking.answerable < self.threshold:
            # A short question alone is not answered: maybe it leans on the conversation ("How many troops?").
            ranked = self.ranker.rank(question, **self._reading(found.with_history))
            if ranked.answerable > ranking.answerable:
                found, ranking, leans = found.with_history, ranked, True
        if not found.sentences or ranking.answerable < self.threshold:
            confidence = self._confidence(ranking)
            return Answer(question, NOT_FOUND, False, (), found.query, found.ranked, confidence, None, leans,
                          round(ranking.answerable, 4))
        return self.cite(question, found, ranking, follow_up=leans)

    def cite(self, question: str, found: Candidates, ranking: Ranking, *, follow_up: bool = False) -> Answer:
        """The answer once the ranker has judged the candidates and the document answers: [1] the most probable
        sentence, more only as `Settings` says (`cited`, `continuation`), and the short answer inside [1]."""
        probabilities, copies = self._without_copies(found, ranking)
        defining = set(found.defining)
        probabilities = introduction_first([k for k, i in enumerate(ranking.read) if i in defining], probabilities)
        chosen = cited(probabilities, self.settings.max_citations, self.settings.cite_confidence,
                       self.settings.cite_ratio)
        following = continuation(self.retriever, [found.sentences[i] for i in ranking.read], probabilities,
                                 chosen[0], self.settings.continuation_share)
        if following is not None and following not in chosen:
            chosen.append(following)
        pairs = [(found.sentences[ranking.read[i]], float(ranking.probabilities[i])) for i in chosen]
        best = chosen[0]
        span = ranking.spans[best] if ranking.spans else None
        if announced(self.retriever, found.sentences[ranking.read[best]]) != found.sentences[ranking.read[best]]:
            span = None  # [1] announces its answer after it, where the span model did not read
        phrase = self._phrase(found.sentences[ranking.read[best]], span, float(ranking.probabilities[best]))
        return self._answer(question, found, pairs, phrase, confidence=self._confidence(ranking),
                            follow_up=follow_up, answerable=ranking.answerable, copies=copies)

    def _without_copies(self, found: Candidates, ranking: Ranking) -> tuple[list[float], dict[int, list[str]]]:
        """The probabilities with every repeat of a sentence (the same words in another document) set to 0,
        and, by sentence id, the documents that repeat it."""
        sentences = self.retriever.sentences
        probabilities = ranking.probabilities.tolist()
        first: dict[str, int] = {}
        copies: dict[int, list[str]] = {}
        for i in sorted(range(len(probabilities)), key=lambda i: -probabilities[i]):
            sentence_id = found.sentences[ranking.read[i]]
            words = normalise(sentences[sentence_id].text)
            if words in first:
                probabilities[i] = 0.0
                copies.setdefault(first[words], []).append(sentences[sentence_id].doc_id)
            else:
                first[words] = sentence_id
        return probabilities, copies

    def rank(self, question: str, history: Sequence[tuple[str, str]] = (), where: Where = None
             ) -> tuple[Candidates, Ranking]:
        """The searched candidate sentences (`qa.candidates.find_candidates`, `history` used as given) and the
        ranker's verdict on them, before anything is cited."""
        found = find_candidates(self.retriever, question, history, self.settings, where=where)
        return found, self.ranker.rank(question, **self._reading(found))

    def _reading(self, found: Candidates) -> dict[str, Any]:
        """What the ranker reads of the candidates (`AnswerRanker.rank`'s arguments after the question): all of
        it handed over by retrieval, nothing searched again."""
        return {"texts": list(found.texts), "titles": list(found.titles), "evidence": found.evidence,
                "previous": list(found.previous) if self.ranker.reads_previous else None,
                "previous_question": found.previous_question, "size": self.settings.rerank_sentences,
                "must_read": found.introducing, "precise": self.settings.precise_reads}

    def _confidence(self, ranking: Ranking) -> float:
        if not len(ranking.probabilities):
            return 0.0
        return round(self.ranker.confidence(float(ranking.probabilities.max()), ranking.answerable,
                                            self.settings.answerable_share), 4)

    def _phrase(self, sentence_id: int, span: Span | None, probability: float) -> Phrase | None:
        """The span as a `Phrase` of the document, if the model is sure enough of it."""
        if span is None:
            return None
        score = self.ranker.phrase_probability(span, probability)
        if score < (self.ranker.min_phrase if self.settings.min_phrase is None else self.settings.min_phrase):
            return None
        sentence = self.retriever.sentences[sentence_id]
        start, end = whole_words(sentence.text, *collapsed_to_original(sentence.text, span.start, span.end))
        cell_end = sentence.text.find(" | ", start, end)
        if cell_end >= 0:  # a short answer is one table cell, not a run of them
            start, end = whole_words(sentence.text, start, cell_end)
        if start >= end:
            return None
        document = self.retriever.document(sentence.doc_id)
        start, end = sentence.start + start, sentence.start + end
        return Phrase(document.text[start:end], sentence.doc_id, start, end, round(score, 4))

    def _answer(self, question: str, found: Candidates, chosen: list[tuple[int, float]], phrase: Phrase | None, *,
                confidence: float, answerable: float, follow_up: bool = False,
                copies: dict[int, list[str]] | None = None) -> Answer:
        citations = self._cite(found, chosen, copies or {})
        text = " ".join(f"{normalise(c.text)} [{c.n}]" for c in citations)
        return Answer(question, text, True, tuple(citations), found.query, (), confidence, phrase, follow_up,
                      round(answerable, 4))

    def _cite(self, found: Candidates, chosen: list[tuple[int, float]], copies: dict[int, list[str]]
              ) -> list[Citation]:
        """Citations for the chosen (sentence id, probability) pairs, best first.

        Chosen sentences that stand next to each other in a document are cited
        as one span, in document order, at the place of the better of them: a
        sentence such as "The first of which is …" reads right only after the
        one it continues, and a reader sees one highlight instead of two. A span
        that ends with a colon or a question runs on through what it announces (`announced`).
        """
        retriever = self.retriever
        passage_of = dict(zip(found.sentences, found.passages, strict=True))
        citations = []
        for n, span in enumerate(neighbour_runs(retriever, with_announced(retriever, chosen)), start=1):
            first, last = retriever.sentences[span[0][0]], retriever.sentences[span[-1][0]]
            best = max(span, key=lambda item: item[1])
            passage = passage_of[best[0]]
            document = retriever.document(first.doc_id)
            context_start, context_end = min(passage.start, first.start), max(passage.end, last.end)
            citations.append(Citation(n, first.doc_id, document.title, first.start, last.end,
                                      document.text[first.start:last.end], round(best[1], 4),
                                      document.text[context_start:context_end], context_start, context_end,
                                      tuple(dict.fromkeys(d for i, _ in span for d in copies.get(i, ()))),
                                      document.page_at(first.start), document.section_at(first.start)))
        return citations


def introduction_first(introducers: Sequence[int], probabilities: list[float]) -> list[float]:
    """The probabilities with the likeliest of the `introducers` (positions of the sentences that introduce the
    term a "What is X?" question asks about: `Candidates.defining`) raised to the top, so that it is cited first;
    unchanged when there are none."""
    introducers = [k for k in introducers if probabilities[k] > 0.0]
    if not introducers:
        return probabilities
    best = max(introducers, key=lambda k: probabilities[k])
    top = max(probabilities)
    if probabilities[best] >= top:
        return probabilities
    raised = list(probabilities)
    raised[best] = top
    raised = [p if k == best or p < top else p * 0.999 for k, p in enumerate(raised)]
    return raised


def cited(probabilities: Sequence[float], limit: int, confidence: float, ratio: float) -> list[int]:
    """Which candidates to cite, best first: the most probable; then each next one while the chance that
    none of those chosen answers is above 1 - `confidence` and it is at least `ratio` times as probable
    as the first (at most `limit`)."""
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:limit]
    chosen: list[int] = []
    missed = 1.0
    for i in order:
        if chosen and (1.0 - missed >= confidence or probabilities[i] < ratio * probabilities[chosen[0]]):
            break
        chosen.append(i)
        missed *= 1.0 - float(probabilities[i])
    return chosen


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span widened to whole words (a word piece can end inside a word) and trimmed of the spaces and
    punctuation at its edges."""
    while 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while 0 < end < len(text) and text[end - 1].isalnum() and text[end].isalnum():
        end += 1
    while start < end and not text[start].isalnum() and text[start] not in "$£€(\"'":
        start += 1
    while end > start and not text[end - 1].isalnum() and text[end - 1] not in "%)\"'":
        end -= 1
    return start, end


def collapsed_to_original(text: str, start: int, end: int) -> tuple[int, int]:
    """Offsets in `" ".join(text.split())` mapped back to offsets in `text`."""
    positions: list[int] = []
    for match in re.finditer(r"\S+", text):
        if positions:
            positions.append(match.start() - 1)  # the collapsed space stands for the gap before this word
        positions.extend(range(match.start(), match.end()))
    if not positions:
        return 0, 0
    start = positions[min(start, len(positions) - 1)]
    end = positions[min(end, len(positions)) - 1] + 1 if end > 0 else start
    return start, max(start, end)


# A sentence opening like this refers back to the one before it: a pronoun, a demonstrative, "such",
# "which", or an ordinal that picks from what was just listed ("The first of which is …").
_OPENS_WITH_REFERENCE = re.compile(
    r"[\"'\u201c\u2018(]?\s*(?:this|that|these|those|it|its|they|their|them|he|she|his|her|such|which"
    r"|the (?:first|second|third|last|former|latter))\b", re.IGNORECASE)


def opens_with_reference(text: str) -> bool:
    """Whether a sentence opens by referring back to the one before it ("These include …")."""
    return bool(_OPENS_WITH_REFERENCE.match(text))


def continuation(retriever: Retriever, sentence_ids: Sequence[int], probabilities: Sequence[float], best: int,
                 share: float) -> int | None:
    """Which candidate continues citation [1]'s sentence, if any: the next sentence of its paragraph, read
    by the ranker, opening with a reference back to it, and at least `share` as likely to answer.

    `sentence_ids` and `probabilities` are parallel; `best` indexes [1]. The sentence is cited with [1]
    as one span: "This plan could face several immediate challenges." announces an answer that "The
    first of which is the ongoing proxy war …" gives.
    """
    position = {sentence_id: k for k, sentence_id in enumerate(sentence_ids)}
    following = position.get(sentence_ids[best] + 1)
    if following is None or probabilities[following] < share * probabilities[best] or probabilities[best] <= 0:
        return None
    first, second = retriever.sentences[sentence_ids[best]], retriever.sentences[sentence_ids[following]]
    if first.doc_id != second.doc_id or not opens_with_reference(second.text):
        return None
    if _PARAGRAPH_BREAK.search(retriever.document(first.doc_id).text, first.end, second.start):
        return None
    return following


#: Most sentences that an announcing sentence (ending with a colon or a question mark) brings into its citation.
ANNOUNCED_SENTENCES = 3


def announced(retriever: Retriever, sentence_id: int) -> int:
    """The last sentence of a citation that ends with this one. A sentence ending with a colon announces
    what follows ("Start the chat on the bundled article:", then the command; "The steps are:", then a
    list), and a question in the document is answered by what follows it (a FAQ's "How do I reset the
    password?"): either alone does not answer, so the citation runs on to the next sentence, even after
    a blank line, and on through that block, crossing another blank line only after another
    announcement ("Stop the server and run:"), at most `ANNOUNCED_SENTENCES` sentences in all."""
    sentences = retriever.sentences
    last = sentence_id
    while last - sentence_id < ANNOUNCED_SENTENCES and last + 1 < len(sentences):
        following = sentences[last + 1]
        if following.doc_id != sentences[sentence_id].doc_id:
            break
        if not announces(sentences[last].text) and (last == sentence_id or _PARAGRAPH_BREAK.search(
                retriever.document(following.doc_id).text, sentences[last].end, following.start)):
            break
        last += 1
    return last


def with_announced(retriever: Retriever, chosen: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """`chosen` (sentence id, probability), best first, followed by what each chosen sentence announces
    (`announced`) that is not chosen already, at the probability of the sentence announcing it."""
    taken = {sentence_id for sentence_id, _ in chosen}
    more = []
    for sentence_id, probability in chosen:
        for following in range(sentence_id + 1, announced(retriever, sentence_id) + 1):
            if following not in taken:
                taken.add(following)
                more.append((following, probability))
    return [*chosen, *more]


def announces(text: str) -> bool:
    """Whether a sentence announces what follows it: it ends with a colon or a question mark."""
    return text.rstrip().rstrip("*_\"'\u201d\u2019)").endswith((":", "?"))


def neighbour_runs(retriever: Retriever, chosen: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """`chosen` (sentence id, probability), best first, grouped into runs of consecutive sentences of one
    paragraph; each run in document order, the runs in the order of their best sentence. A blank line
    between two sentences keeps them apart: a cited span never crosses paragraphs, except from a sentence
    ending with a colon or a question mark to what it announces (`announced`)."""
    sentences = retriever.sentences
    runs: list[list[tuple[int, float]]] = []
    for item in sorted(chosen):
        previous = runs[-1][-1][0] if runs else -2
        if (item[0] == previous + 1 and sentences[item[0]].doc_id == sentences[previous].doc_id
                and (announced(retriever, previous) > previous
                     or not _PARAGRAPH_BREAK.search(retriever.document(sentences[item[0]].doc_id).text,
                                                    sentences[previous].end, sentences[item[0]].start))):
            runs[-1].append(item)
        else:
            runs.append([item])
    rank = {item[0]: n for n, item in enumerate(chosen)}
    return sorted(runs, key=lambda run: min(rank[item[0]] for item in run))


_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
