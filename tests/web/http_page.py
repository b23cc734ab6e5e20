"""A browser page as the server sees it, driven over plain HTTP: its heartbeat stream open, its events sent
through /gradio_api/queue/join like Gradio's page sends them. Cheaper than Chromium for many pages."""

from __future__ import annotations

import json
import threading
import uuid

import httpx


class HttpPage:
    def __init__(self, url: str, *, heartbeat: bool = True) -> None:
        self.url, self.session = url, uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=300)
        config = self.http.get(f"{url}/config").json()
        self.fns = {d["api_name"]: (d["id"], d["targets"][0][0] if d["targets"] else None)
                    for d in config["dependencies"] if d.get("api_name")}
        self.beat: threading.Thread | None = None
        self.stream: httpx.Response | None = None
        self.connected = threading.Event()
        if heartbeat:
            self.beat = threading.Thread(target=self._heartbeat, daemon=True)
            self.beat.start()
            self.connected.wait(30)

    def _heartbeat(self) -> None:
        try:
            with httpx.stream("GET", f"{self.url}/gradio_api/heartbeat/{self.session}", timeout=None) as stream:
                self.stream = stream
                for _ in stream.iter_lines():
                    self.connected.set()
        except (httpx.HTTPError, RuntimeError, AttributeError):  # closed by `close`
            pass

    def send(self, name: str, data: list) -> dict:
        """Run the UI event `name` (its api_name in the page config); the process_completed message."""
        fn_index, trigger = self.fns[name]
        posted = self.http.post(f"{self.url}/gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": self.session, "event_data": None,
            "trigger_id": trigger})
        if posted.status_code != 200:
            return {"status": posted.status_code, "detail": posted.json().get("detail")}
        event_id = posted.json()["event_id"]
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data",
                              params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    message = json.loads(line[6:])
                    if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                        return message
        raise AssertionError(f"{name}: the event stream ended without a result")

    def ask(self, question: str) -> dict:
        """Ask in the chat as the page does: the question is taken, then the session's questions answered."""
        taken = self.send("take", [question, None])
        assert taken.get("success"), taken
        return self.send("respond", [None])

    def upload(self, files: dict[str, str | bytes]) -> dict:
        """Upload files as the page does (POST /gradio_api/upload, then the upload event); the event's result."""
        parts = [("files", (name, text.encode() if isinstance(text, str) else text)) for name, text in files.items()]
        paths = self.http.post(f"{self.url}/gradio_api/upload", files=parts).json()
        data = [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
                for path, name in zip(paths, files, strict=True)]
        return self.send("upload", [data, None])

    def close(self) -> None:
        """Close the tab: the heartbeat stream ends."""
        if self.stream is not None:
            self.stream.close()
        if self.beat is not None:
            self.beat.join(10)
        self.http.close()
