"""Written answers: a language model the user runs writes the answer, and every sentence is checked.

Optional (`pip install -e '.[llm]'`); without a configured model nothing changes.

1. The ranker decides first. The question is answered the extractive way,
   with the citing settings widened to at most `Settings.llm_sources`
   sentences (`llm_source_ratio` of the best one's probability). When the
   ranker refuses, that refusal is the answer and no model is asked.
2. The model sees only those numbered sources, with their titles, and the
   short answer when there is one, and is told to cite them as [n].
3. Every written sentence is checked (`check`): it must cite a source it was
   given; the answer ranker's cross-encoder, reading the sentence against each
   source it cites, must find the source bears on it; the sentence's content
   terms must be in those sources (its support score, 0..1, is the lower of
   the two, at least `Settings.min_support`); a number in it must appear in
   them. Citations that fail are removed from the sentence; a sentence left
   with none is dropped, and the answer's `notice` says so.
4. Nothing left, or a model that fails (timeout, refused connection, HTTP
   error, malformed or empty reply) or cannot be used at all (the openai client
   missing or of a version that does not work, a missing or unreadable GGUF
   file): the extractive answer, with a one-line notice, never a traceback. The answer's citations are the
   extractive path's own `Citation`
   spans, renumbered in their order of probability.

Two ways to run a model, each through a well-kept library: an OpenAI-compatible
chat-completions endpoint through the `openai` client (`OpenAIChat`), or a GGUF
file in-process through transformers (`LocalGGUF`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from .answer import Answer, Assistant, Citation
from .config import Settings
from .errors import QAError
from .retrieval import Retriever, Where

INSTALL = "pip install -e '.[llm]'"
#: The openai majors the tests run (pyproject.toml's range, constraints.txt's pin being the oldest end).
OPENAI_TESTED = "openai 1.x to 3.x"

SYSTEM_PROMPT = ("Answer from the numbered sources only, in one to three short sentences, and cite the source of "
                 "every sentence as [n]. Add nothing the sources do not say.")
#: One worked turn before the question: small models cite far more often after seeing it done
#: (SmolLM2-135M, the first six questions of the article set: 3 of 6 sentences cited with it, 1 of 6 with
#: the instruction alone).
EXAMPLE = ("Sources:\n[1] (Harbour Bridge) The bridge opened in 1932 after six years of work.\n"
           "[2] (Harbour Bridge) It is 503 metres long.\n\nQuestion: When did the bridge open and how long is it?",
           "The bridge opened in 1932 [1]. It is 503 metres long [2].")


class GenerationError(QAError):
    """The language model gave no usable answer; the message is one line saying why."""


class ModelUnavailable(GenerationError):
    """The configured model cannot be used at all (its client library is missing or does not work, its GGUF
    file is missing or does not load); `Writer` then quotes the document, with a notice saying why."""


@dataclass(frozen=True)
class WrittenSentence:
    """One sentence of a written answer that passed the check.

    `citations` are the answer's citation numbers it rests on; `support` is the
    best support score (0..1) of the sentence against one of them.
    """

    text: str
    citations: tuple[int, ...]
    support: float


@dataclass(frozen=True)
class Checked:
    """One sentence the model wrote, as checked: `kept` sources (given numbers) and why it was dropped, if it was."""

    text: str
    cited: tuple[int, ...]
    kept: tuple[int, ...]
    support: float
    reason: str | None


class ChatModel(Protocol):
    """Something that streams a chat model's reply, token by token."""

    label: str

    def stream(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int) -> Iterator[str]: ...


# -- models ---------------------------------------------------------------------------------------------


