"""`qa eval squad|article|written|sets`: the evaluation commands, which parse their flags and call `qa.evaluation`."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings
from ..errors import QAError
from ..evaluation import DEFAULT_ARTICLE, SPLITS, evaluate_article, evaluate_squad, evaluate_written
from ..training.squad import DEFAULT_SQUAD_FILES
from .options import llm_arguments, llm_settings, ranker_argument, with_ranker


def add_eval_commands(commands: Any) -> None:
    """Register `qa eval squad`, `qa eval article`, `qa eval written` and `qa eval sets` on the CLI's subparsers."""
    evaluate = commands.add_parser("eval", help="measure quality on evaluation data")
    which = evaluate.add_subparsers(dest="dataset", required=True)
    squad = which.add_parser("squad", help="open retrieval over SQuAD files as one corpus")
    squad.add_argument("paths", nargs="*", default=[str(f) for f in DEFAULT_SQUAD_FILES],
                       help="SQuAD JSON files (default: the shared v1.1 and 2.0 files)")
    squad.add_argument("--limit", type=int, help="at most N answerable and N unanswerable questions")
    squad.add_argument("--articles", help="articles to use, as a Python slice: '0:5' or '5:'")
    squad.add_argument("--split", choices=SPLITS, default="all",
                       help="questions of the articles `qa train` held out, validated or trained on")
    ranker_argument(squad)
    squad.set_defaults(run=_run_squad)
    article = which.add_parser("article", help="a development set of questions with expected evidence: the "
                                               "bundled article's, or one that brings its own documents")
    article.add_argument("path", nargs="?", default=str(DEFAULT_ARTICLE),
                         help="the set, in article_dev.json's format (default: the bundled article's)")
    ranker_argument(article)
    article.set_defaults(run=_run_article)
    written = which.add_parser("written", help="written answers from the configured language model, checked "
                                               "(article set and a sample of held-out SQuAD questions)")
    written.add_argument("--article", default=str(DEFAULT_ARTICLE), help="the article development set")
    written.add_argument("--squad", type=int, default=20, metavar="N",
                         help="held-out SQuAD questions to sample (default 20; 0 for none)")
    llm_arguments(written)
    written.set_defaults(run=_run_written)
    sets = _add_sets_command(which)
    ranker_argument(sets)


def _add_sets_command(commands: Any) -> argparse.ArgumentParser:
    """Register `qa eval sets` (`qa.eval_sets`)."""
    from ..training.sets import LOADERS, PARTS

    parser = commands.add_parser("sets", help="answer the validation parts of the sets beyond Wikipedia")
    parser.add_argument("names", nargs="*", default=list(LOADERS), help=f"sets (default: {', '.join(LOADERS)})")
    parser.add_argument("--part", choices=PARTS, default="check",
                        help="which part of each set (qa/training/sets.py; default: check, which nothing is fitted on)")
    parser.add_argument("--limit", type=int, default=300, help="questions per set, a seeded draw (0: all)")
    parser.set_defaults(run=_run_sets)
    return parser


def _run_squad(args: argparse.Namespace) -> int:
    articles = slice(None)
    if args.articles:
        start, _, stop = args.articles.partition(":")
        articles = slice(int(start) if start else None, int(stop) if stop else None)
    evaluate_squad(args.paths, limit=args.limit, articles=articles, split=args.split,
                   settings=with_ranker(Settings(), args))
    return 0


def _run_article(args: argparse.Namespace) -> int:
    result = evaluate_article(args.path, settings=with_ranker(Settings(), args) if args.ranker else None)
    return 1 if result["failures"] else 0


def _run_written(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    if not (settings.llm_url or settings.llm_gguf):
        raise QAError("name a model: --llm-url and --llm-model (or $QA_LLM_URL, $QA_LLM_MODEL), or --llm-gguf")
    evaluate_written(settings, article=args.article, squad=args.squad)
    return 0


def _run_sets(args: argparse.Namespace) -> int:
    from ..eval_sets import evaluate_sets

    evaluate_sets(args.names, part=args.part, limit=args.limit, settings=with_ranker(Settings(), args))
    return 0
