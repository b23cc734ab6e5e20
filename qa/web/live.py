"""A served collection that follows its index folder: new versions `qa index` writes are taken up live.

`Live` watches the index at `path` from a background thread: every `every` seconds it stats the manifest
(through the link `qa index` swaps atomically, see `qa.index`; a cheap `stat`, nothing is read). When the
manifest is another file, the new version is loaded whole and checked (every checksum, as at start), and
only then does one reference swap: `Live.current`. A question already being answered keeps the retriever it
started with (retrievers never change); the old one is freed once the last such question and the sessions
still holding it let go. A damaged or unreadable version is refused with one logged line, and the old one
keeps serving until a later version loads.

`relayer` puts a visitor's uploads on top of the new version: their sentences and vectors are reused, not
embedded again; the documents the visitor had unticked stay unticked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa import QAError, Retriever, Settings
from qa.index import MANIFEST

log = logging.getLogger(__name__)

Key = tuple[int, int, int, int]


def version_key(path: Path) -> Key | None:
    """What identifies the version at `path`, read with one `stat`; None while there is none."""
    try:
        st = os.stat(path / MANIFEST)  # through the link: a new version is a new file
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


class Live:
    """The retriever over the newest whole version of the index at `path`, kept current by a polling thread.

    `current` is the one reference that changes; `on_swap(old, new)` runs after each swap. `refused` keeps the
    key of the last version that failed to load, so it is tried once, not every poll.
    """

    def __init__(self, path: str | Path, current: Retriever, *, settings: Settings | None = None,
                 every: float = 1.0, on_swap: Callable[[Retriever, Retriever], None] | None = None) -> None:
        self.path, self.current, self.settings, self.every = Path(path), current, settings, every
        self.on_swap = on_swap
        self.key = version_key(self.path)
        self.refused: Key | None = None
        self.swaps = 0
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Load and swap in a new version if there is one; whether the served version changed."""
        key = version_key(self.path)
        if key is None or key == self.key or key == self.refused:
            return False
        started = time.perf_counter()
        try:  # sources are not compared with the files: a newer version is served even if a file changed since
            new = Retriever.load(self.path, settings=self.settings, check_sources=False)
        except (QAError, OSError, ValueError) as exc:
            self.refused = key
            log.warning("kept the served version of %s: the new one was refused (%s)", self.path,
                        " ".join(str(exc).split()))
            return False
        old, self.current, self.key, self.refused = self.current, new, key, None
        self.swaps += 1
        log.warning("serving the new version of %s: %d documents, %d sentences (loaded in %.1fs)",
                    self.path, len(new.documents), len(new.sentences), time.perf_counter() - started)
        if self.on_swap is not None:
            self.on_swap(old, new)
        return True

    def start(self) -> Live:
        def run() -> None:
            while not self.stop.wait(self.every):
                try:
                    self.check()
                except Exception:  # noqa: BLE001 - the watcher must outlive any one bad version
                    log.exception("checking %s for a new version failed; still serving the old one", self.path)

        self._thread = threading.Thread(target=run, name="qa-live-index", daemon=True)
        self._thread.start()
        return self


def relayer(corpus: Retriever, uploads: list[str], selected: list[str], base: Retriever) -> tuple[Retriever, list[str]]:
    """`corpus` (an old base plus `uploads`) rebuilt over the new `base`; and what to search in it.

    The uploads' sentences and vectors are reused as they are. An upload whose id the new base also uses stays
    on top (the visitor's own file wins). Documents that were unticked stay unticked; new ones are ticked.
    """
    unticked = {d.doc_id for d in corpus.documents} - set(selected)
    if uploads:
        own = corpus.subset(uploads)
        new = base.add_parts(own.corpus, [own.sentence_vectors])
    else:
        new = base
    chosen = [d.doc_id for d in new.documents if d.doc_id not in unticked]
    return new, chosen or [d.doc_id for d in new.documents]
