"""Run the gateway under uvicorn (``knollm serve``).

Settings travel to uvicorn's worker processes through the environment
(``KNOLLM_LOCK``, ``KNOLLM_DATABASE_URL``, ``KNOLLM_GATEWAY_*``), so ``--workers N``
builds the same app in every worker via :func:`app_factory`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from types import MappingProxyType
from typing import Any

from knollm.errors import GatewayError

__all__ = ["serve", "app_factory", "is_loopback", "check_bind", "GatewayHTTP", "settle_gc"]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_bind(host: str, keys_configured: bool) -> None:
    """The loopback-without-keys rule: refuse a non-loopback bind with no gateway key."""
    if not keys_configured and not is_loopback(host):
        raise GatewayError(
            f"refusing to listen on {host!r} without gateway keys: anyone who can reach it could spend "
            "your provider keys. Create one with `knollm serve keys create NAME`, or bind to 127.0.0.1.",
            status=500, type="server_error")


def app_factory() -> Any:
    """The ASGI app for one worker, configured from the environment."""
    from knollm.gateway.app import GatewayConfig, create_app
    from knollm.gateway.client_backend import ClientBackend
    from knollm.gateway.keys import KeyStore

    store = KeyStore()
    backend = ClientBackend.from_env()
    app = create_app(backend, store=store, config=GatewayConfig.from_env())
    backend.warm()  # the catalog is loaded before the first request, not during it
    if os.environ.get("KNOLLM_GATEWAY_GC", "settle") != "default":
        settle_gc()
    return app


def settle_gc() -> None:
    """The garbage collector of a long-running gateway worker, once startup has loaded the
    catalog: what is loaded by then (the catalog index, the modules: hundreds of thousands
    of objects) is frozen out of every collection, and the young generation is collected
    after 7,000 net allocations instead of 700. A request's objects are freed by reference
    counting; only cycles wait for a collection. Under load (``scripts/bench_gateway.py``,
    concurrency 64) the collector took 6.4–8.7% of the worker's CPU before (each full collection
    walked the catalog), 0.1% after. ``KNOLLM_GATEWAY_GC=default`` keeps Python's settings."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)


def serve(host: str = "127.0.0.1", port: int = 4000, *, lock: str | None = None, catalog: str | None = None,
          workers: int = 1, log_level: str = "warning") -> None:
    """Check the bind, then run uvicorn until interrupted."""
    import uvicorn

    from knollm.gateway.keys import KeyStore

    if lock:
        os.environ["KNOLLM_LOCK"] = os.path.abspath(lock)
    if catalog:
        os.environ["KNOLLM_CATALOG"] = os.path.abspath(catalog)
    read_timeout(), max_head_bytes(), max_connections()  # (a bad value is told here, not by each worker)
    from knollm.gateway.app import _keepalive_s

    _keepalive_s(os.environ.get("KNOLLM_GATEWAY_STREAM_KEEPALIVE_S"))
    idle, grace = keep_alive(), shutdown_seconds()
    store = KeyStore()
    check_bind(host, store.any_active())
    store.db.close()
    if not is_loopback(host):  # (the workers read it): revoking the last key must not open the gateway
        os.environ["KNOLLM_GATEWAY_REQUIRE_KEYS"] = "1"
    kwargs: dict[str, Any] = {"host": host, "port": port, "workers": max(1, workers), "factory": True,
                              "log_level": log_level, "access_log": False, "server_header": False,
                              "proxy_headers": False, "timeout_keep_alive": idle}
    try:
        import httptools  # noqa: F401

        kwargs["http"] = "knollm.gateway.server:GatewayHTTP"
        # (the protocol cuts what is left at `grace` itself, with answers; uvicorn's
        # cancellation, a plain-text 500, is the backstop)
        kwargs["timeout_graceful_shutdown"] = grace + SHUTDOWN_BACKSTOP_S
    except ImportError:  # uvicorn's h11 protocol: its own bound on connections (a plain-text 503 past it)
        kwargs["http"] = "h11"
        kwargs["limit_concurrency"] = max_connections()
        kwargs["timeout_graceful_shutdown"] = grace  # (and its cancellation: no drain of the gateway's own)
    try:
        import uvloop  # noqa: F401

        kwargs["loop"] = "uvloop"
    except ImportError:
        pass
    uvicorn.run("knollm.gateway.server:app_factory", **kwargs)


