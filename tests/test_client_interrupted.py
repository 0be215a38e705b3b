"""Streams cut after their output started are charged what the provider bills: one ledger
row (``outcome`` interrupted), the budget hold settled with that cost, never twice.

Every test runs on the sync ``Client`` and on ``AsyncClient`` over each HTTP driver
(aiohttp, httpx2), against real loopback provider servers."""

from __future__ import annotations

import asyncio

import pytest

from knollm import AllAttemptsFailed, AsyncClient, StreamInterrupted
from knollm.client import Budget, SQLiteStore
from knollm.client.accounting import estimate_tokens, prompt_tokens
from knollm.query.api import Catalog
from tests.support.async_facade import DRIVERS, Drivers
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

KEYS = {"GROQ_API_KEY": "gsk_cut_SECRET_1111", "ANTHROPIC_API_KEY": "sk-ant-cut-SECRET-2222",
        "CEREBRAS_API_KEY": "csk_cut_SECRET_3333", "GEMINI_API_KEY": "gem_cut_SECRET_4444",
        "OPENAI_API_KEY": "sk-cut-SECRET-5555"}
MSG = [{"role": "user", "content": "hi there"}]
PROMPT = prompt_tokens(MSG)  # the client's estimate of MSG: what an unreported input is charged
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
GROQ = "groq/llama-3.3-70b-versatile"
PROVIDERS = ("groq", "cerebras", "anthropic", "ollama", "gemini", "openai")
CAT = catalog(
    model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
    model("cerebras", "llama-3.3-70b", input=1.5, output=2.0),
    model("anthropic", "claude-x", "claude-x", input=3.0, output=15.0),
    model("ollama", "llama3.3", "llama3.3", input=None, output=None),
    model("gemini", "gemini-x", "gemini-x", input=0.3, output=2.5),
    model("openai", "o-x", "o-x", input=2.0, output=8.0, reasoning=True),
)
GROQ_BUDGET = Budget(1.0, "day", provider="groq")

_D = Drivers()


def pytest_generate_tests(metafunc):
    """Every test runs on each client and driver; ``@pytest.mark.drivers(...)`` narrows that."""
    only = metafunc.definition.get_closest_marker("drivers")
    metafunc.parametrize("driver", list(only.args) if only else DRIVERS, indirect=True)


@pytest.fixture(autouse=True)
def driver(request):
    with _D.using(request.param) as name:
        yield name


