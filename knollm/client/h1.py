"""``h1``: the async HTTP/1.1 driver, on asyncio protocols and httptools' C parser.

A provider call is one small POST and one small answer (or an event stream), on a
keep-alive connection to a handful of hosts. A general-purpose client spends most of its
time per call on what that does not need (cookie jars, multidict headers, tracing hooks,
payload objects); this driver keeps only the call: one write of the request (sent with the event-loop
turn's other writes: :mod:`knollm.client.outbox`), the parser's
callbacks filling a status, a header dict and a body buffer, and a pool of idle
connections per origin. Measured against the same loopback upstream at concurrency 64
(``python scripts/bench_client.py``, section 5) it needs about a third of aiohttp's CPU
per call, which is what ``knollm serve`` needs.

What it does, as the other drivers do:

* a pool per origin (``scheme, host, port``), at most ``max_connections`` open in all
  (at the limit the oldest idle connection, to any origin, is closed to make room),
  idle connections closed after 4 s, or a second before the server's ``Keep-Alive:
  timeout`` (checked when one is taken), a connection the
  server closed is never reused, and a connection whose answer was not read to the end
  (a stream left early) is closed, never reused;
* TLS with httpx2's trust (httpcore2's default context, ALPN ``http/1.1``), verified;
* ``connect`` bounds opening a connection (TLS handshake included); ``read`` bounds each
  wait for the server's next bytes;
* bodies by ``content-length``, chunked or until the connection closes; ``gzip`` and
  ``deflate`` answers decoded (it asks for ``identity``);
* no redirects followed; header values with a line break refused;
* ``HTTP(S)_PROXY`` / ``NO_PROXY``: an origin that goes through a proxy is handed, as a
  whole, to the aiohttp driver (httpx2 when aiohttp is absent); the decision is made once
  per origin.

Errors: :class:`H1Timeout` (``connect`` or ``read``) and :class:`H1Error` (the connection
failed or the answer could not be parsed), classified by :meth:`AsyncH1.classify` into
the same retryable failures as the other drivers (:func:`knollm.client.http.transport_failure`);
:class:`H1HeaderError` (also a ``ValueError``: a header with a line break, such as a key
read with its ``\r``) reaches the caller unretried.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from knollm.client.http import LineSplitter, Reply, _AsyncStream, _json_bytes
from knollm.client.outbox import Outbox
from knollm.client.ticker import Ticker

__all__ = ["AsyncH1", "H1Error", "H1HeaderError", "H1Timeout"]

# keep-alive connections idle longer are closed: under the 5 s after which many servers
# close an idle connection (uvicorn's, Node's, Apache's default), as Node's undici does, so
# a call seldom takes a connection the server is closing (it would fail and be retried);
# shorter when the server says so (``Keep-Alive: timeout=N``: N - 1 s, as undici does)
_IDLE_S = 4.0


def _idle_max(keep_alive: str) -> float:
    """How long a connection may stay idle, from the answer's ``Keep-Alive`` header."""
    for part in keep_alive.split(","):
        name, _, value = part.partition("=")
        if name.strip().lower() == "timeout":
            try:
                return max(0.0, min(_IDLE_S, float(value.strip().strip('"')) - 1.0))
            except ValueError:
                break
    return _IDLE_S


_HIGH_WATER = 1 << 20  # a streamed body buffered beyond this pauses reading from the socket
# a stream whose payload ended (its end marker read) before its body's last framing bytes
# (the empty chunk that ends a chunked body, often in the next packet) arrived: the
# connection goes back to the pool when they come, within this time and this many bytes
_DRAIN_S = 1.0
_DRAIN_BYTES = 64 * 1024


class H1Error(Exception):
    """The connection failed, or the server's answer is not HTTP/1.1 that can be read."""


class H1HeaderError(H1Error, ValueError):
    """A request header the driver refuses to write (a line break or a colon in a name, a
    line break in a value): a configuration error, raised to the caller rather than
    retried. The message names the header, never its value (it may be a key)."""


