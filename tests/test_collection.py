"""`qa index` over folders: incremental updates (encoder calls counted), the writer lock, and real kills."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import faiss
import pytest
from index_layout import as_plain_folder, leftovers

import qa.index
from qa import Retriever
from qa.cli import main
from qa.collection import find_files, sync
from qa.errors import IndexLockedError, QAError
from qa.index import MANIFEST
from qa.storage import lock_path, write_lock

QA = Path(sys.executable).parent / "qa"
ROOT = Path(__file__).resolve().parents[1]
TEXTS = {
    "ports.txt": "Tobruk has a deep natural harbour. Fishing boats leave the quay at dawn.",
    "land/desert.md": "# Desert\n\nThe Sahara covers most of southern Libya. Summer temperatures exceed forty degrees.",
    "land/oases.txt": "Oases support small towns. Dates grow in the oasis of Ghadames.",
    "history/rome.html": "<html><head><title>Rome</title></head><body><p>Roman ruins stand at Leptis Magna.</p>"
                         "<p>Sabratha has a theatre by the sea.</p></body></html>",
}


def write(folder: Path, texts: dict[str, str]) -> None:
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def embedded(calls: list[list[str]]) -> int:
    return sum(map(len, calls))


def test_find_files_walks_folders_with_stable_ids(tmp_path: Path) -> None:
    write(tmp_path / "docs", TEXTS | {"a/ports.txt": "Another ports file.", "a/ports.md": "Clashing id.",
                                      ".git/notes.txt": "hidden", "image.png": "not text"})
    files, skipped = find_files([tmp_path / "docs", tmp_path / "docs" / "ports.txt"])
    assert sorted(f.doc_id for f in files) == ["a/ports", "history/rome", "land/desert", "land/oases", "ports"]
    assert skipped == [(str((tmp_path / "docs/a/ports.txt").resolve()),
                        f"same doc_id 'a/ports' as {(tmp_path / 'docs/a/ports.md').resolve()}")]
    with pytest.raises(QAError, match="no such file"):
        find_files([tmp_path / "missing"])


def test_sync_embeds_only_new_and_changed_files(tmp_path: Path, spy_embed_passages: list[list[str]]) -> None:
    docs, out = tmp_path / "docs", tmp_path / "idx"
    write(docs, TEXTS | {"empty.txt": ""})
    first = sync([docs], out)
    assert (first.documents, first.removed) == (4, [])
    assert sorted(first.added) == ["history/rome", "land/desert", "land/oases", "ports"]
    assert first.skipped == [(str((docs / "empty.txt").resolve()), "no text found in the file")]
    assert embedded(spy_embed_passages) == first.sentences == first.embedded

    spy_embed_passages.clear()
    stamp = (out / MANIFEST).stat().st_mtime_ns
    again = sync([docs], out)
    assert spy_embed_passages == [] and again.unchanged == 4 and again.embedded == 0
    assert (out / MANIFEST).stat().st_mtime_ns == stamp, "nothing changed: nothing written"

    (docs / "land/oases.txt").write_text("Oases support small towns. Dates and olives grow in Ghadames.")
    (docs / "ports.txt").unlink()
    write(docs, {"new/food.txt": "Bazin is a dough of barley flour."})
    os.utime(docs / "land/desert.md", (1, 1))  # touched, same text: read again, not embedded
    spy_embed_passages.clear()
    update = sync([docs], out)
    assert (update.added, update.changed, update.removed) == (["new/food"], ["land/oases"], ["ports"])
    assert sorted(t for call in spy_embed_passages for t in call) == sorted(
        ["Oases support small towns.", "Dates and olives grow in Ghadames.", "Bazin is a dough of barley flour."])

    loaded = Retriever.load(out)
    assert sorted(d.doc_id for d in loaded.documents) == ["history/rome", "land/desert", "land/oases", "new/food"]
    assert loaded.document("land/desert").modified == 1
    assert loaded.document("history/rome").title == "Rome"
    assert loaded.search("What is bazin made of?", k=1)[0].doc_id == "new/food"
    assert loaded.search("dates", k=1, where=str(docs / "land"))[0].doc_id == "land/oases"
    assert leftovers(tmp_path) == []


def test_sync_keeps_documents_from_other_paths(tmp_path: Path, spy_embed_passages: list[list[str]]) -> None:
    write(tmp_path / "one", {"ports.txt": TEXTS["ports.txt"]})
    write(tmp_path / "two", {"oases.txt": TEXTS["land/oases.txt"]})
    sync([tmp_path / "one"], tmp_path / "idx")
    spy_embed_passages.clear()
    summary = sync([tmp_path / "two"], tmp_path / "idx")
    assert summary.documents == 2 and summary.removed == [] and summary.embedded == 2
    assert embedded(spy_embed_passages) == 2


def test_cli_index_prints_a_summary_and_filters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path / "docs", TEXTS)
    assert main(["index", str(tmp_path / "docs"), "--out", str(tmp_path / "idx")]) == 0
    err = capsys.readouterr().err
    assert "indexed 4 documents" in err and "added 4, changed 0, removed 0, unchanged 0" in err
    assert main(["search", "Roman ruins", "--index", str(tmp_path / "idx"), "--where", "land", "--json"]) == 0
    assert {p["doc_id"] for p in __import__("json").loads(capsys.readouterr().out)["passages"]} <= {
        "land/desert", "land/oases"}


def test_cli_index_on_a_full_disk_prints_one_line_and_keeps_the_index(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "docs", TEXTS)
    out = tmp_path / "idx"
    sync([tmp_path / "docs"], out)
    before = (out / MANIFEST).read_bytes()
    write(tmp_path / "docs", {"new.txt": "Misrata is a port city."})
    real = faiss.write_index

    def write_to_a_full_device(index: faiss.Index, _destination: object, *args: object) -> None:
        with open("/dev/full", "wb", buffering=0) as device:  # a real ENOSPC from the kernel
            real(index, faiss.PyCallbackIOWriter(device.write))

    monkeypatch.setattr(qa.index.faiss, "write_index", write_to_a_full_device)
    assert main(["index", str(tmp_path / "docs"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"qa: error: no space left on the device holding {out}"]
    assert (out / MANIFEST).read_bytes() == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert len(Retriever.load(out).documents) == 4


def test_qa_index_past_the_file_size_limit_prints_one_line(tmp_path: Path) -> None:
    """A real OS error with nothing patched: the kernel refuses writes past RLIMIT_FSIZE (EFBIG)."""
    write(tmp_path / "docs", TEXTS)
    out = tmp_path / "idx"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    # Queries on torch: the ONNX query model is not exported (a large write) into this session's empty cache.
    result = subprocess.run([str(QA), "index", str(tmp_path / "docs"), "--out", str(out)], preexec_fn=limit,
                            env=os.environ | {"QA_QUERY_BACKEND": "torch"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"qa: error: cannot write the index at {out}: {os.strerror(errno.EFBIG)}"]
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_os_errors_outside_a_save_print_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path / "docs", TEXTS)
    (tmp_path / "taken").write_text("a file, not a folder", encoding="utf-8")
    assert main(["index", str(tmp_path / "docs"), "--out", str(tmp_path / "taken" / "sub" / "idx")]) == 1
    assert capsys.readouterr().err.splitlines() == [f"qa: error: Not a directory: {tmp_path / 'taken' / 'sub'}"]


def test_a_second_writer_is_stopped_and_readers_keep_the_last_index(tmp_path: Path) -> None:
    write(tmp_path / "docs", TEXTS)
    out = tmp_path / "idx"
    sync([tmp_path / "docs"], out)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"lock = FileLock({str(lock_path(out))!r}); lock.acquire(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        write(tmp_path / "docs", {"new.txt": "Misrata is a port city."})
        with pytest.raises(IndexLockedError, match="being written by another process"):
            sync([tmp_path / "docs"], out)
        assert len(Retriever.load(out).documents) == 4, "readers load the last complete index"
    finally:
        holder.kill()
        holder.wait()
    assert sync([tmp_path / "docs"], out).documents == 5


# -- killed writers ---------------------------------------------------------------------------

# Run in a fresh process: load a finished index from `staging` (no model needed), then save it over
# `target`, sending ourselves SIGKILL at the chosen point of the write.
KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import qa.index as index
    import qa.storage as storage
    point, staging, target = sys.argv[1:]
    stored = index.load_index(staging)
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "written":          # the new version is complete and flushed, nothing points to it yet
        storage._replace_dir = die
    elif point == "pointed":        # the link to the new version is made, not yet moved over the old one
        real_symlink = os.symlink
        def symlink(*args, **kwargs):
            real_symlink(*args, **kwargs)
            die()
        os.symlink = symlink
    elif point == "migrating":      # a plain-folder index (the layout before versions) is moved aside
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith("/index"):
                die()
        os.replace = replace
    elif point == "swapped":        # the index points to the new version, the old one is not yet deleted
        storage.shutil.rmtree = die
    from qa.config import Settings
    index.save_index(target, corpus=stored.corpus, vectors=stored.vectors, lexical=stored.lexical,
                     settings=Settings(**stored.manifest["settings"]))
""").format(root=str(ROOT))


