"""`qa index` over folders: incremental updates (encoder calls counted), the writer lock, and real kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qa import Retriever
from qa.cli import main
from qa.collection import find_files, sync
from qa.errors import IndexLockedError, QAError
from qa.index import MANIFEST, lock_path, write_lock

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


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


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
    assert hidden(tmp_path) == []


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
    point, staging, target = sys.argv[1:]
    stored = index.load_index(staging)
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "written":          # the new index is complete in its temporary directory
        index._replace_dir = die
    elif point == "swapping":       # the old index is moved aside, the new one not yet in place
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith("/index"):
                die()
        os.replace = replace
    elif point == "swapped":        # the new index is in place, the old one not yet deleted
        index.shutil.rmtree = die
    from qa.config import Settings
    index.save_index(target, corpus=stored.corpus, vectors=stored.vectors, lexical=stored.lexical,
                     settings=Settings(**stored.manifest["settings"]))
""").format(root=str(ROOT))


@pytest.mark.parametrize("point", ["written", "swapping", "swapped"])
def test_a_save_killed_at_any_point_leaves_a_loadable_index(tmp_path: Path, point: str) -> None:
    write(tmp_path / "docs", TEXTS)
    out, staging = tmp_path / "idx", tmp_path / "staging" / "idx"
    sync([tmp_path / "docs"], out)
    write(tmp_path / "more", {"food.txt": "Bazin is a dough of barley flour.", "sea.txt": "Tuna run in spring."})
    sync([tmp_path / "docs", tmp_path / "more"], staging)
    before = (out / MANIFEST).read_bytes()

    result = subprocess.run([sys.executable, "-c", KILLED_SAVE, point, str(staging), str(out)], timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert hidden(tmp_path), "the killed writer left something behind"
    loaded = Retriever.load(out)  # cleans up what the killed writer left, or puts the old index back
    assert hidden(tmp_path) == []
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
    assert hidden(tmp_path) == []


def test_write_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    with write_lock(tmp_path / "idx"), write_lock(tmp_path / "idx"):
        pass
    with write_lock(tmp_path / "idx"):
        pass
