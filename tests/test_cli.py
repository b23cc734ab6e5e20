"""The `qa` command line, in process (fast) and as a real subprocess (exit codes, stderr)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa import bundled_article
from qa.cli import main

QA = Path(sys.executable).parent / "qa"
TROOPS = "How many troops would the new US policy send to Libya?"
CITATION_FIELDS = {"n": int, "doc_id": str, "title": str, "start": int, "end": int, "text": str, "score": float}
PASSAGE_FIELDS = {"doc_id": str, "title": str, "start": int, "end": int, "text": str, "score": float}


def squash(text: str) -> str:
    return " ".join(text.split())


def has_type(value: object, kind: type) -> bool:
    return type(value) is kind  # bool is not an int here, and an int score is not a float


def check_ask_schema(out: dict) -> None:
    assert has_type(out.get("question"), str)
    assert has_type(out.get("answer"), str)
    assert has_type(out.get("found"), bool)
    assert has_type(out.get("citations"), list)
    for n, citation in enumerate(out["citations"], start=1):
        for field, kind in CITATION_FIELDS.items():
            assert has_type(citation.get(field), kind), f"citation field {field!r}: {citation.get(field)!r}"
        assert citation["n"] == n
        assert 0 <= citation["start"] < citation["end"]
        assert citation["page"] is None or has_type(citation["page"], int)  # a PDF's page, 1-based
        assert citation["section"] is None or has_type(citation["section"], str)


def check_search_schema(out: dict) -> None:
    assert has_type(out.get("query"), str)
    assert has_type(out.get("passages"), list)
    for passage in out["passages"]:
        for field, kind in PASSAGE_FIELDS.items():
            assert has_type(passage.get(field), kind), f"passage field {field!r}: {passage.get(field)!r}"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_qa(*argv: str | Path, cwd: Path, command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or [str(QA)]), *map(str, argv)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def hidden_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "plant-notes.md").write_text(
        "# Plant notes\n\nThe zorbax desalination plant near Tobruk produces violet water.\n\n"
        "Engineers call it the quietest plant in Cyrenaica.\n",
        encoding="utf-8",
    )
    (folder / "market.html").write_text(
        "<html><head><title>Market day</title><script>var hidden = 1;</script></head>"
        "<body><p>The Misrata market sells saffron every Tuesday.</p></body></html>",
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="module")
def built_index(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-index") / "idx"
    assert main(["index", str(corpus / "plant-notes.md"), str(corpus / "market.html"), "--out", str(out)]) == 0
    return out


# -- ask ---------------------------------------------------------------------------------------


def test_ask_json_matches_the_schema(capsys: pytest.CaptureFixture[str], article_index_dir: Path) -> None:
    code, out, err = run(capsys, "ask", TROOPS, "--index", article_index_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    check_ask_schema(answer)
    assert answer["question"] == TROOPS
    assert answer["found"] is True
    assert answer["citations"]
    text = bundled_article().text
    for citation in answer["citations"]:
        assert citation["doc_id"] == "libya-policy-newsweek"
        assert citation["title"] == bundled_article().title
        assert text[citation["start"] : citation["end"]] == citation["text"]
        assert squash(citation["text"]) in answer["answer"]
        assert f"[{citation['n']}]" in answer["answer"]
    assert "fifty US special operations" in squash(answer["citations"][0]["text"])


def test_ask_unanswerable_cites_nothing(
    capsys: pytest.CaptureFixture[str], article_index_dir: Path, article_dev: dict
) -> None:
    code, out, _ = run(capsys, "ask", article_dev["unanswerable"][0], "--index", article_index_dir, "--json")
    assert code == 0
    answer = json.loads(out)
    check_ask_schema(answer)
    assert answer["found"] is False
    assert answer["citations"] == []


def test_ask_text_output_lists_citations(capsys: pytest.CaptureFixture[str], article_index_dir: Path) -> None:
    code, out, err = run(capsys, "ask", TROOPS, "--index", article_index_dir)
    assert code == 0, err
    assert "fifty US special operations" in squash(out)
    assert "[1] " in out and "(characters " in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_ask_with_history_resolves_the_follow_up(
    capsys: pytest.CaptureFixture[str], article_index_dir: Path, tmp_path: Path
) -> None:
    first = "What did the CNN report say about Haftar?"
    history = tmp_path / "history.json"
    history.write_text(json.dumps([[first, "Closer cooperation with Haftar."]]), encoding="utf-8")
    follow_up = "Why should that be viewed warily?"
    code, out, err = run(capsys, "ask", follow_up, "--index", article_index_dir, "--history", history, "--json")
    assert code == 0, err
    answer = json.loads(out)
    check_ask_schema(answer)
    assert answer["question"] == follow_up
    assert first in answer["query"]


@pytest.mark.parametrize(
    "content",
    ["not json at all", '{"question": "answer"}', '[["only a question"]]', "[[1, 2]]", '"a string"',
     '[["q", "a", "extra"]]'],
)
def test_malformed_history_is_an_error(
    capsys: pytest.CaptureFixture[str], article_index_dir: Path, tmp_path: Path, content: str
) -> None:
    history = tmp_path / "history.json"
    history.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "ask", TROOPS, "--index", article_index_dir, "--history", history)
    assert code != 0
    assert out == ""
    assert err.startswith("qa: error:") and len(err.strip().splitlines()) == 1
    assert "history" in err


def fresh_cache(path: Path, user_cache: Path) -> Path:
    """An empty user cache but for the exported query model, shared with the session's (exporting takes seconds)."""
    (path / "qa").mkdir(parents=True)
    (path / "qa" / "onnx").symlink_to(user_cache / "qa" / "onnx", target_is_directory=True)
    return path


