"""Money at the edges of the client's flow, against real loopback provider servers and a real
SQLiteStore: tiered prices (one formula with the catalog's), a reservation whose caller was
cancelled while a worker thread committed it, a stream stopped while a tool call was
streaming, a cut attempt retried under its budget, and a whole embeddings answer the client
rejected (billed, so charged)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from knollm import AllAttemptsFailed, AsyncClient, Client
from knollm.client import Budget, SQLiteStore
from knollm.client.accounting import call_cost, estimate_tokens, prompt_tokens, worst_case_cost
from knollm.client.routing import RESERVE_PROMPT_FACTOR, Offer
from knollm.query.api import Catalog
from knollm.query.cost import Workload, cost_per_request
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

PROVIDERS = ("groq", "cerebras", "openai", "gemini")
KEYS = {"GROQ_API_KEY": "gsk_money_1111", "CEREBRAS_API_KEY": "csk_money_2222", "OPENAI_API_KEY": "sk-money-3333",
        "GEMINI_API_KEY": "gm-money-4444"}
MSG = [{"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
GROQ = "groq/llama-3.3-70b-versatile"
GROQ_IN, GROQ_OUT = 1.0, 2.0
TIERS = [{"start": 1000, "input": 2.0, "output": 4.0, "cache_read": 0.5},
         {"start": 5000, "input": 3.0, "output": 6.0, "cache_read": 0.75, "cache_write": 9.0}]
BASE = {"input": 1.0, "output": 2.0, "cache_read": 0.1, "cache_write": 1.25}
TIERED = model("groq", "tiered", "tiered", input=BASE["input"], output=BASE["output"], cache_read=BASE["cache_read"],
               cache_write=BASE["cache_write"], tiers=TIERS)


def emb(provider: str, mid: str, price: float) -> dict:
    return model(provider, mid, "embed-x", input=price, output=None, kind="embedding", context=8191, max_output=None,
                 tools=None)


CAT = catalog(
    model("groq", "llama-3.3-70b-versatile", input=GROQ_IN, output=GROQ_OUT),
    model("cerebras", "llama-3.3-70b", input=1.5, output=2.0),
    TIERED,
    emb("openai", "text-embedding-3-small", 0.02),
    emb("gemini", "gemini-embedding-001", 0.15),
)
GROQ_BUDGET = Budget(1.0, "day", provider="groq")


def client(srv, tmp_path, cls=Client, **kw):
    kw.setdefault("backoff_base", 0.01)
    store = kw.pop("store", None) or SQLiteStore(tmp_path / "knollm.db")
    kw.update(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store,
              providers={"gemini": {"shape": "gemini"}})
    return cls(**kw), store


def offer(m: dict) -> Offer:
    return Offer.from_model(m)


def reserved(m: dict, messages: list[dict], max_tokens: int, params: dict | None = None) -> float:
    """The hold the client takes for ``messages`` on model ``m``: its worst case."""
    prompt = int(prompt_tokens(messages, params) * RESERVE_PROMPT_FACTOR) + 1
    return worst_case_cost(offer(m), prompt, max_tokens)


# --------------------------------------------------------------------------- 4. tiered prices
@pytest.mark.parametrize("inp,out,cached", [(1000, 30, 0), (1001, 30, 0), (4000, 30, 3000), (5000, 50, 4000),
                                            (5001, 50, 4000), (250_000, 30, 200_000)])
def test_ledger_cost_uses_the_catalogs_tier_rule_and_tier_cache_prices(srv, tmp_path, inp, out, cached):
    """A tier applies once the input EXCEEDS its start (not at it), and every price it names
    (cache_read too) replaces the base one: the ledger row costs what the catalog's formula says."""
    srv["groq"].usage = (inp, out, cached)
    c, store = client(srv, tmp_path)
    r = c.chat("groq/tiered", MSG)
    (row,) = store.rows()
    want = cost_per_request(BASE, Workload(inp, out, cached), TIERS)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (inp, out, cached)
    assert row["cost_usd"] == pytest.approx(want) and r.cost_usd == pytest.approx(want)


def test_cache_writes_above_a_tier_are_priced_at_the_tiers_cache_write():
    o = offer(TIERED)
    usage = {"input_tokens": 6000, "output_tokens": 10, "cached_tokens": 1000, "cache_write_tokens": 2000}
    t = TIERS[1]
    want = ((6000 - 1000 - 2000) * t["input"] + 1000 * t["cache_read"] + 2000 * t["cache_write"]
            + 10 * t["output"]) / 1e6
    assert call_cost(o, usage)[0] == pytest.approx(want)


@pytest.mark.parametrize("usage", [{"input_tokens": 10, "output_tokens": -1},
                                   {"input_tokens": 10, "output_tokens": 5, "cached_tokens": -3}])
def test_a_call_with_a_negative_count_is_refused_never_priced_low(usage):
    with pytest.raises(ValueError, match=">= 0"):
        call_cost(offer(TIERED), usage)


