"""The `qa` command line: ask, search, index, info, serve, eval, train.

Every error the user can fix prints one line to stderr and exits 1;
`--json` output is one JSON object on stdout. When the reader of stdout
goes away early (`qa search ... | head`), `qa` stops quietly with status
141, as `git log | head` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands.options import llm_arguments, llm_settings, ranker_argument, with_ranker
from .config import INDEX_TYPES
from .errors import QAError

EXIT_ERROR = 1
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `git log | head`
# How Python's command line hands over a byte that is not UTF-8: 0x80..0xff as U+DC80..U+DCFF.
_ESCAPED_BYTE, _LAST_ESCAPED_BYTE = "\udc80", "\udcff"
DEFAULT_INDEX_HELP = "index directory (default: the bundled article, indexed in the user's cache)"
WHERE_HELP = "only documents with this doc_id, or whose file lies under this path (repeat for several)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        # pypdf logs warnings about damaged PDFs ("EOF marker not found") that
        # duplicate or precede the one error line; -v shows them.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
    _clean_text_arguments(args)
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return _reader_gone()
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the disk or the file system (full, read-only, not permitted): one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"qa: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130


def _reader_gone() -> int:
    """Stop quietly when stdout's reader has closed the pipe (`qa info DIR | head`).

    Python ignores SIGPIPE, so writing to a closed pipe raises
    BrokenPipeError; the usual recipe is to point stdout at /dev/null (so
    the interpreter's final flush does not raise again) and exit 141.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed: nothing to redirect
        pass
    return EXIT_PIPE


def _clean_text_arguments(args: argparse.Namespace) -> None:
    """Drop bytes of the question or query that are not UTF-8, with a one-line warning.

    Python hands such bytes over as lone surrogates ("\\udcff" for 0xff),
    which the tokenizer and JSON output cannot encode. Paths (`--index`,
    `--where`, files) keep them: they name real files.
    """
    for name in ("question", "query"):
        value = getattr(args, name, None)
        if not isinstance(value, str) or not any(_ESCAPED_BYTE <= ch <= _LAST_ESCAPED_BYTE for ch in value):
            continue
        try:  # bytes that form UTF-8 characters together (a locale that is not UTF-8) become those characters
            escaped = value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # other lone surrogates: `check_question` drops them
            escaped = value
        bad = sorted({ord(ch) - 0xDC00 for ch in escaped if _ESCAPED_BYTE <= ch <= _LAST_ESCAPED_BYTE})
        if bad:
            print(f"qa: warning: the {name} has bytes that are not UTF-8 ({', '.join(f'0x{b:02x}' for b in bad)}); "
                  "they were left out", file=sys.stderr)
        setattr(args, name, "".join(ch for ch in escaped if not _ESCAPED_BYTE <= ch <= _LAST_ESCAPED_BYTE))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Answer questions about documents with cited snippets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="answer a question with citations")
    ask.add_argument("question")
    ask.add_argument("--index", metavar="DIR", help=DEFAULT_INDEX_HELP)
    ask.add_argument("--history", metavar="FILE", help="JSON list of [question, answer] pairs, oldest first")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument("--where", action="append", metavar="ID_OR_PATH", help=WHERE_HELP)
    ranker_argument(ask)
    llm_arguments(ask)
    ask.set_defaults(run=_ask)

    search = commands.add_parser("search", help="show the best matching passages")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="number of passages (default 5)")
    search.add_argument("--index", metavar="DIR", help=DEFAULT_INDEX_HELP)
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--where", action="append", metavar="ID_OR_PATH", help=WHERE_HELP)
    search.set_defaults(run=_search)

    index = commands.add_parser(
        "index", help="build or update an index from .txt/.md/.html/.pdf files and folders",
        description="Index files and folders (recursively). Run again on the same paths to update the index: only "
                    "new or changed documents are embedded, and documents whose files are gone are dropped.")
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--out", required=True, metavar="DIR", help="directory of the index to write or update")
    index.add_argument("--model", help="sentence-transformers model name or path (default all-MiniLM-L6-v2)")
    index.add_argument("--index-type", choices=list(INDEX_TYPES),
                       help="auto (default for a new index): exact up to 100,000 sentences, then IVF-PQ; "
                            "flat: exact; hnsw or ivfpq: approximate")
    index.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="read, split and embed on a Ray cluster (pip install -e '.[ray]'); without ADDRESS, "
                            "join the cluster this machine belongs to or start a local one")
    index.add_argument("--workers", type=int, metavar="N", help="with --ray: model-holding workers (default: CPUs)")
    index.set_defaults(run=_index)

    info = commands.add_parser("info", help="print an index's manifest")
    info.add_argument("dir", metavar="DIR")
    info.set_defaults(run=_info)

    serve = commands.add_parser(
        "serve", help="start the web chat (and its HTTP API) over the bundled article or an index",
        description="Start the web chat and its HTTP API (/ask). Limits default to their environment variables, "
                    "then to the values shown.")
    serve.add_argument("--host", help="interface to listen on (default $QA_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $QA_PORT or 7860)")
    serve.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    serve.add_argument("--index", metavar="DIR", help="serve the collection `qa index` wrote to DIR, taking up "
                                                      "each new version it writes (default: the bundled article)")
    serve.add_argument("--token", help="every request needs this token: 'Authorization: Bearer TOKEN', or the "
                                       "page asks for it once (default $QA_TOKEN; prefer the variable, "
                                       "a flag shows in the process list)")
    serve.add_argument("--public", action="store_true", help="serve beyond loopback (--host, --share) without "
                                                             "a token, to anyone who can reach it")
    ranker_argument(serve)
    _add_limit_flags(serve)
    llm_arguments(serve)
    serve.set_defaults(run=_serve)

    from .commands.evaluate import add_eval_commands
    from .commands.train import add_train_command

    add_eval_commands(commands)
    add_train_command(commands)
    return parser


