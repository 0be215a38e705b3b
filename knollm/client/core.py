"""``Client`` and ``AsyncClient``: the HTTP drivers around :func:`knollm.client.engine.flow`."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from knollm.client.engine import Outcome, flow, parse_answer
from knollm.client.http import transport_failure
from knollm.client.result import ChatResult, EmbeddingResult, OpenAIObject, new_id
from knollm.client.routing import CatalogSource, Deployment, Plan, Router, Settings
from knollm.client.spool import LedgerWarning, Spool, data_errors, legacy_spool, spool_path
from knollm.client.transports import Embedded, StreamState, classify_error, cut_answer, embed_params, get_shape
from knollm.errors import KnollmError, ProviderError, StreamInterrupted
from knollm.retry import retry_after_of

#: the async code below binds ``asyncio`` from here: an event loop runs it, so the module
#: is loaded, and an ``import`` statement costs about 900 instructions a call on the
#: gateway's hot path (the sync client never imports asyncio: about 40 ms)
_MODULES = sys.modules

__all__ = ["Client", "AsyncClient", "ChatStream", "AsyncChatStream"]

_CALL_KEYS = ("strategy", "tag")


class _Base:
    """Configuration and state shared by the twins (see :class:`Client` for the arguments)."""

    def __init__(self, *, catalog: Any = None, store: Any = None, budgets: Any = (), strategy: str = "priority",
                 providers: dict | None = None, resolver: Any = None, env: Any = None, retries: int = 2,
                 backoff_base: float = 0.5, backoff_max: float = 8.0, max_retry_wait: float = 30.0,
                 timeout: float = 120.0, connect_timeout: float = 10.0, ttft_timeout: float = 60.0,
                 stall_timeout: float = 30.0, breaker: dict | None = None, allow: Any = (), deny: Any = (),
                 max_input_price: float | None = None, max_output_price: float | None = None,
                 max_connections: int = 1000, health: Any = None, http: str = "auto",
                 retry_after_send: bool = True, reasoning_timeout: float = 600.0) -> None:
        self.settings = Settings(strategy, retries, backoff_base, backoff_max, max_retry_wait, timeout, connect_timeout,
                                 ttft_timeout, stall_timeout, dict(breaker or {}), tuple(allow), tuple(deny),
                                 max_input_price, max_output_price, retry_after_send=bool(retry_after_send),
                                 reasoning_timeout=reasoning_timeout)
        self._catalog_arg = catalog
        self._store_arg = store
        self.budgets = tuple(budgets)
        self.max_connections = max_connections
        self._router: Router | None = None
        self._router_args = (providers, resolver, env, health)
        self._store: Any = None
        self._http_name = http
        self._driver: Any = None
        self._group: Any = None  # AsyncClient: the ledger's group commit
        self._spool: Any = None  # (store, its spool): rows the store could not take
        self._init_lock = threading.Lock()
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)

    # -- lazily built state
    @property
    def router(self) -> Router:
        if self._router is None:
            with self._init_lock:
                if self._router is None:
                    self._router = Router(self._source(), self.settings, *self._router_args)
        return self._router

    def _source(self) -> CatalogSource | None:
        cat = self._catalog_arg
        if cat is False:
            return None
        if cat is None:
            from knollm.query.cache import load_query_index

            try:
                cat = load_query_index()
            except (KnollmError, OSError):
                return None
        elif isinstance(cat, dict):
            from knollm.query.api import Catalog

            cat = Catalog(cat)
        return CatalogSource(cat)

    @property
    def store(self) -> Any:
        """The ledger (:class:`knollm.client.store.SQLiteStore` unless given; None if ``store=False``)."""
        if self._store is None and self._store_arg is not False:
            with self._init_lock:
                if self._store is None and self._store_arg is None:
                    from knollm.client.store import SQLiteStore

                    self._store = SQLiteStore()
                elif self._store is None:
                    self._store = self._store_arg
        return self._store

    def _spool_of(self, store: Any) -> Spool:
        sp = self._spool
        if sp is None or sp[0] is not store:
            sp = self._spool = (store, Spool(spool_path(store), legacy_spool(store)))
        return sp[1]

    def _settle(self, store: Any, items: list[tuple[str | None, dict]], busy_ms: int | None = None) -> list[bool]:
        """Write ledger rows (``settle_many``, else ``settle`` each), then any rows spooled
        before. A call the provider answered is billed whatever the store does: when the
        store fails, the rows go to the spool (:mod:`knollm.client.spool`) with a
        :class:`~knollm.client.spool.LedgerWarning`, and the calls stand; a row the store
        refuses for good (a value out of its range) is set aside, the others of its batch
        written. ``busy_ms`` (a try on the event loop): another process's lock held longer
        raises :class:`_Busy`."""
        spool = self._spool_of(store)
        try:
            done = self._write(store, items, busy_ms)
        except data_errors():
            done = []  # one bad row must not take its batch's others down: row by row
            for it in items:
                try:
                    done += self._write(store, [it], busy_ms)
                except data_errors() as e:
                    spool.set_aside([json.dumps({"reservation_id": it[0], "row": it[1]}, default=str)
                                     + f"  # {type(e).__name__}: {e}"], "the ledger store refuses for good")
                    done.append(True)
                except _store_errors() as e:
                    if busy_ms is not None and "locked" in str(e) and not done:
                        raise _Busy from e
                    spool.add([it], e)
                    done.append(True)
        except _store_errors() as e:
            if busy_ms is not None and "locked" in str(e):
                raise _Busy from e
            spool.add(items, e)
            return [True] * len(items)
        self._replay(store, busy_ms)
        return done

    @staticmethod
    def _write(store: Any, items: list[tuple[str | None, dict]], busy_ms: int | None) -> list[bool]:
        if busy_ms is not None:
            return store.settle_many(items, busy_ms=busy_ms)
        return store.settle_many(items) if hasattr(store, "settle_many") else [store.settle(*a) for a in items]

    def _replay(self, store: Any, busy_ms: int | None = None) -> None:
        """Write the spooled rows, if any may wait (never raises: what stays waits for the
        next try; a failure other than the store being busy is a warning)."""
        spool = self._spool_of(store)
        if not spool.due():
            return
        try:
            spool.replay(store, busy_ms)
        except Exception as e:  # noqa: BLE001 - the call stands; the rows stay spooled
            if busy_ms is not None and "locked" in str(e):
                return  # (on the event loop: another process holds the lock; the next settle tries again)
            warnings.warn(f"the ledger spool {spool.path} could not be written to the ledger yet "
                          f"({type(e).__name__}: {e}); it is tried again at the next settle", LedgerWarning,
                          stacklevel=3)

    @property
    def http(self) -> Any:
        """The HTTP driver (:mod:`knollm.client.http`), created on the first call."""
        if self._driver is None:
            with self._init_lock:
                if self._driver is None:
                    self._driver = self._new_driver()
        return self._driver

    def _new_driver(self) -> Any:
        raise NotImplementedError

    def plan(self, target: Any, messages: list[dict], params: dict, op: str = "chat") -> Plan:
        """Route without calling: the candidates, their order and reasons (``plan.candidates``).
        ``op="embed"``: an embeddings call, ``params["input"]`` its inputs (see :meth:`embed`)."""
        p = dict(params)
        strategy = p.pop("strategy", None)
        tag = p.pop("tag", None)  # who made the call: ledger and budgets only, never sent
        p.pop("stream", None)
        if op == "embed":
            p = embed_params(p)
        store = self.store if self._store_arg is not False else None
        return self.router.plan(target, list(messages), p, strategy, self.budgets, store, tag, op)

def _stream_error(d: Deployment, r: Any, text: str) -> ProviderError:
    return classify_error(d.provider, r.status, text, retry_after_of(r.headers))


def _begin_stream(d: Deployment, r: Any) -> tuple[StreamState | None, bool]:
    """(stream state, whole-JSON?) for a streaming answer; raises on an HTML / odd answer."""
    ctype = r.headers.get("content-type", "")
    if "html" in ctype:
        raise ProviderError(f"HTML page instead of a stream (HTTP {r.status})", provider=d.provider,
                            status=r.status, kind="bad_response")
    shape = get_shape(d.shape)
    if "application/json" in ctype and not shape.ndjson:
        return None, True  # the server ignored stream=true: parse the whole answer
    return shape.stream_parser(d.provider), False


def _end_stream(d: Deployment, st: StreamState) -> None:
    st.close()
    if not st.done and not st.finish_reason:
        raise ProviderError("stream ended before its end marker", provider=d.provider, kind="bad_response",
                            retryable=True)


class _Steps:
    """Iterate a :func:`~knollm.client.engine.flow` generator's effects; set ``reply``
    to what performing one gave (None after a sleep); ``result`` is the final ChatResult."""

    def __init__(self, gen: Any) -> None:
        self.gen, self.reply, self.result = gen, None, None
        self.interrupted: StreamInterrupted | None = None

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        try:
            item = next(self.gen)
            while True:
                yield item
                reply, self.reply = self.reply, None
                item = self.gen.send(reply)
        except StopIteration as stop:
            self.result = stop.value
        except StreamInterrupted as e:
            self.interrupted = e
            raise


class _Stop:
    """The end of a streamed attempt the caller stopped (closed the stream, was cancelled, or
    an exception went through it) while ``steps``' flow waits for that attempt's Outcome.
    Once output was given (or the provider was streaming a tool call, given out or not),
    the flow settles the call as interrupted: ``settle`` is that
    store effect, for the driver to perform, then ``done(reply)``. Before any output the
    flow just ends (its hold released), as for a failure before the first token."""

    def __init__(self, steps: _Steps, d: Deployment) -> None:
        self.steps, self.settle = steps, None
        out = steps.reply
        if isinstance(out, Outcome) and not out.tools_sent and out.stream is not None and out.stream.tool_calls:
            # a tool call the provider was streaming (not forwarded: plain iteration) is billed
            # as output given: one interrupted row, no fallback for a caller who stopped
            out.tools_sent = True
        if isinstance(out, Outcome) and (out.emitted or out.tools_sent):
            if out.error is None:
                out.error = ProviderError("the caller stopped reading the stream", provider=d.provider,
                                          kind="closed")
            self._next(out)
        else:
            steps.gen.close()

    def _next(self, reply: Any) -> None:
        try:
            op, arg = self.steps.gen.send(reply)
        except StopIteration:
            op, arg = None, None
        except StreamInterrupted as e:
            self.steps.interrupted = e
            op, arg = None, None
        self.settle = arg if op == "settle" else None
        if self.settle is None:
            self.steps.gen.close()

    def done(self, reply: Any) -> None:
        """The store's answer to ``settle``: the flow then ends (StreamInterrupted, kept)."""
        self._next(reply)


