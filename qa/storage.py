"""Atomic, versioned folders on disk: how an index is written, read whole, locked and cleaned.

Nothing here knows what an index holds (that is `qa.index`): a folder is written by a callback and swapped in.
The folder at `idx` is a symbolic link to a hidden version folder beside it,
`.idx.v-XXXXXXXX` (docs/reliability.md says why). `write_version` writes a
new version folder, flushes every file and folder to disk (fsync), then moves
the link over the old one in one atomic rename: a reader, or a process killed
at any moment, sees the old version or the new one, whole. A reader holds a
shared lock (flock) on the version it reads (`reading`); old versions are
deleted only when no reader holds them. Writers hold a lock beside the folder
(filelock, `write_lock`), so a second writer is refused. A plain folder (the
layout before versioned folders) still reads, and the next write replaces it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: no flock; versions are then removed without regard to readers
    fcntl = None  # type: ignore[assignment]

from .errors import CorruptIndexError, IndexLockedError, IndexWriteError, QAError

log = logging.getLogger(__name__)

#: The file written last into a version folder: a folder that holds it is whole (see `_recover`).
MANIFEST = "manifest.json"


# -- writing -------------------------------------------------------------------------------------


def write_version(path: str | Path, write: Callable[[Path], None], *, durable: bool = True) -> Path:
    """Write a new version folder with `write(folder)` and point `path` at it in one atomic step.

    Holds the writer lock (see `write_lock`) while it writes; raises
    `IndexLockedError` if another process holds it. With `durable` (the
    default) every file and folder is flushed to disk (fsync) before the
    swap and the swap after it, so a power cut leaves the old or the new
    version, never a link to files that were not written (docs/reliability.md
    has the cost). Any OS error (a full disk, no permission) becomes one
    `IndexWriteError` naming its meaning and `path`; the old version is kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with write_lock(path):
            version, fd = _new_version(path)
            try:
                try:
                    write(version)
                    os.chmod(version, 0o755)  # mkdtemp makes it private; an index is read by whoever serves it
                    if durable:
                        _sync_tree(version)
                        _sync_dir(path.parent)  # the new folder's name is on disk before anything points to it
                    _replace_dir(version, path)
                except BaseException:
                    shutil.rmtree(version, ignore_errors=True)
                    raise
                if durable:
                    _sync_dir(path.parent)  # the swap itself is on disk
            finally:
                _unlock(fd)
            _collect(path)
    except QAError:
        raise
    except OSError as exc:
        error = IndexWriteError(_write_failure(path, exc))
        error.errno = exc.errno
        raise error from exc
    return path


def _write_failure(path: Path, exc: OSError) -> str:
    """One line for an OS error met while saving the index at `path`."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded on the device holding {path}"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != path else ""
    return f"cannot write the index at {path}: {reason}{where}"


def create(file: Path) -> BinaryIO:
    """A new file to write: OS errors (a full disk) come from Python's own writes, with their errno."""
    return open(file, "xb")  # noqa: SIM115 - closed by the caller's `with`


def _sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder, deepest first (their entries name the files)."""
    for root, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            _sync_file(Path(root) / name)
        _sync_dir(Path(root))


def _sync_file(file: Path) -> None:
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    """fsync a folder, so that the names in it (new files, a renamed link) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(version: Path, target: Path) -> None:
    """Point `target` at `version`: a link made inside `version`, renamed over `target` in one atomic step.

    The link is relative (the folder holding both can move) and is made inside
    the version folder, so one left by a killed writer goes with that folder.
    A plain folder at `target` (an index written before versioned folders) is
    parked beside it first; if the link cannot take its place, the folder is
    moved back, so a failed save loses nothing. A writer killed between the
    two moves leaves it parked; the next save or load puts it back (`_recover`).
    """
    pointer = version / ".pointer"
    os.symlink(version.name, pointer)
    if target.is_symlink() or not target.exists():
        os.replace(pointer, target)
        return
    parking = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old = parking / "index"
    try:
        os.replace(target, old)
    except BaseException:
        parking.rmdir()
        raise
    try:
        os.replace(pointer, target)
    except BaseException:
        os.replace(old, target)  # if this fails too, the old index stays in `parking`; `_recover` puts it back
        parking.rmdir()
        raise
    shutil.rmtree(parking, ignore_errors=True)


# -- versions: made by a writer, read under a shared lock, removed when no one holds them ---------


def _beside(path: Path, kind: str) -> list[Path]:
    """The hidden entries `.{name}.{kind}-*` beside the index at `path`."""
    prefix = f".{path.name}.{kind}-"
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _version_of(path: Path) -> Path | None:
    """The version folder the index at `path` points to; None for a plain folder, another link or nothing."""
    try:
        name = os.readlink(path)
    except OSError:
        return None
    if "/" in name or not name.startswith(f".{path.name}.v-"):
        return None  # not a link this module made: read through it as a plain folder
    return path.parent / name


def _new_version(path: Path) -> tuple[Path, int]:
    """A new, empty version folder beside `path`, locked exclusively (so no one removes it while it is written)."""
    for _ in range(100):
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.v-", dir=path.parent))
        fd = _lock(folder, exclusive=True, wait=True)
        if fd is not None:
            return folder, fd
    raise OSError(errno.EAGAIN, "version folders were removed as soon as they were made", str(path.parent))