@pytest.mark.parametrize("point", ["written", "pointed", "migrating", "swapped"])
def test_a_save_killed_at_any_point_leaves_a_loadable_index(tmp_path: Path, point: str) -> None:
    write(tmp_path / "docs", TEXTS)
    out, staging = tmp_path / "idx", tmp_path / "staging" / "idx"
    sync([tmp_path / "docs"], out)
    if point == "migrating":
        as_plain_folder(out)
    write(tmp_path / "more", {"food.txt": "Bazin is a dough of barley flour.", "sea.txt": "Tuna run in spring."})
    sync([tmp_path / "docs", tmp_path / "more"], staging)
    before = (out / MANIFEST).read_bytes()

    result = subprocess.run([sys.executable, "-c", KILLED_SAVE, point, str(staging), str(out)], timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert leftovers(tmp_path), "the killed writer left something behind"
    loaded = Retriever.load(out)  # cleans up what the killed writer left, or puts the old index back
    assert leftovers(tmp_path) == []
    expected = 6 if point == "swapped" else 4
    assert len(loaded.documents) == expected
    assert ((out / MANIFEST).read_bytes() == before) == (point != "swapped")


def test_qa_index_killed_while_embedding_leaves_the_previous_index(
        tmp_path: Path, spy_embed_passages: list[list[str]]) -> None:
    write(tmp_path / "docs", TEXTS)
    out = tmp_path / "idx"
    sync([tmp_path / "docs"], out)
    sentences = [f"Caravan number {i} crossed the desert to Ghat with salt and dates." for i in range(200)]
    write(tmp_path / "more", {"caravans.txt": " ".join(sentences)})
    process = subprocess.Popen([str(QA), "-v", "index", str(tmp_path / "docs"), str(tmp_path / "more"),
                                "--out", str(out)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if "embedding" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(Retriever.load(out).documents) == 4, "the previous index is intact"

    spy_embed_passages.clear()
    summary = sync([tmp_path / "docs", tmp_path / "more"], out)  # the next run completes the work
    assert summary.added == ["caravans"] and summary.unchanged == 4
    assert embedded(spy_embed_passages) == 200
    assert leftovers(tmp_path) == []


def test_write_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    with write_lock(tmp_path / "idx"), write_lock(tmp_path / "idx"):
        pass
    with write_lock(tmp_path / "idx"):
        pass
