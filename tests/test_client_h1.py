"""The ``h1`` driver (knollm.client.h1) against a loopback server that writes scripted
bytes: keep-alive reuse, framing (content-length, chunked, until close), interim 1xx,
gzip/deflate, connections the server closes, streams left early, the pool limit,
timeouts, flow control, refused header values, and proxies (every driver)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import zlib

import pytest

pytest.importorskip("httptools")

from knollm.client.h1 import AsyncH1, H1Error, H1Timeout  # noqa: E402


class Scripted:
    """A TCP server on 127.0.0.1: for each request read on a connection it calls
    ``answer(n, request_bytes) -> (bytes to write, keep the connection open)``; records
    connections, requests and the most connections open at once."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = self.max_open = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                req, buf = head + b"\r\n\r\n" + rest[:length], rest[length:]
                with self._lock:
                    self.requests.append(req)
                    n = len(self.requests)
                out, keep = self.answer(n, req)
                for piece in out if isinstance(out, list) else [out]:
                    if isinstance(piece, float):
                        time.sleep(piece)
                    else:
                        conn.sendall(piece)
                if not keep:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self.open -= 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)).encode() + \
        b"\r\n" + extra + b"\r\n" + body


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def server(request):
    servers = []

    def make(answer):
        s = Scripted(answer)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def texts(url, n):
    """The texts of ``n`` calls in turn on one driver."""
    async def go():
        d = AsyncH1(10)
        try:
            return [(await post(d, url)).text for _ in range(n)]
        finally:
            await d.aclose()

    return run(go())


def streams(url, n, read_one):
    """``n`` streams in turn on one driver, each read by ``await read_one(stream)``."""
    async def go():
        d = AsyncH1(10)
        try:
            out = []
            for _ in range(n):
                async with d.stream(url, {}, {}, 5.0, 5.0) as st:
                    out.append(await read_one(st))
            return out
        finally:
            await d.aclose()

    return run(go())


async def lines_of(st):
    return [line async for lines in st.batches() for line in lines]


async def chunks_of(st):
    return [piece async for piece in st.chunks()]


async def post(drv, url, headers=None, read=5.0):
    return await drv.post(url, headers or {"authorization": "Bearer sk-test"}, {"model": "m", "messages": []},
                          read, 5.0)


def test_keep_alive_reuses_one_connection_and_writes_a_plain_request(server):
    s = server(lambda n, req: (ok(b'{"n": %d}' % n), True))

    async def go():
        d = AsyncH1(10)
        try:
            return [await post(d, s.url) for _ in range(5)]
        finally:
            await d.aclose()

    replies = run(go())
    assert [r.text for r in replies] == [f'{{"n": {i}}}' for i in range(1, 6)]
    assert replies[0].status == 200 and replies[0].headers.get("content-type") == "application/json"
    assert s.connections == 1  # kept alive and reused
    head = s.requests[0].split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0] == "POST /v1/chat/completions HTTP/1.1"
    names = [line.split(":", 1)[0].lower() for line in head[1:]]
    assert sorted(names) == sorted(["host", "authorization", "content-type", "accept-encoding", "user-agent",
                                    "content-length"])  # each once
    assert f"host: 127.0.0.1:{s.port}" in head and "authorization: Bearer sk-test" in head
    assert s.requests[0].endswith(b'{"model":"m","messages":[]}')


def test_connection_close_and_http10_answers_are_not_reused(server):
    def answer(n, req):
        if n == 1:
            return ok(b"{}", b"connection: close\r\n"), False
        if n == 2:  # HTTP/1.0, body until the connection ends
            return b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + b'{"until": "close"}', False
        return ok(b'{"third": true}'), True

    s = server(answer)
    assert texts(s.url, 3) == ["{}", '{"until": "close"}', '{"third": true}']
    assert s.connections == 3