#: the APIs whose streams may carry nothing while the model reasons (OpenAI's reasoning
#: models on chat completions send their first byte with their answer); Anthropic's starts
#: at once (``message_start``, pings) and streams thinking as it comes; Ollama streams
#: ``thinking``
_SILENT_SHAPES = frozenset({"openai", "gemini"})


def _waits(s: Settings, plan: Plan, d: Deployment, stream: bool) -> Settings:
    """The settings one attempt waits by. A reasoning model (the catalog says the model
    reasons, or the request sets ``reasoning_effort``) may think for minutes before it
    answers: a whole answer comes once it is done, and a stream on an OpenAI-compatible or
    Gemini API may carry nothing meanwhile. Cut as timed out or stalled, its request would
    be sent again and billed twice, so its waits (``timeout``, ``stall_timeout``,
    ``ttft_timeout``) are at least ``reasoning_timeout``. Other attempts keep ``s``."""
    if not d.reasons and plan.params.get("reasoning_effort") in (None, "none"):
        return s
    if stream and d.shape not in _SILENT_SHAPES:
        return s
    return s.patient


class _Answer:
    """``with _Answer(client, d) as a: a.got(response)``: the whole answer, or the error it
    means, as ``a.out`` (an :class:`Outcome`); provider and transport errors are caught.
    ``embed=(N, dimensions)``: an embeddings answer for N inputs. ``s``: the attempt's
    waits (:func:`_waits`; the client's settings by default)."""

    def __init__(self, client: _Base, d: Deployment, embed: tuple | None = None, s: Settings | None = None) -> None:
        self.d, self.s, self.out, self.http = d, s or client.settings, Outcome(), client.http
        self.embed = embed

    def got(self, r: Any) -> None:
        if r.cut is not None and r.status < 400:  # the provider answered (and bills it); the body was cut
            kind, name = self.http.classify(r.cut) or ("connection", type(r.cut).__name__)
            why = transport_failure(kind, name, self.d.provider, self.s, False)
            part = cut_answer(r.text) if self.embed is None else Embedded([])
            self.out = Outcome(part, status=r.status, cut=r.text,
                               error=ProviderError(f"answer cut after HTTP {r.status}: {why} ({len(r.text)} "
                                                   "characters arrived)", provider=self.d.provider, kind=why.kind,
                                                   retryable=True))
            return
        self.out = Outcome(parse_answer(self.d, r.status, r.headers, r.text, self.embed), status=r.status,
                           connect_ms=getattr(r, "connect_ms", None))

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, et: Any, e: Any, tb: Any) -> bool:
        if e is None:
            return False
        if isinstance(e, ProviderError):
            self.out = Outcome(error=e)
            return True
        kind = self.http.classify(e)
        if kind is None:
            return False
        self.out = Outcome(error=transport_failure(*kind, self.d.provider, self.s, False))
        return True


