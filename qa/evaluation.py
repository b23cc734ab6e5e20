"""Evaluation commands (filled in by the evaluation work)."""

from __future__ import annotations

from typing import Any


def add_eval_commands(commands: Any) -> None:
    """Register `qa eval ...` on the CLI's subparsers."""