def test_chunked_gzip_deflate_and_interim_1xx(server):
    payload = b'{"text": "' + ",".join(str(i * 7919 % 10007) for i in range(1500)).encode() + b'"}'
    gz = gzip.compress(payload)
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = raw_deflate.compress(payload) + raw_deflate.flush()

    def answer(n, req):
        if n == 1:  # chunked, with a chunk extension, gzip
            assert len(gz) > 200
            parts = [gz[:100], gz[100:]]
            body = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
            return b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n" + body, True
        if n == 2:  # raw deflate, as some servers send it
            return ok(raw, b"content-encoding: deflate\r\n"), True
        return [b"HTTP/1.1 100 Continue\r\n\r\n", 0.05, ok(b'{"after": "continue"}')], True

    s = server(answer)
    a, b, c = texts(s.url, 3)
    assert a == payload.decode() and b == payload.decode() and c == '{"after": "continue"}'
    assert s.connections == 1


def test_broken_answers_are_connection_failures(server):
    def answer(n, req):
        if n == 1:  # promises 100 bytes, sends 5, closes
            return b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", False
        if n == 2:
            return b"NOT HTTP AT ALL\r\n\r\n", True
        return b"", False  # closes without a word

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        errors = []
        try:
            cut = await post(d, s.url)  # the answer began: what arrived, and why it ended
            errors.append(cut.cut)
            for _ in range(2):
                with pytest.raises(H1Error) as ei:
                    await post(d, s.url)
                errors.append(ei.value)
            return cut, errors
        finally:
            await d.aclose()

    cut, errors = run(go())
    assert (cut.status, cut.text) == (200, "short")
    for e in errors:
        assert AsyncH1.classify(e) == ("connection", "H1Error")
        assert "sk-test" not in str(e)


def test_a_connection_the_server_closed_while_idle_is_not_reused(server):
    s = server(lambda n, req: (ok(b"{}", b"keep-alive: timeout=1\r\n"), n != 1))  # closes after the first answer

    async def go():
        d = AsyncH1(10)
        try:
            await post(d, s.url)
            await asyncio.sleep(0.2)  # the close reaches the pool
            return (await post(d, s.url)).status
        finally:
            await d.aclose()

    assert run(go()) == 200 and s.connections == 2


def test_bytes_after_a_whole_answer_retire_the_connection(server):
    """A server that writes more than its answer (a stray second response): that
    connection is closed, never reused, and the next call gets a clean one."""
    def answer(n, req):
        if n == 1:
            return [ok(b'{"n": 1}'), 0.05, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray"], True
        return ok(b'{"n": %d}' % n), True

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            first = (await post(d, s.url)).text
            await asyncio.sleep(0.2)  # the stray bytes arrive while the connection is idle
            return first, (await post(d, s.url)).text
        finally:
            await d.aclose()

    assert run(go()) == ('{"n": 1}', '{"n": 2}')
    assert s.connections == 2


def test_idle_connections_expire(server, monkeypatch):
    import knollm.client.h1 as h1

    monkeypatch.setattr(h1, "_IDLE_S", 0.1)
    s = server(lambda n, req: (ok(b"{}"), True))

    async def go():
        d = AsyncH1(10)
        try:
            await post(d, s.url)
            await asyncio.sleep(0.3)
            await post(d, s.url)
        finally:
            await d.aclose()

    run(go())
    assert s.connections == 2


def test_the_servers_keep_alive_timeout_shortens_the_idle_time(server):
    """An answer saying ``Keep-Alive: timeout=2``: its connection is reused within a second
    of idling, and not after (the server may close it at 2 s: a call taking it then would
    fail and be retried); without the header, the default (4 s, under the 5 s of uvicorn's
    and Node's servers) applies."""
    import knollm.client.h1 as h1

    s = server(lambda n, req: (ok(b"{}", b"keep-alive: timeout=2, max=100\r\n"), True))
    plain = server(lambda n, req: (ok(b"{}"), True))

    async def go():
        d = AsyncH1(10)
        try:
            await post(d, s.url)
            await asyncio.sleep(0.5)
            await post(d, s.url)  # reused
            await asyncio.sleep(1.3)
            await post(d, s.url)  # idle 1.3 s > 2 - 1: a new connection
            await post(d, plain.url)
            await asyncio.sleep(1.3)
            await post(d, plain.url)  # reused: 1.3 s < 4 s
        finally:
            await d.aclose()

    run(go())
    assert (s.connections, plain.connections) == (2, 1)
    assert h1._IDLE_S == 4.0 and h1._idle_max("timeout=5") == 4.0 and h1._idle_max('Timeout="0.5"') == 0.0
    assert h1._idle_max("max=5") == 4.0 and h1._idle_max("timeout=soon") == 4.0


def test_a_stream_left_early_closes_its_connection(server):
    def answer(n, req):
        if n == 1:
            events = b"".join(b"data: {\"i\": %d}\n\n" % i for i in range(3))
            return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                    b"%x\r\n" % len(events) + events + b"\r\n", 1.0, b"0\r\n\r\n"], True
        return ok(b'{"next": 1}'), True

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            st = d.stream(s.url, {}, {"stream": True}, 5.0, 5.0)
            async with st:
                assert st.status == 200 and st.headers["content-type"] == "text/event-stream"
                async for lines in st.batches():
                    first = lines
                    break
            r = await post(d, s.url)
            return first, r.text
        finally:
            await d.aclose()

    first, nxt = run(go())
    assert first[0] == 'data: {"i": 0}' and nxt == '{"next": 1}'
    assert s.connections == 2  # the half-read stream's connection was closed, not reused


