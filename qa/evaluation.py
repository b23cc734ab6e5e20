"""Evaluation: measure retrieval and citations on public and development data.

`qa eval squad PATH` runs open retrieval over every paragraph of a SQuAD 2.0
file as one corpus, comparing BM25-only, dense-only and the hybrid from one
index build, then the full `ask` path (citation containment, refusals,
latency). `qa eval article PATH` checks the article development set and
prints every failure with what was cited instead.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .documents import Document
from .errors import QAError
from .metrics import expected_calibration_error, percentile, recall_at, reciprocal_rank, unique_in_order
from .training.squad import (
    DEFAULT_SQUAD_FILES,
    SHARED_EVAL,
    SquadQuestion,
    contains_any,
    exact_match,
    f1,
    load_squad,
    normalise,
    pronominalise,
    read_json,
    split_articles,
)

DEFAULT_ARTICLE = SHARED_EVAL / "article_dev.json"
RETRIEVERS = {"BM25 only": 0.0, "dense only": 1.0}
REFUSAL_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
SPLITS = ("all", "held-out", "validation", "training")


# -- SQuAD -----------------------------------------------------------------------


def evaluate_squad(paths: str | Path | Sequence[str | Path], *, limit: int | None = None,
                   settings: Settings | None = None, articles: slice = slice(None), split: str = "all",
                   out: Any = None) -> dict[str, Any]:
    """Run the SQuAD evaluation and print Markdown tables; returns the figures.

    Every paragraph of the files is one document of the corpus; `split` keeps
    the questions of the articles `qa train` held out, validated or trained on.
    """
    from .answer import Assistant
    from .retrieval import Retriever, embedder_for

    settings = settings or Settings()
    out = out or sys.stdout
    documents, questions = load_squad(paths, articles=articles)
    if split != "all":
        splits = split_articles(questions)
        questions = [q for q in questions if splits[q.article] == split]
    answerable = [q for q in questions if not q.impossible]
    impossible = [q for q in questions if q.impossible]
    if limit is not None:
        answerable, impossible = answerable[:limit], impossible[:limit]

    embedder_for(settings).embed_passages(["warm up"] * 8)  # time the build, not the model's first call
    started = time.perf_counter()
    retriever = Retriever.build(documents, settings=settings)
    build_seconds = time.perf_counter() - started
    texts = [s.text for s in retriever.sentences]
    started = time.perf_counter()
    retriever.embedder.embed_passages(texts)
    raw_seconds = time.perf_counter() - started

    results: dict[str, Any] = {"questions": len(answerable), "paragraphs": len(documents)}
    retrieval_rows = []
    for name, weight in {**RETRIEVERS, "hybrid (default)": None}.items():
        recalls = {1: 0.0, 5: 0.0, 20: 0.0}
        mrr = 0.0
        for q in answerable:
            vector = retriever.embedder.embed_query(q.question)
            ranked = unique_in_order([p.doc_id for p in retriever.rank(q.question, vector, k=80, dense_weight=weight)])
            for k in recalls:
                recalls[k] += recall_at(ranked, q.doc_id, k)
            mrr += reciprocal_rank(ranked, q.doc_id, 10)
        n = max(1, len(answerable))
        row = {"R@1": recalls[1] / n, "R@5": recalls[5] / n, "R@20": recalls[20] / n, "MRR@10": mrr / n}
        retrieval_rows.append((name, row))
        results[name] = row

    threshold = settings.min_answerable if settings.min_answerable is not None else Assistant(retriever).threshold
    # One pass that never refuses and always returns the short answer; the thresholds apply afterwards.
    assistant = Assistant(retriever, settings=dataclasses.replace(settings, min_answerable=0.0, min_phrase=0.0))
    min_phrase = settings.min_phrase if settings.min_phrase is not None else assistant.ranker.min_phrase
    retriever.embedder._cache.clear()
    latencies = []
    alone: dict[str, Any] = {}
    for q in [*answerable, *impossible]:
        started = time.perf_counter()
        alone[q.question + q.doc_id] = assistant.ask(q.question)
        latencies.append(time.perf_counter() - started)
    scored = [score_answer(alone[q.question + q.doc_id], q, threshold, min_phrase, retriever) for q in answerable]
    results.update(summarise(scored))
    results["ask p50 ms"] = percentile(latencies, 50) * 1000
    results["ask p95 ms"] = percentile(latencies, 95) * 1000
    unanswerable_p = [alone[q.question + q.doc_id].answerable for q in impossible]
    answerable_p = [alone[q.question + q.doc_id].answerable for q in answerable]
    refusal_rows = []
    for value in sorted({*REFUSAL_THRESHOLDS, threshold}):
        false_refusals = sum(c < value for c in answerable_p) / max(1, len(answerable_p))
        refusals = sum(c < value for c in unanswerable_p) / max(1, len(unanswerable_p))
        refusal_rows.append((value, refusals, false_refusals))
    results["false refusals"] = next(f for t, _, f in refusal_rows if t == threshold)
    results["unanswerable refused"] = next(r for t, r, _ in refusal_rows if t == threshold)
    answered = [(alone[q.question + q.doc_id], q) for q in [*answerable, *impossible]
                if alone[q.question + q.doc_id].answerable >= threshold]
    results.update(calibration_errors(assistant.ranker, answered,
                                      share=len(answerable) / max(1, len(answerable) + len(impossible))))
    results.update(gold_paragraph_reading(assistant.ranker, retriever, answerable))
    results.update(conversation_rates(assistant, answerable, alone, threshold))

    print(f"SQuAD open retrieval: {len(documents)} paragraphs as one corpus; {split} questions: "
          f"{len(answerable)} answerable, {len(impossible)} unanswerable; model {settings.model}\n", file=out)
    print("| retriever | R@1 | R@5 | R@20 | MRR@10 |\n|---|---|---|---|---|", file=out)
    for name, row in retrieval_rows:
        print(f"| {name} | {row['R@1']:.3f} | {row['R@5']:.3f} | {row['R@20']:.3f} | {row['MRR@10']:.3f} |", file=out)
    print("\n| ask path (open setting: the whole corpus) | value |\n|---|---|", file=out)
    for name, value in ask_rows(results):
        print(f"| {name} | {value} |", file=out)
    print(f"| index build | {build_seconds:.1f} s, {len(texts) / build_seconds:.0f} sentences/s |", file=out)
    print(f"| raw encode of the same sentences | {raw_seconds:.1f} s, {len(texts) / raw_seconds:.0f} sentences/s |",
          file=out)
    print(f"| build throughput / raw encode throughput | {raw_seconds / build_seconds:.2f} |", file=out)
    print("\n| refuse below P(answerable) | refused unanswerable | false refusals on answerable |\n|---|---|---|",
          file=out)
    for value, refusals, false_refusals in refusal_rows:
        mark = " (the model's threshold)" if value == threshold else ""
        print(f"| {value:.3f}{mark} | {refusals:.1%} | {false_refusals:.1%} |", file=out)
    results["build sentences/s"] = len(texts) / build_seconds
    results["raw sentences/s"] = len(texts) / raw_seconds
    return results


def sentences_spanned(retriever: Any, citation: Any) -> int:
    """How many of the document's sentences a citation spans (neighbours are cited as one span)."""
    return sum(citation.start <= retriever.sentences[i].start < citation.end
               for i in retriever.sentence_ids(citation.doc_id))


