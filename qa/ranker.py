"""Answer ranking: how likely each candidate sentence answers the question, learned from public data.

Three learned stages, all made by `qa train` (`qa/training/`) from SQuAD and
shipped in `qa/models/answer-ranker/`:

1. A logistic regression over retrieval evidence shortlists the few
   sentences worth reading closely (the cross-encoder's cost grows with each).
   Sentences that the conversation or the document's edges put forward are
   always read.
2. A cross-encoder reads the question (in a conversation, followed by the
   previous question) together with one candidate sentence and its
   document's title, and gives a relevance score. It is the bundled
   all-MiniLM-L6-v2, fine-tuned to rank answering sentences first, exported
   to ONNX with int8 weights, so answering needs neither torch nor a download. Candidates whose int8 scores
   are too close to order are read again with float activations (`reread_close`, `qa.precise`).
3. A logistic layer turns that score, retrieval evidence (meaning, shared
   terms, the passage's rank) and the conversation (was the sentence cited
   in the last answer, does it follow a cited one) into the probability that
   the sentence answers. A second logistic layer gives the probability that
   the document answers at all. Both are fitted on validation articles that
   the cross-encoder never saw, which is what calibrates them.
4. The answer's confidence, P(citation [1] answers), is fitted last, on what
   answering does with the validation questions over their whole corpus, as
   two factors (`Confidence`): P([1] answers | the documents answer) and
   P(the documents answer), the second movable to a known share of answered
   questions.

The manifest records the training files and their sha256, the seed, the
validation figures, the decision thresholds and the licence; loading checks
the model file against it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import Settings
from .errors import ModelUnavailableError
from .precise import close_candidates

log = logging.getLogger(__name__)

DEFAULT_RANKER = Path(__file__).resolve().parent / "models" / "answer-ranker"
MANIFEST = "manifest.json"
MODEL_FILE = "ranker.onnx"
FORMAT_VERSION = 1

# What the logistic layers see, in order; `qa train` fits one weight per name.
FIRST_STAGE_FEATURES = ("dense", "overlap", "overlap_with_previous", "passage")
SENTENCE_FEATURES = ("relevance", "relevance_gap", "dense_gap", "overlap_gap", "overlap_with_previous_gap", "passage",
                     "cited_before", "follows_cited")
QUESTION_FEATURES = ("best_relevance", "best_probability", "second_gap", "best_dense_capped")
# Every feature a layer may name in its manifest (older models name the absolute similarities). The defaults
# above leave out how much of the question's wording or embedding the sentences share, taken absolutely: SQuAD's
# questions were written looking at their paragraph and share far more of its words than a user's question does,
# so a layer fitted on that level refuses paraphrased questions. Compared between candidates, it still ranks them.
# Only low similarity is kept as evidence, capped at `dense_ceiling` (see `question_features`): a question that
# hardly resembles any sentence is off-topic, whoever wrote it.
# `number_agreement` (in models calibrated before the night of 2026-12-07) fitted a weight below zero although a
# number in the span marks an answer three times as often: the cross-encoder's score already holds it, and held
# out (five contiguous folds of the calibration candidates) the layer predicted worse with it than without
# (log-loss 0.1209 against 0.1205 for one model, 0.1232 against 0.1226 for another; docs/training.md).
KNOWN_SENTENCE_FEATURES = (*SENTENCE_FEATURES, "dense", "overlap", "overlap_with_previous", "number_agreement")
KNOWN_QUESTION_FEATURES = (*QUESTION_FEATURES, "best_dense", "best_overlap")
PHRASE_FEATURES = ("span_log_probability", "sentence_probability", "span_words")
#: Most word pieces a short answer spans.
MAX_PHRASE_TOKENS = 30


@dataclass(frozen=True)
class Evidence:
    """What the retriever and the conversation say about one candidate sentence (each about 0..1).

    Attributes:
        dense: cosine similarity of the sentence and the question embeddings.
        overlap: IDF-weighted share of the question's terms in the sentence.
        overlap_with_previous: the same over the sentence and the one before it.
        passage: score of the best retrieved passage holding the sentence, relative to the best passage (0 if none).
        cited_before: 1 if the previous answer cited the sentence.
        follows_cited: 1 if the sentence comes right after one the previous answer cited.
        edge: 1 if the sentence is a candidate for being at the start or end of its document.
    """

    dense: float
    overlap: float
    overlap_with_previous: float
    passage: float
    cited_before: float = 0.0
    follows_cited: float = 0.0
    edge: float = 0.0


@dataclass(frozen=True)
class Span:
    """The short answer the cross-encoder finds inside a sentence.

    `start`/`end` are character offsets in the sentence with its whitespace
    collapsed (`" ".join(text.split())`); `probability` is the model's
    probability of exactly this span among the sentence's spans.
    """

    start: int
    end: int
    probability: float


@dataclass(frozen=True)
class Ranking:
    """The ranker's verdict over a question's candidates.

    Attributes:
        read: shape (n,), int; which of the given candidates the cross-encoder read (the shortlist).
        probabilities: shape (n,), float; the probability that each of those answers.
        answerable: the probability that one of the candidates answers the question.
        relevance: shape (n,), float; the cross-encoder's raw scores of those.
        spans: the short answer inside each of those (None where the model finds none).
    """

    read: np.ndarray
    probabilities: np.ndarray
    answerable: float
    relevance: np.ndarray
    spans: tuple[Span | None, ...] = ()


class AnswerRanker:
    """The shipped cross-encoder and calibration layers (see the module docstring)."""

    def __init__(self, path: str | Path = DEFAULT_RANKER, *, threads: int = 1, workers: int = 1,
                 relevance_only: bool = False) -> None:
        """Load the model at `path`, to run on `threads` intra-op threads, `workers` pairs at a time;
        `relevance_only` accepts one not yet calibrated (while training)."""
        path = Path(path)
        self.path = path
        self.manifest = read_manifest(path)
        model_file = path / MODEL_FILE
        expected = self.manifest["files"][MODEL_FILE]
        if sha256(model_file) != expected:
            raise ModelUnavailableError(
                f"answer ranker at {path}: {MODEL_FILE} does not match the sha256 in {MANIFEST}; "
                "reinstall qa or regenerate the model with `qa train`"
            )
        import onnxruntime
        from tokenizers import Tokenizer

        from .embedding import resolve_model

        self.max_length = int(self.manifest["max_length"])
        self.reads_previous = bool(self.manifest.get("reads_previous", False))
        self.tokenizer = Tokenizer.from_file(str(Path(resolve_model(self.manifest["tokenizer"])) / "tokenizer.json"))
        # The longer side loses its end: a long question keeps its start and the sentence keeps room.
        self.tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        # Pairs are independent runs, and ONNX Runtime lets go of the GIL while it runs one, so `workers`
        # pairs are read at once: no thread waits on another mid-run, unlike intra-op threads (qa.threads).
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="qa-ranker") if workers > 1 else None
        self._options = options
        self._precise_session: Any = None  # the float graph, built on first need (`reread_close`)
        self._precise_lock = threading.Lock()
        # How close two int8 scores must be for their order to be re-read in float, measured when the model was
        # calibrated (`qa.training.calibration.close_margin`); 0 for a model made before, never re-read.
        self.close_margin = 0.0
        calibration = self.manifest.get("calibration") or {}
        self._first = _Logistic.from_json(self.manifest["first_stage"], FIRST_STAGE_FEATURES)
        if calibration:
            self._sentence = _Logistic.from_json(calibration["sentence"], KNOWN_SENTENCE_FEATURES)
            self._question = _Logistic.from_json(calibration["question"], KNOWN_QUESTION_FEATURES)
            self.dense_ceiling = float(calibration.get("dense_ceiling", 1.0))
            self.close_margin = float(calibration.get("close_margin", 0.0))
            self.min_answerable = float(calibration["min_answerable"])
            self._confidence = Confidence.from_json(calibration["confidence"]) if "confidence" in calibration else None
            self._phrase = _Logistic.from_json(calibration["phrase"]["model"], PHRASE_FEATURES)
            self.min_phrase = float(calibration["phrase"]["min_probability"])
        elif not relevance_only:
            raise ModelUnavailableError(f"answer ranker at {path} is not calibrated; regenerate it with `qa train`")

    def pair(self, text: str, title: str, previous: str = "") -> str:
        """The sentence side of a pair as this model reads it: with the sentence before (`previous`, "" for a
        document's first) only if it was trained so (`reads_previous` in its manifest)."""
        return pair_text(text, title, previous if self.reads_previous else None)

    def relevance(self, question: str, texts: Sequence[str], titles: Sequence[str]) -> np.ndarray:
        """Cross-encoder scores of (question, sentence) pairs, each sentence read on its own; shape (len(texts),)."""
        return self.relevance_of_pairs(question, [self.pair(t, title) for t, title in zip(texts, titles, strict=True)])

    def relevance_of_pairs(self, question: str, pair_texts: Sequence[str]) -> np.ndarray:
        """Cross-encoder scores of `question` against ready sentence sides (see `pair_text`)."""
        return self.read_pairs(question, pair_texts)[0]

    def read_pairs(self, question: str, pair_texts: Sequence[str]) -> tuple[np.ndarray, list[Span | None]]:
        """Cross-encoder scores of `question` against ready sentence sides, and the best short answer in each.

        Each pair is read on its own. The int8 model quantizes its activations with one scale per run, so
        in a batch a pair's score depended on the other pairs (by up to 0.4 on the bundled article), and
        padding every pair to the longest wasted about a fifth of the work. Runs being independent, up to
        `workers` of them go at once (docs/speed.md); the scores do not depend on how many.
        """
        if self._pool and len(pair_texts) > 1:
            # Longest first, so that the workers finish together: a long pair started last keeps one waiting.
            order = sorted(range(len(pair_texts)), key=lambda k: -len(pair_texts[k]))
            done = dict(zip(order, self._pool.map(lambda k: self._read(question, pair_texts[k]), order), strict=True))
            reads = [done[k] for k in range(len(pair_texts))]
        else:
            reads = [self._read(question, text) for text in pair_texts]
        return np.asarray([score for score, _ in reads], dtype=np.float32), [span for _, span in reads]

    def reread_close(self, question: str, pair_texts: Sequence[str], relevance: np.ndarray,
                     spans: Sequence[Span | None], most: int) -> tuple[np.ndarray, list[Span | None]]:
        """The scores and short answers with the candidates closest to the best read again in float.

        Those whose int8 score is within `close_margin` of the best, at most `most` of them (the best
        included), are re-read by the same weights with float activations (`qa.precise`): within that margin
        their int8 order is the quantization's noise, not the model's judgement. Nothing changes when fewer
        than two are that close, `most` < 2, or the model records no margin.
        """
        relevance, spans = np.asarray(relevance, dtype=np.float32).copy(), list(spans)
        close = close_candidates(relevance, self.close_margin, most)
        if len(close) < 2:
            return relevance, spans
        session = self._precise()
        if session is None:
            return relevance, spans
        if self._pool:
            reads = list(self._pool.map(lambda k: self._read(question, pair_texts[k], session), close))
        else:
            reads = [self._read(question, pair_texts[k], session) for k in close]
        for k, (score, span) in zip(close, reads, strict=True):
            relevance[k], spans[k] = score, span
        return relevance, spans

    def prepare(self) -> None:
        """Build now what answering may need later: the float graph, if this model re-reads (a server calls
        this at start, so that no question waits for it and its memory is taken before the first)."""
        if self.close_margin > 0:
            self._precise()

    def _precise(self) -> Any:
        """The float session of `qa.precise`, built once, on first need or by `prepare` (about 1 s; 110 MB of
        memory, 57 of them the session and the rest what building it leaves in the allocator); None, with a
        warning, for a model whose graph cannot be rewritten, which then answers from its int8 scores alone."""
        with self._precise_lock:
            if self._precise_session is None and self.close_margin > 0:
                import onnxruntime

                from .precise import float_graph

                try:
                    graph = float_graph(self.path / MODEL_FILE).SerializeToString()
                except ModelUnavailableError as exc:  # the int8 scores stand; only their re-reading is lost
                    log.warning("%s; close candidates are not read again in float", exc)
                    self.close_margin = 0.0
                    return None
                self._precise_session = onnxruntime.InferenceSession(graph, self._options,
                                                                     providers=["CPUExecutionProvider"])
            return self._precise_session

    def _read(self, question: str, text: str, session: Any = None) -> tuple[float, Span | None]:
        """One pair, start to end (in a worker: the tokenizer and the span search overlap the other's run), by
        `session` (the int8 model unless given)."""
        encoded = self.tokenizer.encode(question, text)
        feed = {
            "input_ids": np.asarray([encoded.ids], dtype=np.int64),
            "attention_mask": np.asarray([encoded.attention_mask], dtype=np.int64),
            "token_type_ids": np.asarray([encoded.type_ids], dtype=np.int64),
        }
        score, spans = (session or self.session).run(None, feed)
        span = best_span(spans[0], encoded.offsets, encoded.sequence_ids, len(text.split(" [SEP] ")[0]))
        return float(np.asarray(score).reshape(-1)[0]), span

    def rank(self, question: str, texts: Sequence[str], titles: Sequence[str], evidence: Sequence[Evidence],
             *, previous: Sequence[str] | None = None, previous_question: str | None = None,
             size: int = Settings.rerank_sentences, must_read: Sequence[int] = (),
             precise: int = Settings.precise_reads) -> Ranking:
        """Probabilities that the shortlisted candidates answer `question` (asked after `previous_question`);
        `previous` holds the sentence before each candidate in its document ("" for a first sentence); `size` of
        them are shortlisted for the cross-encoder (`Settings.rerank_sentences`), and `must_read` besides; at most
        `precise` of them, too close to the best to order in int8, are read again in float (`reread_close`)."""
        read = shortlist(self._first, evidence, size)
        if len(must_read):
            read = np.asarray(sorted({*read.tolist(), *must_read}), dtype=np.int64)
        before = previous if previous is not None else [""] * len(texts)
        asked = ranker_question(question, previous_question)
        pair_texts = [self.pair(texts[i], titles[i], before[i]) for i in read]
        relevance, spans = self.read_pairs(asked, pair_texts)
        relevance, spans = self.reread_close(asked, pair_texts, relevance, spans, precise)
        phrases = [span_text(texts[i], span) for i, span in zip(read.tolist(), spans, strict=True)]
        return self.calibrate(read, relevance, [evidence[i] for i in read], spans,
                              agreement=number_agreement(question, phrases))

    def calibrate(self, read: np.ndarray, relevance: np.ndarray, evidence: Sequence[Evidence],
                  spans: Sequence[Span | None] = (), *, agreement: np.ndarray | None = None) -> Ranking:
        """The logistic layers over given cross-encoder scores (split out for training and tests); `agreement` is
        each sentence's `number_agreement`."""
        if len(relevance) == 0:
            return Ranking(read, np.zeros(0), 0.0, relevance, ())
        rows = sentence_features(relevance, evidence, self._sentence.names, agreement=agreement)
        probabilities = self._sentence.probability(rows)
        question = question_features(relevance, probabilities, evidence, self._question.names, self.dense_ceiling)
        answerable = float(self._question.probability(question[None])[0])
        return Ranking(read, probabilities, answerable, relevance, tuple(spans))

    def confidence(self, first: float, answerable: float, share: float | None = None) -> float:
        """The calibrated probability that citation [1] answers, from its sentence probability and P(answerable);
        `share` is the share of questions the documents answer, where it is known (see `Confidence`)."""
        if self._confidence is None:
            raise ModelUnavailableError(f"answer ranker at {self.path} has no confidence layer; "
                                        "regenerate it with `qa train`")
        return self._confidence.probability(first, answerable, share)

    def phrase_probability(self, span: Span, sentence_probability: float) -> float:
        """The calibrated probability that `span` is the short answer (it overlaps a gold answer by F1 >= 0.5)."""
        return float(self._phrase.probability(phrase_features(span, sentence_probability)[None])[0])


def ranker_question(question: str, previous_question: str | None) -> str:
    """The question side of a pair: in a conversation, the previous question follows a separator."""
    return f"{question} [SEP] {previous_question}" if previous_question else question


TITLE_WORDS = 8
PREVIOUS_WORDS = 16


def pair_text(text: str, title: str, previous: str | None = None) -> str:
    """The sentence side of a pair: the sentence, then the first `TITLE_WORDS` words of its document's title.

    Training titles (SQuAD's) have at most five words; a longer title costs word pieces on every pair
    and tells the model little more. For a model that reads the sentence before (`previous` not None; ""
    for a document's first sentence), its first `PREVIOUS_WORDS` words come between the two: a sentence
    that says "he" or "it" names its subject there. The sentence stays first, so a short answer's
    character offsets are the sentence's own.
    """
    sentence, heading = " ".join(text.split()), " ".join(title.split()[:TITLE_WORDS])
    if previous is None:
        return f"{sentence} [SEP] {heading}"
    return f"{sentence} [SEP] {' '.join(previous.split()[:PREVIOUS_WORDS])} [SEP] {heading}"


def shortlist(first_stage: _Logistic, evidence: Sequence[Evidence], size: int) -> np.ndarray:
    """Which candidates the cross-encoder reads, in their given order: the `size` most likely by retrieval
    evidence (`first_stage`), and every one that the conversation or the document's edges put forward."""
    always = {i for i, e in enumerate(evidence) if e.cited_before or e.follows_cited or e.edge}
    rest = [i for i in range(len(evidence)) if i not in always]
    likely = first_stage.probability(first_stage_features([evidence[i] for i in rest])) if rest else np.zeros(0)
    best = [rest[i] for i in np.argsort(-likely, kind="stable")[:size]]
    return np.asarray(sorted([*best, *always]), dtype=np.int64)


def best_span(logits: np.ndarray, offsets: Sequence[tuple[int, int]], sequence_ids: Sequence[int | None],
              sentence_chars: int) -> Span | None:
    """The most probable span of word pieces inside the sentence (not its title), as character offsets.

    `logits` has shape (tokens, 2): start and end scores. Its probability is
    P(start) * P(end) with both normalised over the sentence's word pieces.
    """
    inside = np.asarray([side == 1 and high <= sentence_chars and high > low
                         for side, (low, high) in zip(sequence_ids, offsets, strict=True)], dtype=bool)
    if not inside.any():
        return None
    start = np.where(inside, logits[: len(inside), 0], -np.inf)
    end = np.where(inside, logits[: len(inside), 1], -np.inf)
    start = start - np.logaddexp.reduce(start[inside])
    end = end - np.logaddexp.reduce(end[inside])
    pairs = start[:, None] + end[None, :]
    n = len(inside)
    allowed = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), MAX_PHRASE_TOKENS)
    pairs = np.where(allowed & inside[:, None] & inside[None, :], pairs, -np.inf)
    first, last = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
    return Span(int(offsets[first][0]), int(offsets[last][1]), float(np.exp(pairs[first, last])))


