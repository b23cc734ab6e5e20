"""A visitor's uploads: read into Documents and deleted at once, then indexed on a low-priority thread.

`read_upload` turns one uploaded file into a `Document` (or a `QAError` naming the file and the limit it
hit); `discard` deletes the file, since only its text is kept; `without_temp_files` stops Gradio leaving an
empty temporary file behind for each upload. `in_background` runs the CPU-heavy indexing on its own
threads at a lower OS priority, so other visitors' questions are answered first.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from qa import Document, QAError, Settings
from qa.documents import read_file, slugify

INDEXING_NICE = 10  # added to the indexing thread's nice value: it yields the CPU to questions
T = TypeVar("T")


def unique_id(doc_id: str, taken: set[str]) -> str:
    candidate, n = doc_id, 2
    while candidate in taken:
        candidate, n = f"{doc_id}-{n}", n + 1
    return candidate


def read_upload(path: str, *, taken: set[str], chars: int, count: int, settings: Settings | None = None) -> Document:
    """The text of one uploaded file as a Document with an id not in `taken`; QAError naming the file if unusable.

    `chars` and `count` are what the session already holds, checked against the limits in `settings`; the
    message names the limit that was hit (file size, characters per session, documents per session).
    """
    settings = settings or Settings()
    name = Path(path).name
    if count >= settings.max_session_documents:
        raise QAError(f"{name}: not added, a session holds at most {settings.max_session_documents} uploaded documents")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise QAError(f"{name}: the uploaded file is gone before it was read; upload it again") from exc
    if size > settings.max_upload_mb * 1024 * 1024:
        raise QAError(f"{name}: {size / 1024 / 1024:.1f} MB is over the {settings.max_upload_mb} MB limit for one file")
    found = read_file(Path(path))
    text, title = found.text, found.title
    if chars + len(text) > settings.max_session_chars:
        held = f"; {chars:,} are taken, remove a document first" if chars else ""
        raise QAError(f"{name}: {len(text):,} characters of text, over the {settings.max_session_chars:,} characters "
                      f"a session's uploads may hold together{held}")
    stem = Path(path).stem
    return Document(unique_id(slugify(stem), taken), text, title or stem, path=name,  # name: shown on cards
                    pages=found.pages, headings=found.headings)


def without_temp_files(files: gr.File) -> gr.File:
    """`files` without Gradio's stray temporary file: Gradio 6's `File._process_single_file` opens an empty
    NamedTemporaryFile in its cache for every uploaded file and never deletes it. The method is replaced on
    this one component (a subclass would make Gradio write a .pyi stub beside the module defining it)."""

    def process_single_file(f: Any) -> Any:
        from gradio.utils import NamedString
        from gradio_client.utils import is_valid_file

        if files.file_types and not is_valid_file(f.path, files.file_types):
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: {files.file_types}")
        return NamedString(f.path)

    if files.type == "filepath":
        files._process_single_file = process_single_file
    return files


def discard(path: str) -> None:
    """Delete an uploaded file (and the hash-named folder Gradio made for it, once empty): only its text is kept."""
    file = Path(path)
    try:
        file.unlink(missing_ok=True)
        if re.fullmatch(r"[0-9a-f]{32,}", file.parent.name):
            file.parent.rmdir()
    except OSError:  # the folder holds other files, or is already gone
        pass


def in_background(function: Callable[..., T], *args: Any, workers: int = 1, **kwargs: Any) -> T:
    """Run `function` on the indexing thread and wait for it; Gradio's progress and notices still reach the page.

    The indexing thread runs at a lower OS priority (Linux keeps a nice value per thread), so while an
    upload is indexed the CPU goes to other visitors' questions first.
    """
    context = contextvars.copy_context()  # Gradio finds the event to report progress to in context variables
    return _indexer(workers).submit(context.run, function, *args, **kwargs).result()


@lru_cache(maxsize=4)
def _indexer(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-indexing", initializer=_lower_priority)


def _lower_priority() -> None:
    try:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + INDEXING_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: indexing simply runs at normal priority
        pass
