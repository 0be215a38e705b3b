"""The whole-answer path of ``knollm serve``'s uvicorn protocol (``WHOLE_ANSWER`` in the
scope's extensions): an answer known whole is written in one go instead of through
uvicorn's two ASGI sends. These tests run real uvicorn with the gateway's protocol and
compare, on the wire, each answer written that way with the same answer sent through
ASGI on the same server: the bytes must be the same (the ``date`` header aside, which
both carry), and every answer the path does not write must come out as uvicorn writes it."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import pytest

from knollm.gateway.app import EVENT_LOOP, WHOLE_ANSWER

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"
KNOLLM = {"x-knollm-provider": "groq", "x-knollm-model": "llama-3.3-70b-versatile", "x-knollm-cost-usd": "0.0000812",
          "x-knollm-attempts": "1", "x-request-id": "kn-1a2b-000123"}

#: name -> (status, content type, headers, body, chunked)
CASES = {
    "json": (200, JSON, KNOLLM, b'{"id":"x","choices":[]}', False),
    "error": (429, JSON, {**KNOLLM, "retry-after": "2", "x-should-retry": "false"}, b'{"error":{}}', False),
    "bare": (200, JSON, {}, b"{}", False),
    "empty": (200, JSON, {"x-a": "b"}, b"", False),
    "stream": (200, SSE, KNOLLM, b'data: {"a":1}\n\ndata: [DONE]\n\n', True),
    "stream-empty": (200, SSE, {}, b"", True),
    "big": (200, JSON, KNOLLM, b"[" + b"1," * 200_000 + b"1]", False),
    "status": (299, JSON, {}, b"{}", False),  # a status with no reason phrase
    # what the path leaves to uvicorn
    "latin": (200, JSON, {"x-knollm-model": "mod\u00e8le"}, b"{}", False),
    "crlf": (200, JSON, {"x-knollm-model": "a\r\nset-cookie: x=1"}, b"{}", False),
    "upper": (200, JSON, {"X-Knollm-Model": "m"}, b"{}", False),
    "spaced": (200, JSON, {"x a": "m"}, b"{}", False),
}
WRITTEN = {"json", "error", "bare", "empty", "stream", "stream-empty", "big", "status"}
REFUSED = {"crlf", "spaced"}  # by uvicorn's own header checks


class Server:
    """Real uvicorn with :class:`~knollm.gateway.server.GatewayHTTP` in a thread. ``/whole/<case>``
    answers through the whole-answer path (``/wrapped/<case>``: with ``send`` wrapped, as a
    middleware would), ``/asgi/<case>`` through ASGI sends; ``taken`` records what the path said."""

    def __init__(self) -> None:
        import uvicorn

        from knollm.gateway import server as srv
        from tests.support.gateway_proc import free_port

        self.taken: list[tuple[str, bool]] = []
        self.loops: list[bool] = []  # each request's EVENT_LOOP extension: the loop running its app?
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, http=srv.GatewayHTTP,
                                                    interface="asgi3", lifespan="off", proxy_headers=False,
                                                    access_log=False, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def app(self, scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.loops.append(scope["extensions"].get(EVENT_LOOP) is asyncio.get_running_loop())
        how, name = scope["path"].strip("/").split("/")
        status, ctype, headers, body, chunked = CASES[name]
        if how in ("whole", "wrapped"):
            whole = scope["extensions"][WHOLE_ANSWER]
            if how == "wrapped":
                inner = send

                async def wrapper(message):  # a middleware's
                    await inner(message)

                send = wrapper
            done = await whole(send, status, ctype, headers, body, chunked=chunked)
            self.taken.append((name, done))
            if done:
                return
        head = [] if chunked else [(b"content-length", b"%d" % len(body))]
        head += [(b"content-type", ctype.encode()), *[(k.lower().encode("latin-1"), v.encode("latin-1"))
                                                      for k, v in headers.items()]]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    def __enter__(self) -> "Server":
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server():
    with Server() as s:
        yield s


def exchange(port: int, raw: bytes, answers: int = 1, heads: bool = False) -> tuple[bytes, bool]:
    """Send ``raw``; read ``answers`` whole answers (``heads``: answers to HEAD, with no body):
    the bytes, and whether the server closed the connection after them."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        got = b""
        while True:
            if len(_answers(got, heads)) >= answers:
                sock.settimeout(0.1)  # anything after the last answer (or a close)
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                return got, False
            if not data:
                return got, True
            got += data


def _answers(raw: bytes, heads: bool = False) -> list[bytes]:
    """The whole answers at the start of ``raw``."""
    out = []
    while b"\r\n\r\n" in raw:
        head, rest = raw.split(b"\r\n\r\n", 1)
        if heads:
            size = len(head) + 4
        elif b"content-length:" in head.lower():
            n = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
            if len(rest) < n:
                break
            size = len(head) + 4 + n
        elif b"transfer-encoding: chunked" in head.lower():
            end = rest.find(b"0\r\n\r\n")
            while end > 0 and rest[end - 2:end] != b"\r\n":
                end = rest.find(b"0\r\n\r\n", end + 1)
            if end < 0:
                break
            size = len(head) + 4 + end + 5
        else:
            size = len(head) + 4
        out.append(raw[:size])
        raw = raw[size:]
    return out


def undated(answer: bytes) -> bytes:
    """The answer without its ``date`` header line, which must be there (nothing: nothing)."""
    if not answer:
        return answer
    out, n = re.subn(rb"\r\ndate: [^\r\n]+", b"", answer, count=1)
    assert n == 1, answer[:300]
    return out


