"""The chat in Debian's Chromium through Playwright: asking, sources, uploads, safety, one session per visitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]

TROOPS = "How many troops would the new US policy send to Libya?"
ZEBRAS = "How far did the Okavango zebras migrate?"
EMBASSY = "Where would it reopen the US embassy?"
LONG = "Why is Libya important?"  # an answer longer than the chat box on a phone
ZEBRA_NOTES = ("Field notes on the Okavango zebra herd.\n"
               "The herd of Okavango zebras migrated exactly 412 kilometres in the spring of 2021, "
               "led by a mare named Tessellate.\n"
               "Rangers counted the herd every morning at the river crossing.\n")
EVIL_NOTES = ("# Keeper <img src=x onerror=\"window.__pwned = 2\"> log\n\n"
              "The purple lighthouse keeper was named Bartholomew Quince <script>window.__pwned = 1</script> "
              "and he lived on the island of Vellmoor.\n"
              "A picture <img src=x onerror=\"window.__pwned = 3\"> and a [link](javascript:window.__pwned=4) "
              "and **bold** text ${7*7} {{constructor}}.\n")
SLOW = 30_000  # ms: answering and indexing on a small CPU


def ask(page: Page, question: str) -> None:
    """Type the question, press Enter, and wait until its answer and sources are shown."""
    box = page.locator("#qa-question textarea")
    box.fill(question)
    box.press("Enter")
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(question, timeout=SLOW)


def last_answer(page: Page):
    return page.locator("#qa-chat [data-testid=bot]").last


def upload(page: Page, *paths: Path) -> None:
    page.locator("#qa-upload input[type=file]").set_input_files([str(p) for p in paths])


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_troop_question_answered_with_highlighted_source(page, tmp_path):
    ask(page, TROOPS)
    expect(last_answer(page)).to_contain_text("fifty")
    expect(last_answer(page).locator(".qa-marker").first).to_have_text("[1]")
    source = page.locator("#qa-sources .qa-source").first
    expect(source).to_contain_text("[1]")
    expect(source).to_contain_text("characters 3909–4231")
    highlight = " ".join(source.locator(".qa-context mark").inner_text().split())
    assert "up to fifty US special operations" in highlight
    expect(page.locator("#qa-question textarea")).to_have_value("")
    page.screenshot(path=str(tmp_path / "troops.png"))
    assert (tmp_path / "troops.png").stat().st_size > 10_000


def test_clicking_marker_or_source_reveals_passage_and_copy(page, tmp_path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ask(page, TROOPS)
    viewer = page.locator("#qa-sources details.qa-viewer").first
    in_document = viewer.locator(".qa-doc mark")
    expect(in_document).to_be_hidden()
    last_answer(page).locator(".qa-marker").first.click()
    expect(viewer).to_have_attribute("open", "")
    expect(in_document).to_be_visible()
    expect(in_document).to_be_in_viewport()
    assert "up to fifty US special operations" in " ".join(in_document.inner_text().split())
    page.screenshot(path=str(tmp_path / "revealed.png"))

    viewer.locator("summary").click()  # close it, then open it again by clicking the source card
    expect(in_document).to_be_hidden()
    page.locator("#qa-sources .qa-source .qa-context").first.click()
    expect(in_document).to_be_visible()

    page.locator("#qa-sources .qa-copy").click()
    expect(page.locator("#qa-sources .qa-copy")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "fifty" in copied and "[1]" in copied and "<" not in copied


def test_example_follow_up_and_clear(page):
    page.get_by_role("button", name=TROOPS).click()
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(TROOPS, timeout=SLOW)
    expect(last_answer(page)).to_contain_text("fifty")
    ask(page, "Where would it reopen the US embassy?")
    expect(last_answer(page)).to_contain_text("reopen the US embassy in Tripoli")
    expect(page.locator("#qa-chat [data-testid=user]")).to_have_count(2)  # earlier turns stay visible

    # a marker of the earlier answer brings its sources back
    page.locator("#qa-chat .qa-marker.qa-t0").first.click()
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(TROOPS)
    expect(page.locator("#qa-sources .qa-source.qa-active .qa-doc mark")).to_be_visible()

    page.locator("#qa-clear").click()
    expect(page.locator("#qa-chat [data-testid=bot]")).to_have_count(0)
    expect(page.locator("#qa-sources")).to_contain_text("Ask a question")


def test_unanswerable_question_shows_no_source(page):
    ask(page, "What is the speed of light?")
    expect(last_answer(page)).to_contain_text("does not say")
    expect(last_answer(page).locator(".qa-marker")).to_have_count(0)
    expect(page.locator("#qa-sources .qa-source")).to_have_count(0)
    expect(page.locator("#qa-sources mark")).to_have_count(0)
    expect(page.locator("#qa-sources")).to_contain_text("do not answer")


@pytest.mark.parametrize(("question", "expected"), [("", "question is empty"), ("why " * 400, "the limit is")])
def test_bad_question_shows_message(page, question, expected):
    box = page.locator("#qa-question textarea")
    box.fill(question)
    box.press("Enter")
    expect(page.locator(".toast-body").first).to_contain_text(expected, timeout=SLOW)
    expect(page.locator("#qa-chat [data-testid=bot]")).to_have_count(0)


def test_upload_is_searched_and_private_to_its_visitor(visitor, client, retriever, article_index_dir, tmp_path):
    first = visitor()
    upload(first, write(tmp_path, "zebra-notes.txt", ZEBRA_NOTES))
    expect(first.locator("#qa-status")).to_contain_text("Added zebra-notes", timeout=SLOW)
    expect(first.locator("#qa-docs")).to_contain_text("zebra-notes")
    ask(first, ZEBRAS)
    expect(last_answer(first)).to_contain_text("412 kilometres")
    expect(first.locator("#qa-sources .qa-doc-head")).to_contain_text(["zebra-notes.txt"])  # the file's name
    ask(first, TROOPS)  # the bundled article is still searched
    expect(last_answer(first)).to_contain_text("fifty")

    other = visitor()
    expect(other.locator("#qa-docs")).not_to_contain_text("zebra")
    ask(other, ZEBRAS)
    expect(last_answer(other)).to_contain_text("does not say")
    expect(other.locator("#qa-sources .qa-source")).to_have_count(0)
    assert client.predict(ZEBRAS, api_name="/ask")["found"] is False
    assert [d.doc_id for d in retriever.documents] == ["libya-policy-newsweek"]
    manifest = json.loads((article_index_dir / "manifest.json").read_text())
    assert [d["doc_id"] for d in manifest["documents"]] == ["libya-policy-newsweek"]


def test_document_with_script_cannot_run(page, tmp_path):
    upload(page, write(tmp_path, "keeper.md", EVIL_NOTES))
    expect(page.locator("#qa-status")).to_contain_text("Added Keeper", timeout=SLOW)
    ask(page, "Who was the purple lighthouse keeper?")
    expect(last_answer(page)).to_contain_text("<script>window.__pwned = 1</script>")  # shown as text
    page.locator("#qa-sources .qa-source .qa-context").first.click()  # open the document viewer too
    expect(page.locator("#qa-sources .qa-doc")).to_contain_text("onerror")
    expect(page.locator("#qa-docs")).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    for where in ("#qa-chat", "#qa-sources", "#qa-docs", "#qa-status"):
        assert page.locator(f"{where} img, {where} script, {where} a[href^=javascript]").count() == 0
    page.screenshot(path=str(tmp_path / "script.png"))


def test_bad_files_are_named_and_loaded_documents_keep_working(page, tmp_path):
    files = [write(tmp_path, "blob.txt", b"abc\x00\x00\x01binary"), write(tmp_path, "empty.md", "  \n"),
             write(tmp_path, "tool.exe", "MZ"), write(tmp_path, "zebra-notes.txt", ZEBRA_NOTES)]
    upload(page, *files)
    status = page.locator("#qa-status")
    expect(status).to_contain_text("Added zebra-notes", timeout=SLOW)
    for reason in ("blob.txt: looks like a binary file", "empty.md: no text", "tool.exe: unsupported file type"):
        expect(status).to_contain_text(reason)
    expect(page.locator(".toast-body").first).to_contain_text("tool.exe")
    ask(page, TROOPS)
    expect(last_answer(page)).to_contain_text("fifty")
    ask(page, ZEBRAS)
    expect(last_answer(page)).to_contain_text("412 kilometres")


def test_choose_remove_and_reset_documents(page, tmp_path):
    twins = []
    for folder in ("a", "b"):  # two files with one name: the second gets the id zebra-notes-2
        (tmp_path / folder).mkdir()
        twins.append(write(tmp_path / folder, "zebra-notes.txt", ZEBRA_NOTES))
    upload(page, *twins)
    expect(page.locator("#qa-status")).to_contain_text("Uploads: 2 of", timeout=SLOW)
    docs = page.locator("#qa-docs")
    expect(docs).to_contain_text("zebra-notes (zebra-notes-2)")

    docs.get_by_label("With ISIS on the Brink").uncheck()  # search the uploads only
    expect(page.locator("#qa-status")).to_contain_text("Searching 2 of 3 documents")
    ask(page, TROOPS)
    expect(last_answer(page)).to_contain_text("does not say")

    page.locator("#qa-remove-choice input").click()
    page.get_by_role("option", name="zebra-notes (zebra-notes-2)").click()
    page.locator("#qa-remove").click()
    expect(page.locator("#qa-status")).to_contain_text("Removed")
    expect(docs).not_to_contain_text("zebra-notes-2")
    expect(page.locator("#qa-status")).to_contain_text("Uploads: 1 of")

    page.locator("#qa-reset").click()
    expect(page.locator("#qa-status")).to_contain_text("Searching 1 of 1 documents")
    expect(docs).not_to_contain_text("zebra")
    ask(page, ZEBRAS)
    expect(last_answer(page)).to_contain_text("does not say")
    ask(page, TROOPS)
    expect(last_answer(page)).to_contain_text("fifty")


def test_upload_limits_are_explained(page, tmp_path, monkeypatch, served):
    import dataclasses

    # the running server's limits (Settings: qa serve --max-session-documents ... or QA_MAX_UPLOAD_MB ...)
    monkeypatch.setattr(served.handlers, "settings", dataclasses.replace(
        served.handlers.settings, max_session_documents=2, max_upload_mb=1, max_session_chars=300))
    files = {"huge.txt": "Many words here. " * 70_000, "zebra-notes.txt": ZEBRA_NOTES, "copy.txt": ZEBRA_NOTES,
             "tiny.txt": "A tiny note.", "extra.txt": "One more note."}
    upload(page, *(write(tmp_path, name, text) for name, text in files.items()))
    status = page.locator("#qa-status")
    expect(status).to_contain_text("Uploads: 2 of 2", timeout=SLOW)
    expect(status).to_contain_text("huge.txt: 1.1 MB is over the 1 MB limit for one file")
    expect(status).to_contain_text("copy.txt: 217 characters of text, over the 300 characters a session's uploads "
                                   "may hold together; 217 are taken, remove a document first")
    expect(status).to_contain_text("extra.txt: not added, a session holds at most 2 uploaded documents")
    expect(page.locator("#qa-docs")).to_contain_text("tiny")
    ask(page, ZEBRAS)
    expect(last_answer(page)).to_contain_text("412 kilometres")


def test_rejected_question_is_a_notice_that_blocks_nothing(page):
    box = page.locator("#qa-question textarea")
    box.press("Enter")  # an empty question
    expect(page.locator(".toast-body").first).to_contain_text("question is empty", timeout=SLOW)
    for part in ("#qa-chat", "#qa-question", "#qa-sources"):
        expect(page.locator(f"{part} .error")).to_have_count(0)  # no stuck "Error" badge over anything
    box.click()  # nothing dismissed first: the box takes clicks and typing
    box.type(TROOPS)
    box.press("Enter")
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(TROOPS, timeout=SLOW)
    expect(last_answer(page)).to_contain_text("fifty")


@pytest.mark.parametrize("width", [1400, 390])  # on a phone the progress text takes two lines
def test_upload_shows_one_progress_bar_naming_file_and_stage(page, tmp_path, width):
    page.set_viewport_size({"width": width, "height": 1000})
    sentences = [f"Ranger note {i}: the herd crossed river bend {i % 17} at dawn, {i % 5} foals among them."
                 for i in range(900)]
    upload(page, write(tmp_path, "ranger-log.txt", "\n".join(sentences)))
    seen: list[list[str]] = []
    drawn: list[dict] = []
    for _ in range(600):  # poll while indexing, until the status says it is done
        shown = page.evaluate("""() => [...document.querySelectorAll('.progress-level, .progress-text')]
            .filter((e) => e.offsetParent !== null)
            .map((e) => (e.closest('[id^=qa-]') || {}).id + ': ' + e.textContent.trim())""")
        if shown:
            seen.append(shown)
            drawn.append(page.evaluate(PROGRESS_DRAWN))
        if "Added ranger-log" in page.locator("#qa-status").inner_text():
            break
        page.wait_for_timeout(100)
    assert seen, "no progress was shown while indexing"
    owners = {line.split(":")[0] for lines in seen for line in lines}
    assert owners == {"qa-status"}, seen  # one place: the status line of the Documents panel
    assert max(len({line.split(":")[0] for line in lines}) for lines in seen) == 1
    labels = " ".join(line for lines in seen for line in lines)
    assert "ranger-log" in labels and "embedding" in labels and "of 900 sentences" in labels, labels
    assert "Batches" not in labels
    for frame in drawn:  # one readable line: the status text is not drawn under it, nothing spills over
        assert not frame["status_seen"] or not frame["overlap"], frame
        assert frame["inside"], frame


# Where the progress line and the status text it stands for are drawn, while an upload is indexed.
PROGRESS_DRAWN = """() => {
  const status = document.querySelector('#qa-status');
  const progress = status.querySelector('.progress-level-inner');
  const text = status.querySelector('.html-container');
  if (!progress) return {status_seen: false, overlap: false, inside: true};
  const a = progress.getBoundingClientRect(), b = text.getBoundingClientRect(), box = status.getBoundingClientRect();
  const style = getComputedStyle(text);
  return {
    status_seen: style.visibility !== 'hidden' && style.display !== 'none' && text.innerText.trim() !== '',
    overlap: a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom,
    inside: [...status.querySelectorAll('.progress-level-inner, .progress-bar-wrap')].every((e) => {
      const r = e.getBoundingClientRect(); return r.top >= box.top - 1 && r.bottom <= box.bottom + 1; }),
  };
}"""


def gradio_uploads() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def test_uploaded_files_are_deleted_once_read_or_rejected(page, tmp_path):
    kept = write(tmp_path, "kept-notes-5x1q.txt", ZEBRA_NOTES + "Reference 5x1q.\n")
    refused = write(tmp_path, "refused-5x1q.exe", "MZ")
    upload(page, kept, refused)
    expect(page.locator("#qa-status")).to_contain_text("Added kept-notes-5x1q", timeout=SLOW)
    expect(page.locator("#qa-status")).to_contain_text("refused-5x1q.exe: unsupported file type")
    assert not list(gradio_uploads().rglob("*5x1q*")), "uploads stay on the server"
    ask(page, ZEBRAS)  # the text lives on in the session
    expect(last_answer(page)).to_contain_text("412 kilometres")


def test_narrow_window_puts_sources_right_after_the_chat(browser, app_url):
    context = browser.new_context(viewport={"width": 400, "height": 900})
    try:
        page = context.new_page()
        page.goto(app_url)
        page.locator("#qa-question textarea").wait_for()
        chat = page.locator("#qa-ask").bounding_box()
        sources = page.locator("#qa-sources").bounding_box()
        documents = page.locator("#qa-documents").bounding_box()
        assert chat["y"] < sources["y"] < documents["y"], (chat, sources, documents)
    finally:
        context.close()


def test_open_document_view_highlights_the_sentence_once(page):
    ask(page, TROOPS)
    card = page.locator("#qa-sources .qa-source").first
    expect(card.locator("mark:visible")).to_have_count(1)
    card.locator(".qa-context").click()
    expect(card.locator("details.qa-viewer")).to_have_attribute("open", "")
    expect(card.locator(".qa-doc mark")).to_be_visible()
    expect(card.locator("mark:visible")).to_have_count(1)


def test_text_typed_during_an_answer_is_kept_and_questions_are_answered_in_order(page):
    box = page.locator("#qa-question textarea")
    box.fill(TROOPS)
    box.press("Enter")
    # Typed as soon as the box has let go of the question, while it is answered. Not in the same
    # millisecond as Enter: on a loaded machine a key Playwright sends then can reach the box before the
    # browser has handled Enter, and join the question (seen in 1 run of 8 beside a training run).
    expect(box).to_have_value("")
    box.type(EMBASSY)
    expect(box).to_have_value(EMBASSY)
    box.press("Enter")
    expect(box).to_have_value("")  # as above: "A" once joined the question (1 CI run of 3, 2026-12-02)
    box.type("A draft")  # the answers stream in while this is typed: it stays
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(EMBASSY, timeout=SLOW)
    expect(page.locator("#qa-chat [data-testid=user]")).to_have_text([TROOPS, EMBASSY])
    expect(page.locator("#qa-chat [data-testid=bot]").first).to_contain_text("fifty")
    expect(last_answer(page)).to_contain_text("Tripoli")  # answered second, as a follow-up of the first
    expect(box).to_have_value("A draft")
    page.get_by_role("button", name="Who is Khalifa Haftar?").click()  # an example leaves the box alone too
    expect(page.locator("#qa-sources .qa-for")).to_contain_text("Who is Khalifa Haftar?", timeout=SLOW)
    expect(page.locator("#qa-chat [data-testid=user]")).to_have_count(3)
    expect(box).to_have_value("A draft")
    box.fill("What security threats does Libya pose to southern Europe?")
    page.locator("#qa-ask").click()  # the Ask button sends the box like Enter does
    expect(box).to_have_value("")
    expect(page.locator("#qa-sources .qa-for")).to_contain_text("southern Europe", timeout=SLOW)
    expect(last_answer(page)).to_contain_text("migration")


def boxes(page: Page, *selectors: str) -> list[dict]:
    return [page.locator(selector).last.bounding_box() for selector in selectors]


def test_phone_shows_the_question_with_its_answer_and_the_sources_next(browser, app_url):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(app_url)
        box = page.locator("#qa-question textarea")
        box.wait_for()
        clipped = box.evaluate("(t) => t.scrollHeight - t.clientHeight > parseFloat(getComputedStyle(t).lineHeight)/2")
        assert not clipped, "the placeholder does not fit its box"
        for question in (TROOPS, LONG):  # the second answer is longer than the chat box
            ask(page, question)
            page.wait_for_timeout(300)
            chat, user, answer, ask_row, sources, examples = boxes(
                page, "#qa-chat", "#qa-chat [data-testid=user]", "#qa-chat [data-testid=bot]", "#qa-ask-row",
                "#qa-sources", "#qa-examples")
            # the question, the start of its answer and the question box are on the screen together
            assert chat["y"] - 1 <= user["y"] and user["y"] + user["height"] < answer["y"] + 1, (chat, user, answer)
            assert answer["y"] + 40 < chat["y"] + chat["height"], (chat, answer)
            assert 0 <= chat["y"] and ask_row["y"] + ask_row["height"] <= 844, (chat, ask_row)
            # the sources come right after the question box, before the examples
            assert 0 <= sources["y"] - (ask_row["y"] + ask_row["height"]) < 40, (ask_row, sources)
            assert examples["y"] > sources["y"] + sources["height"] - 1, (sources, examples)
        assert answer["y"] + answer["height"] > chat["y"] + chat["height"], "the long answer ends below the chat's edge"
        assert user["y"] - chat["y"] < 60, (chat, user)  # its question at the top of the chat: most of it is shown
    finally:
        context.close()


def test_a_double_click_on_ask_sends_the_question_once_and_shows_no_notice(page):
    box = page.locator("#qa-question textarea")
    box.fill(TROOPS)
    page.locator("#qa-ask").dblclick()  # the second click finds the box already emptied by the first
    expect(page.locator("#qa-sources .qa-for")).to_contain_text(TROOPS, timeout=SLOW)
    expect(last_answer(page)).to_contain_text("fifty")
    expect(page.locator("#qa-chat [data-testid=user]")).to_have_text([TROOPS])
    expect(page.locator(".toast-body")).to_have_text([])  # no "the question is empty" notice (or any other)


def test_a_pdf_source_card_shows_its_page_and_opens_that_page(page, tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in ("Annual report of the Tobruk harbour authority.",
                 "The harbour revenue in 2025 was 4.2 million euros.", "Staff numbers grew to forty people."):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(tmp_path / "harbour-report.pdf"))
    upload(page, tmp_path / "harbour-report.pdf")
    expect(page.locator("#qa-status")).to_contain_text("Added harbour-report", timeout=SLOW)
    ask(page, "What was the harbour revenue in 2025?")
    source = page.locator("#qa-sources .qa-source").first
    expect(source.locator(".qa-page")).to_have_text("page 2")
    source.locator("details.qa-viewer summary").click()
    expect(source.locator(".qa-page-head")).to_have_text("Page 2 of 3")
    expect(source.locator(".qa-doc mark")).to_contain_text("4.2 million euros")
    expect(source.locator(".qa-doc")).not_to_contain_text("Tobruk harbour authority")
