"""All tunable settings in one typed, frozen place.

Defaults are what the project measured best (see README, "Quality"); every
object that needs a setting takes a `Settings` so tests and users can vary
one field with `dataclasses.replace` instead of patching globals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from .errors import QAError
from .threads import DEFAULT_INDEX_THREADS, DEFAULT_QUERY_THREADS, default_ranker_workers, env_threads

DEFAULT_MODEL = "all-MiniLM-L6-v2"

IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]
INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
QueryBackend = Literal["onnx", "torch"]


@dataclass(frozen=True)
class Settings:
    """Knobs for chunking, retrieval and answering.

    Attributes:
        model: sentence-transformers model name or local path.
        chunk_sentences: sentences per chunk (a chunk is also capped by `chunk_tokens`).
        chunk_overlap: sentences shared by consecutive chunks; must be < `chunk_sentences`.
        chunk_tokens: approximate word-piece budget per chunk (the model truncates at 256).
        index_type: "flat" (exact inner product), "hnsw" or "ivfpq" (approximate, for large corpora),
            or "auto": flat up to `approximate_above` sentences, `approximate_index` beyond.
        approximate_above: the most sentences "auto" searches exactly (README, "Large collections").
        approximate_index: the approximate index "auto" picks for larger corpora.
        hnsw_m: links per vector of an HNSW graph (more: better recall, more memory, slower build).
        hnsw_ef_search: candidates an HNSW search keeps (more: better recall, slower queries).
        ivf_nprobe: inverted lists an IVF-PQ search visits.
        ivf_rescore: an IVF-PQ search re-scores `ivf_rescore * k` candidates with the full vectors.
        faiss_threads: OpenMP threads FAISS uses (process-wide). One query at a time gains nothing from
            more, and on a busy machine two threads made a 20,000-vector search 20x slower (README).
        dense_weight: weight of the dense score in the hybrid fusion; BM25 gets the rest.
        candidates: passages fetched from each retriever before fusion.
        answer_passages: fused passages whose sentences the answer ranker considers.
        answer_candidates: most sentences of retrieved passages the answer ranker considers per question.
        rerank_sentences: how many of those, shortlisted by retrieval evidence, its cross-encoder reads (its cost
            grows with each; sentences the conversation or the document's edges put forward are read too).
            8 instead of 6 put the gold answer in [1] for 0.8 points more validation questions (10: no more)
            at about 1.2x the time of an answer (docs/quality.md).
        precise_reads: at most this many of the sentences read, those whose int8 scores are too close to the best
            to order (the model's measured quantization margin), are read again with float activations
            (`qa.precise`; about 12 ms a pair); 0 never does.
        document_edges: sentences at the start and at the end of the best document that are always read
            (titles, sources, bylines and author notes live there); (0, 0) for none.
        max_citations: most sentences an answer cites.
        cite_confidence: further sentences are cited while the ranker's chance that none of the cited
            ones answers is above 1 - this.
        cite_ratio: and only sentences at least this share as likely to answer as citation [1]: a sentence
            much less likely than the first adds no support a reader needs. `cite_confidence` and `cite_ratio`
            were chosen on SQuAD validation articles (`bench/citations.py`) as the pair that puts a gold
            answer in [1]-[3] most often while clearly under 30% of right answers cite more than one sentence
            (25.5% there; docs/quality.md).
        continuation_share: the sentence after citation [1] joins it when it opens by referring back ("The
            first of which is …", "These include …") and is at least this share as likely to answer: it
            continues [1]'s statement, which often only announces the answer ("The plan could face
            several challenges."). On SQuAD validation articles 0.1 joined 3% of answers and raised [1]
            by 0.7 points; 0 joins every such sentence the cross-encoder read, 1 only equally likely ones.
        min_answerable: the assistant refuses when the ranker's probability that the document answers
            is below this; None takes the threshold calibrated with the model (`qa train`).
        answerable_share: the share of questions the documents answer, where it is known (a help desk's
            log, say); the answer's confidence is moved to it by Bayes' rule. None keeps the share of the
            questions the model was calibrated on (72%): see `qa.ranker.Confidence`.
        min_phrase: the short answer is shown when its calibrated probability of being right is at least this;
            None takes the model's (one half).
        max_question_chars: longer questions are rejected with a clear error.
        max_history_turns, max_history_chars: the most earlier turns, and characters in them, an API call may
            send (only the last turn is used, but all of it is read).
        max_upload_mb: the largest file a web visitor may upload, in MB (1 MB = 1,048,576 bytes).
        max_session_chars: the most characters of text a web session's uploads may hold together.
        max_session_documents: the most documents a web session may upload.
        session_linger: seconds a closed browser tab's session (its uploads and their index) is kept
            before it is freed; a tab that reconnects within that time keeps it.
        upload_workers: uploads the web app indexes at the same time (each on its own low-priority
            thread), so a small upload is not stuck behind another visitor's large one.
        The serving limits above (from `max_question_chars` on) can be set with environment variables
        named in `LIMIT_ENV` (QA_MAX_UPLOAD_MB, ...) and with `qa serve` flags.
        query_threads: torch CPU threads for embedding one query (default 1, or $QA_QUERY_THREADS,
            or $QA_THREADS); more threads collapse when other processes share the cores (`qa.threads`).
        index_threads: torch CPU threads for embedding a batch of sentences while indexing
            (default 1, or $QA_INDEX_THREADS, or $QA_THREADS).
        ranker_workers: (question, sentence) pairs the answer ranker reads at once, each on one thread
            (default 2, or the CPU count if lower; $QA_RANKER_WORKERS, or $QA_THREADS). Unlike more
            intra-op threads, this does not collapse beside a busy neighbour (docs/speed.md).
        ranker: a directory holding an answer ranker made by `qa train --out` (its `ranker.onnx` and manifest),
            used instead of the shipped one; "" for the shipped one (default $QA_RANKER, or "").
        query_backend: "onnx" embeds queries with ONNX Runtime (no torch import, same vectors; falls back to
            torch for models it cannot serve), "torch" with sentence-transformers (default "onnx", or
            $QA_QUERY_BACKEND).
        llm_url: an OpenAI-compatible chat-completions endpoint (Ollama's `http://localhost:11434/v1`, llama.cpp's
            server, vLLM, LM Studio, OpenAI) that writes the answer from the cited sentences; None: answers quote
            the document (`qa.generation`; the CLI and the web app read $QA_LLM_URL).
        llm_model, llm_key: the model to ask at `llm_url`, and its API key if it needs one ($QA_LLM_MODEL,
            $QA_LLM_KEY).
        llm_gguf: a local GGUF file run in-process instead of an endpoint ($QA_LLM_GGUF); needs the `llm` extra.
        llm_timeout: seconds to wait for the model's first token, and for each next one; then the quoted answer
            ($QA_LLM_TIMEOUT, `--llm-timeout`).
        llm_total_timeout: seconds a written answer may take in all; then the quoted answer.
        llm_max_tokens: most tokens the model writes.
        llm_sources, llm_source_ratio: the model sees at most this many candidate sentences (cited as
            `max_citations` and `cite_ratio` would, with `cite_confidence` 1): each at least this share as
            likely to answer as the best one.
        min_support: a written sentence is kept only when the answer ranker's support score for it against a
            source it cites is at least this (README, "Written answers").
    """

    model: str = DEFAULT_MODEL
    chunk_sentences: int = 4
    chunk_overlap: int = 1
    chunk_tokens: int = 200
    index_type: IndexType = "auto"
    approximate_above: int = 100_000
    approximate_index: Literal["hnsw", "ivfpq"] = "ivfpq"
    hnsw_m: int = 32
    hnsw_ef_search: int = 256
    ivf_nprobe: int = 48
    ivf_rescore: int = 10
    faiss_threads: int = 1
    dense_weight: float = 0.6
    candidates: int = 30
    answer_passages: int = 5
    answer_candidates: int = 16
    rerank_sentences: int = 8
    precise_reads: int = 3
    document_edges: tuple[int, int] = (1, 1)
    max_citations: int = 3
    cite_confidence: float = 0.8
    cite_ratio: float = 0.3
    continuation_share: float = 0.1
    min_answerable: float | None = None
    min_phrase: float | None = None
    answerable_share: float | None = None
    max_question_chars: int = field(default_factory=lambda: env_limit("max_question_chars"))
    max_history_turns: int = field(default_factory=lambda: env_limit("max_history_turns"))
    max_history_chars: int = field(default_factory=lambda: env_limit("max_history_chars"))
    max_upload_mb: int = field(default_factory=lambda: env_limit("max_upload_mb"))
    max_session_chars: int = field(default_factory=lambda: env_limit("max_session_chars"))
    max_session_documents: int = field(default_factory=lambda: env_limit("max_session_documents"))
    session_linger: int = field(default_factory=lambda: env_limit("session_linger"))
    upload_workers: int = field(default_factory=lambda: env_limit("upload_workers"))
    query_threads: int = field(default_factory=lambda: env_threads("QA_QUERY_THREADS", DEFAULT_QUERY_THREADS))
    index_threads: int = field(default_factory=lambda: env_threads("QA_INDEX_THREADS", DEFAULT_INDEX_THREADS))
    ranker_workers: int = field(default_factory=lambda: env_threads("QA_RANKER_WORKERS", default_ranker_workers()))
    query_backend: QueryBackend = field(default_factory=lambda: os.environ.get("QA_QUERY_BACKEND") or "onnx")
    ranker: str = field(default_factory=lambda: os.environ.get("QA_RANKER", ""))
    llm_url: str | None = None
    llm_model: str | None = None
    llm_key: str | None = field(default=None, repr=False)
    llm_gguf: str | None = None
    llm_timeout: float = 30.0
    llm_total_timeout: float = 120.0
    llm_max_tokens: int = 160
    llm_sources: int = 4
    llm_source_ratio: float = 0.1
    min_support: float = 0.7

    def __post_init__(self) -> None:
        if self.chunk_sentences < 1:
            raise ValueError(f"chunk_sentences must be >= 1, got {self.chunk_sentences}")
        if not 0 <= self.chunk_overlap < self.chunk_sentences:
            raise ValueError(
                f"chunk_overlap must be in [0, chunk_sentences={self.chunk_sentences}), "
                f"got {self.chunk_overlap}"
            )
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got {self.index_type!r}")
        if self.approximate_index not in ("hnsw", "ivfpq"):
            raise ValueError(f"approximate_index must be 'hnsw' or 'ivfpq', got {self.approximate_index!r}")
        for name in ("query_threads", "index_threads", "ranker_workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        if self.query_backend not in ("onnx", "torch"):
            raise ValueError(f"query_backend must be 'onnx' or 'torch', got {self.query_backend!r}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], got {self.dense_weight}")
        if not 0.0 <= self.cite_ratio <= 1.0:
            raise ValueError(f"cite_ratio must be in [0, 1], got {self.cite_ratio}")
        if not 0.0 <= self.continuation_share <= 1.0:
            raise ValueError(f"continuation_share must be in [0, 1], got {self.continuation_share}")
        if not 0.0 <= self.cite_confidence <= 1.0:
            raise ValueError(f"cite_confidence must be in [0, 1], got {self.cite_confidence}")
        if self.min_phrase is not None and not 0.0 <= self.min_phrase <= 1.0:
            raise ValueError(f"min_phrase must be in [0, 1] or None, got {self.min_phrase}")
        if self.min_answerable is not None and not 0.0 <= self.min_answerable <= 1.0:
            raise ValueError(f"min_answerable must be in [0, 1] or None, got {self.min_answerable}")
        if self.answerable_share is not None and not 0.0 < self.answerable_share < 1.0:
            raise ValueError(f"answerable_share must be in (0, 1) or None, got {self.answerable_share}")
        if self.llm_timeout <= 0 or self.llm_total_timeout <= 0 or self.llm_max_tokens < 1 or self.llm_sources < 1:
            raise ValueError("llm_timeout, llm_total_timeout, llm_max_tokens and llm_sources must be positive")
        if not 0.0 <= self.min_support <= 1.0:
            raise ValueError(f"min_support must be in [0, 1], got {self.min_support}")
        if self.answer_candidates < 1 or self.max_citations < 1:
            raise ValueError("answer_candidates and max_citations must be >= 1")
        for name in LIMIT_ENV:
            value = getattr(self, name)
            least = 0 if name == "session_linger" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


# The serving limits: each `Settings` field, its environment variable and what it limits (docs/web.md, "Limits").
LIMIT_ENV = {  # field: (environment variable, default, what it limits)
    "max_question_chars": ("QA_MAX_QUESTION_CHARS", 1000, "characters in a question"),
    "max_history_turns": ("QA_MAX_HISTORY_TURNS", 50, "earlier turns an API call may send"),
    "max_history_chars": ("QA_MAX_HISTORY_CHARS", 100_000, "characters in those turns"),
    "max_upload_mb": ("QA_MAX_UPLOAD_MB", 10, "MB in one uploaded file"),
    "max_session_chars": ("QA_MAX_SESSION_CHARS", 500_000, "characters of a session's uploads together"),
    "max_session_documents": ("QA_MAX_SESSION_DOCUMENTS", 10, "documents a session may upload"),
    "session_linger": ("QA_SESSION_LINGER", 120, "seconds a closed tab's session is kept"),
    "upload_workers": ("QA_UPLOAD_WORKERS", 2, "uploads indexed at the same time"),
}


def env_limit(name: str) -> int:
    """The limit `name` from its environment variable (`LIMIT_ENV`), else its default; QAError for a bad value."""
    variable, default, what = LIMIT_ENV[name]
    value = os.environ.get(variable, "").strip().replace("_", "")
    if not value:
        return default
    least = 0 if name == "session_linger" else 1
    if not value.isdigit() or int(value) < least:
        raise QAError(f"{variable}={os.environ[variable]!r}: {what} must be a whole number "
                      f"of at least {least}")
    return int(value)