def test_the_worst_case_covers_every_cost_the_prompt_can_reach_and_no_tier_beyond_it():
    """The hold is never below what a call of at most ``prompt`` input tokens (any of them
    cache reads or writes) and ``max_tokens`` output can cost; a prompt below every tier's
    start is held at the base prices."""
    o = offer(TIERED)
    max_tokens = 100
    for prompt in (10, 999, 1000, 1001, 4999, 5000, 5001, 20_000):
        worst = worst_case_cost(o, prompt, max_tokens)
        for inp in sorted({1, prompt // 2, prompt - 1, prompt, 1000, 1001, 5000, 5001} - {0}):
            if inp > prompt:
                continue
            for cached, write in ((0, 0), (inp, 0), (0, inp), (inp // 2, inp - inp // 2)):
                cost = call_cost(o, {"input_tokens": inp, "output_tokens": max_tokens, "cached_tokens": cached,
                                     "cache_write_tokens": write})[0]
                assert cost <= worst + 1e-15, (prompt, inp, cached, write)
    below = 999
    assert worst_case_cost(o, below, max_tokens) == pytest.approx(
        (below * max(BASE["input"], BASE["cache_read"], BASE["cache_write"]) + max_tokens * BASE["output"]) / 1e6)


# --------------------------------------------------------------------------- 2. a cancelled reserve
class _GatedStore(SQLiteStore):
    """A store that blocks on the network (as PostgreSQL's does): its reserve waits for
    ``gate`` (the round trip), then commits; ``entered``/``committed`` tell the test where it is."""

    blocking = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.entered, self.gate, self.committed = threading.Event(), threading.Event(), threading.Event()

    def reserve(self, *a, **kw):
        self.entered.set()
        assert self.gate.wait(10)
        try:
            return super().reserve(*a, **kw)
        finally:
            self.committed.set()


def test_a_reserve_cancelled_while_its_thread_commits_leaves_no_hold(srv, tmp_path):
    store = _GatedStore(tmp_path / "knollm.db")
    c, _ = client(srv, tmp_path, AsyncClient, store=store, budgets=[GROQ_BUDGET])
    sent = len(srv["groq"].requests)

    async def main():
        task = asyncio.create_task(c.chat(GROQ, MSG))
        while not store.entered.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.gate.set()  # the round trip completes after the caller went away: the hold is committed
        while not store.committed.is_set():
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 3
        while store.spent(GROQ_BUDGET) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await c.aclose()

    asyncio.run(main())
    assert store.committed.is_set()
    assert store.spent(GROQ_BUDGET) == 0.0  # nothing held, nothing charged
    assert store.rows() == [] and len(srv["groq"].requests) == sent  # never sent
    # the budget is whole again: a call needing all of it is held
    (rid, refused) = store.reserve([GROQ_BUDGET], {"provider": "groq"}, GROQ_BUDGET.limit_usd)
    assert refused is None and rid is not None
    store.close()


# --------------------------------------------------------------------------- 3. stopped mid tool call
def test_a_stream_cancelled_while_a_tool_call_streams_is_charged_once_without_fallback(srv, tmp_path):
    """Plain iteration never yields tool-call deltas; the provider bills the tool call it was
    generating all the same: one interrupted row (the hold settled with it), no fallback."""
    c, store = client(srv, tmp_path, AsyncClient, budgets=[GROQ_BUDGET])
    srv["groq"].chunk_delay = 0.4  # the first event (the tool's name) at once, then one delta each 0.4 s
    srv["groq"].usage = (120, 30, 0)
    got: list = []

    async def consume(s):
        async for x in s:
            got.append(x)

    async def main():
        s = c.stream(CANON, MSG, tools=TOOLS)
        task = asyncio.create_task(consume(s))
        while not srv["groq"].requests:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # the name has arrived, the arguments are still coming
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await s.aclose()
        await c.aclose()
        return s

    try:
        s = asyncio.run(main())
    finally:
        srv["groq"].chunk_delay = 0.0
    assert got == []  # the caller saw nothing
    assert s.interrupted is not None and s.interrupted.row["outcome"] == "interrupted"
    assert srv["cerebras"].requests == []  # no fallback for a caller who stopped
    (row,) = store.rows()
    assert (row["outcome"], row["provider"], row["stream"], row["usage_estimated"]) == ("interrupted", "groq", 1, 1)
    assert row["input_tokens"] == prompt_tokens(MSG, {"tools": TOOLS})
    assert row["output_tokens"] >= estimate_tokens("get_weather")
    assert row["cost_usd"] == pytest.approx((row["input_tokens"] * GROQ_IN + row["output_tokens"] * GROQ_OUT) / 1e6)
    assert row["request_id"] == s.interrupted.row["request_id"]
    assert store.spent(GROQ_BUDGET) == pytest.approx(row["cost_usd"])  # the hold: settled with that cost
    store.close()


# --------------------------------------------------------------------------- 1. a cut attempt retried
def _cut_then_ok(srv, max_tokens):
    srv["groq"].usage = (6, max_tokens, 0)
    srv["groq"].faults("bodycut")


def test_a_retry_after_a_charged_cut_is_held_anew_and_refused_when_the_budget_cannot_take_it(srv, tmp_path):
    """The budget holds exactly one worst case: the cut attempt's charge leaves too little
    for the retry's hold, so the call stops there instead of overspending."""
    max_tokens = 40
    limit = reserved(CAT["models"][0], MSG, max_tokens)
    budget = Budget(limit, "day", provider="groq")
    c, store = client(srv, tmp_path, budgets=[budget])
    _cut_then_ok(srv, max_tokens)
    with pytest.raises(AllAttemptsFailed) as ei:
        c.chat(GROQ, MSG, max_tokens=max_tokens)
    assert len(srv["groq"].requests) == 1  # never sent again
    (cut,) = store.rows()
    assert cut["outcome"] == "interrupted" and cut["cost_usd"] > 0
    assert store.spent(budget) == pytest.approx(cut["cost_usd"]) and store.spent(budget) <= limit
    (attempt,) = ei.value.attempts
    assert attempt["charged"]["request_id"] == cut["request_id"]
    # what the retry would have held no longer fits next to the charge
    assert store.reserve([budget], {"provider": "groq"}, limit)[1].startswith(f"budget {budget.label()}")
    store.close()


def test_a_refused_retry_after_a_charged_cut_falls_back(srv, tmp_path):
    max_tokens = 40
    limit = reserved(CAT["models"][0], MSG, max_tokens)
    budget = Budget(limit, "day", provider="groq")
    c, store = client(srv, tmp_path, budgets=[budget])
    _cut_then_ok(srv, max_tokens)
    r = c.chat(CANON, MSG, max_tokens=max_tokens)
    assert r.provider == "cerebras" and len(srv["groq"].requests) == 1
    cut, ok = store.rows()
    assert (cut["provider"], cut["outcome"]) == ("groq", "interrupted")
    assert (ok["provider"], ok["outcome"], ok["request_id"]) == ("cerebras", "ok", r.request_id)
    assert r.attempts[0]["charged"]["request_id"] == cut["request_id"]
    assert store.spent(budget) == pytest.approx(cut["cost_usd"]) and store.spent(budget) <= limit
    store.close()


def test_a_retry_after_a_charged_cut_within_budget_is_charged_once_each(srv, tmp_path):
    max_tokens = 40
    budget = Budget(reserved(CAT["models"][0], MSG, max_tokens) * 3, "day", provider="groq")
    c, store = client(srv, tmp_path, budgets=[budget])
    _cut_then_ok(srv, max_tokens)
    r = c.chat(GROQ, MSG, max_tokens=max_tokens)
    assert r.provider == "groq" and len(srv["groq"].requests) == 2
    cut, ok = store.rows()
    assert cut["outcome"] == "interrupted" and (ok["outcome"], ok["request_id"]) == ("ok", r.request_id)
    assert ok["cost_usd"] == pytest.approx((6 * GROQ_IN + max_tokens * GROQ_OUT) / 1e6)
    # both holds settled: what the budget counts is exactly the two rows
    assert store.spent(budget) == pytest.approx(cut["cost_usd"] + ok["cost_usd"])
    assert store.spent(budget) <= budget.limit_usd
    store.close()


# --------------------------------------------------------------------------- 5. a rejected embeddings answer
@pytest.mark.parametrize("fault", ["nodims", "short"])
def test_a_whole_embeddings_answer_the_client_rejects_is_charged_then_falls_back(srv, tmp_path, fault):
    texts = ["the cat sat", "on the mat"]
    n_in = 57
    srv["openai"].usage = (n_in, 0, 0)
    srv["openai"].faults(fault)
    c, store = client(srv, tmp_path)
    r = c.embed(["openai/text-embedding-3-small", "gemini/gemini-embedding-001"], texts, dimensions=4)
    assert r.provider == "gemini" and len(srv["openai"].requests) == 1
    bad, ok = store.rows()
    assert (bad["provider"], bad["outcome"], bad["output_tokens"]) == ("openai", "interrupted", 0)
    if fault == "nodims":  # the answer parsed: its reported usage
        assert (bad["input_tokens"], bad["usage_estimated"]) == (n_in, 0)
    else:  # one vector too few: the estimate, as for a cut answer
        assert bad["usage_estimated"] == 1 and bad["input_tokens"] > 0
    assert bad["cost_usd"] == pytest.approx(bad["input_tokens"] * 0.02 / 1e6)
    assert r.attempts[0]["charged"]["request_id"] == bad["request_id"]
    assert (ok["provider"], ok["outcome"], ok["request_id"]) == ("gemini", "ok", r.request_id)
    store.close()
