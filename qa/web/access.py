"""Who may reach the server at all: a token (`qa serve --token`, or $QA_TOKEN), and where it may listen without one.

`TokenGate` is ASGI middleware in front of everything else (the page, Gradio's own API, /ask). A request
passes with `Authorization: Bearer <token>` (scripts, gradio_client's `headers=`), or with the cookie the
page's sign-in sets: a browser without it gets a small form that asks for the token once, and the
cookie (for the browser's session, HttpOnly, SameSite=Strict) then goes with every call the page makes.
Anything else gets 401 with one line of JSON. Tokens are compared in constant time and never logged;
the cookie holds an HMAC of the token, not the token.

`check_exposure` refuses to listen beyond loopback (another --host, or --share) without a token, unless
the operator says --public.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from qa import QAError

TOKEN_ENV = "QA_TOKEN"
COOKIE = "qa_session"
SIGN_IN = "/sign-in"
MAX_FORM = 4096
STARTUP = "/gradio_api/startup-events"


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, share: bool, token: str | None, public: bool) -> None:
    """A QAError (one line) when the server would be reachable beyond this machine without a token."""
    if token or public:
        return
    where = "a public share link (--share)" if share else f"--host {host}" if not is_loopback(host) else None
    if where:
        raise QAError(f"refusing to serve on {where} without a token: set --token or ${TOKEN_ENV}, "
                      "or pass --public to serve it to anyone who can reach it")


SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ask the document: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26em;margin:12vh auto;padding:0 1em}}
input,button{{font-size:1em;padding:.4em .6em}}input{{width:100%;box-sizing:border-box;margin:.5em 0}}
.qa-wrong{{color:#b91c1c}}</style></head>
<body><h2>Ask the document</h2><p>This server needs its access token.</p>{note}
<form method="post" action="{action}"><label for="qa-token">Token</label>
<input id="qa-token" name="token" type="password" autocomplete="current-password" autofocus required>
<button id="qa-sign-in" type="submit">Sign in</button></form></body></html>"""


class TokenGate:
    """ASGI middleware: every HTTP request and websocket needs the token (see the module's docstring)."""

    def __init__(self, app: Any, *, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._cookie = hmac.new(self._token, b"qa-session-cookie", hashlib.sha256).hexdigest().encode()

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self._token):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and hmac.compare_digest(value, self._cookie):
                return True
        return False

    @staticmethod
    def starting(scope: dict) -> bool:
        """Gradio's launch calls its own startup-events endpoint over loopback (it runs them once, returns a bool)."""
        client = scope.get("client") or ("", 0)
        return scope["path"].endswith(STARTUP) and scope.get("method") == "GET" and is_loopback(client[0] or "")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.allowed(headers) or self.starting(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        root = scope.get("root_path", "").rstrip("/")
        if scope["path"] == SIGN_IN and scope["method"] == "POST":
            return await self.sign_in(scope, receive, send, root)
        if scope["method"] == "GET" and b"text/html" in headers.get(b"accept", b""):
            return await respond(send, 401, page(root, ""), "text/html; charset=utf-8")
        body = json.dumps({"detail": "this server needs a token: send the header 'Authorization: Bearer <token>'"})
        await respond(send, 401, body, "application/json", [(b"www-authenticate", b'Bearer realm="qa"')])

    async def sign_in(self, scope: dict, receive: Callable, send: Callable, root: str) -> None:
        body, more = b"", True
        while more and len(body) <= MAX_FORM:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        given = parse_qs(body[:MAX_FORM].decode("utf-8", "replace")).get("token", [""])[0].strip().encode()
        if not hmac.compare_digest(given, self._token):
            return await respond(send, 401, page(root, '<p class="qa-wrong">That token is not right.</p>'),
                                 "text/html; charset=utf-8")
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={self._cookie.decode()}; Path=/; HttpOnly; SameSite=Strict{secure}"
        await respond(send, 303, "", "text/plain", [(b"location", root.encode() + b"/"),
                                                     (b"set-cookie", cookie.encode())])


def page(root: str, note: str) -> str:
    return SIGN_IN_PAGE.format(note=note, action=escape(root + SIGN_IN))


async def respond(send: Callable, status: int, body: str, kind: str, extra: list | None = None) -> None:
    data = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store"), *(extra or [])]})
    await send({"type": "http.response.body", "body": data})