class H1Timeout(H1Error):
    """``phase`` ``connect`` (opening the connection) or ``read`` (waiting for the server)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"{phase} timed out")
        self.phase = phase


class _Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time: httptools' callbacks fill the
    current answer (status, headers, body pieces) and wake whoever waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import httptools

        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        # lenient header values: an obs-fold (a header continued on the next line, which some
        # proxies still send) is read as one value joined by a space instead of failing the
        # whole answer; values are never written back (h1 sends only its own headers)
        lenient = getattr(self.parser, "set_dangerous_leniencies", None)  # (httptools >= 0.6.2)
        if lenient is not None:
            lenient(lenient_headers=True)
        self.t: Any = None
        self.closed = False
        self.idle_since = 0.0
        self.idle_max = _IDLE_S
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.buffered = 0
        self.head_done = self.done = self.keep_alive = False
        self.streaming = False  # (only a stream's body pauses reading: a whole body is awaited at once)
        self.spilled = False  # bytes after the answer in the same read: ignored, the connection dropped
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.last = 0.0
        self.read = 0.0
        self.paused = False
        self.drain: Any = None  # while the end of a finished stream's body is awaited: drain(reusable)
        self.drain_until = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        if self.done:  # bytes after a whole answer (no pipelining here): the connection is not reused
            self.closed = True
            self.t.abort()
            return
        self.last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except Exception as e:  # noqa: BLE001 - httptools.HttpParserError and callback errors
            if not self.done:
                self._fail(H1Error(f"unreadable answer ({type(e).__name__})"))
            # (else: the answer is whole; what follows it, a longer body than declared, is not)
            self.closed = True
            self.t.abort()
            return
        if self.body:  # a chunked body's pieces of one read: one wake-up
            self._wake()
        if self.buffered > _HIGH_WATER and self.streaming and not self.paused and not self.done:
            self.paused = True
            self.t.pause_reading()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.drain is not None:
            self._end_drain(False)
        if self.done or self.error is not None:
            return
        h = self.headers
        if exc is None and self.head_done and "content-length" not in h \
                and "chunked" not in h.get("transfer-encoding", "").lower():  # (its tokens are case-insensitive)
            self.done = True  # a body delimited by the connection's end (a reset cuts it instead)
            self._wake()
        else:
            self._fail(H1Error("server disconnected" + ("" if exc is None else f" ({type(exc).__name__})")))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.done:  # a second answer in the same read (there is no pipelining here)
            self.spilled = self.closed = True  # ignored, and the connection never reused

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.spilled:
            return
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        h = self.headers
        h[k] = h[k] + ", " + v if k in h else v

    def on_headers_complete(self) -> None:
        if self.spilled:
            return
        self.status = self.parser.get_status_code()
        if self.status >= 200:  # (an interim 1xx answer: the real one follows)
            self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the body ends)
            self.head_done = True
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.spilled:
            return
        if self.drain is not None:  # what follows a finished stream's end marker is not read
            self.buffered += len(body)
            if self.buffered > _DRAIN_BYTES:
                self._end_drain(False)
            return
        self.body.append(body)
        self.buffered += len(body)  # (the reader is woken once the read is parsed: data_received)

    def on_message_complete(self) -> None:
        if self.spilled:
            return
        if self.status < 200:
            self.status, self.headers = 0, {}
            return
        self.done = True
        self._wake()
        if self.drain is not None:
            self._end_drain(True)

    def _end_drain(self, reusable: bool) -> None:
        done, self.drain = self.drain, None
        done(reusable)

    # waiting
    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, e: BaseException) -> None:
        self.error = e
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def wait(self, read: float) -> asyncio.Future:
        """A future done once the parser has something new, or the answer failed (``error``
        set: the caller raises it after the wait); the read timeout (:class:`H1Timeout`
        when the server sends nothing for ``read`` seconds) is checked by the loop's
        :class:`~knollm.client.ticker.Ticker`, at most 0.1 s late. A plain function, not a
        coroutine: a stream's every read passes through it, and a coroutine layer costs
        each one. The ticker drops the connection once its wait is over (``tick``)."""
        if self.error is not None:
            raise self.error
        loop = self.loop
        self.waiter = w = loop.create_future()
        self.last = loop.time()
        self.read = read
        Ticker.of(loop).live.add(self)
        return w

    def tick(self, now: float) -> bool:
        """The read timeout: the wait is over once answered, or once the server has sent
        nothing for ``read`` seconds (bytes that completed nothing yet count as news); or
        the end of a finished stream's body, awaited for :data:`_DRAIN_S`."""
        if self.drain is not None:
            if now < self.drain_until:
                return False
            self._end_drain(False)
            return True
        w = self.waiter
        if w is None or w.done():
            return True
        if now - self.last < self.read:
            return False
        self.error = H1Timeout("read")
        w.set_result(None)
        return True

    def take(self) -> bytes:
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.t.resume_reading()
        return data