class OpenAIChat:
    """An OpenAI-compatible chat-completions endpoint, through the `openai` client (no retries).

    `timeout` bounds the wait for the reply to start and for each next chunk,
    `total_timeout` the whole reply. Every failure is a `GenerationError`.
    """

    def __init__(self, url: str, model: str, key: str | None = None, *, timeout: float = 30.0,
                 total_timeout: float = 120.0) -> None:
        self.url, self.model, self.timeout, self.total_timeout = url.rstrip("/"), model, timeout, total_timeout
        self.label = model
        try:
            import openai
        except ImportError as exc:
            if exc.name == "openai":
                raise ModelUnavailable(f"the openai package is not installed ({INSTALL})") from exc
            raise ModelUnavailable(f"the openai package failed to load ({_one_line(exc)})") from exc
        except Exception as exc:  # noqa: BLE001 - an installed client that breaks on import (a clash of versions)
            raise ModelUnavailable(f"the openai package failed to load ({_one_line(exc)})") from exc
        self._openai = openai
        try:
            # openai.Timeout is the client's own (httpx.Timeout in openai 1.x and 2.x, httpx2.Timeout in 3.x).
            limits = openai.Timeout(timeout, connect=min(timeout, 10.0))
            self._client = openai.OpenAI(base_url=self.url, api_key=key or "not-needed", max_retries=0,
                                         timeout=limits)
        except Exception as exc:  # noqa: BLE001 - a client whose API moved: say which version, quote the rest
            version = getattr(openai, "__version__", "?")
            raise ModelUnavailable(f"the installed openai {version} does not work with qa "
                                   f"({_one_line(exc)}); qa is tested with {OPENAI_TESTED}") from exc

    def stream(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int) -> Iterator[str]:
        openai = self._openai
        deadline = time.monotonic() + self.total_timeout
        try:
            reply = self._client.chat.completions.create(model=self.model, messages=list(messages), stream=True,
                                                         max_tokens=max_tokens, temperature=0)
            with reply:
                for chunk in reply:
                    if time.monotonic() > deadline:
                        raise GenerationError(f"the model took longer than {self.total_timeout:g} s")
                    choices = chunk.choices
                    if choices is None or not isinstance(choices, list):
                        raise GenerationError("malformed reply from the model (a chunk without choices)")
                    if not choices:  # a usage-only chunk
                        continue
                    content = choices[0].delta.content if choices[0].delta is not None else None
                    if content is not None and not isinstance(content, str):
                        raise GenerationError("malformed reply from the model (content that is not text)")
                    if content:
                        yield content
        except GenerationError:
            raise
        except openai.APITimeoutError as exc:
            raise GenerationError(f"the model did not answer within {self.timeout:g} s") from exc
        except openai.APIStatusError as exc:
            raise GenerationError(f"the model's endpoint answered HTTP {exc.status_code}") from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise GenerationError(f"could not reach the model at {self.url} ({_one_line(cause)})") from exc
        except Exception as exc:  # noqa: BLE001 - whatever a broken reply raises (bad JSON, odd shapes, a cut stream)
            if _timed_out(exc):  # a next chunk that came too late: openai 1.x and 2.x raise httpx's own error
                raise GenerationError(f"the model did not answer within {self.timeout:g} s") from exc
            raise GenerationError(f"malformed or broken reply from the model ({_one_line(exc)})") from exc