def test_first_run_on_a_fresh_machine_writes_only_to_the_user_cache(tmp_path: Path) -> None:
    """An empty user cache: the default index is built and the query model exported, offline, quietly."""
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([str(QA), "search", TROOPS, "-k", "1", "--json"], cwd=work, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "XDG_CACHE_HOME": str(cache),
                                                         "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert list(work.iterdir()) == [], "nothing is written to the current directory"
    assert (cache / "qa" / "index" / "default" / "manifest.json").is_file()
    assert list((cache / "qa" / "onnx").glob("*/model.onnx"))
    assert "fifty US special operations" in squash(json.loads(result.stdout)["passages"][0]["text"])
    assert result.stderr == "", "no progress bars or warnings when stderr is not a terminal"


def test_progress_bar_only_on_a_terminal(tmp_path: Path, user_cache: Path, retriever) -> None:
    """Building the default index shows a bar on a terminal (a pseudo-terminal here)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm needs a width
    try:
        result = subprocess.run([str(QA), "search", TROOPS, "-k", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=follower, timeout=300,
                                env={**os.environ, "XDG_CACHE_HOME": str(fresh_cache(tmp_path / "cache", user_cache))})
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed
                break
            if not data:
                break
            shown += data
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert result.returncode == 0
    assert b"embedding" in shown and b"sentence" in shown


def test_index_writes_no_progress_bar_into_a_log(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Derna lies on the coast. It was flooded in 2023.", encoding="utf-8")
    result = run_qa("index", notes, "--out", tmp_path / "idx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"indexed 1 documents, 2 sentences, 1 chunks into {tmp_path / 'idx'}",
                                                  "  added 1, changed 0, removed 0, unchanged 0; embedded 2 sentences"]


def test_index_warns_about_damaged_utf8_and_indexes_the_rest(tmp_path: Path) -> None:
    """The issue's file: indexed as UTF-8 with U+FFFD at the broken bytes (not as "Ã(" and "â‚"), one warning line."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"Valid start. Then broken: \xc3\x28 and \xe2\x82 here\xe2\x80\xa6")
    result = run_qa("index", notes, "--out", tmp_path / "idx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == ("WARNING notes.txt: damaged UTF-8, 3 bytes are not valid (byte 0xc3 at position 26, bytes "
                        "0xe2 0x82 at position 33); each broken spot reads as U+FFFD, the replacement character: "
                        "repair the file to restore them")
    assert lines[1].startswith("indexed 1 documents")
    found = run_qa("search", "broken", "-k", "2", "--index", tmp_path / "idx", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    texts = [p["text"] for p in json.loads(found.stdout)["passages"]]
    assert "Valid start. Then broken: \ufffd( and \ufffd here\u2026" in texts


def test_index_warns_about_a_short_note_whose_utf8_only_breaks_off(tmp_path: Path) -> None:
    """Issue 33's 77-byte note has no whole multi-byte character: it was read as Windows-1252, quietly."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "memo.txt").write_bytes(
        b"Valid start of the memo. Then broken: \xc3\x28 and \xe2\x82 here. The vault code is 4417.")
    result = run_qa("index", folder, "--out", tmp_path / "idx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("WARNING memo.txt: damaged UTF-8, 3 bytes are not valid (byte 0xc3 at position 38, "
                               "bytes 0xe2 0x82 at position 45)")
    assert lines[1].startswith("indexed 1 documents")


# -- search ------------------------------------------------------------------------------------


def test_search_json_matches_the_schema(capsys: pytest.CaptureFixture[str], article_index_dir: Path) -> None:
    code, out, err = run(capsys, "search", TROOPS, "-k", "2", "--index", article_index_dir, "--json")
    assert code == 0, err
    result = json.loads(out)
    check_search_schema(result)
    assert result["query"] == TROOPS
    assert len(result["passages"]) == 2
    text = bundled_article().text
    for passage in result["passages"]:
        assert text[passage["start"] : passage["end"]] == passage["text"]
    scores = [p["score"] for p in result["passages"]]
    assert scores == sorted(scores, reverse=True)


# -- index and info ----------------------------------------------------------------------------


def test_index_then_ask_and_info(capsys: pytest.CaptureFixture[str], built_index: Path, corpus: Path) -> None:
    code, out, err = run(capsys, "ask", "What does the zorbax plant produce?", "--index", built_index, "--json")
    assert code == 0, err
    answer = json.loads(out)
    check_ask_schema(answer)
    assert answer["found"] is True
    assert answer["citations"][0]["doc_id"] == "plant-notes"
    assert answer["citations"][0]["title"] == "Plant notes"
    assert "violet water" in answer["citations"][0]["text"]

    code, out, err = run(capsys, "info", built_index)
    assert code == 0, err
    manifest = json.loads(out)
    assert manifest["counts"]["documents"] == 2
    by_id = {d["doc_id"]: d for d in manifest["documents"]}
    assert set(by_id) == {"plant-notes", "market"}
    assert by_id["market"]["title"] == "Market day"
    assert by_id["plant-notes"]["source"] == str((corpus / "plant-notes.md").resolve())


def test_index_a_directory(capsys: pytest.CaptureFixture[str], corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    (folder / "plant-notes.md").write_bytes((corpus / "plant-notes.md").read_bytes())
    (folder / "nested" / "market.html").write_bytes((corpus / "market.html").read_bytes())
    (folder / "ignored.xlsx").write_bytes(b"PK not a supported type")
    code, _, err = run(capsys, "index", folder, "--out", tmp_path / "idx")
    assert code == 0, err
    assert "indexed 2 documents" in err
    code, out, _ = run(capsys, "search", "saffron market", "-k", "1", "--index", tmp_path / "idx", "--json")
    assert code == 0
    assert json.loads(out)["passages"][0]["doc_id"] == "nested/market"  # ids of files in folders are paths


# -- as a real process ---------------------------------------------------------------------------


def test_subprocess_ask_json(article_index_dir: Path, tmp_path: Path) -> None:
    result = run_qa("ask", TROOPS, "--index", article_index_dir, "--json", cwd=tmp_path,
                    command=[sys.executable, "-m", "qa.cli"])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    check_ask_schema(answer)
    assert answer["found"] is True
    assert list(tmp_path.iterdir()) == [], "nothing is written to the current directory"


def broken_index(directory: Path, article_index_dir: Path) -> Path:
    path = directory / "broken"
    path.mkdir()
    shutil.copytree(article_index_dir, path, dirs_exist_ok=True)
    (path / "vectors.faiss").write_bytes(b"truncated")
    return path


ERROR_CASES = {
    "empty question": lambda d, a: ["ask", ""],
    "blank question": lambda d, a: ["search", "  \t "],
    "over-long question": lambda d, a: ["ask", "why " * 300, "--index", a],
    "k below one": lambda d, a: ["search", "Libya", "-k", "0", "--index", a],
    "missing index": lambda d, a: ["ask", TROOPS, "--index", d / "no-such-index"],
    "info of missing index": lambda d, a: ["info", d / "no-such-index"],
    "corrupt index": lambda d, a: ["search", TROOPS, "--index", broken_index(d, a)],
    "missing history": lambda d, a: ["ask", TROOPS, "--index", a, "--history", d / "no-history.json"],
    "missing ranker": lambda d, a: ["ask", TROOPS, "--index", a, "--ranker", d / "no-such-ranker"],
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_print_one_line_and_exit_non_zero(case: str, tmp_path: Path, article_index_dir: Path) -> None:
    result = run_qa(*ERROR_CASES[case](tmp_path, article_index_dir), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qa: error:")
    assert not (tmp_path / "index").exists(), "an error must not build the default index"


@pytest.mark.parametrize("command", ["search --json", "info"])
def test_reader_closing_the_pipe_early_is_a_quiet_exit(command: str, tmp_path: Path, article_index_dir: Path) -> None:
    """`qa search ... --json | head` and `qa info DIR | head`: no BrokenPipeError traceback, status 141 as git's."""
    argv = ["info", article_index_dir] if command == "info" else ["search", TROOPS, "--index", article_index_dir,
                                                                  "--json"]
    process = subprocess.Popen([str(QA), *map(str, argv)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before qa writes a byte, as `head` is after its lines
    _, err = process.communicate(timeout=300)
    assert err.decode() == ""
    assert process.returncode == 141


@pytest.mark.parametrize(("command", "field"), [("ask", "question"), ("search", "query")])
def test_question_with_a_byte_that_is_not_utf8_is_cleaned(command: str, field: str, tmp_path: Path,
                                                          article_index_dir: Path) -> None:
    """`qa ask "$(printf 'Who is \\xff Haftar?')"`: a warning naming the byte, then the answer, no traceback."""
    argv = [str(QA), command, b"Who is Khalifa \xff Haftar?", "--index", str(article_index_dir), "--json"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().splitlines() == [
        f"qa: warning: the {field} has bytes that are not UTF-8 (0xff); they were left out"]
    output = json.loads(result.stdout)
    assert output[field] == "Who is Khalifa  Haftar?"
    if command == "ask":
        check_ask_schema(output)
        assert output["found"] is True
    else:
        check_search_schema(output)
        assert output["passages"]


@pytest.mark.parametrize("command", ["ask", "search"])
def test_lone_surrogate_in_the_question_is_dropped(command: str, capsys: pytest.CaptureFixture[str],
                                                   article_index_dir: Path) -> None:
    """Half an emoji (from a client that cut a UTF-16 pair) made the tokenizer raise TypeError; `check_question`
    drops it on every path."""
    code, out, err = run(capsys, command, "Who is Khalifa Haftar?\ud83d", "--index", article_index_dir, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["question" if command == "ask" else "query"] == "Who is Khalifa Haftar?"


def test_history_with_a_lone_surrogate_is_cleaned(capsys: pytest.CaptureFixture[str], article_index_dir: Path,
                                                 tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    history.write_text('[["Who is Khalifa Haftar? \\ud800", "A general."]]', encoding="utf-8")
    code, out, err = run(capsys, "ask", "What does he control?", "--index", article_index_dir, "--history", history,
                         "--json")
    assert code == 0, err
    check_ask_schema(json.loads(out))


INDEX_INPUTS = {
    "unsupported type": ("slides.xlsx", b"PK\x03\x04 zipped"),
    "broken word file": ("broken.docx", b"PK\x03\x04 zipped"),
    "binary text": ("dump.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"),
    "empty file": ("empty.md", b""),
    "broken pdf": ("broken.pdf", b"%PDF-1.4 not really a pdf"),
    "missing file": ("missing.txt", None),
}


@pytest.mark.parametrize("case", list(INDEX_INPUTS))
def test_index_errors_leave_no_partial_index(case: str, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Derna lies on the coast. It was flooded in 2023.", encoding="utf-8")
    name, data = INDEX_INPUTS[case]
    if data is not None:
        (tmp_path / name).write_bytes(data)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run_qa("index", good, tmp_path / name, "--out", out_parent / "idx", cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qa: error:")
    assert name in lines[0]
    left = [p.name for p in out_parent.iterdir() if not p.name.endswith(".lock")]
    assert left == [], "no index, no temporary directory"


def test_serve_limits_come_from_flags_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.web import app

    launched = {}
    monkeypatch.setattr(app, "launch", lambda **kwargs: launched.update(kwargs))  # no server: only what it gets
    monkeypatch.setenv("QA_MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("QA_MAX_HISTORY_TURNS", "7")
    assert main(["serve", "--max-upload-mb", "5", "--max-session-documents", "4", "--session-linger", "0"]) == 0
    settings = launched["settings"]
    assert (settings.max_upload_mb, settings.max_session_documents, settings.session_linger) == (5, 4, 0)
    assert settings.max_history_turns == 7  # from the environment
    assert settings.max_question_chars == 1000 and settings.max_session_chars == 500_000  # defaults


def test_ask_eval_and_serve_take_a_ranker(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         article_index_dir: Path, ranker_copy: Path, tmp_path: Path) -> None:
    """--ranker DIR answers with a model `qa train --out DIR` made (here a copy of the shipped one)."""
    from qa.web import app

    shipped = json.loads(run(capsys, "ask", TROOPS, "--index", article_index_dir, "--json")[1])
    code, out, _ = run(capsys, "ask", TROOPS, "--index", article_index_dir, "--json", "--ranker", ranker_copy)
    assert code == 0 and json.loads(out) == shipped
    code, _, err = run(capsys, "eval", "article", "--ranker", tmp_path / "no-such-ranker")
    assert code == 1 and err.startswith("qa: error: no answer ranker at")
    launched = {}
    monkeypatch.setattr(app, "launch", lambda **kwargs: launched.update(kwargs))
    assert main(["serve", "--ranker", str(ranker_copy)]) == 0
    assert launched["settings"].ranker == str(ranker_copy)


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["serve", "--max-upload-mb", "0"], {}, "qa: error: --max-upload-mb must be a whole number >= 1, got 0"),
    (["serve"], {"QA_MAX_SESSION_CHARS": "lots"},
     "qa: error: QA_MAX_SESSION_CHARS='lots': characters of a session's uploads together must be a whole number"),
    (["serve", "--index", "no-such-index"], {}, "qa: error: no index at no-such-index"),
])
def test_serve_refuses_bad_limits_and_missing_indexes_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv, env, expected
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1, err
