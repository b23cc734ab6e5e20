"""Who may call what: only /ask is public; the page's own events answer only an open page.

`Gate` is ASGI middleware in front of Gradio. A call that names any other endpoint than `PUBLIC_API`
is refused by name (404, one line of JSON); an event sent by number runs only for a page whose
heartbeat is open (`Sessions`); an oversized body is refused before it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from qa.web.api import json_preview
from qa.web.sessions import Sessions

PUBLIC_API = ("ask",)  # the one endpoint plain HTTP and gradio_client callers may name
API = "/gradio_api"
NAMED_CALL = re.compile(rf"(?:{API})?/(?:call/v2|call|run|api)/([^/]+)/?")


class Gate:
    """ASGI middleware in front of Gradio: only the documented API is reachable by name.

    - A POST to /gradio_api/call/<name> (also /call/v2, /run, /api) for any other name than `PUBLIC_API`,
      the UI's own events included, gets 404 with a one-line JSON error instead of Gradio's 500 or an answer.
    - /gradio_api/queue/join (how the page and gradio_client send events) runs the UI's events only for an
      open page (`Sessions`); a caller naming one by number without a page gets the same 404.
    - A request body over `max_body` bytes gets 413 before it is read.
    - Heartbeat streams are tracked, so `Sessions` knows which pages are open.
    """

    def __init__(self, app: Any, *, sessions: Sessions, public: Callable[[], set[int]], max_body: int) -> None:
        self.app, self.sessions, self.public, self.max_body = app, sessions, public, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith(f"{API}/heartbeat/"):
            session = path.rsplit("/", 1)[-1]
            self.sessions.opened(session)
            try:
                return await self.app(scope, receive, send)
            finally:
                self.sessions.ended(session)
        if method != "POST":
            return await self.app(scope, receive, send)
        named = NAMED_CALL.fullmatch(path)
        if named and named.group(1) not in PUBLIC_API:
            return await refuse(send, 404, f"no API endpoint /{named.group(1)}; this server answers "
                                           f"{', '.join('/' + n for n in PUBLIC_API)} (see {API}/info)")
        if not named and path != f"{API}/queue/join":
            return await self.app(scope, receive, send)
        body = await read_body(receive, self.max_body)
        if body is None:
            return await refuse(send, 413, f"the request is over {self.max_body:,} bytes")
        if not named:
            try:
                event = json.loads(body)
                fn_index, session = event.get("fn_index"), event.get("session_hash")
            except (ValueError, AttributeError):
                fn_index = session = None
            if fn_index not in self.public() and not await self.sessions.wait_open(session):
                return await refuse(send, 404, f"no API endpoint number {json_preview(fn_index)} for a caller "
                                               f"without an open page; this server answers "
                                               f"{', '.join('/' + n for n in PUBLIC_API)} (see {API}/info)")
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def read_body(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None once it is over `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def refuse(send: Callable, status: int, detail: str) -> None:
    """A one-line JSON error, the shape FastAPI and Gradio use: {"detail": "..."}."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
