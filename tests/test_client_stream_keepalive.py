"""The sync Client keeps a streamed answer's connection: after the payload's end marker
(``data: [DONE]``) it reads the rest of the chunked body, its terminating chunk, so the
connection goes back to the pool, as the openai SDK reads a stream to its end (before, it
left at the marker and the connection was closed: every streamed call paid a new TCP and
TLS setup). A body that goes on for more than 64 KiB after the marker is cut instead, and
the answer is whole either way. Against a real loopback HTTP/1.1 server whose streams are
chunked SSE on kept-alive connections, its terminating chunk sent in a later write than the
marker, as a provider's often arrives in a later packet."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from knollm import AsyncClient, Client
from knollm.client import SQLiteStore
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, model

MSG = [{"role": "user", "content": "hi"}]
TARGET = "groq/llama-3.3-70b-versatile"


class KeepAliveServer:
    """OpenAI-compatible streaming chat on kept-alive HTTP/1.1 connections. ``connections``
    counts the connections accepted; ``trailer`` is what the body carries after the
    ``[DONE]`` event before its terminating chunk (bytes; sent in its own chunk)."""

    def __init__(self) -> None:
        self.connections = 0
        self.trailer = b""
        self.lock = threading.Lock()
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_owner: KeepAliveServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        with self.server_owner.lock:
            self.server_owner.connections += 1
        super().setup()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        for delta, finish in (({"role": "assistant", "content": "Hello"}, None), ({"content": " there"}, None),
                              ({}, "stop")):
            ev = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self._chunk(b"data: " + json.dumps(ev).encode() + b"\n\n")
        ev = {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
        self._chunk(b"data: " + json.dumps(ev).encode() + b"\n\ndata: [DONE]\n\n")
        time.sleep(0.03)  # the body's end in a later packet than the marker
        trailer = self.server_owner.trailer
        while trailer:
            self._chunk(trailer[:16384])
            trailer = trailer[16384:]
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def server():
    s = KeepAliveServer()
    yield s
    s.stop()


def _client(server: KeepAliveServer, tmp_path: Any, cls: type = Client) -> Any:
    cat = catalog(model("groq", "llama-3.3-70b-versatile"))
    return cls(catalog=Catalog(cat), env={"KNOLLM_GROQ_BASE_URL": server.base_url, "GROQ_API_KEY": "gsk_ka_1111"},
               store=SQLiteStore(tmp_path / "l.db"))


def test_sync_streams_reuse_their_connection(server, tmp_path):
    with _client(server, tmp_path) as c:
        for _ in range(3):
            items = list(c.stream(TARGET, MSG))
            assert "".join(items[:-1]) == "Hello there" and items[-1].usage.output_tokens == 2
    assert server.connections == 1


def test_a_body_that_goes_on_after_the_marker_is_cut_and_the_answer_is_whole(server, tmp_path):
    """More than 64 KiB after [DONE]: not read to its end; the connection is closed (the
    next call opens another), the answer and its usage as sent."""
    server.trailer = b": keep-alive comment\n" * 5000  # ~105 KB
    with _client(server, tmp_path) as c:
        for _ in range(2):
            items = list(c.stream(TARGET, MSG))
            assert "".join(items[:-1]) == "Hello there" and items[-1].usage.input_tokens == 5
    assert server.connections == 2


def test_async_streams_reuse_their_connection_too(server, tmp_path):
    import asyncio

    async def go():
        c = _client(server, tmp_path, AsyncClient)
        try:
            for _ in range(3):
                items = [x async for x in c.stream(TARGET, MSG)]
                assert "".join(items[:-1]) == "Hello there"
                await asyncio.sleep(0.06)  # the body's end arrives after the marker: h1 keeps it then
        finally:
            await c.aclose()

    asyncio.run(go())
    assert server.connections == 1