def phrase_features(span: Span, sentence_probability: float) -> np.ndarray:
    """The row of `PHRASE_FEATURES` for one span."""
    return np.asarray([np.log(max(span.probability, 1e-9)), sentence_probability,
                       float(min(span.end - span.start, 200)) / 20.0])


CONFIDENCE_FEATURES = ("first_logit", "answerable_logit")


def confidence_features(first: float, answerable: float) -> np.ndarray:
    """The row of `CONFIDENCE_FEATURES`: the [1] sentence's and the question's probabilities, as logits."""
    return np.asarray([_logit(first), _logit(answerable)])


ANSWERABLE_FEATURES = ("answerable_logit",)


@dataclass(frozen=True)
class Confidence:
    """P(citation [1] answers) = P([1] answers | the documents answer) x P(the documents answer).

    Both factors are fitted on what `Assistant` does with validation questions over their whole corpus
    (`qa train`'s last stage), not on training-style candidates. They are kept apart because only the
    second depends on how often questions go unanswered: `answerable_share` is that share among the
    calibration questions, and where a user knows theirs, Bayes' rule moves the second factor to it
    (the prior-shift correction of Saerens et al., 2002); the first factor does not change.
    """

    right_if_answerable: _Logistic
    answerable: _Logistic
    answerable_share: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Confidence:
        try:
            return cls(_Logistic.from_json(data["right_if_answerable"], CONFIDENCE_FEATURES),
                       _Logistic.from_json(data["answerable"], ANSWERABLE_FEATURES), float(data["answerable_share"]))
        except (KeyError, TypeError) as exc:
            raise ModelUnavailableError("answer ranker: its confidence layer has another format; "
                                        "regenerate it with `qa train --confidence-only`") from exc

    def to_json(self) -> dict[str, Any]:
        return {"right_if_answerable": self.right_if_answerable.to_json(), "answerable": self.answerable.to_json(),
                "answerable_share": self.answerable_share}

    def probability(self, first: float, answerable: float, share: float | None = None) -> float:
        right = float(self.right_if_answerable.probability(confidence_features(first, answerable)[None])[0])
        answers = float(self.answerable.probability(np.asarray([[_logit(answerable)]]))[0])
        if share is not None:
            answers = shifted_prior(answers, self.answerable_share, share)
        return right * answers