class _Attempt:
    """One streamed attempt's bookkeeping, shared by the sync and async drivers."""

    def __init__(self, client: _Base, d: Deployment, out: Outcome, tools: bool = False,
                 s: Settings | None = None) -> None:
        self.d, self.out, self.s, self.http = d, out, s or client.settings, client.http
        self.tools = tools  # forward tool-call deltas as they arrive (events())
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.s.ttft_timeout
        self.st: StreamState | None = None

    def _first(self) -> None:
        if self.out.ttft_ms is None:
            self.out.ttft_ms = (time.perf_counter() - self.t0) * 1000

    def opened(self, r: Any) -> bool:
        """Check the status line; True when the body is one JSON answer (stream ignored)."""
        self.out.status = r.status
        self.out.connect_ms = getattr(r, "connect_ms", None)  # (None: a driver that does not time connections)
        self.st, whole = _begin_stream(self.d, r)
        self.out.stream = self.st  # what the provider sent so far, should the stream be cut
        return whole

    def whole(self, r: Any, text: str) -> list[Any]:
        p = self.out.parsed = parse_answer(self.d, r.status, r.headers, text)
        self._first()
        items: list[Any] = []
        if p.content:
            self.out.emitted += p.content
            items.append(p.content)
        if self.tools and p.tool_calls:
            items += [{"index": i, **tc} for i, tc in enumerate(p.tool_calls)]
            self.out.tools_sent = True
        return items

    def batch(self, lines: list[str]) -> list[Any]:
        """What one network read carried, in order: text deltas (str) and, when forwarding,
        tool-call deltas (dict)."""
        items = self.st.feed_batch(lines, self.tools)
        if items:
            out = self.out
            if not self.tools:  # (then feed_batch gives text deltas only)
                out.emitted += "".join(items)
            else:
                texts = [x for x in items if type(x) is str]
                out.emitted += "".join(texts)
                if len(texts) != len(items):  # tool-call deltas among them
                    out.tools_sent = True
            self._first()
        elif self.out.ttft_ms is None and time.perf_counter() > self.deadline and not self.st.thought:
            # (a model sending its reasoning is working, and is billed for it: not a stall)
            raise ProviderError(f"no first token within {self.s.ttft_timeout:g}s", provider=self.d.provider,
                                kind="timeout", retryable=True)
        return items

    def done(self) -> None:
        _end_stream(self.d, self.st)
        self.out.parsed = self.st.result()
        if self.st.tool_calls:
            self._first()

    def failed(self, e: Exception) -> None:
        if isinstance(e, ProviderError):
            self.out.error = e
            return
        kind = self.http.classify(e)
        if kind is None:
            raise e
        self.out.error = transport_failure(*kind, self.d.provider, self.s, True)