def request(path: str, extra: bytes = b"", version: bytes = b"1.1", method: bytes = b"POST") -> bytes:
    return (method + b" " + path.encode() + b" HTTP/" + version + b"\r\nhost: 127.0.0.1\r\n" + extra
            + b"content-length: 2\r\n\r\n{}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_answer_written_whole_is_on_the_wire_what_uvicorns_sends_write(server, name):
    """For each case, on a kept-alive connection and on one the request closes (``connection:
    close``; HTTP/1.0): the same bytes both ways, the connection closed alike; the path takes
    exactly the answers it can write byte for byte and leaves the others to uvicorn (a value
    with a line break, a name with a space, are refused by uvicorn's own check, which
    closes the connection with nothing written: never a header smuggled in)."""
    for extra, version in ((b"", b"1.1"), (b"connection: close\r\n", b"1.1"), (b"", b"1.0")):
        del server.taken[:]
        whole = exchange(server.port, request(f"/whole/{name}", extra, version))
        asgi = exchange(server.port, request(f"/asgi/{name}", extra, version))
        assert server.taken == [(name, name in WRITTEN)]
        assert undated(whole[0]) == undated(asgi[0])
        assert whole[1] == asgi[1] == bool(extra or version == b"1.0" or name in REFUSED)
    if name in REFUSED:  # uvicorn refuses it once the answer counts as started: it closes the connection
        assert whole[0] == b""
    elif name in WRITTEN:
        status, _, headers, body, chunked = CASES[name]
        head, got = whole[0].split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 %d " % status)
        for k, v in headers.items():
            assert f"\r\n{k}: {v}".encode() in head
        assert got == (body if not chunked else (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"))


def test_pipelined_requests_are_answered_in_order_on_one_connection(server):
    """Three requests in one write: three answers, in order, the same bytes both ways."""
    names = ("json", "stream", "error")
    for how in ("whole", "asgi"):
        raw, closed = exchange(server.port, b"".join(request(f"/{how}/{n}") for n in names), answers=3)
        got = _answers(raw)
        assert len(got) == 3 and not closed
        if how == "whole":
            first = got
    assert [undated(a) for a in first] == [undated(a) for a in got]
    assert [a.split(b"\r\n", 1)[0] for a in got] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK",
                                                     b"HTTP/1.1 429 Too Many Requests"]


def test_a_send_wrapped_by_a_middleware_is_left_to_asgi(server):
    """A ``send`` that is not uvicorn's own (a middleware wrapping it would see nothing of an
    answer written past it): the path declines and the answer goes through the wrapper."""
    del server.taken[:]
    wrapped, _ = exchange(server.port, request("/wrapped/json"))
    asgi, _ = exchange(server.port, request("/asgi/json"))
    assert server.taken == [("json", False)]
    assert undated(wrapped) == undated(asgi)


def test_a_head_request_is_left_to_uvicorn(server):
    """HEAD: uvicorn writes the head only; the path declines."""
    del server.taken[:]
    whole, _ = exchange(server.port, request("/whole/json", method=b"HEAD"), heads=True)
    asgi, _ = exchange(server.port, request("/asgi/json", method=b"HEAD"), heads=True)
    assert server.taken == [("json", False)]
    assert undated(whole) == undated(asgi)


def test_each_request_is_offered_the_event_loop_serving_it(server):
    """``extensions[EVENT_LOOP]``: the loop running the request's app (the gateway's time
    limit takes it instead of looking the running loop up, a getpid call on CPython 3.11)."""
    del server.loops[:]
    for path in ("/whole/json", "/asgi/json"):
        exchange(server.port, request(path))
    assert server.loops == [True, True]


def test_the_gateways_answers_are_offered_whole_and_sent_through_asgi_when_declined():
    """The gateway's JSON answers, and a stream that arrived in one piece, go to the
    server's ``whole_answer`` when the scope offers one; declined (False) or not offered,
    they are sent through ASGI as before. A stream in several pieces is always sent
    through ASGI (it is not whole)."""
    import asyncio

    from knollm.gateway.app import _EventStream, _JSONBytes

    async def pieces(*items):
        for x in items:
            yield x

    async def run(response, offer):
        calls, sent = [], []

        async def whole(send, status, ctype, headers, body, chunked=False):
            calls.append((status, ctype, headers, body, chunked))
            return offer

        async def send(message):
            sent.append(message)

        async def receive():
            await asyncio.sleep(10)

        scope = {"type": "http", "method": "POST"}
        if offer is not None:
            scope["extensions"] = {WHOLE_ANSWER: whole}
        await response(scope, receive, send)
        return calls, [(m["type"], m.get("status"), m.get("body"), m.get("more_body", False)) for m in sent]

    h = {"x-knollm-provider": "groq"}
    for offer in (True, False, None):
        calls, sent = asyncio.run(run(_JSONBytes(b"{}", 200, h), offer))
        assert calls == ([] if offer is None else [(200, "application/json", h, b"{}", False)])
        assert sent == ([] if offer else [("http.response.start", 200, None, False),
                                          ("http.response.body", None, b"{}", False)])
        calls, sent = asyncio.run(run(_EventStream(pieces((b"data: [DONE]\n\n", False)), h), offer))
        assert calls == ([] if offer is None else
                         [(200, "text/event-stream; charset=utf-8", h, b"data: [DONE]\n\n", True)])
        assert sent == ([] if offer else [("http.response.start", 200, None, False),
                                          ("http.response.body", None, b"data: [DONE]\n\n", False)])
        calls, sent = asyncio.run(run(_EventStream(pieces((b"a", True), (b"b", False)), h), offer))
        assert calls == [] and [s[2] for s in sent] == [None, b"a", b"b"]