class LocalGGUF:
    """A GGUF file run in-process by transformers (with `gguf` and `accelerate`), greedy, on one torch thread."""

    def __init__(self, path: str, *, timeout: float = 30.0, total_timeout: float = 120.0) -> None:
        self.path, self.timeout, self.total_timeout = path, timeout, total_timeout
        self.label = os.path.basename(path)
        try:
            self._model, self._tokenizer = load_gguf(path)
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file, a format transformers cannot read
            raise ModelUnavailable(f"could not load the GGUF file {path} ({_one_line(exc)})") from exc
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def stream(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int) -> Iterator[str]:
        """The reply's text as it comes. Generation runs in a thread, one at a time per model (a reply waiting
        for another longer than `timeout` fails); it stops at the next token when the reader leaves."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        tokenizer = self._tokenizer
        inputs = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.timeout)
        failure: list[BaseException] = []
        gone = threading.Event()

        class ReaderGone(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), gone.is_set(), dtype=torch.bool, device=input_ids.device)

        def run() -> None:
            try:
                with self._lock:
                    if not gone.is_set():
                        self._model.generate(**inputs, streamer=streamer, max_new_tokens=max_tokens, do_sample=False,
                                             max_time=self.total_timeout, pad_token_id=tokenizer.eos_token_id,
                                             stopping_criteria=StoppingCriteriaList([ReaderGone()]))
            except BaseException as exc:  # noqa: BLE001 - reported to the reader below
                failure.append(exc)
                streamer.end()

        threading.Thread(target=run, name="qa-gguf", daemon=True).start()
        try:
            yield from streamer
        except Exception as exc:  # noqa: BLE001 - queue.Empty on a timeout
            raise GenerationError(f"the model did not answer within {self.timeout:g} s") from exc
        finally:
            gone.set()  # a reader that stops early (or times out) frees the model at its next token
        if failure:
            raise GenerationError(f"the model failed ({_one_line(failure[0])})")


@lru_cache(maxsize=2)
def load_gguf(path: str) -> tuple[Any, Any]:
    """The model and tokenizer of a GGUF file, de-quantized by transformers; one copy per path per process."""
    if not os.path.isfile(path):
        raise ModelUnavailable(f"no GGUF file at {path}")
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelUnavailable(f"running a GGUF file needs transformers, gguf and accelerate ({INSTALL})") from exc
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(os.environ.get("QA_LLM_THREADS", "1")))))
    hf_logging.disable_progress_bar()
    folder, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    model.eval()
    return model, tokenizer


def chat_model(settings: Settings) -> ChatModel | None:
    """The model `settings` name (an endpoint first, else a GGUF file), or None when none is set."""
    if settings.llm_url:
        if not settings.llm_model:
            raise QAError("a model endpoint needs the model's name: --llm-model or $QA_LLM_MODEL "
                          "(for Ollama, one listed by `ollama list`)")
        return OpenAIChat(settings.llm_url, settings.llm_model, settings.llm_key, timeout=settings.llm_timeout,
                          total_timeout=settings.llm_total_timeout)
    if settings.llm_gguf:
        return LocalGGUF(settings.llm_gguf, timeout=settings.llm_timeout, total_timeout=settings.llm_total_timeout)
    return None


def with_llm(settings: Settings, *, url: str | None = None, model: str | None = None, key: str | None = None,
             gguf: str | None = None, timeout: float | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
    """`settings` with the model named by the arguments, else by $QA_LLM_URL, $QA_LLM_MODEL, $QA_LLM_KEY,
    $QA_LLM_GGUF and $QA_LLM_TIMEOUT (what `qa ask` and `qa serve` read)."""
    env = os.environ if environ is None else environ
    if timeout is None and env.get("QA_LLM_TIMEOUT"):
        try:
            timeout = float(env["QA_LLM_TIMEOUT"])
        except ValueError as exc:
            raise QAError(f"QA_LLM_TIMEOUT must be a number of seconds, got {env['QA_LLM_TIMEOUT']!r}") from exc
    if timeout is not None:
        if timeout <= 0:
            raise QAError(f"the model's timeout must be a positive number of seconds, got {timeout:g}")
        settings = dataclasses.replace(settings, llm_timeout=timeout,
                                       llm_total_timeout=max(settings.llm_total_timeout, timeout))
    return dataclasses.replace(
        settings, llm_url=url or settings.llm_url or env.get("QA_LLM_URL") or None,
        llm_model=model or settings.llm_model or env.get("QA_LLM_MODEL") or None,
        llm_key=key or settings.llm_key or env.get("QA_LLM_KEY") or None,
        llm_gguf=gguf or settings.llm_gguf or env.get("QA_LLM_GGUF") or None)


# -- prompt and check -------------------------------------------------------------------------------------------


def prompt(question: str, sources: Sequence[Citation], short_answer: str | None = None,
           previous_question: str | None = None) -> list[dict[str, str]]:
    """The chat messages: a worked example, then the numbered sources with their titles, the short answer if
    any, and the question."""
    lines = ["Sources:"]
    for c in sources:
        lines.append(f"[{c.n}] ({' '.join(c.title.split())}) {' '.join(c.text.split())}")
    if short_answer:
        lines.append(f"\nShort answer, from source [1]: {' '.join(short_answer.split())}")
    if previous_question:
        lines.append(f"\nThis question follows an earlier one: {previous_question}")
    lines.append(f"\nQuestion: {' '.join(question.split())}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": EXAMPLE[0]},
            {"role": "assistant", "content": EXAMPLE[1]}, {"role": "user", "content": "\n".join(lines)}]


_MARKERS = re.compile(r"\s*[\[【]\s*(?:sources?\s*)?(\d+(?:\s*(?:,|;|and|&)\s*\d+)*)\s*[\]】]", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def split_written(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """The written text as (sentence without markers, numbers it cites) pairs, in order.

    Sentences come from pysbd, as the documents' do; markers placed after a
    sentence's full stop ("… troops. [1]") belong to that sentence.
    """
    import pysbd

    pieces = [p.strip() for p in pysbd.Segmenter(language="en", clean=False).segment(text) if p.strip()]
    sentences: list[tuple[str, tuple[int, ...]]] = []
    for piece in pieces:
        numbers = tuple(int(n) for group in _MARKERS.findall(piece) for n in re.findall(r"\d+", group))
        words = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_MARKERS.sub(" ", piece).split()))
        if not re.search(r"\w", words):  # markers alone: they close the sentence before
            if sentences:
                before, cited = sentences[-1]
                sentences[-1] = (before, tuple(dict.fromkeys(cited + numbers)))
            continue
        sentences.append((words, tuple(dict.fromkeys(numbers))))
    return sentences


def relevance_scores(ranker: Any, claim: str, sources: Sequence[Citation]) -> list[float]:
    """How closely each source bears on `claim`: the answer ranker's cross-encoder reads (claim, source [SEP]
    title) as it reads (question, sentence); its score squashed to 0..1 by the logistic function."""
    if not sources:
        return []
    relevance = ranker.relevance(claim, [c.text for c in sources], [c.title for c in sources])
    return [1.0 / (1.0 + math.exp(-float(r))) for r in relevance]


#: Words about the answer itself ("The answer is", "according to the source"), not claims about the document.
META_WORDS = "answer answers question questions source sources cited cite cites according text article document"


def coverage(claim: str, sources: Sequence[Citation]) -> float:
    """The share of the claim's content terms (stemmed, as the lexical index has them; words about the answer
    itself left out) that its sources or their titles hold; 0 for a claim with no content term."""
    from .lexical import terms

    found = terms([claim, META_WORDS, *(f"{c.title} {c.text}" for c in sources)])
    claimed = set(found[0]) - set(found[1])
    if not claimed:
        return 0.0
    held = {t for source in found[2:] for t in source}
    return len(claimed & held) / len(claimed)


def check(written: str, sources: Sequence[Citation], ranker: Any, min_support: float) -> list[Checked]:
    """Each written sentence checked against the sources it cites (see the module docstring).

    A cited source counts when the cross-encoder finds it bears on the sentence (relevance at least
    `min_support`); the sentence's support score is the lower of the best such relevance and the coverage
    of its terms by the sources that count. The cross-encoder alone scores a sentence that names the
    source's topic but adds facts of its own as high as a faithful one (README, "Written answers"); the
    coverage catches what it adds, the relevance a sentence that borrows the source's words for another topic.
    """
    by_number = {c.n: c for c in sources}
    checked = []
    for text, cited in split_written(written):
        valid = tuple(n for n in cited if n in by_number)
        if not valid:
            reason = f"it cites [{cited[0]}], which it was not given" if cited else "it cites no source it was given"
            checked.append(Checked(text, cited, (), 0.0, reason))
            continue
        relevance = relevance_scores(ranker, text, [by_number[n] for n in valid])
        kept = tuple(n for n, r in zip(valid, relevance, strict=True) if r >= min_support)
        covered = coverage(text, [by_number[n] for n in kept]) if kept else 0.0
        support = min(max(relevance), covered) if kept else max(relevance)
        reason = None
        if not kept:
            reason = "the source it cites is about something else"
        elif support < min_support:
            reason = "it says things its source does not"
        else:
            quoted = " ".join(by_number[n].text for n in kept)
            missing = [n for n in _NUMBER.findall(text) if n not in quoted]
            if missing:
                reason = f"its number {missing[0]} is not in its source"
        checked.append(Checked(text, cited, kept if reason is None else (), round(support, 4), reason))
    return checked


# -- the written answer --------------------------------------------------------------------------------------


class Writer:
    """Answers with written, checked sentences when a model is set; otherwise exactly as `Assistant`.

        writer = Writer(retriever, settings=with_llm(Settings()))    # $QA_LLM_URL, $QA_LLM_MODEL, ...
        answer = writer.ask("How many troops would the US send?")  # answer.mode: "generated" or "extractive"
        for item in writer.stream(question):                        # tokens as they come, then the Answer
            ...
    """

    def __init__(self, retriever: Retriever, *, settings: Settings | None = None, model: ChatModel | None = None,
                 assistant: Assistant | None = None) -> None:
        self.settings = settings or retriever.settings
        self.assistant = assistant or Assistant(retriever, settings=self.settings)
        #: Why the configured model cannot be used (one line), or None; answers then quote the document.
        self.unavailable: str | None = None
        if model is None:
            try:
                model = chat_model(self.settings)
            except ModelUnavailable as exc:
                self.unavailable = str(exc)
        self.model = model
        wide = dataclasses.replace(self.settings, max_citations=self.settings.llm_sources, cite_confidence=1.0,
                                   cite_ratio=self.settings.llm_source_ratio)
        self.sources = Assistant(retriever, settings=wide, ranker=self.assistant.ranker)

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), *, where: Where = None,
            on_token: Callable[[str], None] | None = None) -> Answer:
        """The answer; `on_token` sees the model's tokens as they come."""
        for item in self.stream(question, history, where=where):
            if isinstance(item, Answer):
                return item
            if on_token is not None:
                on_token(item)
        raise AssertionError("stream ended without an answer")  # pragma: no cover

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), *, where: Where = None,
               checked: list[Checked] | None = None) -> Iterator[str | Answer]:
        """The model's tokens as they come (text), then the checked `Answer` (always last); `checked`, when
        given, receives every written sentence as checked, dropped ones too (for `qa eval written`)."""
        if self.model is None:
            answer = self.assistant.ask(question, history, where=where)
            if self.unavailable and answer.found:  # a refusal asks no model: nothing is missing from it
                notice = (f"The language model is not available: {self.unavailable}. "
                          "Showing the document's own sentences.")
                answer = dataclasses.replace(answer, notice=notice)
            yield answer
            return
        found = self.sources.ask(question, history, where=where)
        if not found.found:  # the ranker refuses: no model is asked
            yield found
            return
        previous = history[-1][0] if found.follow_up and history else None
        messages = prompt(question, found.citations, found.phrase.text if found.phrase else None, previous)
        parts: list[str] = []
        try:
            for token in self.model.stream(messages, max_tokens=self.settings.llm_max_tokens):
                parts.append(token)
                yield token
        except GenerationError as exc:
            yield self._fallback(question, history, where, f"The language model gave no answer: {exc}.")
            return
        except Exception as exc:  # noqa: BLE001 - a model or client that breaks in a way not foreseen: still an answer
            yield self._fallback(question, history, where,
                                 f"The language model failed ({type(exc).__name__}"
                                 f"{': ' + _one_line(exc) if str(exc).strip() else ''}).")
            return
        written = "".join(parts).strip()
        if not written:
            yield self._fallback(question, history, where, "The language model's reply was empty.")
            return
        verdicts = check(written, found.citations, self.assistant.ranker, self.settings.min_support)
        if checked is not None:
            checked.extend(verdicts)
        answer = compose(found, verdicts)
        if answer is None:
            yield self._fallback(question, history, where,
                                 f"No sentence the language model wrote was supported by its sources "
                                 f"({len(verdicts)} checked).")
            return
        yield answer

    def _fallback(self, question: str, history: Sequence[tuple[str, str]], where: Where, why: str) -> Answer:
        answer = self.assistant.ask(question, history, where=where)
        return dataclasses.replace(answer, notice=f"{why} Showing the document's own sentences.")


