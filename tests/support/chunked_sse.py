"""An OpenAI-compatible chat endpoint on 127.0.0.1 over kept-alive HTTP/1.1 connections, for
the tests of connection reuse and setup: a streamed answer is chunked SSE (the connection
stays open after it), a whole one has a Content-Length.

Knobs: ``tls`` (an ``ssl.SSLContext``: HTTPS) with ``handshake_s`` (each new connection waits
that long before its TLS handshake, as a far provider's setup takes), ``ttft_s`` (before
every answer), ``words`` (the streamed text), ``usage`` ((input, output) tokens),
``end_delay_s`` and ``trailer`` (what the body carries after ``data: [DONE]``, bytes, and
how long after the marker the body's end is sent: a provider's often comes in a later
packet). ``connections`` counts the connections set up, ``requests`` the chat bodies."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChunkedSSEServer:
    def __init__(self, *, tls: ssl.SSLContext | None = None, handshake_s: float = 0.0, ttft_s: float = 0.0,
                 words: tuple[str, ...] = ("Hello", " there"), usage: tuple[int, int] = (5, 2),
                 end_delay_s: float = 0.0, trailer: bytes = b"") -> None:
        self.tls, self.handshake_s, self.ttft_s = tls, handshake_s, ttft_s
        self.words, self.usage, self.end_delay_s, self.trailer = words, usage, end_delay_s, trailer
        self.connections = 0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_owner: ChunkedSSEServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:  # once per connection, in its own thread
        o = self.server_owner
        if o.tls is not None:
            time.sleep(o.handshake_s)  # the client waits in its TLS handshake meanwhile
            self.request = o.tls.wrap_socket(self.request, server_side=True)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with o.lock:
            o.connections += 1
        super().setup()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        o = self.server_owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with o.lock:
            o.requests.append(body)
        time.sleep(o.ttft_s)
        usage = {"prompt_tokens": o.usage[0], "completion_tokens": o.usage[1], "total_tokens": sum(o.usage)}
        base = {"id": "chatcmpl-1", "created": 0, "model": body.get("model")}
        if not body.get("stream"):  # a whole answer (Content-Length), on the kept-alive connection too
            data = json.dumps({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "".join(o.words)}}
            ]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def ev(choices: list, **extra: Any) -> bytes:
            return b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": choices,
                                            **extra}).encode() + b"\n\n"

        for n, w in enumerate(o.words):
            delta = {"role": "assistant", "content": w} if n == 0 else {"content": w}
            self._chunk(ev([{"index": 0, "delta": delta, "finish_reason": None}]))
        self._chunk(ev([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        self._chunk(ev([], usage=usage) + b"data: [DONE]\n\n")
        time.sleep(o.end_delay_s)
        trailer = o.trailer
        while trailer:
            self._chunk(trailer[:16384])
            trailer = trailer[16384:]
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
