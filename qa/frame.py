"""Questions about the document itself: who wrote it, where it appeared, what it recommends, what it is about.

Such questions name nothing to search for ("Who wrote this?"), so retrieval
and a ranker trained on questions about content both miss them. Their
answers live in the document's frame: the lines around the body (byline,
source note, author notes) and the lead and conclusion. The method, which
holds for news, blogs, reviews and reports alike:

1. The question is about the document when it names it ("the article",
   "this post", "the review", or a closing "this"/"it") or asks for its
   author or source outright.
2. What it asks for (a role) comes from its words: the author, the source,
   a recommendation, or the topic.
3. The lines that play the role are recognised by how such lines are written
   in any text: "By …", "Posted by …", "<Name> is a <position> at …" for
   authors (in the first or last lines); "first appeared", "originally
   published", "Source:" for the source; sentences that say what should or
   must be done, in the document's second half (the last two), for
   recommendations; the first full sentence of the body (one that ends with a
   full stop, unlike a menu or a sign-up line) for the topic.
   A page title saved with the text, "Headline - Site" or "Headline | Site",
   names the publication that carried it; a "first appeared" line names
   where it came from, and leads when the question asks where it first or
   originally appeared.

When no line plays the role, the question goes the usual way (and is
usually refused). This module only finds the lines: `qa.candidates` asks it
first and hands them to the answer step as the question's candidates.
"""

from __future__ import annotations

import re

from .retrieval import Retriever, Where

#: Sentences at the start and at the end of a document searched for bylines, sources and author notes.
FRAME_LINES = (4, 6)
#: Share of a document, from its end, searched for recommendations (conclusions come last).
CONCLUSION_SHARE = 0.5
#: The probability reported for an answer from the frame: the share of frame answers that were right on the
#: check documents in tests/test_frame.py (documents of six styles, none of them the bundled article).
FRAME_CONFIDENCE = 0.9

_DOCUMENT = (r"(article|document|text|story|piece|post|page|essay|review|op-?ed|column|blog|memo|thread|"
             r"write-?up|editorial|newsletter)")
_NAMES_DOCUMENT = re.compile(
    rf"\b(this|the|that)\s+{_DOCUMENT}\b|\b(this|it)\s*\??\s*$|\b(is|'s)\s+(it|this)\s+about\b"
    r"|\bdoes\s+(it|this)\s+(recommend|suggest|say|argue|conclude|propose|advise|advocate|call|urge)"
    r"|\b(did|was)\s+(it|this)\s+(first\s+)?(appear|published|come|run|posted)",
    re.IGNORECASE)
_ROLES = (
    ("author", re.compile(r"\b(who\s+(wrote|writes|authored|penned|is\s+behind|are\s+behind)|authors?|writers?|"
                          r"written\s+by|byline)\b", re.IGNORECASE)),
    ("source", re.compile(r"\b(appear\w*|published|publication|originally|first\s+(ran|run|posted)|source|outlet|"
                          r"come\s+from)\b", re.IGNORECASE)),
    ("recommendation", re.compile(r"\b(recommend\w*|suggest\w*|advis\w*|advocat\w*|propos\w*|call(s|ed)?\s+for|"
                                  r"urg\w+|conclu\w+|what\s+should)\b", re.IGNORECASE)),
    ("topic", re.compile(r"\babout\s*\??\s*$|\b(summar\w+|main\s+(point|idea|argument)|gist|topic)\b",
                         re.IGNORECASE)),
)
_AUTHOR_OUTRIGHT = re.compile(r"^\s*who\s+(is|are)\s+the\s+(authors?|writers?)\s*\??\s*$", re.IGNORECASE)

_BYLINE = re.compile(r"^\W*(?i:by|written\s+by|(originally\s+)?posted\s+by|report(ed|ing)\s+by|words\s+by|"
                     r"reviewed\s+by\s*:?|author\s*:)\s+"
                     r"(?!(?i:the|a|an|this|that|then|now|far|contrast|comparison|default)\b)"
                     r"([A-Z][\w.'-]+|[\w.-]*\d[\w.-]*)")  # a name, or a user name with a digit
_NAME = r"[A-Z][\w.'-]+(?:\s+[A-Z][\w.'-]+){1,3}"
_BIO = re.compile(
    rf"^\W*{_NAME}\s*,?\s+(is|was|has\s+been|serves\s+as)\s+(a|an|the)\s+[^.]{{0,100}}?\b(fellow|director|editor|"
    r"writer|reporter|correspondent|professor|journalist|author|analyst|researcher|contributor|columnist|"
    r"lecturer|scientist|founder|officer|manager|student|economist|consultant|partner|chair\w*|president|"
    r"blogger|critic|reviewer)\b")