def shifted_prior(probability: float, old_share: float, new_share: float) -> float:
    """A posterior computed where a class had prior `old_share`, moved by Bayes' rule to prior `new_share`."""
    yes = probability * new_share / old_share
    no = (1.0 - probability) * (1.0 - new_share) / (1.0 - old_share)
    return yes / (yes + no) if yes + no > 0 else 0.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def first_stage_features(evidence: Sequence[Evidence]) -> np.ndarray:
    """Rows of `FIRST_STAGE_FEATURES`, shape (n, len(FIRST_STAGE_FEATURES))."""
    return np.asarray([[e.dense, e.overlap, e.overlap_with_previous, e.passage] for e in evidence],
                      dtype=np.float64).reshape(len(evidence), len(FIRST_STAGE_FEATURES))


#: A question that asks for a quantity ("How many troops?", "troop numbers", "how long", "what percentage").
_ASKS_NUMBER = re.compile(r"\bhow\s+(?:many|much|long|far|old|big|large|tall|high|often)\b|\bnumbers?\b"
                          r"|\bpercent(?:age)?\b|\bwhat\s+(?:year|amount|size|share|proportion)\b", re.I)
#: What a quantity is written with: digits or number words.
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
                     r"forty|fifty|sixty|seventy|eighty|ninety|hundreds?|thousands?|millions?|billions?|dozens?|"
                     r"half|twice|once|several)\b", re.I)