class _Origin:
    """What a URL's origin needs: pool key, connect arguments, request line pieces."""

    __slots__ = ("key", "host", "port", "tls", "host_header", "target", "proxied")

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise H1Error(f"unsupported URL scheme {u.scheme!r}")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.key = (u.scheme, self.host, self.port)
        default = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        hh = host if default else f"{host}:{self.port}"
        self.host_header = hh.encode("ascii") if hh.isascii() else hh.encode("idna")
        self.target = ((u.path or "/") + (f"?{u.query}" if u.query else "")).encode("ascii")
        self.proxied = False


def _close_socket(t: Any) -> None:
    """Close the socket of transport ``t`` whose event loop is closed (so ``abort`` would
    raise): uvloop closed it with the loop; asyncio's transports keep it open until
    collected otherwise."""
    sock = getattr(t, "_sock", None)  # (asyncio's selector transports)
    if sock is not None:
        sock.close()
        t._sock = None  # (as its own close would leave it: collected, it no longer warns of an open socket)


def _check_header(k: str, v: str) -> None:
    if "\n" in v or "\r" in v or "\n" in k or "\r" in k or ":" in k:
        raise H1HeaderError(f"request header {k!r} has a line break (or its name a colon): refused; "
                            "check the API key or header configured for this provider")  # never the value


def _decoder(enc: str) -> Any:
    enc = enc.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return _Deflate()
    raise H1Error(f"the answer is encoded with {enc!r}, which this driver does not decode")


class _Deflate:
    """``deflate``: zlib-wrapped as the RFC says, raw as some servers send it."""

    def __init__(self) -> None:
        self._d: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._d is None:
            self._d = zlib.decompressobj(zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS)
        return self._d.decompress(data)

    def flush(self) -> bytes:
        return self._d.flush() if self._d is not None else b""


