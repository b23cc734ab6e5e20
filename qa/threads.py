"""Torch's CPU threads: chosen on purpose, for one query and for batch embedding.

Torch defaults to one intra-op thread per core. On a 2-core machine shared
with other work that collapses: its OpenMP threads wait on each other while
one of them is descheduled, and one query embedding took 180-400 ms with two
threads against 9-30 ms with one (README, "Speed"; `bench/speed.py --busy`).
So the defaults are one thread for a query and one for batch indexing (a
batch with two threads was also slower on a busy machine); both can be
changed in `Settings` or with the environment variables QA_QUERY_THREADS,
QA_INDEX_THREADS, or QA_THREADS for both.

Torch with OpenMP keeps the thread count per OS thread: a web server's
worker threads each keep their own, and a new thread starts from the last
count set anywhere. `use_threads` therefore sets it in the calling thread,
right before torch runs; it is cheap when nothing changes. Any module that
runs torch (the embedder, a ranker) calls it the same way.
"""

from __future__ import annotations

import os

from .errors import QAError

DEFAULT_QUERY_THREADS = 1
DEFAULT_INDEX_THREADS = 1


def default_ranker_workers() -> int:
    """Pairs the answer ranker reads at once: two, or one on a single-CPU machine."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def env_threads(name: str, default: int) -> int:
    """The thread count in environment variable `name`, else QA_THREADS, else `default`."""
    for variable in (name, "QA_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise QAError(f"{variable}={value!r}: a thread count must be a whole number of at least 1")
            return int(value)
    return default


def use_threads(count: int) -> None:
    """Make torch use `count` intra-op threads in the calling thread (torch is imported here, lazily)."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