def number_agreement(question: str, phrases: Sequence[str | None]) -> np.ndarray:
    """Whether each sentence's short answer (`phrases`) is of the kind the question asks for, where it asks for a
    quantity: 1 when the phrase holds a number, -1 when it holds none, 0 for every sentence of other questions.

    The principle is answer-type agreement: "How many troops?" is answered by a number. The weight it gets is
    learned with the other sentence features, on the calibration questions."""
    if not _ASKS_NUMBER.search(question.split(" [SEP] ")[0]):
        return np.zeros(len(phrases))
    return np.asarray([1.0 if phrase and _NUMBER.search(phrase) else -1.0 for phrase in phrases])


def span_text(sentence: str, span: Span | None) -> str | None:
    """The words of `span` in `sentence` (whose whitespace the span's offsets count collapsed)."""
    return None if span is None else " ".join(sentence.split())[span.start:span.end]


def sentence_features(relevance: np.ndarray, evidence: Sequence[Evidence],
                      names: Sequence[str] = SENTENCE_FEATURES, *, agreement: np.ndarray | None = None
                      ) -> np.ndarray:
    """Rows of the named sentence features (see `KNOWN_SENTENCE_FEATURES`), shape (n, len(names)).

    A `_gap` feature is the value minus the best value among the candidates read; `agreement` is
    `number_agreement` (0 where not given).
    """
    n = len(evidence)
    columns = {
        "number_agreement": np.zeros(n) if agreement is None else np.asarray(agreement, dtype=np.float64).reshape(n),
        "relevance": np.asarray(relevance, dtype=np.float64).reshape(n),
        "dense": np.asarray([e.dense for e in evidence], dtype=np.float64),
        "overlap": np.asarray([e.overlap for e in evidence], dtype=np.float64),
        "overlap_with_previous": np.asarray([e.overlap_with_previous for e in evidence], dtype=np.float64),
        "passage": np.asarray([e.passage for e in evidence], dtype=np.float64),
        "cited_before": np.asarray([e.cited_before for e in evidence], dtype=np.float64),
        "follows_cited": np.asarray([e.follows_cited for e in evidence], dtype=np.float64),
    }
    for name in ("relevance", "dense", "overlap", "overlap_with_previous"):
        values = columns[name]
        columns[f"{name}_gap"] = values - (values.max() if n else 0.0)
    return np.stack([columns[name] for name in names], axis=1) if n else np.zeros((0, len(names)))


