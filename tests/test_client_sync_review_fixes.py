"""The sync Client against its async twin (found in review, 2026-11-24): a stream stopped
outside an attempt releases its budget hold at close; an interrupted call says which
attempts it made and releases its hold at once (both twins); threads calling first at
once share one connection pool."""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from knollm import AsyncClient, Client
from knollm.client import Budget, SQLiteStore
from knollm.client.accounting import prompt_tokens, worst_case_cost
from knollm.client.routing import RESERVE_PROMPT_FACTOR, Offer
from knollm.query.api import Catalog
from tests.support.client_fixtures import CANON, catalog, env_for, model, reset_servers, start_servers

KEYS = {"GROQ_API_KEY": "gsk_sync_1111", "CEREBRAS_API_KEY": "csk_sync_2222"}
MSG = [{"role": "user", "content": "hi there how are you doing today my friend"}]
CAT = catalog(model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
              model("cerebras", "llama-3.3-70b", input=1.5, output=2.0))
GROQ = "groq/llama-3.3-70b-versatile"
BUDGET = Budget(1.0, "day", provider="groq")


@pytest.fixture(scope="module")
def srv():
    servers = start_servers("groq", "cerebras")
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture(autouse=True)
def ctrl_c():
    """Ctrl-C as Python handles it (KeyboardInterrupt): a process a non-interactive shell
    starts in the background inherits SIGINT ignored, Python keeps it so, and
    ``_thread.interrupt_main`` then does nothing (these tests failed so under such a run)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def make(cls, srv, tmp_path, **kw):
    reset_servers(srv)
    store = SQLiteStore(tmp_path / f"{cls.__name__}.db")
    kw.setdefault("backoff_base", 0.01)
    return cls(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store, **kw), store


def held(store, budget=BUDGET) -> float:
    return round(store.spent(budget), 8)


def test_a_sync_stream_stopped_in_its_backoff_releases_its_hold_at_close(srv, tmp_path):
    """An exception outside the attempt (here a timer's, during the retry's backoff sleep)
    ends the stream's run; leaving its ``with`` closes the flow, so the budget, sized for
    one call, takes the next one (before, the hold stayed until the object was collected)."""
    worst = worst_case_cost(Offer.from_model(CAT["models"][0]),
                            int(prompt_tokens(MSG, {"max_tokens": 50}) * RESERVE_PROMPT_FACTOR) + 1, 50)
    budget = Budget(worst * 1.5, "day", provider="groq")
    c, store = make(Client, srv, tmp_path, budgets=[budget], backoff_base=1.0, backoff_max=1.0)
    srv["groq"].faults("500")

    def alarm(*_):
        raise TimeoutError("deadline")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(TimeoutError), c.stream(GROQ, MSG, max_tokens=50) as s:
            for _ in s:
                pass
        assert held(store, budget) == 0.0
        assert c.chat(GROQ, MSG, max_tokens=50).provider == "groq"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        c.close()


def test_an_interrupted_call_names_its_attempts_and_releases_its_hold_at_once(srv, tmp_path):
    """Ctrl-C (sync) or a cancellation (async) during a send: the exception carries the
    attempt in flight (its provider got the request), and the hold is gone while the
    exception is still held (a REPL keeps the last one)."""
    c, store = make(Client, srv, tmp_path, budgets=[BUDGET])
    srv["groq"].latency = 0.6
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt) as ki:
        c.chat(CANON, MSG)
    assert [(a["provider"], a["kind"]) for a in ki.value.attempts] == [("groq", "cancelled")]
    assert held(store) == 0.0 and store.rows() == []
    c.close()

    ac, astore = make(AsyncClient, srv, tmp_path, budgets=[BUDGET])
    srv["groq"].latency = 0.6

    async def go():
        t = asyncio.create_task(ac.chat(CANON, MSG))
        await asyncio.sleep(0.2)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError as e:
            kept = e  # noqa: F841 - the exception alive, as a REPL keeps it
            return [(a["provider"], a["kind"]) for a in e.attempts], held(astore)
        finally:
            await ac.aclose()

    assert asyncio.run(go()) == ([("groq", "cancelled")], 0.0)


def test_a_stream_stopped_before_its_first_token_names_the_attempt_in_flight(srv, tmp_path):
    """A stream closed, interrupted or cancelled before its first token: the provider got the
    request, so ``attempts`` names it (the gateway's 504 counts it); nothing is charged and
    the hold is gone."""
    c, store = make(Client, srv, tmp_path, budgets=[BUDGET])
    srv["groq"].latency = 0.6
    s = c.stream(CANON, MSG)
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        for _ in s:
            pass
    s.close()
    assert [(a["provider"], a["kind"]) for a in s.attempts] == [("groq", "cancelled")]
    assert held(store) == 0.0 and store.rows() == []
    c.close()

    ac, astore = make(AsyncClient, srv, tmp_path, budgets=[BUDGET])
    srv["groq"].latency = 0.6

    async def go():
        s = ac.stream(CANON, MSG)

        async def read():
            async for _ in s:
                pass

        t = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        try:
            return [(a["provider"], a["kind"]) for a in s.attempts], held(astore), astore.rows()
        finally:
            await ac.aclose()

    assert asyncio.run(go()) == ([("groq", "cancelled")], 0.0, [])


def test_threads_calling_first_at_once_share_one_pool(srv, tmp_path, monkeypatch):
    """Eight threads' first calls on one sync Client: one httpx2 pool, closed with the
    client (before, each racing thread made its own and all but one stayed open)."""
    import httpx2

    made = []
    init = httpx2.Client.__init__

    def counted(self, *a, **k):
        made.append(self)
        return init(self, *a, **k)

    monkeypatch.setattr(httpx2.Client, "__init__", counted)
    for _ in range(3):
        made.clear()
        c, store = make(Client, srv, tmp_path, http="httpx2")
        bar = threading.Barrier(8)

        def one(_):
            bar.wait()
            return c.chat(GROQ, MSG).provider

        with ThreadPoolExecutor(8) as ex:
            assert list(ex.map(one, range(8))) == ["groq"] * 8
        c.close()
        assert len(made) == 1 and made[0].is_closed
