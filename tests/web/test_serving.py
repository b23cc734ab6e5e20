"""What plain HTTP callers can reach, how long sessions live, fair indexing: the real app over loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from http_page import HttpPage

from qa.web.render import served_name

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
UI_EVENTS = ("take", "respond", "upload", "clear", "choose", "remove", "reset", "show_turn")
TROOPS = "How many troops would the new US policy send to Libya?"


def one_line_json(response: httpx.Response) -> str:
    assert "\n" not in response.text.strip(), response.text
    return response.json()["detail"]


@pytest.mark.parametrize("path", ["/gradio_api/call/nope", "/gradio_api/call/v2/nope", "/gradio_api/run/nope",
                                  "/gradio_api/api/nope"])
def test_a_wrong_endpoint_name_is_404_with_one_line_of_json(app_url, path):
    response = httpx.post(app_url + path, json={"data": ["Who is Haftar?"]})
    assert response.status_code == 404
    assert "no API endpoint /nope; this server answers /ask" in one_line_json(response)


@pytest.mark.parametrize("name", UI_EVENTS)
def test_the_ui_events_refuse_plain_http_callers(app_url, name):
    page = HttpPage(app_url, heartbeat=False)  # knows the event numbers, but has no open page
    for path in (f"/gradio_api/call/{name}", f"/gradio_api/run/{name}"):
        response = httpx.post(app_url + path, json={"data": [TROOPS, None]})
        assert response.status_code == 404, (path, response.text)
        assert f"no API endpoint /{name}" in one_line_json(response)
    refused = page.send(name, [TROOPS, None])
    assert refused["status"] == 404 and "without an open page" in refused["detail"]


def test_ask_is_reached_only_through_the_queue(app_url):
    response = httpx.post(f"{app_url}/gradio_api/run/ask", json={"data": [TROOPS]})
    assert response.status_code == 404  # Gradio's own refusal: /run would skip the queue's concurrency limit
    assert set(httpx.get(f"{app_url}/gradio_api/info").json()["named_endpoints"]) == {"/ask"}


def test_an_open_page_runs_its_events(app_url):
    page = HttpPage(app_url)
    try:
        done = page.upload({"okapi.txt": "The okapi lives in the Ituri forest. It eats leaves and fruit."})
        assert done["success"], done
        assert "Added okapi" in json.dumps(done["output"])
        cleared = page.send("clear", [None])
        assert cleared["success"], cleared
    finally:
        page.close()


def ask_over_http(url: str, data: list) -> int:
    posted = httpx.post(f"{url}/gradio_api/call/ask", json={"data": data}, timeout=60)
    if posted.status_code == 200:
        httpx.get(f"{url}/gradio_api/call/ask/{posted.json()['event_id']}", timeout=120)
    return posted.status_code


def test_api_calls_leave_no_session_behind(served):
    held = set(served.state_holder.session_data)
    codes = [ask_over_http(served.url, [q]) for q in (TROOPS, "Who is Haftar?", "What is the GNA?")]
    codes += [ask_over_http(served.url, bad) for bad in ([42], [TROOPS, None, "x"], ["   "])]
    assert codes == [200, 200, 200, 422, 400, 422]
    time.sleep(0.5)  # the last event's bookkeeping finishes after its result is sent
    assert set(served.state_holder.session_data) <= held


def test_a_blocking_launch_as_qa_serve_runs_it_frees_api_sessions(retriever, monkeypatch):
    """`qa serve` calls launch(block=True), which waits until the server stops: the sessions must be watched
    all the same (issue 33: each /ask call's session was kept, about 68 KB a call, under `qa serve` only)."""
    from conftest import free_port

    from qa.web import app

    build, built = app.build_app, []
    monkeypatch.setattr(app, "build_app", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    port = free_port()
    server = threading.Thread(target=app.launch, daemon=True,
                              kwargs={"host": "127.0.0.1", "port": port, "retriever": retriever, "block": True})
    server.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    demo = built[0]
    try:
        assert server.is_alive()  # still serving: launch(block=True) has not returned
        assert [ask_over_http(url, [q]) for q in (TROOPS, "Who is Haftar?")] == [200, 200]
        time.sleep(0.5)  # the last event's bookkeeping finishes after its result is sent
        assert dict(demo.state_holder.session_data) == {}
    finally:
        demo.sessions.stop.set()
        demo.close(verbose=False)
    server.join(10)
    assert not server.is_alive()  # closing the server ends the blocking launch


@pytest.fixture(scope="module")
def lingering(retriever, tmp_path_factory):
    """A second server whose closed pages are freed one second after they close."""
    from conftest import free_port

    from qa import Settings
    from qa.web import app

    port = free_port()
    demo = app.launch(host="127.0.0.1", port=port, retriever=retriever, settings=Settings(session_linger=1),
                      block=False)
    demo.url = f"http://127.0.0.1:{port}"
    yield demo
    demo.sessions.stop.set()
    demo.close(verbose=False)


def held(demo, page: HttpPage):
    state = demo.state_holder.session_data.get(page.session)
    return None if state is None else next((v for v in state.state_data.values() if v is not None), None)


def test_a_closed_page_is_freed_and_an_open_one_kept(lingering):
    leaving, staying = HttpPage(lingering.url), HttpPage(lingering.url)
    for page in (leaving, staying):
        assert page.upload({"okapi.txt": "The okapi lives in the Ituri forest. It eats leaves and fruit."})["success"]
        assert held(lingering, page).uploads == ["okapi"]
    leaving.close()
    deadline = time.monotonic() + 15
    while leaving.session in lingering.state_holder.session_data and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leaving.session not in lingering.state_holder.session_data
    time.sleep(2)  # well past the linger: an open page is never freed, however long it idles
    assert held(lingering, staying).uploads == ["okapi"]
    staying.close()


def test_uploaded_files_leave_no_temporary_file(lingering):
    from gradio.utils import get_upload_folder

    folder = get_upload_folder()
    before = {p for p in Path(folder).rglob("*") if p.is_file()}
    page = HttpPage(lingering.url)
    try:
        for n in range(3):
            assert page.upload({f"note{n}.txt": f"Note {n}: the okapi eats leaves."})["success"]
    finally:
        page.close()
    after = {p for p in Path(folder).rglob("*") if p.is_file()}
    assert after - before == set(), sorted(str(p) for p in after - before)


def test_a_small_upload_is_not_stuck_behind_another_visitors_large_one(app_url):
    sentences = [f"Ranger note {i}: the herd crossed river bend {i % 17} at dawn, {i % 5} foals among them."
                 for i in range(1500)]  # about 120,000 characters
    large, small = HttpPage(app_url), HttpPage(app_url)
    finished: dict[str, float] = {}

    def upload_large() -> None:
        large.upload({"ranger-log.txt": " ".join(sentences)})
        finished["large"] = time.monotonic()

    try:
        worker = threading.Thread(target=upload_large)
        started = time.monotonic()
        worker.start()
        time.sleep(2)  # the large upload is being split and embedded
        small_started = time.monotonic()
        assert small.upload({"okapi.txt": "The okapi lives in the Ituri forest."})["success"]
        finished["small"] = time.monotonic()
        worker.join(300)
    finally:
        large.close()
        small.close()
    assert "large" in finished, "the large upload did not finish"
    print(f"large upload {finished['large'] - started:.1f} s; small one {finished['small'] - small_started:.1f} s")
    assert finished["small"] < finished["large"]


@pytest.fixture(scope="module")
def collection_server(tmp_path_factory):
    """`qa serve --index DIR` over a folder indexed with `qa index` (the real CLI, model and FAISS)."""
    from conftest import free_port

    from qa.cli import main
    from qa.web import app

    folder = tmp_path_factory.mktemp("notes")
    (folder / "garden").mkdir()
    (folder / "garden" / "tomatoes.md").write_text(
        "# Tomatoes\n\nThe tomatoes are watered every morning at six.\n\nBlight struck the north bed last year.\n")
    (folder / "bikes.txt").write_text("The road bike tyres are pumped to 90 psi before every long ride.\n")
    index = tmp_path_factory.mktemp("served") / "notes"
    assert main(["index", str(folder), "--out", str(index)]) == 0
    port = free_port()
    demo = app.launch(host="127.0.0.1", port=port, index=index, block=False)
    demo.url, demo.folder = f"http://127.0.0.1:{port}", folder
    yield demo
    demo.sessions.stop.set()
    demo.close(verbose=False)


def answer_over_http(url: str, question: str) -> dict:
    posted = httpx.post(f"{url}/gradio_api/call/ask", json={"data": [question]}, timeout=60)
    stream = httpx.get(f"{url}/gradio_api/call/ask/{posted.json()['event_id']}", timeout=120).text
    return json.loads([line[6:] for line in stream.splitlines() if line.startswith("data: ")][-1])[0]


def test_serve_index_answers_over_the_collection_with_ids_and_paths(collection_server):
    result = answer_over_http(collection_server.url, "When are the tomatoes watered?")
    assert result["found"] is True and "six" in result["answer"]
    first = result["citations"][0]
    tomatoes = collection_server.handlers.base.document(first["doc_id"])
    assert tomatoes.path == str(collection_server.folder / "garden" / "tomatoes.md")

    page = HttpPage(collection_server.url)
    try:
        asked = page.ask("When are the tomatoes watered?")
        sources = next(v for v in asked["output"]["data"] if isinstance(v, str) and "qa-source" in v)
        assert f'<span class="qa-doc-id">{first["doc_id"]}</span>' in sources
        assert f'<span class="qa-path">{tomatoes.path}</span>' in sources
        # the visitor's upload sits on top of the collection, for this visitor only
        added = page.upload({"okapi.txt": "The okapi lives in the Ituri forest. It eats leaves and fruit."})
        assert "Added okapi" in json.dumps(added["output"])
        asked = page.ask("Where does the okapi live?")
        assert "Ituri" in json.dumps(asked["output"])
        asked = page.ask("How hard are the road bike tyres pumped?")
        assert "90 psi" in json.dumps(asked["output"])
    finally:
        page.close()
    assert answer_over_http(collection_server.url, "Where does the okapi live?")["found"] is False
    assert served_name(collection_server.handlers.base) == "the served documents (2)"