class _OneWrite:
    """A transport whose writes leave with the event-loop turn's other writes
    (:class:`~knollm.client.outbox.Outbox`): uvicorn writes an answer's status line and
    headers, then its body, in two sends (two syscalls, two loopback packets for a small
    JSON answer), and the answers finished in one turn would each wake the caller's
    process alone. Everything else is the transport's; ``close`` sends what is pending first."""

    #: the transport's methods uvicorn calls while serving, bound once per connection: a
    #: name found on the wrapper itself costs no failed lookup (each one that falls
    #: through to ``__getattr__`` raises and clears an ``AttributeError`` first)
    _BOUND = ("is_closing", "pause_reading", "resume_reading", "get_extra_info")
    __slots__ = ("_t", "_box", *_BOUND)

    def __init__(self, transport: Any, loop: Any) -> None:
        from knollm.client.outbox import Outbox

        self._t, self._box = transport, Outbox.of(loop)
        for name in self._BOUND:
            method = getattr(transport, name, None)
            if method is not None:  # (left unset, the name falls through to the transport as any other)
                setattr(self, name, method)

    def write(self, data: bytes) -> None:
        self._box.write(self._t, data)

    def _flush(self) -> None:
        data = self._box.take(self._t)
        if data and not self._t.is_closing():
            self._t.write(data)

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() + self._box.size(self._t)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def write_eof(self) -> None:
        self._flush()
        self._t.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


#: the default of ``KNOLLM_GATEWAY_READ_TIMEOUT_S``
READ_TIMEOUT_S = 60.0


def _seconds(name: str, default: float) -> float:
    """The positive number of seconds ``$name`` says (``default`` when unset); a
    :class:`GatewayError` naming the variable otherwise."""
    try:
        v = float(os.environ.get(name) or default)
    except ValueError:
        v = float("nan")
    if not 0 < v < float("inf"):
        raise GatewayError(f"{name} must be a positive number of seconds", status=500, type="server_error")
    return v


def read_timeout() -> float:
    """How long a client may take to send one request, head and body
    (``$KNOLLM_GATEWAY_READ_TIMEOUT_S``, default 60 s)."""
    return _seconds("KNOLLM_GATEWAY_READ_TIMEOUT_S", READ_TIMEOUT_S)


#: the default of ``KNOLLM_GATEWAY_MAX_HEAD_BYTES``
MAX_HEAD_BYTES = 64 * 1024


def max_head_bytes() -> int:
    """The largest request head (request line and headers) a client may send
    (``$KNOLLM_GATEWAY_MAX_HEAD_BYTES``, default 64 KiB)."""
    raw = os.environ.get("KNOLLM_GATEWAY_MAX_HEAD_BYTES") or str(MAX_HEAD_BYTES)
    if not raw.isdigit() or int(raw) < 1024:
        raise GatewayError("KNOLLM_GATEWAY_MAX_HEAD_BYTES must be a number of bytes, at least 1024", status=500,
                           type="server_error")
    return int(raw)


#: the default of ``KNOLLM_GATEWAY_KEEP_ALIVE_S`` (uvicorn's own)
KEEP_ALIVE_S = 5.0


def keep_alive() -> float:
    """How long a client's connection is kept open idle between requests
    (``$KNOLLM_GATEWAY_KEEP_ALIVE_S``, default 5 s, uvicorn's). Behind a load balancer,
    set it above the balancer's own idle timeout (60 s on AWS's ALB), or the balancer
    sends a request into a connection the gateway is closing and its caller gets a 502."""
    return _seconds("KNOLLM_GATEWAY_KEEP_ALIVE_S", KEEP_ALIVE_S)


#: the default of ``KNOLLM_GATEWAY_SHUTDOWN_S``: under Kubernetes' default grace period
#: (30 s) with room for the cut requests' answers and ledger rows
SHUTDOWN_S = 25.0
#: how long uvicorn waits, past ``KNOLLM_GATEWAY_SHUTDOWN_S``, for what the gateway's own cut
#: left (answers being written, ledger rows) before it cancels the tasks still running
SHUTDOWN_BACKSTOP_S = 2.0


def shutdown_seconds() -> float:
    """How long the requests in flight when ``knollm serve`` is told to stop (SIGTERM, Ctrl-C)
    may take to finish (``$KNOLLM_GATEWAY_SHUTDOWN_S``, default 25 s); then those still
    waiting for a provider are cut (see :func:`knollm.gateway.app.drain`)."""
    return _seconds("KNOLLM_GATEWAY_SHUTDOWN_S", SHUTDOWN_S)