class Client(_Base):
    """Call any catalog model: routing, fallback, retries, streaming, cost, ledger, budgets.

    ``client.chat(target, messages, **params) -> ChatResult``;
    ``client.chat.completions.create(model=…, messages=…, stream=…)`` (OpenAI-shaped);
    ``client.stream(target, messages, **params)`` yields text deltas, then the ChatResult;
    ``client.embed(target, input, dimensions=…) -> EmbeddingResult`` and
    ``client.embeddings.create(model=…, input=…)`` (OpenAI-shaped) embed on embedding models.

    Arguments (all keyword): ``catalog`` (a :class:`~knollm.query.api.Catalog`, an
    :class:`~knollm.query.index.Index`, a catalog dict, or False; default: the cached
    index), ``store`` (ledger; default SQLite at ``$KNOLLM_HOME/knollm.db``; False: none),
    ``budgets`` (:class:`~knollm.client.store.Budget` list), ``strategy``, ``providers``
    (per-provider config: ``base_url``, ``api_keys``, ``rpm``, ``tpm``, ``weight``,
    ``headers``, ``shape``, ``auth``), ``resolver`` (alias -> object with ``.models``),
    ``retries``, ``backoff_base``, ``backoff_max``, ``max_retry_wait``, ``timeout``,
    ``connect_timeout``, ``ttft_timeout``, ``stall_timeout``, ``breaker``
    (``failure_threshold``, ``window_s``, ``cooldown_s``), ``allow``/``deny`` (provider
    ids), ``max_input_price``/``max_output_price`` (USD/1M), ``health`` (a callable
    ``(provider, model) -> figures`` such as :func:`knollm.probe.health.figures`: measured
    TTFT, tokens/s and error rate seed the ``fastest`` strategy and the circuit breaker),
    ``retry_after_send`` (default True: a request that may have reached the provider, a read
    timeout or a connection lost after it was written, is retried as the official SDKs do,
    its attempt marked ``maybe_billed``; False: such a call fails instead of sending again),
    ``reasoning_timeout`` (default 600 s, the official SDKs' read timeout: the least every
    wait of a reasoning model's attempt is, see :func:`_waits`).
    """

    def _ledger(self, plan: Plan, op: str, arg: Any) -> Any:
        """The flow's store effects: ``reserve`` (a deployment; spooled rows are written
        first, so the budgets count them) and ``settle`` (a row)."""
        if op != "reserve":
            return self._settle(plan.store, [arg])[0]
        if plan.budgets and plan.store is not None:
            self._replay(plan.store)
        return plan.reserve(arg)

    def _new_driver(self) -> Any:
        from knollm.client.http import HTTPX2

        return HTTPX2(self.max_connections)

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls
    def embed(self, target: Any, input: Any, **params: Any) -> EmbeddingResult:  # noqa: A002
        """Embed ``input`` (a text, a list of texts, or token ids: a list of ints or of lists
        of ints) on an embedding model: routing, retries, fallback, cost, ledger and budgets
        as :meth:`chat`. ``params``: ``dimensions``, ``strategy``, ``tag``."""
        return self._chat(target, [], {**params, "input": input}, "embed")

    def _chat(self, target: Any, messages: list[dict], params: dict, op: str = "chat") -> Any:
        plan = self.plan(target, messages, params, op)
        steps = _Steps(flow(plan, False))
        try:
            for op, arg in steps:
                if op == "send":
                    steps.reply = self._send(plan, arg)
                elif op == "sleep":
                    time.sleep(arg)
                else:
                    steps.reply = self._ledger(plan, op, arg)
        except KeyboardInterrupt as e:  # as AsyncClient's cancellation: the attempts it made
            steps.gen.close()  # its hold released now; the attempt in flight recorded (the flow)
            e.attempts = list(plan.attempts)  # type: ignore[attr-defined]
            raise
        except BaseException:
            steps.gen.close()  # its hold released now, not when the exception is freed (a logger may keep it)
            raise
        return steps.result

    def _send(self, plan: Plan, d: Deployment) -> Outcome:
        url, headers, body = plan.request(d, False)
        s = _waits(self.settings, plan, d, False)
        with _Answer(self, d, _embedded(plan), s) as a:
            a.got(self.http.post(url, headers, body, s.timeout, s.connect_timeout))
        return a.out

    def stream(self, target: Any, messages: list[dict], **params: Any) -> ChatStream:
        """Text deltas as they arrive, then the final :class:`ChatResult` (also ``.result``)."""
        return ChatStream(self, target, messages, params)

    def _stream_attempt(self, plan: Plan, d: Deployment, out: Outcome, tools: bool = False) -> Iterator[list]:
        url, headers, body = plan.request(d, True)
        s = _waits(self.settings, plan, d, True)
        at = _Attempt(self, d, out, tools, s)
        try:
            with self.http.stream(url, headers, body, s.stall_timeout, s.connect_timeout) as r:
                if r.status >= 400:
                    raise _stream_error(d, r, r.read())
                if at.opened(r):
                    items = at.whole(r, r.read())
                    if items:
                        yield items
                    return
                for lines in r.batches():
                    items = at.batch(lines)
                    if items:
                        yield items
                    if at.st.done:
                        break
                at.done()
                if at.st.done:  # (after the result's timing: what follows the end marker is framing)
                    r.payload_ended()
        except Exception as e:  # noqa: BLE001 - failed() re-raises what is not a transport failure
            at.failed(e)


