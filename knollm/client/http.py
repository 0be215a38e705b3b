"""The HTTP under :class:`~knollm.client.Client` and :class:`~knollm.client.AsyncClient`.

The clients speak to providers through a *driver*: ``post`` (a whole answer) and
``stream`` (status, headers, then the body's lines in batches, one per network read).
Three implementations share every rule above them (retries, fallback, accounting), so
swapping one changes no behaviour:

* ``httpx2``: the only driver of the sync :class:`Client`, and the async fallback;
* ``h1`` (:mod:`knollm.client.h1`): Knollm's own HTTP/1.1 driver on asyncio and
  httptools' C parser, when ``httptools`` is installed (Knollm's ``gateway`` extra);
* ``aiohttp``: when ``aiohttp`` is installed; ``h1`` hands it the origins that go through
  a proxy.

Measured against the same loopback upstream at concurrency 64
(``python scripts/bench_client.py``, section 5), a whole ``AsyncClient.chat`` over ``h1``
costs less CPU than a bare ``aiohttp`` post of the same request, about half of the call
over the ``aiohttp`` driver and a tenth of httpx2's; that is what ``knollm serve`` needs.

``AsyncClient(http="auto" | "h1" | "aiohttp" | "httpx2")`` picks one
(:func:`knollm.client.drivers.async_driver`); ``auto`` means
``h1``, else aiohttp, else httpx2, whichever is importable first. Transport failures
become a retryable :class:`ProviderError` with kind ``timeout`` or ``connection``
(:func:`transport_failure`), the same text for every driver. No driver follows redirects
(an ``Authorization`` header must not travel to another host); all honour
``HTTP(S)_PROXY``/``NO_PROXY`` and verify TLS with the same trust (httpcore2's default
context: the system's CA store, ``SSL_CERT_FILE``/``SSL_CERT_DIR``).
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from knollm.errors import ProviderError

__all__ = ["Reply", "HTTPX2", "AsyncHTTPX2", "AsyncAiohttp", "transport_failure", "LineSplitter"]


class Reply:
    """A whole answer: ``status``, ``headers`` (case-insensitive ``get``) and ``text``.

    ``cut`` is the transport failure (the driver's own exception) of an answer whose status
    line and headers arrived but whose body did not all arrive (the connection dropped or
    went silent): ``text`` is then what did arrive. A provider bills such an answer.
    ``connect_ms``: what opening the request's connection took (:class:`_TimedStream`), 0.0
    on a kept-alive one, None when the driver does not measure it."""

    __slots__ = ("status", "headers", "text", "cut", "connect_ms")

    def __init__(self, status: int, headers: Any, text: str, cut: BaseException | None = None,
                 connect_ms: float | None = None) -> None:
        self.status, self.headers, self.text, self.cut, self.connect_ms = status, headers, text, cut, connect_ms


def transport_failure(kind: str, name: str, provider: str, s: Any, stream: bool) -> ProviderError:
    """The retryable :class:`ProviderError` for a transport failure ``kind`` (``name`` is the
    exception's class). Before the request was sent (``connect_timeout``, ``connect``: the
    connection could not be opened, or the request not written): the provider never got it.
    After (``timeout``: no answer in time; ``connection``: the connection failed once the
    request was written): the provider may have processed, and billed, it: the error's
    ``maybe_billed`` is True (the flow marks the attempt)."""
    if kind == "connect_timeout":
        return ProviderError(f"connect timed out after {s.connect_timeout:g}s", provider=provider, kind="timeout",
                             retryable=True)
    if kind == "connect":
        return ProviderError(f"connection failed ({name})", provider=provider, kind="connection", retryable=True)
    if kind == "timeout":
        t = s.stall_timeout if stream else s.timeout
        what = "stream stalled: no data" if stream else "no answer"
        e = ProviderError(f"{what} for {t:g}s", provider=provider, kind="timeout", retryable=True)
    else:
        e = ProviderError(f"connection failed ({name})", provider=provider, kind="connection", retryable=True)
    e.maybe_billed = True  # type: ignore[attr-defined]
    return e


class LineSplitter:
    """Bytes in, text lines out, split at ``\\n``, ``\\r\\n`` or ``\\r`` (as SSE and
    httpx's ``iter_lines`` do); a ``\\r`` at the end of a chunk waits for the next one."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._cr = False  # the last chunk ended with "\r": a "\n" opening the next one belongs to it

    def feed(self, data: bytes) -> list[str]:
        text = self._dec.decode(data)
        if self._cr:
            self._cr = False
            if text.startswith("\n"):
                text = text[1:]
        if text.endswith("\r"):
            self._cr = True
        text = self._buf + text
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        parts = text.split("\n")
        self._buf = parts.pop()
        return parts

    def close(self) -> list[str]:
        rest = self._buf + self._dec.decode(b"", True)
        self._buf = ""
        return [rest] if rest else []


def _text(pieces: list[bytes]) -> str:
    return (pieces[0] if len(pieces) == 1 else b"".join(pieces)).decode("utf-8", "replace")


def _cut(status: int, headers: Any, got: list[bytes], e: Exception, kind_of: Any) -> Reply:
    """The answer whose body ``e`` cut (what arrived in ``got``), when ``e`` is a transport
    failure (``kind_of(e)``, the driver's ``classify``); any other error is raised again."""
    if kind_of(e) is None:
        raise e
    return Reply(status, headers, _text(got), cut=e)


_dumps: Any = None  # orjson.dumps, imported at the first request body (not by `import knollm`)


def _json_bytes(body: dict) -> bytes:
    global _dumps
    if _dumps is None:
        import orjson

        _dumps = orjson.dumps
    return _dumps(body)


# --------------------------------------------------------------------------- httpx2
class _TimedStream:
    """A new connection's network stream (httpcore2's), keeping what opening it took:
    ``connect_ms``, the TCP connect (name lookup included) and the TLS handshake, until the
    first answer on it takes it (:meth:`take`: later answers on the kept-alive connection
    get 0.0). I/O goes straight to the wrapped stream (its bound methods, no indirection)."""

    def __init__(self, s: Any, connect_ms: float) -> None:
        self._s, self.connect_ms = s, connect_ms
        self.read, self.write, self.close, self.get_extra_info = s.read, s.write, s.close, s.get_extra_info

    def start_tls(self, *args: Any, **kwargs: Any) -> _TimedStream:
        t = time.perf_counter()
        tls = self._s.start_tls(*args, **kwargs)
        return _TimedStream(tls, self.connect_ms + (time.perf_counter() - t) * 1000)

    def take(self) -> float:
        ms, self.connect_ms = self.connect_ms, 0.0
        return ms


class _TimedBackend:
    """httpcore2's sync network backend, timing each connection it opens (:class:`_TimedStream`).
    Only new connections pass here: a request on a kept-alive one costs nothing more."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _TimedStream:
        t = time.perf_counter()
        s = self._inner.connect_tcp(*args, **kwargs)
        return _TimedStream(s, (time.perf_counter() - t) * 1000)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _TimedStream:
        t = time.perf_counter()
        s = self._inner.connect_unix_socket(*args, **kwargs)
        return _TimedStream(s, (time.perf_counter() - t) * 1000)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _time_connects(client: Any) -> None:
    """Give ``client``'s (a sync ``httpx2.Client``) connection pools a :class:`_TimedBackend`
    before they open anything. A pool without the expected attribute (another httpx2) is left
    alone: its answers then say None (not measured)."""
    for t in (client._transport, *getattr(client, "_mounts", {}).values()):
        pool = getattr(t, "_pool", None)
        be = getattr(pool, "_network_backend", None)
        if be is not None and not isinstance(be, _TimedBackend):
            pool._network_backend = _TimedBackend(be)


def _connect_ms(r: Any) -> float | None:
    """What opening the connection of response ``r`` took (ms; 0.0 kept alive), None if not timed."""
    take = getattr((getattr(r, "extensions", None) or {}).get("network_stream"), "take", None)
    return take() if take is not None else None


def _httpx2_kind(e: BaseException) -> tuple[str, str] | None:
    import httpx2

    if isinstance(e, (httpx2.ConnectTimeout, httpx2.PoolTimeout)):
        return "connect_timeout", type(e).__name__
    if isinstance(e, (httpx2.ConnectError, httpx2.WriteError, httpx2.WriteTimeout, httpx2.ProxyError)):
        return "connect", type(e).__name__  # not sent (whole): the provider never got the request
    if isinstance(e, httpx2.TimeoutException):
        return "timeout", type(e).__name__
    if isinstance(e, httpx2.HTTPError):
        return "connection", type(e).__name__
    return None


def _mask_http_logs() -> None:
    """httpx2 logs request URLs; mask ``key=`` query values (providers with query-string auth)."""
    import logging
    import re

    pat = re.compile(r"(?i)([?&](?:key|api_key|api-key|token)=)[^&\s\"']+")

    class _Mask(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            if "=" in msg:
                record.msg, record.args = pat.sub(r"\1***", msg), None
            return True

    for name in ("httpx2", "httpcore2"):
        lg = logging.getLogger(name)
        if not any(type(f).__name__ == "_Mask" for f in lg.filters):
            lg.addFilter(_Mask())


class _Httpx2Base:
    name = "httpx2"

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._clients: list[Any] = [None, None]  # plain http, https
        self._lock = threading.Lock()

    def _limits(self) -> Any:
        import httpx2

        return httpx2.Limits(max_connections=self.max_connections,
                             max_keepalive_connections=min(100, self.max_connections))

    def _client_for(self, url: str, cls_name: str) -> Any:
        """The pooled client for ``url``. ``http://`` URLs (local servers) get one without a
        TLS context: it never opens TLS (redirects are not followed), and creating the CA
        context costs ~50 ms of a CLI call to a local model."""
        i = 0 if url.startswith("http://") else 1
        c = self._clients[i]
        if c is None:
            with self._lock:  # threads calling first at once share one pool (else all but one leak)
                c = self._clients[i]
                if c is None:
                    import httpx2

                    _mask_http_logs()
                    c = getattr(httpx2, cls_name)(limits=self._limits(), **({"verify": False} if i == 0 else {}))
                    if cls_name == "Client":  # (the sync pools: each new connection timed)
                        _time_connects(c)
                    self._clients[i] = c
        return c

    @staticmethod
    def _timeout(read: float, connect: float) -> Any:
        import httpx2

        return httpx2.Timeout(read, connect=connect)

    @staticmethod
    def classify(e: BaseException) -> tuple[str, str] | None:
        return _httpx2_kind(e)


class HTTPX2(_Httpx2Base):
    """The sync driver (httpx2's pooled ``Client``)."""

    def post(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Reply:
        with self._client_for(url, "Client").stream("POST", url, headers=headers, content=_json_bytes(body),
                                                    timeout=self._timeout(read, connect)) as r:
            got: list[bytes] = []
            try:
                for data in r.iter_bytes():
                    got.append(data)
            except Exception as e:  # noqa: BLE001 - the body was cut: what arrived, and why
                cut = _cut(r.status_code, r.headers, got, e, _httpx2_kind)
                cut.connect_ms = _connect_ms(r)
                return cut
            return Reply(r.status_code, r.headers, _text(got), None, _connect_ms(r))

    def prepare(self) -> None:
        """Build both pools now (the HTTP library's import, the TLS context), opening no
        connection: what a first call would otherwise pay inside its measured time."""
        for url in ("http://", "https://"):
            self._client_for(url, "Client")

    def stream(self, url: str, headers: dict, body: dict, read: float, connect: float) -> _SyncStream:
        return _SyncStream(self._client_for(url, "Client").stream(
            "POST", url, headers=headers, content=_json_bytes(body), timeout=self._timeout(read, connect)))

    def close(self) -> None:
        for i, c in enumerate(self._clients):
            if c is not None:
                c.close()
                self._clients[i] = None


_DRAIN_MAX = 64 * 1024  #: bytes a stream's body may carry after its end marker and still keep its connection


class _SyncStream:
    """A streamed answer: ``status``, ``headers``, ``connect_ms`` (as :class:`Reply`'s),
    ``read()``, ``batches()``."""

    def __init__(self, cm: Any) -> None:
        self._cm, self.r, self._it = cm, None, None

    def __enter__(self) -> _SyncStream:
        self.r = self._cm.__enter__()
        self.status, self.headers = self.r.status_code, self.r.headers
        self.connect_ms = _connect_ms(self.r)
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)

    def read(self) -> str:
        return self.r.read().decode("utf-8", "replace")

    def payload_ended(self) -> None:
        """The caller read the payload's end marker (``[DONE]``, ``message_stop``): read what
        is left of the body, its framing (the chunked body's end, sent with the marker or
        just after), so the connection goes back to the pool instead of being closed, as the
        openai SDK reads a stream to its end. At most 64 KiB: a body that goes on is cut
        (the connection closed, as before). Never raises."""
        it, n = self._it, 0
        if it is None:
            return
        try:
            for data in it:
                n += len(data)
                if n > _DRAIN_MAX:
                    return
        except Exception:  # noqa: BLE001 - the answer is whole already: only the connection is lost
            return

    def batches(self) -> Iterator[list[str]]:
        """The body's lines, one list per network read."""
        split = LineSplitter()
        self._it = it = self.r.iter_bytes()
        for data in it:
            lines = split.feed(data)
            if lines:
                yield lines
        last = split.close()
        if last:
            yield last


class AsyncHTTPX2(_Httpx2Base):
    """The async driver over httpx2's pooled ``AsyncClient``."""

    async def post(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Reply:
        async with self._client_for(url, "AsyncClient").stream("POST", url, headers=headers,
                                                               content=_json_bytes(body),
                                                               timeout=self._timeout(read, connect)) as r:
            got: list[bytes] = []
            try:
                async for data in r.aiter_bytes():
                    got.append(data)
            except Exception as e:  # noqa: BLE001 - the body was cut: what arrived, and why
                return _cut(r.status_code, r.headers, got, e, _httpx2_kind)
            return Reply(r.status_code, r.headers, _text(got))

    def stream(self, url: str, headers: dict, body: dict, read: float, connect: float) -> _AsyncHttpx2Stream:
        return _AsyncHttpx2Stream(self._client_for(url, "AsyncClient").stream(
            "POST", url, headers=headers, content=_json_bytes(body), timeout=self._timeout(read, connect)))

    async def aclose(self) -> None:
        for i, c in enumerate(self._clients):
            if c is not None:
                await c.aclose()
                self._clients[i] = None


class _AsyncStream:
    """A streamed answer: ``status``, ``headers``, ``read()``, ``batches()`` (the body's
    lines, one list per network read: what arrived together leaves together). A driver
    names where its response keeps the status and the bytes."""

    def __init__(self, cm: Any) -> None:
        self._cm, self.r = cm, None

    async def __aenter__(self) -> _AsyncStream:
        self.r = await self._cm.__aenter__()
        self.status, self.headers = self._status(), self.r.headers
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cm.__aexit__(*exc)

    async def read(self) -> str:
        return (await self._body()).decode("utf-8", "replace")

    def payload_ended(self) -> None:
        """The caller read the payload's end marker and leaves before the body's end: a
        driver may keep the connection once the rest arrives (``h1`` does); others close it."""

    async def batches(self) -> AsyncIterator[list[str]]:
        split = LineSplitter()
        async for data in self._chunks():
            lines = split.feed(data)
            if lines:
                yield lines
        last = split.close()
        if last:
            yield last


class _AsyncHttpx2Stream(_AsyncStream):
    def _status(self) -> int:
        return self.r.status_code

    def _body(self) -> Any:
        return self.r.aread()

    def _chunks(self) -> AsyncIterator[bytes]:
        return self.r.aiter_bytes()


# --------------------------------------------------------------------------- aiohttp
class AsyncAiohttp:
    """The async driver over one ``aiohttp.ClientSession`` (created on first use, in the
    running loop). Keep-alive connections idle for 5 s are closed, as httpx does."""

    name = "aiohttp"

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._session: Any = None
        self._ssl: Any = None
        self._timeouts: dict[tuple[float, float], Any] = {}
        self._proxies: dict[str, tuple[Any, Any]] = {}

    def _sess(self) -> Any:
        s = self._session
        if s is None or s.closed:
            import aiohttp

            conn = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, keepalive_timeout=5.0,
                                        ttl_dns_cache=300)
            # trust_env=False: aiohttp would look the proxy up in a thread on every request;
            # the environment's proxy is looked up once per origin instead (_proxy)
            s = self._session = aiohttp.ClientSession(connector=conn, trust_env=False, auto_decompress=True,
                                                      skip_auto_headers=("content-type",))
        return s

    def _proxy(self, url: str) -> tuple[Any, Any]:
        """``(proxy, proxy_auth)`` from ``HTTP(S)_PROXY``/``NO_PROXY`` for ``url``'s origin."""
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        hit = self._proxies.get(key)
        if hit is None:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            try:
                hit = get_env_proxy_for_url(URL(key))
            except LookupError:
                hit = (None, None)
            if len(self._proxies) > 1000:
                self._proxies.clear()
            self._proxies[key] = hit
        return hit

    def _timeout(self, read: float, connect: float) -> Any:
        t = self._timeouts.get((read, connect))
        if t is None:
            import aiohttp

            # ``total`` stays unbounded: the engine's own deadlines (TTFT, stall) bound a stream
            t = self._timeouts[(read, connect)] = aiohttp.ClientTimeout(total=None, connect=None,
                                                                         sock_connect=connect, sock_read=read)
        return t

    def _tls(self) -> Any:
        """The TLS context for ``https://``, built on first use with httpx2's trust
        (httpcore2's default context: the system's CA store, ``SSL_CERT_FILE`` /
        ``SSL_CERT_DIR``, truststore on Windows and macOS), so both drivers accept the same
        certificates and calls to local ``http://`` servers never pay for a context."""
        if self._ssl is None:
            import httpcore2

            self._ssl = httpcore2.default_ssl_context()
        return self._ssl

    def _request(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Any:
        proxy, proxy_auth = self._proxy(url)
        tls = {"ssl": self._tls()} if url.startswith("https:") else {}
        return self._sess().post(url, data=_json_bytes(body), headers={"content-type": "application/json", **headers},
                                 timeout=self._timeout(read, connect), allow_redirects=False, proxy=proxy,
                                 proxy_auth=proxy_auth, **tls)

    async def post(self, url: str, headers: dict, body: dict, read: float, connect: float) -> Reply:
        async with self._request(url, headers, body, read, connect) as r:
            got: list[bytes] = []
            try:
                async for data in r.content.iter_any():
                    got.append(data)
            except Exception as e:  # noqa: BLE001 - the body was cut: what arrived, and why
                return _cut(r.status, r.headers, got, e, self.classify)
            return Reply(r.status, r.headers, _text(got))

    def stream(self, url: str, headers: dict, body: dict, read: float, connect: float) -> _AiohttpStream:
        return _AiohttpStream(self._request(url, headers, body, read, connect))

    @staticmethod
    def classify(e: BaseException) -> tuple[str, str] | None:
        import asyncio

        import aiohttp

        name = type(e).__name__
        timeout_cls = getattr(aiohttp, "ConnectionTimeoutError", None)
        if timeout_cls is not None and isinstance(e, timeout_cls):
            return "connect_timeout", name
        if isinstance(e, aiohttp.ClientConnectorError):
            return "connect", name  # the connection was never opened: nothing sent
        if isinstance(e, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return "timeout", name
        if isinstance(e, (aiohttp.ClientError, ConnectionError)):
            return "connection", name
        return None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AiohttpStream(_AsyncStream):
    def _status(self) -> int:
        return self.r.status

    def _body(self) -> Any:
        return self.r.read()

    def _chunks(self) -> AsyncIterator[bytes]:
        return self.r.content.iter_any()
