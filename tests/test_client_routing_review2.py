"""Routing fixes from the second routing review, each against loopback provider servers with
the real Client / AsyncClient: half-open trials that end without a verdict, a request larger
than the client-side TPM, ``retry-after-ms``, a 429 moving to the next key, bad requests and
the breaker, keys with a line break, and requests lost after they were sent."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from knollm import AllAttemptsFailed, AsyncClient, Client, NoCandidates
from knollm.client.routing import CircuitBreaker
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model, reset_servers
from tests.support.provider_servers import ProviderServer

PROVIDERS = ("groq", "cerebras")
T = "groq/llama-3.3-70b-versatile"
BOTH = [T, "cerebras/llama-3.3-70b"]
KEYS = {"GROQ_API_KEY": "gsk_test_SECRET_aaaa1111", "CEREBRAS_API_KEY": "csk-SECRET-dddd4444"}
MSG = [{"role": "user", "content": "hi there"}]


def _cat() -> Catalog:
    return Catalog(catalog(model("groq", "llama-3.3-70b-versatile"), model("cerebras", "llama-3.3-70b", input=1.5)))


_MADE: list = []  # sync clients, closed after each test (no socket left to the garbage collector)


def mk(srv, keys=None, cls=Client, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("store", False)
    c = cls(catalog=_cat(), env=env_for(srv, KEYS if keys is None else keys), **kw)
    if cls is Client:
        _MADE.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _MADE:
        _MADE.pop().close()


@pytest.fixture(scope="module")
def servers():
    s = {p: ProviderServer(p).start() for p in PROVIDERS}
    yield s
    for x in s.values():
        x.stop()


@pytest.fixture
def srv(servers):
    reset_servers(servers)
    for s in servers.values():
        s.chunk_delay = 0.0
    yield servers
    for s in servers.values():
        s.chunk_delay = 0.0


def _open_breaker(c, srv):
    """A failed call (500) opens the single deployment's breaker (threshold 1)."""
    srv["groq"].faults("500")
    with pytest.raises(AllAttemptsFailed):
        c.chat(T, MSG)
    return next(iter(c.router._deps.values()))


# --------------------------------------------------------------------------- 1. half-open trials
def test_trial_stream_closed_after_first_token_closes_breaker(srv):
    c = mk({"groq": srv["groq"]}, retries=0, breaker={"failure_threshold": 1, "cooldown_s": 0.2})
    d = _open_breaker(c, srv)
    time.sleep(0.3)
    assert d.breaker.state == "half-open"
    srv["groq"].chunk_delay = 0.05
    st = c.stream(T, MSG)
    it = iter(st)
    assert next(it)
    st.close()
    assert st.interrupted is not None
    assert d.breaker.state == "closed" and not d.breaker._trial  # the provider was answering
    assert c.chat(T, MSG).provider == "groq"


async def _half_open_async(srv):
    """An AsyncClient whose one groq deployment's breaker opened on a 500 and is half-open now."""
    c = mk({"groq": srv["groq"]}, cls=AsyncClient, retries=0, breaker={"failure_threshold": 1, "cooldown_s": 0.2})
    srv["groq"].faults("500")
    with pytest.raises(AllAttemptsFailed):
        await c.chat(T, MSG)
    await asyncio.sleep(0.3)
    return c, next(iter(c.router._deps.values()))


def test_async_trial_cancelled_is_given_back(srv):
    async def main():
        c, d = await _half_open_async(srv)
        srv["groq"].latency = 0.6
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.chat(T, MSG), 0.1)  # the trial, cancelled before any answer
        assert not d.breaker._trial
        srv["groq"].latency = 0.0
        r = await c.chat(T, MSG)  # the next call is the trial
        assert r.provider == "groq" and d.breaker.state == "closed"
        await c.aclose()

    asyncio.run(main())


def test_async_trial_stream_closed_after_first_token(srv):
    async def main():
        c, d = await _half_open_async(srv)
        srv["groq"].chunk_delay = 0.05
        st = c.stream(T, MSG)
        async for _ in st:
            break
        await st.aclose()
        srv["groq"].chunk_delay = 0.0
        assert d.breaker.state == "closed"
        assert (await c.chat(T, MSG)).provider == "groq"
        await c.aclose()

    asyncio.run(main())