def _retriever(index: str | None) -> Any:
    from .retrieval import Retriever

    # Without --index: the bundled article's index in the user's cache, built on first use (with a bar on a terminal).
    return Retriever.load(index) if index else Retriever.default(progress=True)


def _ask(args: argparse.Namespace) -> int:
    from .answer import Assistant, answer_dict
    from .config import Settings
    from .retrieval import check_question

    check_question(args.question, Settings())  # fail fast, before loading a model
    history = _read_history(args.history) if args.history else []
    settings = llm_settings(args)
    if settings.llm_url or settings.llm_gguf:
        from .generation import Writer

        retriever = _retriever(args.index)
        writer = Writer(retriever, settings=with_ranker(dataclasses.replace(retriever.settings,
                                                                          **_llm_fields(settings)), args))
        live = not args.json and sys.stderr.isatty()  # the model's words as they come, then the checked answer

        def shown(token: str) -> None:
            print(token, end="", file=sys.stderr, flush=True)

        answer = writer.ask(args.question, history=history, where=args.where, on_token=shown if live else None)
        if live:
            print(file=sys.stderr)
    else:
        retriever = _retriever(args.index)
        assistant = Assistant(retriever, settings=with_ranker(retriever.settings, args))
        answer = assistant.ask(args.question, history=history, where=args.where)
    if args.json:
        _print_json(answer_dict(answer))
        return 0
    if answer.notice:
        print(f"Note: {answer.notice}", file=sys.stderr)
    if answer.mode == "generated":
        print("Written by the language model; each sentence checked against the source it cites:")
    if answer.phrase is not None:
        print(f"Short answer: {' '.join(answer.phrase.text.split())}")
    print(answer.text)
    for c in answer.citations:
        print(f"\n[{c.n}] {c.title} ({_where(c, 'characters ')})\n    {' '.join(c.text.split())}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from .config import Settings
    from .retrieval import check_question

    query = check_question(args.query, Settings())
    if args.k < 1:
        raise QAError(f"-k must be at least 1, got {args.k}")
    passages = _retriever(args.index).search(query, k=args.k, where=args.where)
    if args.json:
        _print_json({
            "query": query,
            "passages": [
                {"doc_id": p.doc_id, "title": p.title, "start": p.start, "end": p.end, "text": p.text,
                 "score": round(p.score, 6), "page": p.page, "section": p.section}
                for p in passages
            ],
        })
        return 0
    for rank, p in enumerate(passages, start=1):
        print(f"{rank}. {p.score:.3f}  {p.title} ({_where(p, '')})\n   {' '.join(p.text.split())}\n")
    return 0


def _where(item: Any, characters: str) -> str:
    """"page 2, Budget › 2025, characters 111-188": the page and section where known, then the offsets."""
    from .answer import location

    place = location(item)
    return f"{place + ', ' if place else ''}{characters}{item.start}-{item.end}"


def _index(args: argparse.Namespace) -> int:
    from .collection import local_builder, sync

    builder = local_builder
    if args.ray:
        from .distributed import ray_builder

        builder = ray_builder(address=None if args.ray == "auto" else args.ray, workers=args.workers)
    elif args.workers is not None:
        raise QAError("--workers needs --ray")
    summary = sync(args.paths, args.out, model=args.model, index_type=args.index_type, builder=builder,
                   progress=True)
    print("\n".join(summary.lines()), file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from .index import read_manifest

    _print_json(read_manifest(args.dir))
    return 0


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per serving limit in `Settings` (`LIMIT_ENV`): --max-upload-mb N, ..."""
    from .config import LIMIT_ENV

    for name, (variable, default, what) in LIMIT_ENV.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, metavar="N", dest=name,
                            help=f"{what} (${variable}, default {default:,})")


def _llm_fields(settings: Any) -> dict[str, Any]:
    return {name: getattr(settings, name)
            for name in ("llm_url", "llm_model", "llm_key", "llm_gguf", "llm_timeout", "llm_total_timeout")}


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from .config import LIMIT_ENV, Settings

    flags = {name: getattr(args, name) for name in LIMIT_ENV if getattr(args, name) is not None}
    try:
        settings = with_ranker(dataclasses.replace(Settings(), **flags), args)
    except ValueError as exc:
        raise QAError(f"--{str(exc).replace('_', '-')}") from exc
    from .web.access import TOKEN_ENV, check_exposure

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_exposure(args.host or os.environ.get("QA_HOST", "127.0.0.1"), args.share, token, args.public)
    if args.index:  # fail before Gradio starts: a missing or damaged index is one line
        from .index import read_manifest

        read_manifest(args.index)
    from .web.app import launch  # the Gradio page (needs the [app] extra)

    # The app reads the model from the environment, as `python app.py` does.
    for name, value in zip(("QA_LLM_URL", "QA_LLM_MODEL", "QA_LLM_KEY", "QA_LLM_GGUF", "QA_LLM_TIMEOUT"),
                           (args.llm_url, args.llm_model, args.llm_key, args.llm_gguf, args.llm_timeout), strict=True):
        if value:
            os.environ[name] = str(value)

    launch(host=args.host, port=args.port, share=args.share, index=args.index, settings=settings, token=token,
           public=args.public)
    return 0


def _read_history(path: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QAError(f"cannot read history file {path}: {exc}") from exc
    if not isinstance(data, list) or not all(
        isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(x, str) for x in turn) for turn in data
    ):
        raise QAError(f"history file {path} must be a JSON list of [question, answer] pairs")
    return [(_encodable(q), _encodable(a)) for q, a in data]


def _encodable(text: str) -> str:
    """`text` without lone surrogates (JSON may escape one, "\\ud800"); a surrogate pair becomes its character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "ignore")


def _print_json(value: Any) -> None:
    """Write `value` as JSON, readable text where stdout can encode it, `\\u` escapes where it cannot.

    A manifest can hold a file name with bytes that are not UTF-8 (kept as
    lone surrogates so the file can be found again); escaped, the same string
    still round-trips through any JSON reader.
    """
    text = json.dumps(value, ensure_ascii=False, indent=2)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(value, ensure_ascii=True, indent=2)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
