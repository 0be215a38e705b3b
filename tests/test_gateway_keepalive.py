"""A stream whose model thinks before its first token (OpenAI's reasoning models send
nothing meanwhile): after ``KNOLLM_GATEWAY_STREAM_KEEPALIVE_S`` the gateway begins the
answer and sends an SSE comment as often, so a proxy's idle timeout (60 s on AWS's ALB
and nginx) does not cut the caller while the call runs on, billed; the answer follows in
the caller's shape, or an error event when every attempt fails. A real gateway process,
loopback providers, raw sockets for the timing, the official openai SDK as the reader."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import GROQ, gateway_env

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def groq():
    s = ProviderServer("groq").start()
    yield s
    s.stop()


def _gateway(tmp, groq, keepalive: str) -> GatewayProcess:
    env = gateway_env(tmp, {"groq": groq}, KNOLLM_GATEWAY_STREAM_KEEPALIVE_S=keepalive)
    opts = json.loads(env["KNOLLM_GATEWAY_CLIENT_OPTIONS"])  # (the client waits out the provider's silence)
    env["KNOLLM_GATEWAY_CLIENT_OPTIONS"] = json.dumps({**opts, "stall_timeout": 10})
    return GatewayProcess(env)


def _timeline(port: int, path: str, body: dict) -> tuple[list[tuple[float, bytes]], bytes]:
    """POST on a raw socket: (seconds after sending, bytes) of each read, and all the bytes."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n" % (path.encode(), len(data)) + data)
        t0, reads, got = time.monotonic(), [], b""
        while not got.endswith(b"\r\n0\r\n\r\n"):
            piece = s.recv(65536)
            if not piece:
                break
            reads.append((time.monotonic() - t0, piece))
            got += piece
    return reads, got


def _first(reads: list[tuple[float, bytes]], marker: bytes) -> float:
    return next(t for t, piece in reads if marker in piece)


def test_a_model_thinking_silently_gets_keepalive_comments_then_its_answer(groq, tmp_path):
    """The provider sends its head, then nothing for 2.5 s (the ``quiet`` fault), with a
    keep-alive of 1 s: the answer's head leaves after about a second (``x-knollm-provider:
    pending``: who serves it is not known yet), a comment about every second after it, then
    the stream as usual; the openai SDK reads the same stream as if no comment were there,
    and the call has its one ``ok`` ledger row."""
    groq.default, groq.think_s = "quiet", 2.5
    with _gateway(tmp_path, groq, "1") as gw:
        reads, got = _timeline(gw.port, "/v1/chat/completions", {"model": GROQ, "messages": MSG, "stream": True})
        oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        chunks = list(oai.chat.completions.create(model=GROQ, messages=MSG, stream=True,
                                                  stream_options={"include_usage": True}))
    head, data = _first(reads, b"HTTP/1.1 200"), _first(reads, b"data: {")
    assert 0.9 < head < 1.6 and data > 2.3, [(round(t, 2), p[:40]) for t, p in reads]
    assert got.count(b": keep-alive\n\n") >= 2 and got.index(b": keep-alive") < got.index(b"data: {")
    assert b"x-knollm-provider: pending" in got and got.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from groq! You said: hi"
    assert chunks[-1].usage.total_tokens == 150 and chunks[-1].model_dump()["knollm"]["provider"] == "groq"
    assert [(r["provider"], r["outcome"]) for r in ledger_rows(tmp_path)] == [("groq", "ok")] * 2


def test_keepalive_off_the_head_waits_for_the_first_piece(groq, tmp_path):
    """``KNOLLM_GATEWAY_STREAM_KEEPALIVE_S=0``: nothing leaves before the first piece, and the
    head names the provider (as for a stream that starts within the keep-alive time)."""
    groq.default, groq.think_s = "quiet", 1.5
    with _gateway(tmp_path, groq, "0") as gw:
        reads, got = _timeline(gw.port, "/v1/chat/completions", {"model": GROQ, "messages": MSG, "stream": True})
    assert _first(reads, b"HTTP/1.1 200") > 1.4 and b"keep-alive" not in got
    assert b"x-knollm-provider: groq" in got


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_a_stream_failing_after_its_keepalives_ends_with_an_error_event(groq, tmp_path, path):
    """Every attempt fails after the answer began (the provider answers nothing and closes,
    twice): the status has left as 200, so the failure is an error event in the caller's
    shape, and the chunked body ends properly; nothing is charged."""
    groq.default, groq.hang_s = "hang", 1.5
    with _gateway(tmp_path, groq, "1") as gw:
        body = {"model": GROQ, "input": "hi", "stream": True} if path == "/v1/responses" else \
            {"model": GROQ, "messages": MSG, "stream": True, "max_tokens": 50}
        reads, got = _timeline(gw.port, path, body)
    text = got.decode()
    assert text.startswith("HTTP/1.1 200") and ": keep-alive" in text and text.endswith("\r\n0\r\n\r\n")
    if path == "/v1/messages":
        event = text[text.index("event: error\ndata: ") + 19:].split("\n", 1)[0]
        assert json.loads(event)["error"]["type"] == "api_error"
    elif path == "/v1/responses":  # (its created and in_progress events, then error and response.failed)
        event = text[text.index("event: response.failed\ndata: ") + 29:].split("\n", 1)[0]
        assert json.loads(event)["response"]["status"] == "failed" and "event: error\n" in text
    else:
        event = text[text.index("data: {") + 6:].split("\n", 1)[0]
        assert json.loads(event)["error"]["type"] == "upstream_error"
    assert len(groq.requests) == 2 and ledger_rows(tmp_path) == []
