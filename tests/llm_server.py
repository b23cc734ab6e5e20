"""An OpenAI-compatible chat-completions server around a model run in-process, for the tests.

Starlette (installed with Gradio) serves `POST /v1/chat/completions`, streamed
as server-sent events or as one JSON object, and `GET /v1/models`, as OpenAI,
Ollama, llama.cpp's server and vLLM do; uvicorn runs it on 127.0.0.1 in a
forked process, so the model loaded once by the test session is shared, and
a test can kill the server mid-answer. `POST /malformed/v1/chat/completions`
answers 200 with a stream that is not JSON.

Why not a ready server: `transformers serve` (Hugging Face's OpenAI-compatible
server, installed with transformers) fails on GGUF files here (the GGUF config
has no `architectures`, and a GGUF-loaded model cannot be saved for it), and
llama-cpp-python, whose server reads GGUF, is published on PyPI as source only
(it compiles llama.cpp on install).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build(model: Any, name: str) -> Starlette:
    """The app: `model.stream(messages, max_tokens=...)` yields text; `name` is the only model it serves."""

    def chunk(content: str | None, finish: str | None = None) -> str:
        delta = {} if content is None else {"role": "assistant", "content": content}
        body = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    async def completions(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400)
        if body.get("model") != name:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found",
                                           "type": "invalid_request_error", "code": "model_not_found"}}, 404)
        messages, max_tokens = body.get("messages") or [], int(body.get("max_tokens") or 128)
        if body.get("stream"):
            def events() -> Iterator[str]:
                for token in model.stream(messages, max_tokens=max_tokens):
                    yield chunk(token)
                yield chunk(None, "stop")
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        text = "".join(model.stream(messages, max_tokens=max_tokens))
        return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                             "model": name, "choices": [{"index": 0, "finish_reason": "stop",
                                                         "message": {"role": "assistant", "content": text}}]})

    async def malformed(request: Request) -> Response:
        def events() -> Iterator[str]:
            yield 'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "Fifty troops [1]."}'  # cut JSON
            yield "\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "tests"}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                             Route("/malformed/v1/chat/completions", malformed, methods=["POST"]),
                             Route("/v1/models", models)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app: Starlette, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """The app in a forked process on a free loopback port; `url` is its OpenAI base URL (…/v1)."""

    def __init__(self, model: Any, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = multiprocessing.get_context("fork").Process(target=_serve, args=(build(model, name), self.port),
                                                                   daemon=True)
        self.process.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if not self.process.is_alive():
                    raise RuntimeError("the test model server exited at start") from None
                time.sleep(0.1)
        raise RuntimeError("the test model server did not start within 60 s")

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as a crashed or killed one does."""
        if self.process.is_alive() and self.process.pid:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(5)