def client(srv, tmp_path, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("budgets", [GROQ_BUDGET])
    store = kw.pop("store", None) or SQLiteStore(tmp_path / "knollm.db")
    kw.update(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store)
    return _D.client(**kw), store


def cost(inp: int, out: int, price_in: float = 1.0, price_out: float = 2.0) -> float:
    return (inp * price_in + out * price_out) / 1e6


def test_upstream_cut_after_n_chunks_is_one_interrupted_row(srv, tmp_path):
    """OpenAI shape (usage only comes at the end): 3 chunks, then the connection closes.
    Input estimated from the messages, output from the chunks received; the hold is
    settled with that cost; no fallback; closing the stream afterwards adds nothing."""
    c, store = client(srv, tmp_path, retries=0)
    srv["groq"].faults("cut3")
    s = c.stream(CANON, MSG)
    got = []
    with pytest.raises(StreamInterrupted) as ei:
        for x in s:
            got.append(x)
    assert got == ["Hello ", "from ", "groq! "] and ei.value.partial == "Hello from groq! "
    assert srv["cerebras"].requests == []  # no fallback: it would repeat output
    (row,) = store.rows()
    out_tokens = estimate_tokens("Hello from groq! ")
    assert out_tokens > 0
    assert {k: row[k] for k in ("outcome", "provider", "stream", "input_tokens", "output_tokens", "cached_tokens",
                                "usage_estimated", "attempts", "price_source")} == {
        "outcome": "interrupted", "provider": "groq", "stream": 1, "input_tokens": PROMPT,
        "output_tokens": out_tokens, "cached_tokens": 0, "usage_estimated": 1, "attempts": 1,
        "price_source": "catalog:genai-prices"}
    assert row["cost_usd"] == pytest.approx(cost(PROMPT, out_tokens))
    assert row["ttft_ms"] is not None and row["duration_ms"] >= row["ttft_ms"]
    assert store.spent(GROQ_BUDGET) == pytest.approx(row["cost_usd"])  # the hold settled, not released
    assert ei.value.row["request_id"] == row["request_id"] and s.interrupted is ei.value
    s.close()
    s.close()
    assert len(store.rows()) == 1
    res = list(c.stream(CANON, MSG))[-1]  # an answered stream: outcome ok
    assert [r["outcome"] for r in store.rows()] == ["interrupted", "ok"] and res.provider == "groq"
    assert store.spent(GROQ_BUDGET) == pytest.approx(row["cost_usd"] + res.cost_usd)


def test_anthropic_cut_keeps_the_provider_input_and_estimates_the_output(srv, tmp_path):
    """``message_start`` carries the input usage (cache reads included): it is charged as
    reported; the output is estimated from the deltas received: usage_estimated = 2."""
    c, store = client(srv, tmp_path, retries=0)
    srv["anthropic"].usage = (120, 30, 20)
    srv["anthropic"].faults("cut3")
    with pytest.raises(StreamInterrupted) as ei:
        list(c.stream("anthropic/claude-x", MSG))
    assert ei.value.partial == "Hello from anthropic! "
    (row,) = store.rows()
    out_tokens = estimate_tokens("Hello from anthropic! ")
    assert (row["outcome"], row["input_tokens"], row["cached_tokens"], row["output_tokens"],
            row["usage_estimated"]) == ("interrupted", 120, 20, out_tokens, 2)
    assert row["input_tokens"] != PROMPT
    assert row["cost_usd"] == pytest.approx(cost(120, out_tokens, 3.0, 15.0))  # no cache price: input price


def test_unpriced_interrupted_call_stays_unpriced(srv, tmp_path):
    c, store = client(srv, tmp_path, budgets=[])
    srv["ollama"].faults("cut")
    with pytest.raises(StreamInterrupted):
        list(c.stream("ollama/llama3.3", MSG))
    (row,) = store.rows()
    assert row["outcome"] == "interrupted" and row["cost_usd"] is None
    assert row["unpriced_reason"] == "ollama/llama3.3: no input/output price in the catalog"
    assert row["output_tokens"] == estimate_tokens("Hello ")


def test_consumer_closing_the_stream_is_charged_once(srv, tmp_path):
    """``with client.stream(…) as s: for x in s: break``: the upstream is closed and the
    call settled as interrupted, once (closing again adds nothing); the deployment's
    breaker does not count it as a failure."""
    c, store = client(srv, tmp_path, breaker={"failure_threshold": 1})
    srv["groq"].faults("stall")
    srv["groq"].hang_s = 2.0
    with c.stream(GROQ, MSG) as s:
        for x in s:
            assert x == "Hello "
            break
    (row,) = store.rows()
    assert (row["outcome"], row["provider"], row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == \
        ("interrupted", "groq", PROMPT, estimate_tokens("Hello "), 1)
    assert store.spent(GROQ_BUDGET) == pytest.approx(cost(PROMPT, estimate_tokens("Hello ")))
    assert s.attempts[-1]["kind"] == "closed" and s.interrupted.row["request_id"] == row["request_id"]
    s.close()
    assert len(store.rows()) == 1
    assert c.chat(CANON, MSG).provider == "groq"  # one failure would have opened its breaker
    # what was received but not yet handed out counts too: events() of a tool call
    srv["groq"].faults("stall")
    with c.stream(GROQ, MSG, tools=TOOLS) as s:
        for batch in s.events():
            assert batch[0]["function"]["name"] == "get_weather"
            break
    rows = store.rows()
    assert [r["outcome"] for r in rows] == ["interrupted", "ok", "interrupted"]
    assert rows[2]["output_tokens"] == estimate_tokens("get_weather")


@pytest.mark.drivers("sync")  # a sync generator is closed when the loop leaves it; async ones by the event loop
def test_breaking_out_of_a_sync_loop_settles_at_once(srv, tmp_path):
    c, store = client(srv, tmp_path)
    srv["groq"].faults("stall")
    srv["groq"].hang_s = 2.0
    for _ in c.stream(GROQ, MSG):
        break
    assert [r["outcome"] for r in store.rows()] == ["interrupted"]


def test_failure_before_the_first_token_is_not_charged(srv, tmp_path):
    """No output, no bill: the hold is released, no row, the next candidate answers."""
    c, store = client(srv, tmp_path, retries=0, stall_timeout=0.3, ttft_timeout=0.3)
    srv["groq"].faults("503")
    res = list(c.stream(CANON, MSG))[-1]
    assert res.provider == "cerebras"
    assert [(r["provider"], r["outcome"]) for r in store.rows()] == [("cerebras", "ok")]
    assert store.spent(GROQ_BUDGET) == 0
    srv["groq"].faults("hang")
    srv["groq"].hang_s = 1.0
    srv["cerebras"].faults("503")
    with pytest.raises(AllAttemptsFailed):
        list(c.stream(CANON, MSG))
    assert len(store.rows()) == 1 and store.spent(GROQ_BUDGET) == 0


@pytest.mark.parametrize("target", [GROQ, "anthropic/claude-x", "ollama/llama3.3", "gemini/gemini-x"])
def test_a_model_reasoning_longer_than_the_first_token_wait_is_not_cut(srv, tmp_path, target):
    """A reasoning model sends its reasoning for a second before its first text (each API
    its own way: DeepSeek's ``reasoning_content``, Anthropic's thinking block, Gemini's
    thought parts, Ollama's ``thinking``), ``ttft_timeout`` being 0.3 s: it is working, and
    billed for it, so the wait is not a stall. One request, the whole text, one ``ok`` row
    (before: cut at 0.3 s as "no first token", sent again and billed again, then the next
    candidate)."""
    provider = target.split("/")[0]
    c, store = client(srv, tmp_path, retries=1, ttft_timeout=0.3, stall_timeout=5, budgets=[])
    srv[provider].faults("think")
    *texts, res = list(c.stream(target, MSG))
    assert "".join(texts) == f"Hello from {provider}! You said: hi there"
    assert (res.provider, len(res.attempts)) == (provider, 1)
    assert [(r["provider"], r["outcome"]) for r in store.rows()] == [(provider, "ok")]
    assert len(srv[provider].requests) == 1 and res.ttft_ms > 900  # (the time to the first text)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_reasoning_model_silent_for_longer_than_the_waits_is_not_cut(srv, tmp_path, stream):
    """A reasoning model thinks before it answers, and OpenAI's send nothing meanwhile
    (a whole answer comes when done; a stream's head at once, then silence). Its waits are
    at least ``reasoning_timeout``: 1 s of silence against timeouts of 0.4 s is one request
    and one ``ok`` row, for a model the catalog says reasons and for one the request asks
    to (``reasoning_effort``); the same silence from another model is cut at 0.4 s and
    sent again, as before (each cut request may be billed: hence the long wait)."""
    c, store = client(srv, tmp_path, retries=1, timeout=0.4, stall_timeout=0.4, ttft_timeout=0.4,
                      reasoning_timeout=5, budgets=[])
    for p in ("openai", "groq"):
        srv[p].latency = 0.0 if stream else 1.0  # a whole answer: nothing for 1 s, then all of it
        srv[p].think_s = 1.0  # a stream: its head, then nothing for 1 s (the "quiet" fault)
        srv[p].default = "quiet" if stream else "ok"

    def call(target: str, **params):
        if stream:
            *texts, res = list(c.stream(target, MSG, **params))
            return "".join(texts), res
        res = c.chat(target, MSG, **params)
        return res.content, res

    for target, params in (("openai/o-x", {}), (GROQ, {"reasoning_effort": "high"})):
        provider = target.split("/")[0]
        n = len(srv[provider].requests)
        text, res = call(target, **params)
        assert text == f"Hello from {provider}! You said: hi there"
        assert (res.provider, len(res.attempts), len(srv[provider].requests) - n) == (provider, 1, 1)
    assert [(r["provider"], r["outcome"]) for r in store.rows()] == [("openai", "ok"), ("groq", "ok")]
    n = len(srv["groq"].requests)
    with pytest.raises(AllAttemptsFailed) as ei:
        call(GROQ)
    assert len(srv["groq"].requests) - n == 2  # cut at 0.4 s, sent again
    assert "0.4s" in str(ei.value)


def test_a_stream_without_ledger_still_says_what_it_cost(srv, tmp_path):
    c, _ = client(srv, tmp_path, store=False, budgets=[])
    srv["groq"].faults("cut")
    with pytest.raises(StreamInterrupted) as ei:
        list(c.stream(GROQ, MSG))
    assert ei.value.row["outcome"] == "interrupted"
    assert ei.value.row["cost_usd"] == pytest.approx(cost(PROMPT, estimate_tokens("Hello ")))


@pytest.mark.drivers("async-h1", "async-aiohttp", "async-httpx2")
def test_async_break_then_aclose_and_plain_break(srv, tmp_path, driver):
    """Native asyncio: ``async with`` + break settles at once (aclose twice: one row); a
    plain ``async for … break`` is settled when the event loop finalizes the stream."""
    http = driver.split("-", 1)[1]
    store = SQLiteStore(tmp_path / "k.db")
    srv["groq"].hang_s = 2.0

    async def main():
        async with AsyncClient(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store, http=http,
                               budgets=[GROQ_BUDGET]) as c:
            srv["groq"].faults("stall")
            async with c.stream(GROQ, MSG) as s:
                async for x in s:
                    break
            assert [r["outcome"] for r in store.rows()] == ["interrupted"]
            await s.aclose()
            assert len(store.rows()) == 1
            srv["groq"].faults("stall")
            async for x in c.stream(GROQ, MSG):
                break
            for _ in range(500):  # the loop's async-generator finalizer closes it
                if len(store.rows()) == 2:
                    break
                await asyncio.sleep(0.01)
            assert [r["outcome"] for r in store.rows()] == ["interrupted", "interrupted"]
            await asyncio.sleep(0.05)
            assert store.spent(GROQ_BUDGET) == pytest.approx(sum(r["cost_usd"] for r in store.rows()))

    asyncio.run(main())


def test_interrupted_streams_on_a_postgres_ledger(srv, driver, postgres_server):
    """The PostgreSQL store (``blocking``: AsyncClient writes from a worker thread): an
    upstream cut and a caller's close each leave one interrupted row, holds settled."""
    import uuid

    from knollm.gateway.pgstore import PostgresStore

    store = PostgresStore(postgres_server.create_database("i_" + uuid.uuid4().hex[:10]))
    c, _ = client(srv, None, store=store)
    srv["groq"].faults("cut3")
    with pytest.raises(StreamInterrupted):
        list(c.stream(GROQ, MSG))
    srv["groq"].faults("stall")
    srv["groq"].hang_s = 2.0
    with c.stream(GROQ, MSG) as s:
        for _ in s:
            break
    rows = store.rows()
    assert [(r["outcome"], r["output_tokens"], r["stream"]) for r in rows] == [
        ("interrupted", estimate_tokens("Hello from groq! "), 1), ("interrupted", estimate_tokens("Hello "), 1)]
    assert store.spent(GROQ_BUDGET) == pytest.approx(sum(r["cost_usd"] for r in rows))
    store.close()


def test_a_tool_call_cut_before_it_was_given_out_is_charged_and_falls_back(srv, tmp_path):
    """Plain iteration gives text only: a tool call cut after its first delta was never
    seen by the caller, so the next candidate answers; the provider still bills what it
    generated: its own interrupted row, next to the answer's."""
    c, store = client(srv, tmp_path, retries=0)
    srv["groq"].faults("cut")
    res = list(c.stream(CANON, MSG, tools=TOOLS))[-1]
    assert res.provider == "cerebras" and res.tool_calls
    cut, ok = store.rows()
    assert (cut["provider"], cut["outcome"], cut["output_tokens"], cut["usage_estimated"]) == (
        "groq", "interrupted", estimate_tokens("get_weather"), 1)
    assert (ok["provider"], ok["outcome"], ok["request_id"]) == ("cerebras", "ok", res.request_id)
    assert store.spent(GROQ_BUDGET) == pytest.approx(cut["cost_usd"])  # the groq hold: released, its cost in


def test_a_whole_answer_cut_mid_body_is_charged_and_retried(srv, tmp_path):
    """A non-streamed answer whose status line arrived but whose body was cut: the provider
    generated (and bills) it, the caller never saw it. It is retried, and charged: its own
    interrupted row (input estimated from the prompt, output from the text that arrived),
    named on its attempt; the answer that follows has its own row."""
    c, store = client(srv, tmp_path)
    srv["groq"].faults("bodycut")
    res = c.chat(GROQ, MSG)
    assert res.provider == "groq" and res.content
    cut, ok = store.rows()
    assert (cut["outcome"], cut["stream"], cut["input_tokens"], cut["usage_estimated"]) == ("interrupted", 0, PROMPT, 1)
    assert 0 < cut["output_tokens"] < estimate_tokens(res.content) + 20  # half the answer's text, JSON and all
    assert cut["cost_usd"] == pytest.approx(cost(cut["input_tokens"], cut["output_tokens"]))
    assert (ok["outcome"], ok["request_id"]) == ("ok", res.request_id)
    first, second = res.attempts
    assert first["kind"] == "connection" and "answer cut after HTTP 200" in first["message"]
    assert first["charged"]["request_id"] == cut["request_id"] and first["charged"]["cost_usd"] == cut["cost_usd"]
    assert "charged" not in second
    assert store.spent(GROQ_BUDGET) == pytest.approx(cut["cost_usd"] + ok["cost_usd"])
    store.close()


def test_a_whole_answer_cut_with_no_retry_left_fails_and_is_still_charged(srv, tmp_path):
    c, store = client(srv, tmp_path, retries=0)
    srv["groq"].faults("bodycut")
    with pytest.raises(AllAttemptsFailed) as ei:
        c.chat(GROQ, MSG)
    (cut,) = store.rows()
    assert cut["outcome"] == "interrupted" and ei.value.attempts[0]["charged"]["request_id"] == cut["request_id"]
    assert store.spent(GROQ_BUDGET) == pytest.approx(cut["cost_usd"])  # the hold released, the cut charged
    store.close()