class _StreamBase:
    """What the twins' streams share: the call, and who is serving it.

    ``serving`` is ``{"provider", "model", "key"}`` of the attempt in flight (then of the
    one that answered), None before the first attempt; ``attempts`` grows with every
    failed attempt; ``result`` is the :class:`ChatResult` once the stream is exhausted;
    ``interrupted`` is the :class:`~knollm.errors.StreamInterrupted` of a stream cut or
    stopped after its output started (its ``row``: what the call was charged), else None;
    ``ended`` is True once the serving provider's stream has ended (its end marker read):
    all its output has been given, the result follows once the call is settled."""

    def __init__(self, client: Any, target: Any, messages: list[dict], params: dict) -> None:
        self.client, self.target, self.messages, self.params = client, target, messages, params
        self.result: ChatResult | None = None
        self.serving: dict[str, Any] | None = None
        self.attempts: list[dict[str, Any]] = []
        self._steps: _Steps | None = None
        self._live: Any = None  # a weak reference to the running _run generator

    @property
    def interrupted(self) -> StreamInterrupted | None:
        return self._steps.interrupted if self._steps is not None else None

    @property
    def ended(self) -> bool:
        out = self._steps.reply if self._steps is not None else None
        st = getattr(out, "stream", None)
        return bool(st is not None and st.done)

    def _plan(self) -> Plan:
        plan = self.client.plan(self.target, self.messages, self.params)
        self.attempts = plan.attempts  # the same list: it grows with every attempt
        return plan

    def _running(self, gen: Any) -> Any:
        self._live = weakref.ref(gen)
        return gen

    def _gen(self) -> Any:
        return self._live() if self._live is not None else None

    def _serve(self, d: Deployment) -> Outcome:
        self.serving = {"provider": d.provider, "model": d.model, "key": d.slot.label}
        return Outcome()


class ChatStream(_StreamBase):
    """Iterate for text deltas; the last item is the :class:`ChatResult` (also ``.result``).

    :meth:`events` gives the same stream for proxies: lists of what each network read
    carried (text deltas as ``str``, tool-call deltas as OpenAI ``delta.tool_calls``
    dicts), then the ChatResult. Once a tool-call delta has been given out, a failure is
    :class:`~knollm.errors.StreamInterrupted` (no fallback), as for text.

    :meth:`close` (or leaving ``with client.stream(…) as s:``) stops the call: the upstream
    is closed, and a call whose output had started is settled once as ``interrupted``
    (the provider bills what it generated); breaking out of a ``for`` does the same."""

    def __iter__(self) -> Iterator[str | ChatResult]:
        for b in self._running(self._run(False)):
            if type(b) is list:
                yield from b
            else:
                yield b

    def events(self) -> Iterator[list | ChatResult]:
        return self._running(self._run(True))

    def close(self) -> None:
        """Stop the call (idempotent): see the class docs."""
        g = self._gen()
        if g is not None:
            g.close()
        steps = self._steps
        if steps is not None and steps.gen.gi_frame is not None:
            # the run ended outside an attempt (an exception in a backoff sleep or a store
            # call): its flow still holds the call's budget reservation; closing releases it
            steps.gen.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, tools: bool) -> Iterator[list | ChatResult]:
        plan = self._plan()
        steps = self._steps = _Steps(flow(plan, True))
        in_attempt = False
        try:
            for op, arg in steps:
                if op == "sleep":
                    time.sleep(arg)
                    continue
                if op != "send":
                    steps.reply = self.client._ledger(plan, op, arg)
                    continue
                steps.reply = self._serve(arg)
                in_attempt = True
                try:
                    yield from self.client._stream_attempt(plan, arg, steps.reply, tools)
                except BaseException:  # closed, KeyboardInterrupt, …: settle what the provider bills
                    stop = _Stop(steps, arg)
                    if stop.settle is not None:
                        stop.done(self.client._ledger(plan, "settle", stop.settle))
                    raise
                in_attempt = False
        except BaseException:
            if not in_attempt:  # (a backoff sleep or a store call): the flow's hold is released now
                steps.gen.close()
            raise
        self.result = steps.result
        yield self.result

    def text_deltas(self) -> Iterator[str]:
        for x in self:
            if isinstance(x, str):
                yield x


class _Busy(Exception):
    """The ledger's write lock is held by another process longer than a try on the event
    loop waits: the commit goes on in a worker thread."""


_TAKES_BUSY_MS: dict[tuple[type, str], bool] = {}


def _quick_ms(store: Any, method: str = "settle_many") -> int | None:
    """The store's ``quick_busy_ms`` when its ``method`` takes ``busy_ms`` (SQLite's; a
    subclass may override it without), else None. The signature is read once per class."""
    ms = getattr(store, "quick_busy_ms", None)
    if ms is None:
        return None
    key = (type(store), method)
    takes = _TAKES_BUSY_MS.get(key)
    if takes is None:
        import inspect

        try:
            takes = "busy_ms" in inspect.signature(getattr(store, method)).parameters
        except (AttributeError, TypeError, ValueError):
            takes = False
        _TAKES_BUSY_MS[key] = takes
    return ms if takes else None


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a store raises when it cannot write now (not a bug of the caller's): SQLite's and
    the operating system's errors, the gateway database's connect error, psycopg's errors."""
    import sqlite3
    import sys

    from knollm.errors import GatewayError

    errs: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, GatewayError)
    pg = sys.modules.get("psycopg")
    return errs + (pg.Error,) if pg is not None else errs