@dataclass(frozen=True)
class Scored:
    """One answerable question's outcome at the given thresholds."""

    refused: bool
    first: bool
    any_of_three: bool
    citations: int
    sentences: int
    first_chars: int
    phrase_f1: float
    phrase_em: float
    phrase_shown: bool
    follow_up: bool


def score_answer(answer: Any, question: SquadQuestion, threshold: float, min_phrase: float, retriever: Any) -> Scored:
    """How an answer (made without refusing) fares against the gold answers once the thresholds apply."""
    refused = answer.answerable < threshold or not answer.citations
    cited = [] if refused else [c.text for c in answer.citations]
    phrase = "" if refused or answer.phrase is None else answer.phrase.text
    return Scored(
        refused=refused,
        first=bool(cited) and contains_any(cited[0], question.answers),
        any_of_three=any(contains_any(c, question.answers) for c in cited[:3]),
        citations=len(cited),
        sentences=0 if refused else sum(sentences_spanned(retriever, c) for c in answer.citations),
        first_chars=len(cited[0]) if cited else 0,
        phrase_f1=f1(phrase, question.answers) if phrase else 0.0,
        phrase_em=exact_match(phrase, question.answers) if phrase else 0.0,
        phrase_shown=bool(phrase) and answer.phrase.score >= min_phrase,
        follow_up=answer.follow_up,
    )