def compose(found: Answer, checked: Sequence[Checked]) -> Answer | None:
    """The generated answer from the sentences that passed, or None when none did.

    Citations keep their spans and are renumbered in their order of
    probability (the order the ranker gave them), so [1] is the most likely
    source the written answer rests on.
    """
    kept = [c for c in checked if c.reason is None]
    if not kept:
        return None
    used = sorted({n for c in kept for n in c.kept})
    number = {old: new for new, old in enumerate(used, start=1)}
    citations = tuple(dataclasses.replace(c, n=number[c.n]) for c in found.citations if c.n in number)
    written = tuple(WrittenSentence(c.text, tuple(number[n] for n in c.kept), c.support) for c in kept)
    text = " ".join(f"{w.text} " + "".join(f"[{n}]" for n in w.citations) for w in written)
    first_kept = 1 in number
    dropped = len(checked) - len(kept)
    notice = ""
    if dropped:
        reasons = "; ".join(dict.fromkeys(c.reason for c in checked if c.reason))
        notice = (f"{dropped} of {len(checked)} written sentences left out: {reasons}." if dropped > 1 else
                  f"1 of {len(checked)} written sentences left out: {reasons}.")
    return dataclasses.replace(
        found, text=text, citations=citations, mode="generated", written=written, notice=notice,
        phrase=found.phrase if first_kept else None,
        confidence=found.confidence if first_kept else citations[0].score)


def _timed_out(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, is a timeout of the HTTP library the openai client runs on."""
    kinds: list[type[BaseException]] = [TimeoutError]
    for library in ("httpx", "httpx2"):  # openai 1.x and 2.x use httpx; 3.x uses httpx2
        try:
            kinds.append(__import__(library).TimeoutException)
        except (ImportError, AttributeError):
            pass
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, tuple(kinds)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"