def test_a_stream_read_to_the_end_keeps_its_connection(server):
    def answer(n, req):
        events = b"data: {\"i\": 0}\n\ndata: [DONE]\n\n"
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                b"%x\r\n" % len(events) + events + b"\r\n", 0.02, b"0\r\n\r\n"], True

    s = server(answer)
    a, b = streams(s.url, 2, lines_of)
    assert a == b == ['data: {"i": 0}', "", "data: [DONE]", ""]
    assert s.connections == 1


def _sse_done_then_end_later(pause: float):
    """An OpenAI-shaped stream whose ``[DONE]`` arrives in one write and the empty chunk
    that ends the chunked body ``pause`` seconds later."""
    def answer(n, req):
        events = (b'data: {"choices": [{"index": 0, "delta": {"content": "hi %d"}, "finish_reason": null}]}\n\n' % n
                  + b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], '
                    b'"usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}\n\ndata: [DONE]\n\n')
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(events) + events + b"\r\n", pause, b"0\r\n\r\n"], True
    return answer


async def _until_done(st, ended: bool):
    got = []
    async for lines in st.batches():
        got += lines
        if "data: [DONE]" in lines:
            if ended:
                st.payload_ended()
            break
    return got


@pytest.mark.parametrize("ended, connections", [(True, 1), (False, 2)])
def test_a_stream_left_at_its_end_marker_keeps_its_connection_once_the_body_ends(server, ended, connections):
    """The caller read ``[DONE]`` and left; the body's last chunk comes 50 ms later. Told the
    payload ended (``payload_ended``), the driver keeps the connection for the next call once
    that chunk arrives; not told, it closes it (a stream left early)."""
    s = server(_sse_done_then_end_later(0.05))

    async def go():
        d = AsyncH1(10)
        try:
            out = []
            for _ in range(2):
                async with d.stream(s.url, {}, {"stream": True}, 5.0, 5.0) as st:
                    out.append(await _until_done(st, ended))
                await asyncio.sleep(0.3)  # (the last chunk arrives meanwhile)
            return out, len(d._all)
        finally:
            await d.aclose()

    (a, b), still_open = run(go())
    assert a[-2:] == b[-2:] == ["data: [DONE]", ""] and "hi 1" in a[0] and "hi 2" in b[0]
    assert s.connections == connections and still_open == (1 if ended else 0)