def summarise(scored: Sequence[Scored]) -> dict[str, float]:
    """Rates over answerable questions (see `ask_rows` for their names)."""
    n = max(1, len(scored))
    answered = [s for s in scored if not s.refused]
    right = [s for s in answered if s.first]
    shown = [s for s in answered if s.phrase_shown]
    return {
        "citation@1": sum(s.first for s in scored) / n,
        "citation@3": sum(s.any_of_three for s in scored) / n,
        "citation@1 chars": sum(s.first_chars for s in answered) / max(1, len(answered)),
        "citations per answer": sum(s.citations for s in answered) / max(1, len(answered)),
        "right answers citing more than one sentence": sum(s.sentences > 1 for s in right) / max(1, len(right)),
        "phrase F1": 100 * sum(s.phrase_f1 for s in scored) / n,
        "phrase EM": 100 * sum(s.phrase_em for s in scored) / n,
        "phrase shown": len(shown) / max(1, len(answered)),
        "phrase F1 when shown": 100 * sum(s.phrase_f1 for s in shown) / max(1, len(shown)),
    }


def ask_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The ask-path table's rows, in reading order."""
    rows = [
        ("citation [1] contains a gold answer", f"{results['citation@1']:.1%}"),
        ("one of citations [1]-[3] contains a gold answer", f"{results['citation@3']:.1%}"),
        ("false refusals (answerable questions refused)", f"{results['false refusals']:.1%}"),
        ("unanswerable questions refused", f"{results['unanswerable refused']:.1%}"),
        ("short answer F1 / EM (SQuAD normalisation; refused counts 0)",
         f"{results['phrase F1']:.1f} / {results['phrase EM']:.1f}"),
        ("short answer shown (calibrated) / its F1 when shown",
         f"{results['phrase shown']:.1%} / {results['phrase F1 when shown']:.1f}"),
        ("given the gold paragraph: short answer F1 / EM",
         f"{results['gold paragraph F1']:.1f} / {results['gold paragraph EM']:.1f}"),
        ("confidence ECE (10 bins, answered questions)", f"{results['confidence ECE']:.3f}"),
        ("the same, answerable questions only", f"{results['confidence ECE, answerable questions']:.3f}"),
        (f"the same, told the share of questions the documents answer ({results['answerable share']:.0%})",
         f"{results['confidence ECE, told the share']:.3f}"),
        ("citations per answer, mean", f"{results['citations per answer']:.2f}"),
        ("right answers citing more than one sentence",
         f"{results['right answers citing more than one sentence']:.1%}"),
        ("citation [1] length, mean", f"{results['citation@1 chars']:.0f} characters"),
        ("standalone questions whose [1] is unchanged after an unrelated turn",
         f"{results['standalone unchanged']:.1%} (of {results['standalone questions']})"),
        ("follow-ups (a shared phrase made a pronoun): [1] holds a gold answer",
         f"{results['follow-up citation@1']:.1%} (of {results['follow-up questions']}; asked in full alone: "
         f"{results['follow-up asked alone citation@1']:.1%})"),
        ("ask latency p50 / p95", f"{results['ask p50 ms']:.1f} ms / {results['ask p95 ms']:.1f} ms"),
    ]
    return rows


def calibration_errors(ranker: Any, answered: Sequence[tuple[Any, SquadQuestion]], share: float
                       ) -> dict[str, float]:
    """ECE of the answers' confidence: as given; over answerable questions only; and as it would be with
    `Settings.answerable_share` set to `share`, this split's share of answerable questions (a user who
    knows how often their questions go unanswered), recomputed from each answer's [1] and P(answerable).
    Answers about the document itself keep their own confidence."""
    from .frame import FRAME_CONFIDENCE

    def right(answer: Any, question: SquadQuestion) -> bool:
        return bool(answer.citations) and not question.impossible and contains_any(answer.citations[0].text,
                                                                                   question.answers)

    def told(answer: Any) -> float:
        if not answer.citations or answer.answerable == answer.confidence == FRAME_CONFIDENCE:
            return answer.confidence
        return ranker.confidence(answer.citations[0].score, answer.answerable, share)

    outcomes = [right(a, q) for a, q in answered]
    return {
        "confidence ECE": expected_calibration_error([a.confidence for a, _ in answered], outcomes),
        "confidence ECE, answerable questions": expected_calibration_error(
            [a.confidence for a, q in answered if not q.impossible],
            [r for r, (_, q) in zip(outcomes, answered, strict=True) if not q.impossible]),
        "confidence ECE, told the share": expected_calibration_error([told(a) for a, _ in answered], outcomes),
        "answerable share": share,
    }