class _GroupCommit:
    """Settles of one event loop's concurrent calls, written by one ``settle_many`` on the
    next loop iteration (a lone call waits one iteration, not a timer). For a store that
    blocks on the network the write runs in a worker thread, one at a time: the rows that
    arrive meanwhile form the next batch.

    SQLite: when another process holds the file's write lock, the loop never sleeps for it
    (SQLite's busy handler would: 1, 2, 5, 10 ms at a time, every request of the process
    waiting). The batch tries again each millisecond, the rows settled meanwhile joining it,
    for the store's ``quick_busy_ms``; a lock held longer is waited for in a worker thread."""

    def __init__(self, store: Any, settle: Callable[[Any, list], list[bool]]) -> None:
        self.store = store
        self.write = settle  # the client's _settle (spooling what the store cannot take)
        self.offload = bool(getattr(store, "blocking", False))
        self.quick_ms = _quick_ms(store)  # SQLite: a short try on the loop
        self.pending: list[tuple[tuple[str | None, dict], Any]] = []
        self.busy = False
        self.busy_since: float | None = None  # (loop time) since when another process has held the lock
        self.loop: Any = None

    async def settle(self, arg: tuple[str | None, dict]) -> bool:
        loop = self.loop
        if not self.pending or loop is None or not loop.is_running():
            # the first of a batch looks the running loop up (on CPython 3.11 a getpid system
            # call); the others join the batch of the loop that will write it
            asyncio = _MODULES.get("asyncio") or __import__("asyncio")
            loop = asyncio.get_running_loop()
            if loop is not self.loop:
                # another loop (an earlier one stopped, asyncio.run again): a batch the earlier
                # one left unwritten (its flush will not run) is written with this one's
                self.loop, self.busy = loop, False
        fut = loop.create_future()
        self.pending.append((arg, fut))
        if not self.busy:
            self.busy = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        items = [arg for arg, _ in batch]
        if self.offload:
            job = self.loop.run_in_executor(None, self.write, self.store, items)
            job.add_done_callback(lambda f: self._done(batch, f.exception(), None if f.exception() else f.result()))
            return
        try:
            done = self.write(self.store, items, 0 if self.quick_ms is not None else None)
        except _Busy:  # another process holds the file's write lock: never sleep on the loop for it
            now = self.loop.time()
            if self.busy_since is None:
                self.busy_since = now
            self.pending[:0] = batch  # the rows settled meanwhile join this batch
            if now - self.busy_since < self.quick_ms / 1000:  # try again in a moment
                self.loop.call_later(0.001, self._flush)
                return
            self.busy_since = None  # held for long: wait for it in a worker thread, the loop serving meanwhile
            batch, self.pending = self.pending, []
            items = [arg for arg, _ in batch]
            job = self.loop.run_in_executor(None, self.write, self.store, items)
            job.add_done_callback(lambda f: self._done(batch, f.exception(), None if f.exception() else f.result()))
        except BaseException as e:  # noqa: BLE001 - every waiting call sees the error
            self._done(batch, e, None)
        else:
            self.busy_since = None
            self._done(batch, None, done)

    def _done(self, batch: list, error: BaseException | None, done: list[bool] | None) -> None:
        for i, (_, fut) in enumerate(batch):
            if not fut.done():
                try:
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(done[i])
                except RuntimeError:  # (a waiter of an event loop closed meanwhile: its row is written)
                    pass
        if self.pending:
            self.loop.call_soon(self._flush)
        else:
            self.busy = False


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client` (same arguments): ``await client.chat(…)``,
    ``await client.chat.completions.create(…)``, ``async for x in client.stream(…)``.

    It serves one event loop at a time, and may be kept across them (``asyncio.run`` again
    in a script or a notebook): the connections it keeps belong to the loop that opened
    them, so a call in a later loop gets a new HTTP driver and the earlier loop's is let go.
    """

    _driver_loop: Any = None  # the event loop the HTTP driver's connections belong to

    @property
    def http(self) -> Any:
        """The HTTP driver of the running event loop (see the class's text)."""
        loop = self._driver_loop
        if loop is not None and loop.is_running():  # (the usual case: no running-loop lookup, a getpid)
            return self._driver
        return self._driver_of_this_loop()

    def _driver_of_this_loop(self) -> Any:
        asyncio = _MODULES.get("asyncio") or __import__("asyncio")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # (looked at outside a loop: the driver as it is)
            running = None
        with self._init_lock:
            old = self._driver
            if old is None or running is not None and self._driver_loop not in (None, running):
                self._driver = self._new_driver()
            else:
                old = None
            if running is not None:
                self._driver_loop = running
        if old is not None:  # an earlier loop's (ended, or no longer running): its connections go
            let_go = getattr(old, "let_go", None)
            if let_go is not None:
                let_go()
        return self._driver

    def _new_driver(self) -> Any:
        from knollm.client.drivers import async_driver

        return async_driver(self._http_name, self.max_connections)

    async def aclose(self) -> None:
        if self._driver is not None:
            await self.http.aclose()

    async def _ledger(self, plan: Plan, op: str, arg: Any) -> Any:
        """The flow's store effects. ``settle``: rows of calls that finish together are
        written in one transaction (group commit: ``store.settle_many``), each call still
        returning only once its row is committed. A store that says it blocks on the
        network (``store.blocking``, e.g. PostgreSQL) is called from a worker thread, so a
        round trip never stalls the event loop."""
        asyncio = _MODULES.get("asyncio") or __import__("asyncio")

        store = plan.store
        blocking = getattr(store, "blocking", False)
        if op == "reserve":
            if not plan.budgets:  # no budget: no store round trip
                return plan.reserve(arg)
            if store is not None and self._spool_of(store).due():  # spooled spend counts against the budgets
                if blocking:
                    await asyncio.get_running_loop().run_in_executor(None, self._replay, store)
                else:
                    self._replay(store, 0 if _quick_ms(store, "reserve") is not None else None)
            if not blocking:  # SQLite: on the loop, unless another process holds the lock
                ms = _quick_ms(store, "reserve")
                try:  # one try without waiting: the loop never sleeps on the lock
                    return plan.reserve(arg, None if ms is None else 0)
                except sqlite3.OperationalError as e:
                    if ms is None or "locked" not in str(e):
                        raise
            job = asyncio.get_running_loop().run_in_executor(None, plan.reserve, arg)
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                # the thread commits the hold all the same: release it once it has (else it
                # would count against the budgets until reservation_ttl)
                job.add_done_callback(_release_late(store))
                raise
        if not hasattr(store, "settle_many"):
            if blocking:
                return (await asyncio.get_running_loop().run_in_executor(None, self._settle, store, [arg]))[0]
            return self._settle(store, [arg])[0]
        g = self._group
        if g is None or g.store is not store:
            g = self._group = _GroupCommit(store, self._settle)
        return await g.settle(arg)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def embed(self, target: Any, input: Any, **params: Any) -> EmbeddingResult:  # noqa: A002
        """Embed ``input`` (see :meth:`Client.embed`)."""
        return await self._chat(target, [], {**params, "input": input}, "embed")

    async def _chat(self, target: Any, messages: list[dict], params: dict, op: str = "chat") -> Any:
        asyncio = _MODULES.get("asyncio") or __import__("asyncio")

        plan = self.plan(target, messages, params, op)
        steps = _Steps(flow(plan, False))
        try:
            for op, arg in steps:
                if op == "send":
                    steps.reply = await self._send(plan, arg)
                elif op == "sleep":
                    await asyncio.sleep(arg)
                elif op == "reserve" and not plan.budgets:  # (no budget: no store round trip, no coroutine)
                    steps.reply = plan.reserve(arg)
                else:
                    steps.reply = await self._ledger(plan, op, arg)
        except asyncio.CancelledError as e:
            # the caller stopped the call (a time limit, a client gone): the cancellation says
            # which attempts it made, the one in flight included (its provider got the request)
            steps.gen.close()  # its hold released now; the attempt in flight recorded (the flow)
            e.attempts = list(plan.attempts)  # type: ignore[attr-defined]
            raise
        except BaseException:
            steps.gen.close()  # its hold released now, not when the exception is freed (a task may keep it)
            raise
        return steps.result

    async def _send(self, plan: Plan, d: Deployment) -> Outcome:
        url, headers, body = plan.request(d, False)
        s = _waits(self.settings, plan, d, False)
        with _Answer(self, d, _embedded(plan), s) as a:
            a.got(await self.http.post(url, headers, body, s.timeout, s.connect_timeout))
        return a.out

    def stream(self, target: Any, messages: list[dict], **params: Any) -> AsyncChatStream:
        return AsyncChatStream(self, target, messages, params)

    async def _stream_attempt(self, plan: Plan, d: Deployment, out: Outcome, tools: bool = False
                              ) -> AsyncIterator[list]:
        url, headers, body = plan.request(d, True)
        s = _waits(self.settings, plan, d, True)
        at = _Attempt(self, d, out, tools, s)
        try:
            async with self.http.stream(url, headers, body, s.stall_timeout, s.connect_timeout) as r:
                if r.status >= 400:
                    raise _stream_error(d, r, await r.read())
                if at.opened(r):
                    items = at.whole(r, await r.read())
                    if items:
                        yield items
                    return
                async for lines in r.batches():
                    items = at.batch(lines)
                    if items:
                        yield items
                    if at.st.done:
                        r.payload_ended()  # (what follows the end marker is framing: the connection may be kept)
                        break
                at.done()
        except Exception as e:  # noqa: BLE001 - failed() re-raises what is not a transport failure
            at.failed(e)


class AsyncChatStream(_StreamBase):
    """The asyncio twin of :class:`ChatStream` (``async for``; ``events()``; :meth:`aclose`
    or ``async with client.stream(…) as s:`` stops the call and settles it once)."""

    _at: Any = None        # (plan, deployment) of the attempt in flight
    _stopping: Any = None  # a future, done once the call is settled after a stop

    async def __aiter__(self) -> AsyncIterator[str | ChatResult]:
        async for b in self._running(self._run(False)):
            if type(b) is list:
                for x in b:
                    yield x
            else:
                yield b

    def events(self) -> AsyncIterator[list | ChatResult]:
        return self._running(self._run(True))

    async def aclose(self) -> None:
        """Stop the call (idempotent): the upstream is closed and a call whose output had
        started is settled as ``interrupted``, before this returns. A stream left by
        ``break`` without ``aclose`` (or ``async with``) is settled when the event loop
        finalizes it, on one of its next iterations."""
        g = self._gen()
        if g is not None:
            await g.aclose()
        elif self._at is not None and self._steps is not None and \
                (self._stopping is not None or self._steps.gen.gi_frame is not None):
            await self._stop(*self._at)  # its generator was dropped: the loop closes the upstream soon

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, tools: bool) -> AsyncIterator[list | ChatResult]:
        asyncio = _MODULES.get("asyncio") or __import__("asyncio")

        plan = self._plan()
        steps = self._steps = _Steps(flow(plan, True))
        in_attempt = False
        try:
            for op, arg in steps:
                if op == "sleep":
                    await asyncio.sleep(arg)
                    continue
                if op != "send":
                    steps.reply = await self.client._ledger(plan, op, arg)
                    continue
                steps.reply = self._serve(arg)
                self._at = (plan, arg)
                in_attempt = True
                attempt = self.client._stream_attempt(plan, arg, steps.reply, tools)
                try:
                    async for batch in attempt:
                        yield batch
                except BaseException:  # closed, cancelled, …: settle what the provider bills
                    try:
                        await attempt.aclose()  # the upstream connection closes now
                    finally:
                        await self._stop(plan, arg)
                    raise
                in_attempt = False
        except BaseException:
            if not in_attempt:  # (a backoff sleep or a store call): the flow's hold is released now
                steps.gen.close()
            raise
        self.result = steps.result
        yield self.result

    async def _stop(self, plan: Plan, d: Deployment) -> None:
        """End the flow of a stopped attempt (:class:`_Stop`), once: ``aclose()`` and the
        loop's finalizer of a dropped stream may both get here; the second waits."""
        asyncio = _MODULES.get("asyncio") or __import__("asyncio")

        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            stop = _Stop(self._steps, d)
            if stop.settle is not None:
                stop.done(await self.client._ledger(plan, "settle", stop.settle))
        finally:
            self._stopping.set_result(None)


def _release_late(store: Any) -> Callable[[Any], None]:
    """A done-callback for a reserve whose caller was cancelled while a worker thread ran it:
    releases the hold the thread committed (a network store's round trip in a thread too)."""

    def done(f: Any) -> None:
        if f.cancelled() or f.exception() is not None:
            return
        rid = f.result()[0]
        if rid is None:
            return
        if getattr(store, "blocking", False):
            try:
                f.get_loop().run_in_executor(None, store.release, rid)
                return
            except RuntimeError:  # the loop's executor is shut down: release here
                pass
        store.release(rid)

    return done


def _embedded(plan: Plan) -> tuple | None:
    """What an embeddings answer must hold: (inputs, dimensions asked or None)."""
    return (len(plan.params["input"]), plan.params.get("dimensions")) if plan.op == "embed" else None


# --------------------------------------------------------------------------- OpenAI facade
def _chunk(res_id: str, created: int, model: str, delta: dict, finish: str | None = None,
           usage: dict | None = None) -> OpenAIObject:
    d = {"id": res_id, "object": "chat.completion.chunk", "created": created, "model": model,
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage is not None:
        d["usage"] = usage
    return OpenAIObject(d)


def _final_chunks(rid: str, created: int, res: ChatResult) -> list[OpenAIObject]:
    dump = res.model_dump()
    delta: dict = {}
    if res.tool_calls:
        delta["tool_calls"] = [{**tc, "index": i} for i, tc in enumerate(res.tool_calls)]
    return [_chunk(rid, created, res.model, delta, res.finish_reason or "stop", dump["usage"])]


class _Chat:
    """``client.chat(target, messages, **params)`` and ``client.chat.completions.create(…)``."""

    def __init__(self, client: _Base) -> None:
        self._client = client
        self.completions = _Completions(client)

    def __call__(self, target: Any, messages: list[dict], **params: Any) -> Any:
        return self._client._chat(target, messages, params)


class _Completions:
    def __init__(self, client: _Base) -> None:
        self._client = client

    def create(self, *, model: Any, messages: list[dict], stream: bool = False, **params: Any) -> Any:
        params.pop("stream_options", None)
        if isinstance(self._client, AsyncClient):
            return self._acreate(model, messages, stream, params)
        if not stream:
            return OpenAIObject(self._client._chat(model, messages, params).model_dump())
        return self._chunks(self._client.stream(model, messages, **params))

    @staticmethod
    def _chunks(s: ChatStream) -> Iterator[OpenAIObject]:
        rid, created = f"chatcmpl-{new_id()}", int(time.time())
        for x in s:
            if isinstance(x, str):
                yield _chunk(rid, created, str(s.target), {"content": x})
            else:
                yield from _final_chunks(rid, created, x)

    async def _acreate(self, model: Any, messages: list[dict], stream: bool, params: dict) -> Any:
        if not stream:
            return OpenAIObject((await self._client._chat(model, messages, params)).model_dump())
        return self._achunks(self._client.stream(model, messages, **params))

    @staticmethod
    async def _achunks(s: AsyncChatStream) -> AsyncIterator[OpenAIObject]:
        rid, created = f"chatcmpl-{new_id()}", int(time.time())
        async for x in s:
            if isinstance(x, str):
                yield _chunk(rid, created, str(s.target), {"content": x})
            else:
                for c in _final_chunks(rid, created, x):
                    yield c


class _Embeddings:
    """``client.embeddings.create(model=…, input=…, dimensions=…, encoding_format=…)``:
    an OpenAI-shaped ``CreateEmbeddingResponse`` (floats, or base64 float32)."""

    def __init__(self, client: _Base) -> None:
        self._client = client

    def create(self, *, model: Any, input: Any, encoding_format: str = "float", **params: Any) -> Any:  # noqa: A002
        if encoding_format not in ("float", "base64"):
            raise ValueError("encoding_format must be float or base64")
        params.pop("user", None)  # OpenAI's end-user id: not forwarded
        if isinstance(self._client, AsyncClient):
            return self._acreate(model, input, encoding_format, params)
        return OpenAIObject(self._client.embed(model, input, **params).model_dump(encoding_format=encoding_format))

    async def _acreate(self, model: Any, input: Any, encoding_format: str, params: dict) -> Any:  # noqa: A002
        res = await self._client.embed(model, input, **params)
        return OpenAIObject(res.model_dump(encoding_format=encoding_format))