def test_a_finished_stream_whose_body_never_ends_is_closed_after_the_drain_time(server, monkeypatch):
    import knollm.client.h1 as h1

    monkeypatch.setattr(h1, "_DRAIN_S", 0.15)
    s = server(_sse_done_then_end_later(0.8))

    async def go():
        d = AsyncH1(10)
        try:
            async with d.stream(s.url, {}, {"stream": True}, 5.0, 5.0) as st:
                await _until_done(st, True)
            waited = 0.0
            while d._all and waited < 2.0:  # the ticker checks every 0.1 s
                await asyncio.sleep(0.05)
                waited += 0.05
            return len(d._all), d._open, waited
        finally:
            await d.aclose()

    still_open, counted, waited = run(go())
    assert still_open == 0 and counted == 0 and 0.1 <= waited < 0.8  # closed by the drain limit, before the chunk


def test_a_finished_stream_whose_server_closes_before_the_body_ends_is_dropped(server):
    """The server closes the connection after ``[DONE]`` without ending the chunked body:
    the draining connection is dropped when the close arrives (not kept for the drain
    time), and the next call opens a new one."""
    def answer(n, req):
        events = b"data: [DONE]\n\n"
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(events) + events + b"\r\n", 0.05], False

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            async with d.stream(s.url, {}, {"stream": True}, 5.0, 5.0) as st:
                await _until_done(st, True)
            draining = len(d._all)
            await asyncio.sleep(0.2)  # the close arrives; the drain time (1 s) has not passed
            return draining, len(d._all), d._open
        finally:
            await d.aclose()

    assert run(go()) == (1, 0, 0)


def test_a_finished_stream_whose_rest_is_too_long_is_closed(server, monkeypatch):
    import knollm.client.h1 as h1

    monkeypatch.setattr(h1, "_DRAIN_BYTES", 100)

    def answer(n, req):
        events = b"data: [DONE]\n\n"
        junk = b": " + b"x" * 300 + b"\n\n"
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(events) + events + b"\r\n", 0.05, b"%x\r\n" % len(junk) + junk + b"\r\n", 0.05,
                b"0\r\n\r\n"], True

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            for _ in range(2):
                async with d.stream(s.url, {}, {"stream": True}, 5.0, 5.0) as st:
                    await _until_done(st, True)
                await asyncio.sleep(0.3)
            return d._open
        finally:
            await d.aclose()

    assert run(go()) == 0 and s.connections == 2  # over the limit: each closed, never reused


def test_the_client_keeps_a_streams_connection_when_the_body_ends_after_done(server, tmp_path):
    """Through ``AsyncClient.stream`` (what the gateway runs): a provider that sends the end
    of the chunked body after ``[DONE]`` costs no new connection per call."""
    from knollm import AsyncClient
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, model

    s = server(_sse_done_then_end_later(0.05))
    env = {"KNOLLM_GROQ_BASE_URL": f"http://127.0.0.1:{s.port}/v1", "GROQ_API_KEY": "gsk-test"}

    async def go():
        texts = []
        async with AsyncClient(catalog=Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), env=env,
                               store=False, http="h1") as c:
            for _ in range(3):
                parts = [x async for x in c.stream("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi"}])]
                texts.append(("".join(p for p in parts if isinstance(p, str)), parts[-1].usage.output_tokens))
                await asyncio.sleep(0.3)
        return texts

    assert run(go()) == [("hi 1", 2), ("hi 2", 2), ("hi 3", 2)]
    assert s.connections == 1


def test_a_stream_that_ends_while_its_reader_is_busy_loses_nothing(server):
    """The last bytes and the connection's end arrive while the reader is away: both
    pieces are read (a body delimited by the close, as many SSE servers send it)."""
    def answer(n, req):
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                b"data: 1\n\n", 0.05, b"data: 2\n\n"], False

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        lines = []
        try:
            async with d.stream(s.url, {}, {}, 5.0, 5.0) as st:
                async for batch in st.batches():
                    lines += batch
                    await asyncio.sleep(0.3)  # meanwhile: the rest, then the close
            return lines
        finally:
            await d.aclose()

    assert run(go()) == ["data: 1", "", "data: 2", ""]