#: the most client connections a worker holds by default, however many files it may open
MAX_CONNECTIONS_CAP = 10_000


def _files_limit() -> int:
    """The process's open-file limit, its soft limit raised to the hard one first (as Go's
    runtime and most servers do: the soft default, often 1,024, is a guard for programs
    that use ``select``; the gateway's event loop uses epoll)."""
    try:
        import resource
    except ImportError:  # (Windows: no such limit to read)
        return 2 * MAX_CONNECTIONS_CAP + 64
    inf = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == inf:
        return 1 << 20
    want = hard if hard != inf else max(soft, 1 << 20)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):  # (not allowed here: the soft limit as it is)
            pass
    return soft


def max_connections() -> int:
    """The most client connections one worker holds open at once
    (``$KNOLLM_GATEWAY_MAX_CONNECTIONS``). By default half the files the worker may open
    (the other half is for its upstream connections, the ledger, logs), at most
    :data:`MAX_CONNECTIONS_CAP`; one set higher than the files allow is lowered to fit."""
    files = _files_limit()
    fit = max(16, (files - 64) // 2)
    raw = os.environ.get("KNOLLM_GATEWAY_MAX_CONNECTIONS")
    if not raw:
        return min(fit, MAX_CONNECTIONS_CAP)
    if not raw.isdigit() or int(raw) < 1:
        raise GatewayError("KNOLLM_GATEWAY_MAX_CONNECTIONS must be a whole number of connections, at least 1",
                           status=500, type="server_error")
    return min(int(raw), fit)


def _refusal(status: int, reason: str, message: str, code: str, kind: str = "invalid_request_error",
             headers: str = "") -> bytes:
    """A whole HTTP answer closing its connection, with an OpenAI-shaped error body
    (``error.type`` ``kind``); ``headers``: more header lines, each ending in CRLF."""
    from knollm.gateway.app import _dumps, error_body

    body = _dumps(error_body(GatewayError(message, status=status, type=kind, code=code)))
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n{headers}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class _Refused:
    """A connection refused before it was read: the refusal is written and the sending
    side closed, then what the client sends is read and dropped until it closes its side
    (at most :attr:`LINGER_S`). Closed at once, a connection whose request sits unread in
    the socket is reset, and a reset can destroy the refusal before the client reads it."""

    LINGER_S = 1.0

    def __init__(self, answer: bytes, loop: Any) -> None:
        self.answer, self.loop, self.timer = answer, loop, None

    def connection_made(self, transport: Any) -> None:
        transport.write(self.answer)
        try:
            transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):  # (TLS: no half-close)
            pass
        self.timer = self.loop.call_later(self.LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # (the transport closes)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


#: a header name ``whole_answer`` writes: a lower-case token
_NAME_OK = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


def _gateway_http() -> Any:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
    from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

    from knollm.client.ticker import Ticker
    from knollm.gateway.app import EVENT_LOOP, READ_TIMED_OUT, WHOLE_ANSWER, drain
    from knollm.gateway.metrics import Refused

    class ReadTicker(Ticker):
        """The connections' read limits, looked at once a second (a limit is a minute)."""

        TICK = 1.0
        _of_loop: dict[int, Ticker] = {}

    limit, head_limit, most, grace = read_timeout(), max_head_bytes(), max_connections(), shutdown_seconds()
    _made, _lost = HttpToolsProtocol.connection_made, HttpToolsProtocol.connection_lost
    _shutdown = HttpToolsProtocol.shutdown
    _received = HttpToolsProtocol.data_received
    timed_out = _refusal(408, "Request Timeout", f"the request was not received within {limit:g} s "
                         "(KNOLLM_GATEWAY_READ_TIMEOUT_S)", "request_timeout")
    too_large = _refusal(431, "Request Header Fields Too Large", f"the request's head (request line and "
                         f"headers) is over {head_limit} bytes (KNOLLM_GATEWAY_MAX_HEAD_BYTES)", "headers_too_large")
    too_many = _refusal(503, "Service Unavailable", f"the gateway holds {most} connections, its most "
                        "(KNOLLM_GATEWAY_MAX_CONNECTIONS): try again shortly", "too_many_connections",
                        "server_error", "retry-after: 1\r\n")

    dated: list[Any] = [None, b""]  # the server's default headers (the date: a new list each second), as bytes
    names_ok: dict[tuple[str, ...], bool] = {}  # the header names of answers seen, checked once

    async def whole_answer(send: Any, status: int, content_type: str, headers: dict[str, str], body: bytes,
                           chunked: bool = False) -> bool:
        """Write a whole answer (status line, headers, body) on the connection ``send``
        (the ASGI ``send`` the app was given) belongs to, as uvicorn's two ASGI sends
        would write it for the header list ``content-length`` (unless ``chunked``),
        ``content-type``, then ``headers`` (lower-case names): byte for byte, without their
        per-header work (two regex searches and a loop a header: about 500 bytecodes an
        answer). The body is framed by ``content-length``, or as one chunk and the end of
        the chunked body (``chunked``). Returns False, having done nothing, when it is not
        one it writes (``send`` not uvicorn's own, wrapped by a middleware say; a header
        name not a lower-case token, or a value not printable ASCII; a HEAD request; an
        answer already started): the caller sends it through ASGI then."""
        cycle = getattr(send, "__self__", None)
        if type(cycle) is not RequestResponseCycle or cycle.response_started or status not in STATUS_LINE \
                or cycle.scope["method"] == "HEAD":
            return False
        names, values = tuple(headers), " ".join(headers.values())
        ok = names_ok.get(names)
        if ok is None:
            ok = all(_NAME_OK.fullmatch(n) for n in names)
            if len(names_ok) < 256:
                names_ok[names] = ok
        if not (ok and values.isascii() and values.isprintable() and content_type.isascii()
                and content_type.isprintable()):
            return False
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return True  # (as uvicorn's send: nothing to write to)
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        if cycle.access_log:  # (uvicorn's line; `knollm serve` has none)
            scope = cycle.scope
            cycle.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                     get_path_with_query_string(scope), scope["http_version"], status)
        default = cycle.default_headers
        if dated[0] is not default:
            dated[:] = default, b"".join([b"%s: %s\r\n" % nv for nv in default])
        own = "\r\n".join(map(": ".join, headers.items())) + "\r\n" if headers else ""
        keep = cycle.keep_alive
        close = b"" if keep else b"connection: close\r\n"
        if chunked:  # (uvicorn's order: the headers, its connection: close, its transfer-encoding)
            head = b"%scontent-type: %s\r\n%s%stransfer-encoding: chunked\r\n\r\n" % (
                dated[1], content_type.encode("ascii"), own.encode("ascii"), close)
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        else:
            head = b"%scontent-length: %d\r\ncontent-type: %s\r\n%s%s\r\n" % (
                dated[1], len(body), content_type.encode("ascii"), own.encode("ascii"), close)
        cycle.transport.write(b"".join((STATUS_LINE[status], head, body)))
        cycle.response_complete = True
        cycle.message_event.set()
        if not keep:
            cycle.transport.close()
        cycle.on_response()
        return True

    _begin = HttpToolsProtocol.on_message_begin

    class GatewayHTTP(HttpToolsProtocol):
        """uvicorn's httptools protocol over :class:`_OneWrite`, with a time limit on reading
        each request (uvicorn has none: a client sending its head or body a byte at a time,
        or connecting and sending nothing, would hold a connection and its task for ever).
        A request must arrive whole, head and body, within ``KNOLLM_GATEWAY_READ_TIMEOUT_S``
        of being first seen unfinished (and a connection's first request, of the connection's
        start); past it the connection gets a 408 (nothing, if no request began) and is
        closed (at most two seconds late). An answer being made or written is never cut by
        it. Each connection is looked at once a second by a
        :class:`~knollm.client.ticker.Ticker` of its event loop, from uvicorn's own state:
        reading a request costs nothing more. A request's head is limited too
        (``KNOLLM_GATEWAY_MAX_HEAD_BYTES``: 431, see :meth:`data_received`). Each request's
        scope offers ``whole_answer`` (``extensions[WHOLE_ANSWER]``): an answer the app has
        whole, written as uvicorn's two sends would write it, for less; and the connection's
        event loop (``extensions[EVENT_LOOP]``)."""

        _head = 0  # bytes received while the request's head was being read
        _seen: Any = None  # the request found unfinished (its scope; the protocol itself: none began)
        _since = 0.0  # when it was first found so
        _ticker: Any = None
        _extensions: Any = None
        _quiet: Any = None  # the answered request after which the connection was found idle
        _quiet_since = 0.0  # (the look that found it so)

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            if len(self.connections) >= most:  # (this one not counted yet): refused before it is read
                Refused.connections += 1
                refused = _Refused(too_many, self.loop)
                transport.set_protocol(refused)
                refused.connection_made(transport)
                return
            _made(self, _OneWrite(transport, self.loop))
            # (one for the connection's requests, read-only: whole_answer, and the loop the
            # app would otherwise look up with a getpid system call: EVENT_LOOP)
            self._extensions = MappingProxyType({WHOLE_ANSWER: whole_answer, EVENT_LOOP: self.loop})
            self._seen, self._since = self, self.loop.time()
            self._ticker = ReadTicker.of(self.loop)  # (it stays while it has a connection to look at)
            self._ticker.live.add(self)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._ticker is None:  # refused at connection_made: uvicorn never took it
                return
            self._ticker.live.discard(self)
            _lost(self, exc)

        def data_received(self, data: bytes) -> None:
            """uvicorn's, then the head's size: httptools buffers a head however long it is
            (uvicorn's h11 protocol stops at 16 KiB), so without a limit one client's endless
            header takes the worker's memory."""
            _received(self, data)
            cycle, scope = self.cycle, self.scope
            if scope is None or cycle is not None and cycle.scope is scope:
                self._head = 0  # no head being read
                return
            self._head += len(data)
            if self._head > head_limit:
                t = self.transport
                if not t.is_closing():
                    if cycle is None or cycle.response_complete:  # (never a second answer into one being written)
                        t.write(too_large)
                    t.close()

        def on_message_begin(self) -> None:
            """uvicorn's, the request's scope offering ``whole_answer`` (WHOLE_ANSWER) and
            the connection's event loop (EVENT_LOOP)."""
            _begin(self)
            scope = self.scope
            if "extensions" not in scope:  # (uvicorn's httptools protocol offers none of its own)
                scope["extensions"] = self._extensions

        def on_response_complete(self) -> None:
            """uvicorn's, without its keep-alive timer: uvicorn arms an event-loop timer after
            every answer and cancels it when the next request's bytes arrive (a timer made
            and dropped for every request); here the connection's once-a-second look
            (:meth:`tick`) closes one left idle past uvicorn's ``timeout_keep_alive``
            instead, at most a second late."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()  # (unpaused, if a pipelined request had paused it)
            if self.pipeline:  # the next pipelined request starts
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)

        def shutdown(self) -> None:
            """uvicorn's (called on every connection when the server begins to stop: an
            idle connection is closed, a busy one once its answer is written), the requests
            in flight on this event loop first given at most ``KNOLLM_GATEWAY_SHUTDOWN_S`` to
            finish (:func:`~knollm.gateway.app.drain`): one still waiting for its provider then
            gets a 503 ``shutting_down`` (a stream, its error event and its ledger row)
            instead of uvicorn's cancellation, a plain-text 500 with no row."""
            drain(self.loop, grace)
            _shutdown(self)

        def tick(self, now: float) -> bool:
            scope, cycle = self.scope, self.cycle
            if cycle is not None and cycle.scope is scope and not cycle.more_body:
                self._seen = None  # the request is in (or answered): nothing is being read
                if cycle.response_complete and not self.pipeline:  # answered: idle until a next request
                    if self._quiet is not cycle:
                        self._quiet, self._quiet_since = cycle, now
                    elif now - self._quiet_since >= self.timeout_keep_alive:
                        if not self.transport.is_closing():  # (as uvicorn's keep-alive timer closes it)
                            self.transport.close()
                        return True
                return False
            request = self if scope is None else scope
            if request is not self._seen:
                self._seen, self._since = request, now
                return False
            if now - self._since < limit:
                return False
            if self.pipeline or (cycle is not None and not cycle.response_complete
                                 and (cycle.scope is not scope or cycle.response_started)):
                self._since = now  # an answer is being made or written: never cut it; counted anew
                return False
            t = self.transport
            if not t.is_closing():
                if scope is not None:  # a request began
                    scope[READ_TIMED_OUT] = limit  # (the app reading its body says 408, not 499)
                    if not (cycle is not None and cycle.scope is scope and cycle.response_started):
                        t.write(timed_out)  # (answered already, early: closed without a second answer)
                t.close()
            return True

    return GatewayHTTP


def __getattr__(name: str) -> Any:  # GatewayHTTP is built on first use: uvicorn stays off `import knollm`
    if name == "GatewayHTTP":
        cls = globals()["GatewayHTTP"] = _gateway_http()
        return cls
    raise AttributeError(name)
