"""Answer questions about documents with cited snippets.

    from qa import Assistant, Retriever
    answer = Assistant(Retriever.default()).ask("What did CNN report about troop numbers?")
"""

from .answer import Answer, Assistant, Citation, Phrase
from .config import Settings
from .documents import Document, bundled_article
from .errors import (
    CorruptIndexError,
    DocumentError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidQuestionError,
    ModelUnavailableError,
    QAError,
    StaleIndexError,
)
from .retrieval import Passage, Retriever

__all__ = [
    "Answer",
    "Assistant",
    "Citation",
    "CorruptIndexError",
    "Document",
    "DocumentError",
    "IndexLockedError",
    "IndexNotFoundError",
    "InvalidQuestionError",
    "ModelUnavailableError",
    "Passage",
    "Phrase",
    "QAError",
    "Retriever",
    "Settings",
    "StaleIndexError",
    "bundled_article",
]