def test_chunks_give_the_decoded_body_as_it_arrives(server):
    """``chunks()`` (what a relay forwards): the body's bytes in pieces as they came;
    a gzip body decoded, whole at the end."""
    payload = b"".join(b"data: {\"i\": %d}\n\n" % i for i in range(200))
    gz = gzip.compress(payload)

    def answer(n, req):
        if n == 1:
            return [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload),
                    payload[:100], 0.1, payload[100:]], True
        return [b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(gz),
                gz[:40], 0.1, gz[40:]], True

    s = server(answer)
    plain, gzipped = streams(s.url, 2, chunks_of)
    assert plain == [payload[:100], payload[100:]]
    assert b"".join(gzipped) == payload


def test_the_pool_never_opens_more_than_max_connections(server):
    s = server(lambda n, req: ([0.05, ok(b"{}")], True))

    async def go():
        d = AsyncH1(2)
        try:
            return await asyncio.gather(*[post(d, s.url) for _ in range(8)])
        finally:
            await d.aclose()

    assert [r.status for r in run(go())] == [200] * 8
    assert s.max_open == 2 and s.connections == 2


def test_idle_connections_to_one_origin_never_starve_another(server):
    """At the connection limit, an idle connection to one provider is closed to make room
    for a call to another, rather than that call waiting for ever."""
    a = server(lambda n, req: ([0.05, ok(b'{"from": "a"}')], True))
    b = server(lambda n, req: (ok(b'{"from": "b"}'), True))

    async def go():
        d = AsyncH1(2)
        try:
            await asyncio.gather(post(d, a.url), post(d, a.url))  # two idle connections to a
            r = await asyncio.wait_for(post(d, b.url), 5)
            return r.text, d._open
        finally:
            await d.aclose()

    text, open_now = run(go())
    assert text == '{"from": "b"}' and open_now == 2
    assert a.connections == 2 and b.connections == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_driver_reused_by_a_later_event_loop_drops_the_earlier_loops_connections(server, loop):
    """One driver, several ``asyncio.run`` in turn (a script, a notebook, tests): the idle
    connections of an event loop that has ended belong to its closed transports, so the
    next loop's call opens a new one instead of failing with "Event loop is closed"
    (before: every second call failed); ``aclose`` from a later loop closes them too."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner = uvloop.run
    else:
        runner = asyncio.run
    s = server(lambda n, req: (ok(b'{"n": %d}' % n), True))
    d = AsyncH1(10)

    async def twice():  # two calls in one loop: the second reuses the first's connection
        return [(await post(d, s.url)).text for _ in range(2)]

    texts = [t for _ in range(3) for t in runner(twice())]
    assert texts == [f'{{"n": {i}}}' for i in range(1, 7)]
    assert s.connections == 3  # one a loop, reused within it
    assert d._open == 1 and len(d._all) == 1  # the earlier loops' connections dropped, their slots given back
    runner(d.aclose())
    assert d._open == 0 and not d._all
    deadline = time.time() + 5
    while s.open and time.time() < deadline:  # every connection the driver opened is closed
        time.sleep(0.02)
    assert s.open == 0


def test_a_body_that_trickles_in_is_not_a_read_timeout(server):
    """The read timeout is silence, not slowness: an answer whose head and body come a few
    bytes every 0.15 s under a 0.4 s timeout (bytes that complete nothing yet count) arrives
    whole, after about 3 s."""
    body = b'{"text": "abcdefgh"}'
    whole = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    pieces: list = []
    for i in range(0, len(whole), 4):
        pieces += [whole[i:i + 4], 0.15]

    s = server(lambda n, req: (pieces, False))

    async def go():
        d = AsyncH1(10)
        try:
            return await post(d, s.url, read=0.4)
        finally:
            await d.aclose()

    r = run(go())
    assert (r.status, r.text, r.cut) == (200, body.decode(), None)


def test_read_timeouts_before_and_during_a_body(server):
    def answer(n, req):
        if n == 1:
            return [2.0], False  # says nothing
        # the head, part of the body, then silence
        return [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", 2.0], False

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            out = []
            t0 = time.monotonic()
            with pytest.raises(H1Timeout) as ei:
                await post(d, s.url, read=0.3)
            out.append((ei.value, time.monotonic() - t0))
            t0 = time.monotonic()
            cut = await post(d, s.url, read=0.3)  # during the body: the answer, cut
            assert (cut.status, cut.text) == (200, "abc")
            out.append((cut.cut, time.monotonic() - t0))
            return out
        finally:
            await d.aclose()

    for e, took in run(go()):
        assert isinstance(e, H1Timeout) and e.phase == "read" and AsyncH1.classify(e) == ("timeout", "H1Timeout")
        assert took < 1.9  # it did not wait for the server


def test_a_large_streamed_body_is_flow_controlled_and_complete(server):
    import knollm.client.h1 as h1

    size = 4 * h1._HIGH_WATER
    block = b"y" * 65536

    def answer(n, req):
        return [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size] + [block] * (size // len(block)), True

    s = server(answer)

    async def go():
        d = AsyncH1(10)
        try:
            async with d.stream(s.url, {}, {}, 5.0, 5.0) as st:
                await asyncio.sleep(0.3)  # the reader is slow: the socket is paused, not buffered without bound
                c = st._c
                paused_at = c.buffered
                text = await st.read()
            return paused_at, len(text)
        finally:
            await d.aclose()

    paused_at, n = run(go())
    assert n == size
    assert paused_at < size  # reading stopped near the high-water mark


def test_a_header_value_with_a_line_break_is_refused_without_echoing_it(server):
    """Refused before a byte is sent, named but never echoed, and not a transport failure
    to retry (the client refuses such keys before any driver: test_client_routing)."""
    from knollm.client.h1 import H1HeaderError

    s = server(lambda n, req: (ok(b"{}"), True))

    async def go():
        d = AsyncH1(10)
        try:
            with pytest.raises(H1HeaderError) as ei:
                await post(d, s.url, {"authorization": "Bearer sk-secret\r\nx-injected: 1"})
            return ei.value
        finally:
            await d.aclose()

    e = run(go())
    assert isinstance(e, ValueError) and AsyncH1.classify(e) is None
    assert "sk-secret" not in str(e) and "authorization" in str(e)
    assert s.requests == []


def test_connect_failures_are_classified(server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed

    async def go():
        d = AsyncH1(10)
        try:
            with pytest.raises(OSError) as ei:
                await post(d, f"http://127.0.0.1:{port}/v1/chat/completions")
            return ei.value
        finally:
            await d.aclose()

    assert AsyncH1.classify(run(go()))[0] == "connect"  # refused: before the request was sent


# --------------------------------------------------------------------------- proxies, every driver
@pytest.mark.parametrize("driver", ["sync", "h1", "aiohttp", "httpx2"])
def test_every_driver_honours_http_proxy_and_no_proxy(server, monkeypatch, driver):
    """``HTTP_PROXY`` sends a provider call through the proxy (the absolute-form request
    line names the provider's host); ``NO_PROXY`` naming that host sends it direct."""
    from knollm import Client
    from knollm.query.api import Catalog
    from tests.support.async_facade import AsyncFacade
    from tests.support.client_fixtures import catalog, model

    answer = (b'{"id": "x", "object": "chat.completion", "model": "llama-3.3-70b-versatile", "choices": '
              b'[{"index": 0, "message": {"role": "assistant", "content": "via %s"}, "finish_reason": "stop"}], '
              b'"usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}')
    proxy = server(lambda n, req: (ok(answer % b"proxy"), True))
    direct = server(lambda n, req: (ok(answer % b"direct"), True))
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))

    def call(host):
        env = {"KNOLLM_GROQ_BASE_URL": f"http://{host}:{direct.port}/v1", "GROQ_API_KEY": "gsk-proxy"}
        c = Client(catalog=cat, env=env, store=False, retries=0) if driver == "sync" else \
            AsyncFacade(http=driver, catalog=cat, env=env, store=False, retries=0)
        try:
            return c.chat("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi"}]).content
        finally:
            c.close()

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    assert call("provider.test") == "via proxy"
    line = proxy.requests[-1].split(b"\r\n")[0]
    assert line == f"POST http://provider.test:{direct.port}/v1/chat/completions HTTP/1.1".encode()
    assert direct.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert call("127.0.0.1") == "via direct"
    assert len(proxy.requests) == 1 and len(direct.requests) == 1