def gold_paragraph_reading(ranker: Any, retriever: Any, questions: Sequence[SquadQuestion]) -> dict[str, float]:
    """Short-answer EM/F1 given the gold paragraph, as published readers are measured: the cross-encoder reads
    each of its sentences, and the best one's span is the answer."""
    em = score = 0.0
    for q in questions:
        sentence_ids = list(retriever.sentence_ids(q.doc_id))
        title = retriever.document(q.doc_id).title
        texts = [ranker.pair(retriever.sentences[i].text, title, retriever.sentence_before(i)) for i in sentence_ids]
        relevance, spans = ranker.read_pairs(q.question, texts)
        best = int(relevance.argmax())
        span = spans[best]
        phrase = texts[best].split(" [SEP] ")[0][span.start:span.end] if span is not None else ""
        em += exact_match(phrase, q.answers)
        score += f1(phrase, q.answers)
    n = max(1, len(questions))
    return {"gold paragraph F1": 100 * score / n, "gold paragraph EM": 100 * em / n}


def conversation_rates(assistant: Any, questions: Sequence[SquadQuestion], alone: dict[str, Any],
                       threshold: float) -> dict[str, float]:
    """History only for follow-ups, measured two ways on the same questions.

    Standalone: each question asked after an unrelated turn (the first question of another article, with its
    answer); its [1] should not change. Follow-ups: a question asked right after the previous question of
    its article, with the phrase they share made a pronoun (as `qa train` simulates follow-ups); its [1]
    should hold a gold answer, as it does for the full question asked alone.
    """
    firsts: dict[str, SquadQuestion] = {}
    for q in questions:
        firsts.setdefault(q.article, q)
    articles = list(firsts)
    unchanged = standalone = 0
    for q in questions:
        other = firsts[articles[(articles.index(q.article) + 1) % len(articles)]]
        if other.article == q.article:
            continue
        turn = (other.question, alone[other.question + other.doc_id].text)
        before, after = alone[q.question + q.doc_id], assistant.ask(q.question, history=[turn])
        standalone += 1
        unchanged += (_first_span(before) == _first_span(after)
                      and (before.answerable >= threshold) == (after.answerable >= threshold))
    follow_ups = right = right_alone = 0
    for previous, q in zip(questions, questions[1:], strict=False):
        asked = pronominalise(q.question, previous.question)
        if previous.article != q.article or asked == q.question:
            continue
        turn = (previous.question, alone[previous.question + previous.doc_id].text)
        answer = assistant.ask(asked, history=[turn])
        follow_ups += 1
        right += (answer.answerable >= threshold and bool(answer.citations)
                  and contains_any(answer.citations[0].text, q.answers))
        first = alone[q.question + q.doc_id]
        right_alone += (first.answerable >= threshold and bool(first.citations)
                        and contains_any(first.citations[0].text, q.answers))
    return {"standalone unchanged": unchanged / max(1, standalone), "standalone questions": standalone,
            "follow-up citation@1": right / max(1, follow_ups), "follow-up questions": follow_ups,
            "follow-up asked alone citation@1": right_alone / max(1, follow_ups)}


def _first_span(answer: Any) -> tuple[str, int, int] | None:
    return (answer.citations[0].doc_id, answer.citations[0].start, answer.citations[0].end) if answer.citations \
        else None


# -- article development set ----------------------------------------------------------


