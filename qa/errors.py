"""Errors the library raises on purpose.

Every error is a `QAError`, so callers (the CLI, the web app) can catch one
type and show its message. Each subclass also inherits the matching built-in
exception, so generic handlers keep working.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class InvalidQuestionError(QAError, ValueError):
    """The question is empty or too long."""


class DocumentError(QAError, ValueError):
    """A document cannot be read, is empty, too large or of an unsupported type."""


class IndexNotFoundError(QAError, FileNotFoundError):
    """No index is stored at the given path."""


class CorruptIndexError(QAError, ValueError):
    """An index file is missing, truncated or altered since it was written."""


class StaleIndexError(QAError, ValueError):
    """The index was built with another model, other settings or other documents."""


class IndexLockedError(QAError, OSError):
    """Another process is writing the index."""


class ModelUnavailableError(QAError, OSError):
    """The embedding model cannot be loaded offline."""


class IndexWriteError(QAError, OSError):
    """The index cannot be written (the disk is full, read-only or not ours); the previous index is kept.

    `errno` is that of the operating system's error, so callers can tell a full disk (ENOSPC) apart.
    """
