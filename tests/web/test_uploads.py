"""Uploads (qa/web/uploads.py): reading files into documents within the limits, deleting them, indexing
on a lower-priority thread."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qa import QAError
from qa.web import app
from qa.web.uploads import INDEXING_NICE, discard, in_background, read_upload, unique_id


def test_broken_pdf_upload_is_named_without_library_warnings(retriever, tmp_path, caplog):
    app.build_app(retriever)  # what the server does before its first request
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with caplog.at_level(logging.WARNING), pytest.raises(QAError, match="broken.pdf: not a readable PDF"):
        read_upload(str(broken), taken=set(), chars=0, count=0)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")], caplog.text


def test_read_upload_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(QAError, match="gone.txt: the uploaded file is gone"):
        read_upload(str(tmp_path / "gone.txt"), taken=set(), chars=0, count=0)


def test_discard_removes_the_file_and_its_emptied_folder(tmp_path: Path):
    alone, shared, plain = tmp_path / ("a" * 64), tmp_path / ("b" * 64), tmp_path / "uploads"
    for folder in (alone, shared, plain):
        folder.mkdir()
    (plain / "three.txt").write_text("x")
    discard(str(plain / "three.txt"))
    assert plain.is_dir(), "only the hash-named folder Gradio made for the file is removed"
    (alone / "one.txt").write_text("x")
    (shared / "two.txt").write_text("x")
    (shared / "other.txt").write_text("x")
    discard(str(alone / "one.txt"))
    discard(str(shared / "two.txt"))
    discard(str(shared / "never-there.txt"))
    assert not alone.exists()
    assert [p.name for p in shared.iterdir()] == ["other.txt"]


def test_indexing_runs_on_a_lower_priority_thread_that_sees_the_event_context():
    import contextvars
    import os
    import threading

    marker = contextvars.ContextVar("marker")
    marker.set("the event")
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    niceness, seen, name = in_background(lambda: (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                                                      marker.get(), threading.current_thread().name))
    assert seen == "the event"  # Gradio's progress finds its event this way
    assert name.startswith("qa-indexing")
    assert niceness == min(19, here + INDEXING_NICE)


def test_unique_ids_are_suffixed():
    assert unique_id("notes", {"notes", "notes-2"}) == "notes-3"
    assert unique_id("other", {"notes"}) == "other"


def test_a_9_mb_upload_is_told_the_limit_it_hit(tmp_path):
    from qa import Settings

    big = tmp_path / "big.txt"
    big.write_text("The okapi eats leaves. " * (9 * 1024 * 1024 // 23))  # 9 MB: under the 10 MB file limit
    with pytest.raises(QAError, match=r"big.txt: 9,437,\d{3} characters of text, over the 500,000 characters a "
                                      r"session's uploads may hold together$"):
        read_upload(str(big), taken=set(), chars=0, count=0, settings=Settings())
    with pytest.raises(QAError, match=r"big.txt: 9.0 MB is over the 8 MB limit for one file"):
        read_upload(str(big), taken=set(), chars=0, count=0, settings=Settings(max_upload_mb=8))


def test_upload_limits_come_from_settings(tmp_path):
    from qa import Settings

    note = tmp_path / "note.txt"
    note.write_text("The okapi eats leaves.")
    limits = Settings(max_session_documents=3, max_session_chars=30)
    assert read_upload(str(note), taken={"note"}, chars=8, count=2, settings=limits).doc_id == "note-2"
    with pytest.raises(QAError, match="a session holds at most 3 uploaded documents"):
        read_upload(str(note), taken=set(), chars=0, count=3, settings=limits)
    with pytest.raises(QAError, match="over the 30 characters a session's uploads may hold together; 9 are taken"):
        read_upload(str(note), taken=set(), chars=9, count=0, settings=limits)