def evaluate_article(path: str | Path, *, assistant: Any = None, settings: Settings | None = None,
                     out: Any = None) -> dict[str, Any]:
    """Check a development set of questions with expected evidence; print each failure with what was cited.

    The set is `article_dev.json`'s format: questions over the bundled article, or, where it has a
    `documents` list, over those documents indexed together as one collection (items then name their
    `doc`, and [1] must come from it), as a user who uploaded several files asks them.
    """
    from .answer import Assistant

    out = out or sys.stdout
    data = read_json(path, "article development set (article_dev.json)")
    assistant = assistant or Assistant(_set_retriever(data, path), settings=settings)
    failures: list[str] = []
    counts = {"evidence in [1]": 0, "key in answer": 0, "off-topic refused": 0, "conversation turns": 0}

    def from_doc(item: Any, answer: Any) -> bool:
        return not isinstance(item, dict) or "doc" not in item or answer.citations[0].doc_id == item["doc"]

    for item in data["single"]:
        answer = assistant.ask(item["q"])
        cited = answer.citations[0].text if answer.citations else ""
        evidence_ok = answer.found and normalise(item["evidence"]) in normalise(cited) and from_doc(item, answer)
        key_ok = answer.found and contains_any(answer.text, item["key"])
        counts["evidence in [1]"] += evidence_ok
        counts["key in answer"] += key_ok
        if not (evidence_ok and key_ok):
            failures.append(f"{item['q']!r}: expected {item['evidence']!r}; cited {normalise(cited)[:160]!r}")
    for item in data["unanswerable"]:
        question = item["q"] if isinstance(item, dict) else item
        answer = assistant.ask(question)
        counts["off-topic refused"] += not answer.found
        if answer.found:
            failures.append(f"{question!r}: should be refused; cited {normalise(answer.citations[0].text)[:160]!r}")
    turns = 0
    for conversation in data["conversations"]:
        history: list[tuple[str, str]] = []
        for turn in conversation["turns"]:
            turns += 1
            answer = assistant.ask(turn["q"], history=history)
            cited = answer.citations[0].text if answer.citations else ""
            ok = answer.found and normalise(turn["evidence"]) in normalise(cited) and from_doc(conversation, answer)
            ok = ok and (not turn.get("key") or contains_any(answer.text, turn["key"]))
            counts["conversation turns"] += ok
            if not ok:
                failures.append(f"turn {turn['q']!r} (searched {answer.query!r}): expected {turn['evidence']!r}; "
                                f"cited {normalise(cited)[:160]!r}")
            history.append((turn["q"], answer.text))
    totals = {"evidence in [1]": len(data["single"]), "key in answer": len(data["single"]),
              "off-topic refused": len(data["unanswerable"]), "conversation turns": turns}
    print("| article check | passed |\n|---|---|", file=out)
    for name, value in counts.items():
        print(f"| {name} | {value}/{totals[name]} |", file=out)
    if failures:
        print("\nFailures:", file=out)
        for failure in failures:
            print(f"- {failure}", file=out)
    return {"counts": counts, "totals": totals, "failures": failures}


def _set_retriever(data: dict[str, Any], path: str | Path) -> Any:
    """The collection a development set asks about: its own `documents`, or the bundled article."""
    from .retrieval import Retriever

    if "documents" not in data:
        return Retriever.default()
    try:
        documents = [Document(d["id"], d["text"], title=d.get("title", d["id"])) for d in data["documents"]]
    except (KeyError, TypeError) as exc:
        raise QAError(f"{path}: each of `documents` needs an `id` and a `text` (missing {exc})") from exc
    return Retriever.build(documents)


# -- written answers ---------------------------------------------------------------------------------------------