def test_trial_without_verdict_expires_after_cooldown():
    now = [0.0]
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=lambda: now[0])
    b.record(False)
    now[0] = 11
    assert b.allow()
    assert not b.allow()  # one trial at a time
    now[0] = 22  # the trial never reported: a new one
    assert b.allow()
    b.record(True)
    assert b.allow() is True and b.state == "closed"


# --------------------------------------------------------------------------- 2. TPM larger than one request
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_request_larger_than_tpm_waits_for_an_empty_window(srv, twin):
    srv["groq"].usage = (900, 100, 0)  # each call really uses the whole TPM
    kw = dict(providers={"groq": {"tpm": 1000}})
    if twin == "sync":
        c = mk({"groq": srv["groq"]}, **kw)
        c.chat(T, MSG, max_tokens=2000)
        with pytest.raises(NoCandidates) as ei:
            c.chat(T, MSG, max_tokens=2000)
    else:
        async def main():
            c = mk({"groq": srv["groq"]}, cls=AsyncClient, **kw)
            try:
                await c.chat(T, MSG, max_tokens=2000)
                with pytest.raises(NoCandidates) as ei:
                    await c.chat(T, MSG, max_tokens=2000)
                return ei
            finally:
                await c.aclose()
        ei = asyncio.run(main())
    assert "client-side rate limit" in str(ei.value)
    assert len(srv["groq"].requests) == 1


# --------------------------------------------------------------------------- 3. retry-after-ms
class _MsHandler(ProviderServer.handler_base):
    def _json(self, status, obj, headers=None):
        if status == 429:
            headers = {"retry-after-ms": "400"}  # no Retry-After
        return super()._json(status, obj, headers)


class MsServer(ProviderServer):
    handler_base = _MsHandler


def test_retry_after_ms_is_honoured():
    s = MsServer("groq").start()
    try:
        times = []
        orig = s.record
        s.record = lambda e: (times.append(time.monotonic()), orig(e))
        s.faults("429")
        c = mk({"groq": s}, retries=2)
        r = c.chat(T, MSG)
        assert [a["status"] for a in r.attempts] == [429, 200]
        assert times[1] - times[0] >= 0.35
    finally:
        s.stop()