class AsyncH1:
    """The ``h1`` async driver (see the module's text)."""

    name = "h1"

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max(1, max_connections)
        self._idle: dict[tuple, deque[_Conn]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._origins: dict[str, _Origin] = {}
        self._ssl: Any = None
        self._proxy_driver: Any = None
        self._all: set[_Conn] = set()
        self._blocks: dict[int, tuple[dict, bytes]] = {}  # id(headers) -> (headers, encoded): _header_block

    # ------------------------------------------------------------------ pieces
    def _origin(self, url: str) -> _Origin:
        o = self._origins.get(url)
        if o is None:
            o = _Origin(url)
            o.proxied = _uses_proxy(url)
            if len(self._origins) > 1000:
                self._origins.clear()
            self._origins[url] = o
        return o

    def _tls(self) -> Any:
        if self._ssl is None:
            import httpcore2

            ctx = httpcore2.default_ssl_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    def _proxied(self) -> Any:
        if self._proxy_driver is None:
            try:
                import aiohttp  # noqa: F401
            except ImportError:
                from knollm.client.http import AsyncHTTPX2

                self._proxy_driver = AsyncHTTPX2(self.max_connections)
            else:
                from knollm.client.http import AsyncAiohttp

                self._proxy_driver = AsyncAiohttp(self.max_connections)
        return self._proxy_driver

    def _request_bytes(self, o: _Origin, headers: dict, body: bytes) -> bytes:
        return b"".join((b"POST ", o.target, b" HTTP/1.1\r\nhost: ", o.host_header, b"\r\n",
                         self._header_block(headers), b"content-length: %d\r\n\r\n" % len(body), body))

    def _header_block(self, headers: dict) -> bytes:
        """``headers`` checked and encoded, defaults added; kept for a caller that sends the
        same dict every time (a deployment's headers), which must not change it."""
        hit = self._blocks.get(id(headers))
        if hit is not None and hit[0] is headers:
            return hit[1]
        parts: list[bytes] = []
        given = set()
        for k, v in headers.items():
            lk = k.lower()
            if lk in _OURS:  # framing is the driver's
                continue
            _check_header(k, v)
            given.add(lk)
            parts += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
        parts += [line for name, line in _DEFAULT_HEADERS if name not in given]
        block = b"".join(parts)
        if len(self._blocks) >= 256:
            self._blocks.clear()
        self._blocks[id(headers)] = (headers, block)  # (the dict is held: its id stays its own)
        return block

    # ------------------------------------------------------------------ pool
    def _take_idle(self, o: _Origin) -> _Conn | None:
        """The most recently used live idle connection to ``o``'s origin (stale ones closed).
        A connection of an event loop that is not running (an earlier ``asyncio.run``'s,
        closed since) is stale too: its transport belongs to that loop, so every idle
        connection of that loop is dropped at once (a driver serves one loop at a time)."""
        idle = self._idle.get(o.key)
        while idle:
            c = idle.pop()
            if not c.closed and c.loop.is_running() and c.loop.time() - c.idle_since < c.idle_max:
                c._reset()
                return c
            if not c.loop.is_running():
                self._drop_loop(c.loop)
            self._drop(c)
        return None

    def _drop_loop(self, loop: Any) -> None:
        """Drop every idle connection of ``loop``, an event loop no longer running."""
        for q in self._idle.values():
            for c in [c for c in q if c.loop is loop]:
                q.remove(c)
                self._drop(c)

    def _evict_idle(self) -> bool:
        """At the limit: close the oldest idle connection (to any origin) so that idle
        connections to one provider never keep another from getting one."""
        oldest: deque[_Conn] | None = None
        for q in self._idle.values():
            if q and (oldest is None or q[0].idle_since < oldest[0].idle_since):
                oldest = q
        if oldest is None:
            return False
        self._drop(oldest.popleft())
        return True

    async def _acquire(self, o: _Origin, connect: float) -> _Conn:
        c = self._take_idle(o)
        if c is not None:  # (the usual case: no running-loop lookup, which costs a getpid system call)
            return c
        loop = asyncio.get_running_loop()
        while self._open >= self.max_connections and not self._evict_idle():
            w = loop.create_future()
            self._waiters.append(w)
            try:
                await w
            except BaseException:
                if w in self._waiters:
                    self._waiters.remove(w)
                elif not w.cancelled():
                    self._wake_one()  # the slot handed to us goes to the next waiter
                raise
            c = self._take_idle(o)
            if c is not None:
                return c
        self._open += 1
        try:
            async with asyncio.timeout(connect):
                if o.tls:
                    _, c = await loop.create_connection(lambda: _Conn(loop), o.host, o.port, ssl=self._tls(),
                                                        server_hostname=o.host)
                else:
                    _, c = await loop.create_connection(lambda: _Conn(loop), o.host, o.port)
        except TimeoutError:
            self._released_slot()
            raise H1Timeout("connect") from None
        except BaseException:
            self._released_slot()
            raise
        self._all.add(c)
        return c

    def _release(self, o: _Origin, c: _Conn) -> None:
        """Back to the pool when its answer was read to the end and it may be kept; else closed."""
        if c.done and c.keep_alive and c.error is None and not c.closed:
            c.idle_since = c.loop.time()
            ka = c.headers.get("keep-alive")
            c.idle_max = _IDLE_S if ka is None else _idle_max(ka)
            c.body, c.waiter = [], None
            self._idle.setdefault(o.key, deque()).append(c)
            self._wake_one()
            return
        self._drop(c)

    def _release_when_done(self, o: _Origin, c: _Conn) -> None:
        """A stream whose payload ended (its end marker was read) but whose body has not:
        what is left is framing (the empty chunk ending a chunked body, often in the next
        packet), so the connection goes back to the pool once the body ends, instead of
        a new connection (and TLS handshake) for the next call. Closed if the body does
        not end within :data:`_DRAIN_S` and :data:`_DRAIN_BYTES` (what arrives is dropped)."""
        if c.done or c.closed or c.error is not None or not c.keep_alive:
            self._release(o, c)
            return
        c.take()
        c.drain = lambda reusable: self._release(o, c) if reusable else self._drop(c)
        c.drain_until = c.loop.time() + _DRAIN_S
        Ticker.of(c.loop).live.add(c)

    def _drop(self, c: _Conn) -> None:
        if c in self._all:
            self._all.discard(c)
            if c.t is not None:
                if c.loop.is_closed():  # (its transport cannot schedule its close on a closed loop)
                    _close_socket(c.t)
                else:
                    c.t.abort()  # an answer not read to the end, or a broken one: never reused
            self._released_slot()

    def _released_slot(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def _send(self, o: _Origin, headers: dict, body: dict, read: float, connect: float) -> _Conn:
        data = self._request_bytes(o, headers, _json_bytes(body))
        c = await self._acquire(o, connect)
        try:
            Outbox.of(c.loop).write(c.t, data)  # sent with the loop turn's other writes (knollm.client.outbox)
            while not c.head_done:
                await c.wait(read)
                if c.error is not None:
                    raise c.error
        except BaseException:
            self._drop(c)
            raise
        return c

    # ------------------------------------------------------------------ the driver
    async def post(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Reply:
        o = self._origin(url)
        if o.proxied:
            return await self._proxied().post(url, headers, body, read, connect)
        c = await self._send(o, headers, body, read, connect)
        try:
            while not c.done:
                await c.wait(read)
                if c.error is not None:
                    raise c.error
            data = c.take()
            dec = _decoder(c.headers.get("content-encoding", ""))
            if dec is not None:
                data = dec.decompress(data) + dec.flush()
        except H1Error as e:  # the body was cut (dropped, or silent past the read timeout)
            if isinstance(e, H1HeaderError):
                raise
            return Reply(c.status, c.headers, self._cut(c), cut=e)
        except BaseException:
            self._drop(c)
            raise
        status, hdrs = c.status, c.headers
        self._release(o, c)
        return Reply(status, hdrs, data.decode("utf-8", "replace"))

    def _cut(self, c: _Conn) -> str:
        """What arrived of a body that was cut (decoded as far as it goes); the connection is closed."""
        data = c.take() if not c.closed else b"".join(c.body)
        self._drop(c)
        try:
            dec = _decoder(c.headers.get("content-encoding", ""))
            if dec is not None:
                data = dec.decompress(data)
        except Exception:  # noqa: BLE001 - a partial compressed body may not decode: nothing known
            data = b""
        return data.decode("utf-8", "replace")

    def stream(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Any:
        o = self._origin(url)
        if o.proxied:
            return self._proxied().stream(url, headers, body, read, connect)
        return _H1Stream(self, o, headers, body, read, connect)

    @staticmethod
    def classify(e: BaseException) -> tuple[str, str] | None:
        import ssl

        if isinstance(e, H1HeaderError):
            return None  # not a transport failure: the caller's configuration
        if isinstance(e, H1Timeout):
            return ("connect_timeout" if e.phase == "connect" else "timeout"), type(e).__name__
        if isinstance(e, (H1Error, EOFError)):
            return "connection", type(e).__name__  # after the request was written
        if isinstance(e, (OSError, ssl.SSLError)):
            return "connect", type(e).__name__  # opening the connection (refused, DNS, TLS): nothing sent
        return None

    def let_go(self) -> None:
        """Close every connection now, without waiting (the client is done with this driver:
        its event loop has ended); a proxy's driver is left to be collected."""
        for c in list(self._all):
            if c.t is not None:
                if c.loop.is_closed():
                    _close_socket(c.t)
                else:
                    c.t.close()
        self._all.clear()
        self._idle.clear()
        self._open = 0

    async def aclose(self) -> None:
        self.let_go()
        if self._proxy_driver is not None:
            await self._proxy_driver.aclose()
            self._proxy_driver = None


class _H1Stream(_AsyncStream):
    """A streamed answer (``status``, ``headers``, ``read()`` from the shared
    :class:`~knollm.client.http._AsyncStream`), with ``chunks()``: the body's bytes as
    they arrive, decoded (what a relay forwards), and ``batches()``: their lines."""

    def __init__(self, drv: AsyncH1, o: _Origin, headers: dict, body: dict, read: float, connect: float) -> None:
        self._args = (o, headers, body, read, connect)
        self._drv, self._c = drv, None
        self._read = read
        self._ended = False

    def payload_ended(self) -> None:
        """The caller read the payload's end marker (an SSE ``[DONE]``, say): leaving now
        keeps the connection for the next call once the body's last bytes arrive."""
        self._ended = True

    async def __aenter__(self) -> _H1Stream:
        o, headers, body, read, connect = self._args
        c = self._c = await self._drv._send(o, headers, body, read, connect)
        c.streaming = True  # read as it is consumed: reading pauses past _HIGH_WATER unconsumed
        self.status, self.headers = c.status, c.headers
        try:
            self._dec = _decoder(c.headers.get("content-encoding", ""))
        except BaseException:
            self._drv._drop(c)
            self._c = None
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        c, self._c = self._c, None
        if c is None:
            return
        if exc[0] is None and self._ended:
            self._drv._release_when_done(self._args[0], c)
        else:
            self._drv._release(self._args[0], c)  # closed unless read to the end

    def _step(self) -> bytes | None:
        """The body's bytes arrived since the last step (decoded), ``b""`` when none yet
        (wait for more), or None once the body has ended and all of it was given."""
        c, dec = self._c, self._dec
        assert c is not None
        if c.body:  # (more may come, or the end, while the consumer has this piece)
            data = c.take()
            if dec is not None:
                data = dec.decompress(data)
            if data:
                return data
        if c.done:
            if dec is not None:
                rest, self._dec = dec.flush(), None
                if rest:
                    return rest
            return None
        return b""

    async def chunks(self) -> AsyncIterator[bytes]:
        c = self._c
        assert c is not None
        while True:
            data = self._step()
            if data is None:
                return
            if data:
                yield data
                continue
            await c.wait(self._read)
            if c.error is not None:
                raise c.error

    async def batches(self) -> AsyncIterator[list[str]]:
        """The body's lines, one list per network read, as :meth:`_AsyncStream.batches`
        gives them, split here instead of in a second generator over :meth:`chunks`: a
        stream's every read passes through each generator layer."""
        c, split = self._c, LineSplitter()
        assert c is not None
        while True:
            data = self._step()
            if data is None:
                break
            if data:
                lines = split.feed(data)
                if lines:
                    yield lines
                continue
            await c.wait(self._read)
            if c.error is not None:
                raise c.error
        last = split.close()
        if last:
            yield last

    def _chunks(self) -> AsyncIterator[bytes]:
        return self.chunks()

    async def _body(self) -> bytes:
        return b"".join([d async for d in self.chunks()])


def _user_agent() -> bytes:
    try:
        from importlib.metadata import version

        v = version("knollm")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        v = "dev"
    return f"user-agent: knollm/{v}\r\n".encode()


# framing headers the driver writes itself; a caller's are dropped
_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"})
# sent unless the caller gives its own
_DEFAULT_HEADERS = (("content-type", b"content-type: application/json\r\n"),
                    ("accept-encoding", b"accept-encoding: identity\r\n"), ("user-agent", _user_agent()))


def _uses_proxy(url: str) -> bool:
    """Whether ``HTTP(S)_PROXY`` / ``ALL_PROXY`` apply to ``url`` (``NO_PROXY`` honoured), as
    urllib (and aiohttp's ``trust_env``) decide."""
    import urllib.request
    from urllib.parse import urlsplit

    u = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(u.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(u.hostname or "")