_SOURCE = re.compile(r"\b(first|originally)\s+(appeared|published|ran|posted)\b|\b(appeared|published|reprinted|"
                     r"republished|syndicated)\s+(on|in|at|by|with\s+permission)\b|^\W*source\s*:|\bcourtesy\s+of\b",
                     re.IGNORECASE)
_PAGE_TITLE = re.compile(r"^(?P<headline>.+?)\s+(?:-|\u2013|\u2014|\||::)\s+"
                         r"(?P<site>[A-Z][\w&.'\u2019-]*(?:\s+(?:[A-Z][\w&.'\u2019-]*|of|the|and|on|for|&)){0,4})\s*$")
_ORIGINAL = re.compile(r"\b(first|originally|original)\b", re.IGNORECASE)
_RECOMMENDS = re.compile(r"\b(should|must|ought\s+to|needs?\s+to|recommend\w*|it\s+is\s+(essential|necessary|vital|"
                         r"important|time))\b", re.IGNORECASE)
_WORDS = re.compile(r"\w+")
_FULL_STOP = re.compile(r"[.!?][\"')\]\u201d\u2019]*$")


def question_role(question: str) -> str | None:
    """The role a question about the document asks for ("author", "source", "recommendation", "topic"),
    or None when the question is not about the document itself."""
    if not (_NAMES_DOCUMENT.search(question) or _AUTHOR_OUTRIGHT.search(question)):
        return None
    for role, pattern in _ROLES:
        if pattern.search(question):
            return role
    return None


def frame_lines(retriever: Retriever, question: str, *, where: Where = None) -> list[int] | None:
    """The ids of the frame lines that answer a question about the document itself, or None (see the module
    docstring). The candidate gathering (`qa.candidates.question_candidates`) asks this first; each line is
    cited with the probability `FRAME_CONFIDENCE`."""
    role = question_role(question)
    if role is None:
        return None
    doc_id = _document_asked(retriever, question, where)
    if doc_id is None:
        return None
    sentence_ids = list(retriever.sentence_ids(doc_id))
    texts = {i: " ".join(retriever.sentences[i].text.split()) for i in sentence_ids}
    first, last = FRAME_LINES
    edges = sentence_ids[:first] + [i for i in sentence_ids[-last:] if i not in sentence_ids[:first]]
    if role == "author":
        chosen = [i for i in edges if _BYLINE.search(texts[i]) or _BIO.search(texts[i])][:3]
    elif role == "source":
        original = [i for i in edges if _SOURCE.search(texts[i])]
        carried = [i for i in edges if _page_title(texts[i]) and i not in original]
        chosen = (original + carried if _ORIGINAL.search(question) else carried + original)[:2]
    elif role == "topic":
        body = [i for i in sentence_ids if len(_WORDS.findall(texts[i])) >= 8 and not _is_frame(texts[i])]
        chosen = ([i for i in body if _FULL_STOP.search(texts[i])] or body)[:1]
    else:
        tail = sentence_ids[int(len(sentence_ids) * (1 - CONCLUSION_SHARE)):]
        chosen = [i for i in tail if _RECOMMENDS.search(texts[i]) and not _is_frame(texts[i])][-2:]
    return chosen or None


def _is_frame(text: str) -> bool:
    return bool(_BYLINE.search(text) or _BIO.search(text) or _SOURCE.search(text) or _page_title(text))


def _page_title(text: str) -> bool:
    """Whether a line reads as a web page's title: a headline of four words or more, a dash or bar,
    and the name of the site (capitalised words) to end the line."""
    match = _PAGE_TITLE.match(text)
    return match is not None and len(_WORDS.findall(match["headline"])) >= 4


def _document_asked(retriever: Retriever, question: str, where: Where) -> str | None:
    """The document a question about "the document" means: the only one allowed, else the best match."""
    allowed = retriever.allowed(where)
    doc_ids = [d.doc_id for n, d in enumerate(retriever.documents) if allowed is None or allowed[n]]
    if len(doc_ids) == 1:
        return doc_ids[0]
    passages = retriever.search(question, k=1, where=where)
    return passages[0].doc_id if passages else None
