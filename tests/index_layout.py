"""Helpers for tests that look at an index's folder layout (a link to the current version folder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def leftovers(directory: Path) -> list[str]:
    """Hidden entries a save may leave beside the index: not its lock file, nor the version folder it points to."""
    current = {os.readlink(p) for p in directory.iterdir() if p.is_symlink()}
    return sorted(p.name for p in directory.iterdir()
                  if p.name.startswith(".") and not p.name.endswith(".lock") and p.name not in current)


def as_plain_folder(path: Path) -> None:
    """Give the index at `path` the layout written before versioned folders: a plain folder holding the files."""
    version = path.resolve()
    path.unlink()
    shutil.copytree(version, path)
    shutil.rmtree(version)
