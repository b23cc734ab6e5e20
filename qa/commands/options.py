"""Flags that several commands share: --ranker, and the language model that writes answers."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def ranker_argument(command: argparse.ArgumentParser) -> None:
    """--ranker DIR: answer with a ranker `qa train --out DIR` made instead of the shipped one."""
    command.add_argument("--ranker", metavar="DIR", help="answer with the ranker `qa train --out DIR` made, instead "
                                                         "of the shipped one (default $QA_RANKER)")


def with_ranker(settings: Any, args: argparse.Namespace) -> Any:
    """`settings` with the ranker that --ranker names, if it names one (checked now, before any index is read)."""
    if not getattr(args, "ranker", None):
        return settings
    from ..ranker import read_manifest

    read_manifest(args.ranker)
    return dataclasses.replace(settings, ranker=args.ranker)


def llm_arguments(command: argparse.ArgumentParser) -> None:
    """Flags naming the language model that writes answers (README, "Written answers"); each defaults to its
    environment variable."""
    group = command.add_argument_group("written answers (optional, pip install -e '.[llm]')")
    group.add_argument("--llm-url", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 "
                                                        "for Ollama (default $QA_LLM_URL)")
    group.add_argument("--llm-model", metavar="NAME", help="model at that endpoint (default $QA_LLM_MODEL)")
    group.add_argument("--llm-key", metavar="KEY", help="API key, if the endpoint needs one (default $QA_LLM_KEY)")
    group.add_argument("--llm-gguf", metavar="FILE", help="a GGUF file run in-process instead (default $QA_LLM_GGUF)")
    group.add_argument("--llm-timeout", type=float, metavar="SECONDS",
                       help="wait at most this long for the first token and each next one, then quote the document "
                            "(default $QA_LLM_TIMEOUT or 30)")


def llm_settings(args: argparse.Namespace) -> Any:
    """`Settings` with the language model the flags of `llm_arguments` name."""
    from ..config import Settings
    from ..generation import with_llm

    return with_llm(Settings(), url=args.llm_url, model=args.llm_model, key=args.llm_key, gguf=args.llm_gguf,
                    timeout=args.llm_timeout)