def question_features(relevance: np.ndarray, probabilities: np.ndarray, evidence: Sequence[Evidence],
                      names: Sequence[str] = QUESTION_FEATURES, dense_ceiling: float = 1.0) -> np.ndarray:
    """The row of the named question features (see `KNOWN_QUESTION_FEATURES`) for one question.

    `best_dense_capped` is the best dense similarity, but no more than `dense_ceiling`: `qa train` sets that
    to a low quantile of questions asked of a corpus without their article (`DENSE_CEILING_QUANTILE`), so
    that only similarity lower than almost every unanswered question's counts, as a sign of an off-topic one.
    """
    ordered = np.sort(relevance)[::-1]
    best_dense = max(e.dense for e in evidence)
    values = {
        "best_dense_capped": min(best_dense, dense_ceiling),
        "best_relevance": float(ordered[0]),
        "best_probability": float(probabilities.max()),
        "second_gap": float(ordered[0] - ordered[1]) if len(ordered) > 1 else 0.0,
        "best_dense": best_dense,
        "best_overlap": max(max(e.overlap, e.overlap_with_previous) for e in evidence),
    }
    return np.asarray([values[name] for name in names])


@dataclass(frozen=True)
class _Logistic:
    """A fitted logistic regression: standardised features, weights, bias."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def from_json(cls, data: dict[str, Any], known: Sequence[str]) -> _Logistic:
        """The layer saved in a manifest; it names its features, each of which must be one of `known`."""
        names = tuple(data["features"])
        if not names or not set(names) <= set(known) or len(data["weights"]) != len(names):
            raise ModelUnavailableError(f"answer ranker: a layer names features {list(names)}, this version knows "
                                        f"{list(known)}; regenerate it with `qa train`")
        return cls(names, np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["weights"]),
                   float(data["bias"]))

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.names), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias}

    def probability(self, rows: np.ndarray) -> np.ndarray:
        logits = ((rows - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The ranker's manifest; raises `ModelUnavailableError` if it is missing or unreadable."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelUnavailableError(
            f"no answer ranker at {path} ({MANIFEST} not found); reinstall qa or run `qa train --out {path}`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"answer ranker at {path}: {MANIFEST} is unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelUnavailableError(f"answer ranker at {path} has another format; regenerate it with `qa train`")
    return manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelUnavailableError(f"answer ranker: cannot read {path} ({exc.strerror or exc})") from exc
    return digest.hexdigest()


@lru_cache(maxsize=4)
def load_ranker(path: str = str(DEFAULT_RANKER), threads: int = 1, workers: int = 1) -> AnswerRanker:
    """One `AnswerRanker` per path, thread count and worker count per process."""
    ranker = AnswerRanker(path, threads=threads, workers=workers)
    log.info("loaded answer ranker from %s", path)
    return ranker
