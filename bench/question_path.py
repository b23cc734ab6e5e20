"""Follow a question down the layers: which `qa` modules it passes through on its way through `Assistant.ask`.

Each call into a module of `qa` whose arguments carry the question (the string itself, a text that holds it
such as a follow-up's query, or a list of such texts) is recorded by `sys.setprofile`, in order; runs of the
same module are collapsed to one step. Building a record that carries the question (a dataclass's generated
`__init__`, such as the `Candidates` handed up) is a value being made, not a call into a layer's code, so it is
not a step: it is how a layer below hands its result back. The path is printed with its transitions between
modules and the "climbs back up": steps to a module of a higher layer than the one before. The layers, lowest first:

    0 text         documents, chunking, corpus, definitions
    1 indexes      embedding, onnx_backend, lexical, vectors, storage, index
    2 retrieval    retrieval, candidates, frame (which lines a question about the document is answered from)
    3 judging      ranker
    4 answering    answer
    5 writing      generation
    6 web          web
    7 commands     cli, commands

A question that walks down once climbs back up only to rank and cite its candidates: retrieval hands the
answer layer everything in one call, so the target (issue 32) is at most 2 climbs back up per question.
Modules of `qa` outside these layers that the question enters are named, never silently left out.
Exits 1 when a question climbs more often than `--most` (default 2).

    python bench/question_path.py [--most 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

LAYERS = {
    "documents": 0, "chunking": 0, "corpus": 0, "definitions": 0,
    "embedding": 1, "onnx_backend": 1, "lexical": 1, "vectors": 1, "storage": 1, "index": 1,
    "retrieval": 2, "candidates": 2, "frame": 2,
    "ranker": 3,
    "answer": 4,
    "generation": 5,
    "web": 6,
    "cli": 7, "commands": 7,
}

#: The questions followed: a plain question, one about the document itself, a "What is X?" question,
#: an off-topic one (refused), a follow-up that leans on the turn before, and a short one ("When?") that does not
#: say it leans on it but is answered only with it (`qa.candidates.elliptic`).
QUESTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("What are the three threats to southern Europe?", ()),
    ("Who wrote this article?", ()),
    ("What is the PC/GNA?", ()),
    ("What is the boiling point of mercury?", ()),
    ("Why is it important?", (("What is the PC/GNA?", "The UN-backed Presidency Council and Government of "
                                                      "National Accord (PC/GNA) [1]"),)),
    ("When?", (("Which country reopened its embassy in Tripoli?", "Italys move earlier this year to become the "
                "first Western diplomatic mission to reopen its embassy in Tripoli [1]"),)),
)


def layer(module: str) -> int | None:
    """The layer of a `qa` module (its first part below `qa`), None for modules outside the stated order."""
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "qa" else None


def carries(value: Any, question: str, depth: int = 0) -> bool:
    """Whether an argument carries the question: the string, a text holding it, or a list or tuple of those."""
    if isinstance(value, str):
        return question in value
    if isinstance(value, list | tuple) and depth == 0:
        return any(carries(item, question, 1) for item in value[:64])
    return False


def follow(ask: Any, question: str, history: Sequence[tuple[str, str]], unlayered: set[str]) -> list[str]:
    """The `qa` modules entered, in order, by calls whose arguments carry `question` while `ask` answers it
    (those outside the stated layers are added to `unlayered`)."""
    path: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("qa."):
            return
        code = frame.f_code
        if code.co_name == "__init__" and dataclasses.is_dataclass(frame.f_locals.get("self")):
            return  # a record being built: the value handed back, not a step (see the module docstring)
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if any(carries(frame.f_locals.get(name), question) for name in names):
            if layer(module) is None:
                unlayered.add(module)
            elif not path or path[-1] != module:
                path.append(module)

    sys.setprofile(profile)
    try:
        ask(question, history=list(history))
    finally:
        sys.setprofile(None)
    return path


def climbs(path: Sequence[str]) -> int:
    """Steps of the path to a module of a higher layer than the step before."""
    return sum(1 for before, after in zip(path, path[1:], strict=False) if layer(after) > layer(before))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--most", type=int, default=2, help="most climbs back up allowed per question")
    args = parser.parse_args(argv)

    from qa.answer import Assistant
    from qa.retrieval import Retriever

    assistant = Assistant(Retriever.default())
    assistant.ask("Warm up: what is Libya?")  # load the models before following anything
    worst = 0
    unlayered: set[str] = set()
    for question, history in QUESTIONS:
        path = follow(assistant.ask, question, history, unlayered)
        short = [m.removeprefix("qa.") for m in path]
        up = climbs(path)
        worst = max(worst, up)
        print(f"{question!r}{' (follow-up)' if history else ''}: {len(path) - 1} transitions, {up} climbs back up")
        print("    " + " -> ".join(short))
    if unlayered:
        print(f"entered, outside the stated layers: {', '.join(sorted(unlayered))}")
    print(f"most climbs back up: {worst} (target: at most {args.most})")
    return 0 if worst <= args.most else 1


if __name__ == "__main__":
    sys.exit(main())