def evaluate_written(settings: Settings, *, article: str | Path = DEFAULT_ARTICLE, squad: int = 20,
                     out: Any = None) -> dict[str, dict[str, float]]:
    """Written answers from the model `settings` name, next to the extractive path, on the article development
    set and `squad` held-out SQuAD questions (spread over the held-out articles, their paragraphs as the corpus).

    Per set: questions the ranker answered (the model is asked only then), the share of written sentences that
    passed the check, the share of answers that fell back to the extractive one (the model failed, or nothing it
    wrote passed), whether citation [1] holds the evidence (written answers, and the extractive ones for the same
    questions), time to the first token and in all (medians), and the extractive path's time.
    """
    from .answer import Assistant
    from .generation import Writer
    from .retrieval import Retriever

    out = out or sys.stdout
    sets: list[tuple[str, Any, list[tuple[str, Any]]]] = []
    data = read_json(article, "article development set (article_dev.json)")
    base = Retriever.default()
    sets.append(("article development set", base,
                 [(item["q"], lambda cited, item=item: normalise(item["evidence"]) in normalise(cited))
                  for item in data["single"]] + [(q, None) for q in data["unanswerable"]]))
    if squad:
        documents, questions = load_squad(DEFAULT_SQUAD_FILES)
        splits = split_articles(questions)
        held = [q for q in questions if splits[q.article] == "held-out" and not q.impossible]
        step = max(1, len(held) // squad)
        sample = held[::step][:squad]
        articles = {q.article for q in held}
        corpus = Retriever.build([d for d in documents if d.doc_id.rsplit("-", 1)[0] in articles], settings=settings)
        sets.append((f"held-out SQuAD sample ({len(corpus.documents)} paragraphs)", corpus,
                     [(q.question, lambda cited, q=q: contains_any(cited, q.answers)) for q in sample]))
    results: dict[str, dict[str, float]] = {}
    label = settings.llm_model or Path(settings.llm_gguf or "").name
    for name, retriever, items in sets:
        assistant = Assistant(retriever, settings=dataclasses.replace(retriever.settings, **_llm(settings)))
        writer = Writer(retriever, settings=assistant.settings, assistant=assistant)
        counts = {"answered": 0, "written": 0, "kept": 0, "fell back": 0, "model failed": 0, "asked": 0,
                  "written [1]": 0, "extractive [1]": 0, "generated": 0, "generated [1]": 0}
        first, total, extractive = [], [], []
        for question, holds in items:
            started = time.perf_counter()
            quoted = assistant.ask(question)
            extractive.append(time.perf_counter() - started)
            checked: list[Any] = []
            started, first_token, answer = time.perf_counter(), None, None
            for item in writer.stream(question, checked=checked):
                if isinstance(item, str):
                    first_token = first_token or time.perf_counter() - started
                else:
                    answer = item
            if not quoted.found or holds is None:
                continue
            counts["answered"] += 1
            total.append(time.perf_counter() - started)
            if first_token is not None:
                first.append(first_token)
            counts["written"] += len(checked)
            counts["kept"] += sum(c.reason is None for c in checked)
            fell_back = answer.mode == "extractive"
            counts["fell back"] += fell_back
            counts["model failed"] += fell_back and "gave no answer" in answer.notice
            counts["written [1]"] += bool(answer.citations) and holds(answer.citations[0].text)
            counts["generated"] += not fell_back
            counts["generated [1]"] += not fell_back and holds(answer.citations[0].text)
            counts["extractive [1]"] += bool(quoted.citations) and holds(quoted.citations[0].text)
        n = max(1, counts["answered"])
        results[name] = {
            "answered": counts["answered"], "questions": len(items),
            "sentences kept": counts["kept"] / max(1, counts["written"]), "sentences written": counts["written"],
            "fell back": counts["fell back"] / n, "model failed": counts["model failed"] / n,
            "written [1] holds": counts["written [1]"] / n, "extractive [1] holds": counts["extractive [1]"] / n,
            "generated": counts["generated"], "generated [1] holds": counts["generated [1]"],
            "first token p50 s": percentile(first, 50), "total p50 s": percentile(total, 50),
            "extractive p50 s": percentile(extractive, 50),
        }
    print(f"Written answers by {label} (min_support {settings.min_support}, at most {settings.llm_max_tokens} "
          "tokens)\n", file=out)
    names = list(results)
    print("| measured | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names), file=out)
    rows = [
        ("questions the ranker answered (the model asked)", lambda r: f"{r['answered']} of {r['questions']}"),
        ("written sentences kept by the check", lambda r: f"{r['sentences kept']:.0%} of {r['sentences written']}"),
        ("answers that fell back to the extractive one", lambda r: f"{r['fell back']:.0%}"),
        ("… of which the model failed (timeout, error)", lambda r: f"{r['model failed']:.0%}"),
        ("citation [1] holds the evidence: answers with a model / without",
         lambda r: f"{r['written [1] holds']:.0%} / {r['extractive [1] holds']:.0%}"),
        ("… in the written answers alone", lambda r: f"{r['generated [1] holds']} of {r['generated']}"),
        ("time to first token, median", lambda r: f"{r['first token p50 s']:.2f} s"),
        ("written answer in all, median / extractive answer", lambda r: f"{r['total p50 s']:.2f} s / "
                                                                         f"{r['extractive p50 s'] * 1000:.0f} ms"),
    ]
    for title, cell in rows:
        print(f"| {title} | " + " | ".join(cell(results[name]) for name in names) + " |", file=out)
    return results


def _llm(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings)
            if f.name.startswith("llm_") or f.name == "min_support"}