def test_retry_after_of():
    from knollm.retry import retry_after_of

    assert retry_after_of({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_of({"retry-after": "2"}) == 2.0
    assert retry_after_of({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    assert retry_after_of({}) is None


# --------------------------------------------------------------------------- 4. 429: the next key
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_429_moves_to_the_next_key(srv, twin):
    srv["groq"].retry_after = "3"
    srv["groq"].faults("429")
    keys = dict(KEYS, GROQ_API_KEY_2="gsk_test_SECRET_bbbb2222")
    t0 = time.monotonic()
    if twin == "sync":
        r = mk(srv, keys, retries=2).chat(BOTH, MSG)
    else:
        async def main():
            c = mk(srv, keys, cls=AsyncClient, retries=2)
            try:
                return await c.chat(BOTH, MSG)
            finally:
                await c.aclose()
        r = asyncio.run(main())
    assert time.monotonic() - t0 < 2
    assert r.provider == "groq" and r.key == "GROQ_API_KEY_2"
    assert [(a["key"], a["status"]) for a in r.attempts] == [("GROQ_API_KEY", 429), ("GROQ_API_KEY_2", 200)]


def test_429_on_the_last_candidate_waits_and_retries(srv):
    srv["groq"].retry_after = "0.3"
    srv["groq"].faults("429")
    t0 = time.monotonic()
    r = mk({"groq": srv["groq"]}, retries=2).chat(T, MSG)
    assert time.monotonic() - t0 >= 0.28
    assert [(a["key"], a["status"]) for a in r.attempts] == [("GROQ_API_KEY", 429), ("GROQ_API_KEY", 200)]


# --------------------------------------------------------------------------- 5. bad requests and the breaker
def test_bad_request_does_not_reset_the_failure_count(srv):
    c = mk({"groq": srv["groq"]}, retries=0, breaker={"failure_threshold": 3, "window_s": 60})
    srv["groq"].faults("500", "500", "context", "500")
    for _ in range(4):
        with pytest.raises(AllAttemptsFailed):
            c.chat(T, MSG)
    d = next(iter(c.router._deps.values()))
    assert d.breaker.state == "open"  # three server failures within the window


def test_bad_request_ends_a_trial_as_success(srv):
    c = mk({"groq": srv["groq"]}, retries=0, breaker={"failure_threshold": 1, "cooldown_s": 0.2})
    d = _open_breaker(c, srv)
    time.sleep(0.3)
    srv["groq"].faults("context")
    with pytest.raises(AllAttemptsFailed):
        c.chat(T, MSG)
    assert d.breaker.state == "closed"


# --------------------------------------------------------------------------- 6. a key with a line break
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_key_with_line_break_is_disabled_not_fatal(srv, twin):
    keys = dict(KEYS, GROQ_API_KEY="gsk_test_SECRET_aaaa1111\r", GROQ_API_KEY_2="gsk_test_SECRET_bbbb2222")
    if twin == "sync":
        r = mk(srv, keys).chat(BOTH, MSG)
    else:
        async def main():
            c = mk(srv, keys, cls=AsyncClient)
            try:
                return await c.chat(BOTH, MSG)
            finally:
                await c.aclose()
        r = asyncio.run(main())
    assert r.key == "GROQ_API_KEY_2"
    assert [(a["key"], a["status"]) for a in r.attempts] == [("GROQ_API_KEY_2", 200)]  # nothing phantom
    bad = [x for x in r.candidates if x["key"] == "GROQ_API_KEY"]
    assert bad and bad[0]["status"] == "excluded" and "GROQ_API_KEY" in bad[0]["reason"]
    assert "line break" in bad[0]["reason"] and "SECRET" not in bad[0]["reason"]
    assert len(srv["groq"].requests) == 1


def test_only_key_with_line_break_falls_to_next_provider(srv):
    keys = dict(KEYS, GROQ_API_KEY="gsk_test_SECRET_aaaa1111\n")
    r = mk(srv, keys).chat(BOTH, MSG)
    assert r.provider == "cerebras" and [a["provider"] for a in r.attempts] == ["cerebras"]


# --------------------------------------------------------------------------- 7. lost after sending
@pytest.mark.parametrize("twin", ["sync", "async"])
def test_after_send_failures_are_marked_maybe_billed(srv, twin):
    g = srv["groq"]
    g.hang_s = 1.0
    g.faults("hang", "reset")
    if twin == "sync":
        r = mk({"groq": g}, retries=2, timeout=0.3).chat(T, MSG)
    else:
        async def main():
            c = mk({"groq": g}, cls=AsyncClient, retries=2, timeout=0.3)
            try:
                return await c.chat(T, MSG)
            finally:
                await c.aclose()
        r = asyncio.run(main())
    assert [a["kind"] for a in r.attempts] == ["timeout", "connection", None]
    assert [a.get("maybe_billed") for a in r.attempts] == [True, True, None]


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_retry_after_send_false_never_resends(srv, twin):
    g = srv["groq"]
    g.hang_s = 1.0
    g.faults("hang")
    if twin == "sync":
        with pytest.raises(AllAttemptsFailed) as ei:
            mk(srv, retries=2, timeout=0.3, retry_after_send=False).chat(BOTH, MSG)
    else:
        async def main():
            c = mk(srv, cls=AsyncClient, retries=2, timeout=0.3, retry_after_send=False)
            try:
                with pytest.raises(AllAttemptsFailed) as ei:
                    await c.chat(BOTH, MSG)
                return ei
            finally:
                await c.aclose()
        ei = asyncio.run(main())
    assert [(a["provider"], a["kind"], a.get("maybe_billed")) for a in ei.value.attempts] == [("groq", "timeout", True)]
    assert len(g.requests) == 1 and srv["cerebras"].requests == []


def test_before_send_failure_is_not_marked_and_falls_back(srv):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: connection refused, nothing sent

    class Dead:
        base_url = f"http://127.0.0.1:{port}/v1"

    r = mk({"groq": Dead, "cerebras": srv["cerebras"]}, retries=0, retry_after_send=False).chat(BOTH, MSG)
    assert r.provider == "cerebras"
    assert r.attempts[0]["kind"] == "connection" and "maybe_billed" not in r.attempts[0]