def _lock(folder: Path, *, exclusive: bool, wait: bool) -> int | None:
    """An open descriptor of `folder` holding a flock on it; None if the folder is gone or (without `wait`) busy.

    After locking, the folder must still be at its name: one removed meanwhile
    was renamed first (see `_collect`), so it does not count.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        held, named = os.fstat(fd), os.stat(folder)
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise FileNotFoundError(folder)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    os.close(fd)  # closing the only descriptor releases the flock


@contextmanager
def reading(path: Path) -> Iterator[Path]:
    """The folder of one whole version of the index at `path`, kept from removal until the block ends.

    A plain folder (the layout before versions), a link made by someone else
    or a missing index is read in place.
    """
    gone = None
    while True:
        version = _version_of(path)
        if version is None:
            yield path
            return
        fd = _lock(version, exclusive=False, wait=True)
        if fd is not None:
            try:
                yield version
            finally:
                _unlock(fd)
            return
        if version == gone:  # removed versions are not pointed to: this link points to a folder deleted by hand
            raise CorruptIndexError(f"index at {path} points to {version.name}, which is missing; rebuild the index")
        gone = version


def _collect(path: Path) -> None:
    """Remove version folders beside `path` that it does not point to and that no one holds, and their trash.

    Safe without the writer lock: a version being written or read is locked;
    a folder is renamed to `.trash-` under an exclusive lock before it is
    deleted, so a reader that locks it afterwards sees that it is gone.
    """
    for version in _beside(path, "v"):
        if version == _version_of(path):
            continue
        try:
            fd = _lock(version, exclusive=True, wait=False)
        except OSError as exc:
            log.info("cannot remove %s: %s", version, exc)
            continue
        if fd is None:
            continue  # a writer is writing it or a reader loading it: a later save or load removes it
        try:
            if version == _version_of(path):  # a writer pointed to it just before we locked it
                continue
            os.rename(version, version.with_name(f".{path.name}.trash-{version.name}"))
        except OSError as exc:  # a read-only place: nothing can be removed, loading still works
            log.info("cannot remove %s: %s", version, exc)
        finally:
            _unlock(fd)
    for trash in _beside(path, "trash"):
        shutil.rmtree(trash, ignore_errors=True)


# -- reading: what a writer left half done, and paths that leave the folder --------------------


def settle(path: Path) -> None:
    """Wait out, or repair, a plain-folder index moved aside by a writer (see `_replace_dir`)."""
    for _ in range(40):  # a writer moves the old index aside and the new one in within microseconds
        if path.exists() or path.is_symlink() or not _beside(path, "old"):
            return
        clean_stale(path)  # under the lock: puts back an index that a killed writer moved aside
        time.sleep(0.025)


def regular(folder: Path, name: str) -> Path | None:
    """`folder / name` if it is a plain file reached through plain folders (no link leads out); else None."""
    current = folder
    parts = name.split("/")
    try:
        for i, part in enumerate(parts):
            current = current / part
            mode = os.lstat(current).st_mode
            if not (stat.S_ISREG(mode) if i == len(parts) - 1 else stat.S_ISDIR(mode)):
                return None
    except OSError:
        return None
    return current


# -- writers: the lock and what a killed one leaves behind -------------------------------------


def lock_path(path: str | Path) -> Path:
    """The lock file of the index at `path`: hidden, beside it (the directory itself is replaced whole)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextmanager
def write_lock(path: str | Path, *, timeout: float = 0) -> Iterator[None]:
    """Hold the writer lock of the index at `path` (re-entrant in one thread).

    Raises `IndexLockedError` if another writer holds it for longer than
    `timeout` seconds. The operating system releases it when a writer dies,
    so a killed `qa index` never leaves the index locked.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(path), is_singleton=True)
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise IndexLockedError(
            f"index at {path} is being written by another process (lock {lock.lock_file}); "
            "wait for it to finish and try again"
        ) from exc
    try:
        _recover(path)
        _remove_leftovers(path)
        yield
    finally:
        lock.release()


def clean_stale(path: str | Path) -> None:
    """Remove old versions no one holds; put back or remove what a killed writer of a plain folder left.

    Versions need no lock to be removed (see `_collect`); the plain-folder
    leftovers need the writer lock, and are left alone while a writer holds it.
    """
    path = Path(path)
    _collect(path)
    if not _beside(path, "tmp") and not _beside(path, "old"):
        return
    try:
        with write_lock(path):
            pass
    except IndexLockedError:
        log.info("a writer is at work on %s; leaving its temporary files", path)
    except OSError as exc:  # a read-only place: nothing can be cleaned, loading still works
        log.info("cannot clean temporary files beside %s: %s", path, exc)


def remove_index(path: str | Path) -> None:
    """Delete the index at `path` (`shutil.rmtree` on the link would not): the link, its versions, leftovers.

    Under the writer lock; a version a reader is loading is removed by a later save or load.
    """
    path = Path(path)
    with write_lock(path):
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        _collect(path)


def _recover(path: Path) -> None:
    """If a writer was killed between moving a plain-folder index aside and the new one in, put the old one back."""
    if path.exists() or path.is_symlink():
        return
    for parking in _beside(path, "old"):
        if (parking / "index" / MANIFEST).is_file():
            try:
                os.replace(parking / "index", path)
            except OSError:
                return
            log.warning("restored the index at %s that an interrupted write had moved aside", path)
            return


def _remove_leftovers(path: Path) -> None:
    """Remove what earlier writers left: temporary and parked folders (lock held), unused versions."""
    for stale in [*_beside(path, "tmp"), *_beside(path, "old")]:
        log.info("removing %s, left by an interrupted write", stale)
        shutil.rmtree(stale, ignore_errors=True)
    _collect(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