def test_a_whole_answer_over_the_high_water_mark_is_read_to_its_end(server):
    """Only a stream's unconsumed body pauses reading (past 1 MiB): a non-streamed answer
    of 3 MiB arrives whole, well within the read timeout, from one request. (Before, the
    read paused for good at 1 MiB: a read timeout, an answer cut after its 200, billed
    and retried.)"""
    body = b'{"x": "' + b"a" * (3 << 20) + b'"}'
    s = server(lambda n, req: ([ok(body)], True))

    async def go():
        d = AsyncH1(10)
        try:
            t = time.monotonic()
            r = await post(d, s.url, read=2.0)
            return r, time.monotonic() - t
        finally:
            await d.aclose()

    r, took = run(go())
    assert r.cut is None and r.status == 200 and len(r.text) == len(body)
    assert took < 2.0 and len(s.requests) == 1


def test_bytes_after_an_answer_in_the_same_read_are_not_part_of_it(server):
    """A server that writes a second answer (or more body than it declared) right after
    the first, in one write: the caller gets the first answer as declared, its headers
    untouched, and the connection is not reused."""
    first = {1: ok(b'{"a":1}') + ok(b'{"b":2}'), 2: ok(b'{"a":1}') + b"garbage"}
    s = server(lambda n, req: (first.get(n) or ok(b'{"next":true}'), True))

    async def go():
        d = AsyncH1(10)
        try:
            return [await post(d, s.url) for _ in range(4)]
        finally:
            await d.aclose()

    replies = run(go())
    assert [r.text for r in replies] == ['{"a":1}', '{"a":1}', '{"next":true}', '{"next":true}']
    assert all(r.cut is None for r in replies)
    assert replies[0].headers["content-length"] == "7" and replies[0].headers["content-type"] == "application/json"
    assert s.connections == 3  # the two spilled connections were dropped, the third kept


def test_a_reset_in_a_body_read_until_close_cuts_it():
    """An answer without a length whose connection is reset mid-body is a cut answer (what
    arrived, and the error), not a whole one ended by the connection's close."""
    import socket
    import struct
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve(reset: bool) -> None:
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                  b'{"choices":[{"message":{"content":"hel')
        time.sleep(0.1)
        if reset:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            c.sendall(b'lo"}}]}')
        c.close()

    async def go():
        d = AsyncH1(4)
        try:
            return [await d.post(f"http://127.0.0.1:{port}/", {}, {}, 3.0, 3.0) for _ in range(2)]
        finally:
            await d.aclose()

    def both() -> None:
        serve(True)
        serve(False)

    threading.Thread(target=both, daemon=True).start()
    try:
        cut, whole = run(go())
    finally:
        srv.close()
    assert isinstance(cut.cut, H1Error) and "ConnectionResetError" in str(cut.cut)
    assert cut.text == '{"choices":[{"message":{"content":"hel'
    assert whole.cut is None and whole.text == '{"choices":[{"message":{"content":"hello"}}]}'
