"""What /ask takes and gives, checked without Gradio: the history's shape and limits, the answer as JSON.

A caller's mistake is a `QAError` that says what is expected and shows (shortened) what was sent.
"""

from __future__ import annotations

import json
from typing import Any

from qa import Answer, QAError, Settings
from qa.answer import answer_dict


def as_dict(answer: Answer) -> dict:
    """The JSON shape of `qa ask --json`."""
    return answer_dict(answer)


def history_pairs(history: Any, settings: Settings | None = None) -> list[tuple[str, str]]:
    """API history as (question, answer) pairs; a QAError saying what is expected for anything else,
    or when it is over the limits in `Settings` (turns and characters)."""
    settings = settings or Settings()
    if history is None:
        return []
    if isinstance(history, list | tuple) and all(
        isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(x, str) for x in turn) for turn in history
    ):
        if len(history) > settings.max_history_turns:
            raise QAError(f"history has {len(history):,} turns; the limit is {settings.max_history_turns} "
                          "(only the last turn is used for a follow-up)")
        chars = sum(len(q) + len(a) for q, a in history)
        if chars > settings.max_history_chars:
            raise QAError(f"history has {chars:,} characters; the limit is {settings.max_history_chars:,}")
        return [(q, a) for q, a in history]
    raise QAError("history must be a list of [question, answer] pairs of text, oldest first, "
                  f"for example [[\"Who is Haftar?\", \"...\"]]; got {json_preview(history)}")


def json_preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
