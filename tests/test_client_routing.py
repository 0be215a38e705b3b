"""knollm.Client against real loopback servers: shapes, faults, fallback, strategies, keys."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from knollm import AllAttemptsFailed, AsyncClient, NoCandidates, StreamInterrupted
from knollm.query.api import Catalog
from tests.support.async_facade import Drivers, every_driver
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

GROQ_KEY, GROQ_KEY2, ANT_KEY, CER_KEY = "gsk_test_SECRET_aaaa1111", "gsk_test_SECRET_bbbb2222", \
    "sk-ant-SECRET-cccc3333", "csk-SECRET-dddd4444"
MSG = [{"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
# the servers report 120 input / 30 output tokens: 120*1 + 30*2 per 1M at the default fixture prices
COST = (120 * 1.0 + 30 * 2.0) / 1e6


PROVIDERS = ("groq", "anthropic", "ollama", "cerebras")


def make_catalog(**over):
    return Catalog(catalog(
        model("groq", "llama-3.3-70b-versatile", context=over.get("groq_ctx", 128_000), input=over.get("groq_in", 1.0)),
        model("cerebras", "llama-3.3-70b", context=over.get("cer_ctx", 128_000), input=over.get("cer_in", 1.5)),
        model("anthropic", "claude-x", "claude-x", context=200_000, vision=True, structured=True),
        model("ollama", "llama3.3", "llama3.3", input=None, output=None),
        model("groq", "no-tools", "no-tools", tools=False),
    ))


_D = Drivers()
driver = every_driver(_D)  # every test here runs on the sync Client and on AsyncClient over each HTTP driver


def client(srv, keys=None, **kw):
    keys = keys if keys is not None else {"GROQ_API_KEY": GROQ_KEY, "ANTHROPIC_API_KEY": ANT_KEY,
                                          "CEREBRAS_API_KEY": CER_KEY}
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("store", False)
    kw.update(catalog=kw.pop("catalog", None) or make_catalog(), env=env_for(srv, keys))
    return _D.client(**kw)


def statuses(r):
    return [(a["provider"], a["status"]) for a in r.attempts]


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("target,provider", [("groq/llama-3.3-70b-versatile", "groq"), ("anthropic/claude-x", "anthropic"),
                                             ("ollama/llama3.3", "ollama")])
def test_each_shape_plain_and_streamed(srv, target, provider):
    c = client(srv)
    r = c.chat(target, MSG, max_tokens=50)
    assert r.content == f"Hello from {provider}! You said: hi there"
    assert (r.provider, r.usage.input_tokens, r.usage.output_tokens, r.usage.estimated) == (provider, 120, 30, False)
    items = list(c.stream(target, MSG, max_tokens=50))
    assert "".join(items[:-1]) == r.content and items[-1].content == r.content
    assert items[-1].ttft_ms is not None and items[-1].ttft_ms <= items[-1].duration_ms
    req = srv[provider].requests[-1]
    if provider == "groq":
        assert req["path"] == "/v1/chat/completions" and req["headers"]["authorization"] == f"Bearer {GROQ_KEY}"
        assert req["json"]["stream_options"] == {"include_usage": True} and req["json"]["max_tokens"] == 50
        assert r.cost_usd == pytest.approx(COST) and r.price_source == "catalog:genai-prices"
    elif provider == "anthropic":
        assert req["path"] == "/v1/messages" and req["headers"]["x-api-key"] == ANT_KEY
        assert req["headers"]["anthropic-version"] == "2023-06-01" and "authorization" not in req["headers"]
        assert req["json"]["max_tokens"] == 50 and req["json"]["stream"] is True
    else:  # Ollama native: num_ctx set, no key, unpriced -> None with a reason, never 0
        assert req["path"] == "/api/chat" and "authorization" not in req["headers"]
        assert req["json"]["options"]["num_ctx"] >= 4096 and req["json"]["options"]["num_predict"] == 50
        assert r.cost_usd is None and "no input/output price" in r.unpriced_reason


def test_anthropic_translation_system_images_tools(srv):
    c = client(srv)
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    r = c.chat("anthropic/claude-x", msgs, tools=TOOLS, tool_choice="auto")
    body = srv["anthropic"].requests[-1]["json"]
    assert body["system"] == "Be brief." and all(m["role"] != "system" for m in body["messages"])
    assert body["messages"][0]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                              "data": "iVBORw0KGgo="}}
    assert body["tools"][0]["input_schema"]["required"] == ["city"] and body["tool_choice"] == {"type": "auto"}
    assert r.finish_reason == "tool_calls" and json.loads(r.tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    # the tool result goes back as a tool_result block
    follow = msgs + [r.message(), {"role": "tool", "tool_call_id": r.tool_calls[0]["id"], "content": "sunny"}]
    r2 = c.chat("anthropic/claude-x", follow, tools=TOOLS)
    sent = srv["anthropic"].requests[-1]["json"]["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[2]["content"][0] == {
        "type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    assert r2.content.startswith("Hello from anthropic")


@pytest.mark.parametrize("target", ["groq/llama-3.3-70b-versatile", "anthropic/claude-x", "ollama/llama3.3"])
def test_tool_calls_plain_and_streamed_are_openai_shaped(srv, target):
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    c = client(srv)
    done = ChatCompletion.model_validate(c.chat.completions.create(model=target, messages=MSG, tools=TOOLS).model_dump())
    call = done.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert done.choices[0].finish_reason == "tool_calls" and done.usage.prompt_tokens == 120
    chunks = [ChatCompletionChunk.model_validate(x.model_dump())
              for x in c.chat.completions.create(model=target, messages=MSG, tools=TOOLS, stream=True)]
    last = chunks[-1]
    assert last.choices[0].finish_reason == "tool_calls"
    assert json.loads(last.choices[0].delta.tool_calls[0].function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("target,first_id", [("groq/llama-3.3-70b-versatile", "call_1"),
                                             ("anthropic/claude-x", "toolu_1"), ("ollama/llama3.3", "call_0")])
def test_events_forward_tool_call_deltas_and_name_the_serving_deployment(srv, target, first_id):
    """``stream.events()``: batches of what each read carried, tool-call deltas included (in
    OpenAI delta form, index from 0), then the result; ``serving`` names the deployment."""
    s = client(srv).stream(target, MSG, tools=TOOLS)
    assert s.serving is None
    *batches, res = list(s.events())
    deltas = [x for b in batches for x in b]
    assert batches and all(isinstance(b, list) and b for b in batches)
    assert all(isinstance(x, dict) and x["index"] == 0 for x in deltas)
    assert deltas[0]["id"] == first_id and deltas[0]["function"]["name"] == "get_weather"
    args = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(args) == {"city": "Paris"} == json.loads(res.tool_calls[0]["function"]["arguments"])
    if target.startswith("groq"):
        assert len(deltas) > 2  # the upstream streams the arguments in pieces: so do we
    provider, _, model = target.partition("/")
    assert s.serving == {"provider": provider, "model": model,
                         "key": None if provider == "ollama" else f"{provider.upper()}_API_KEY"}
    assert s.result is res and s.attempts == res.attempts


def test_a_tool_call_cut_after_its_first_delta(srv):
    """Forwarded (events) it cannot fall back: that would repeat output; the plain stream
    gave nothing out yet, so it falls back to the next provider."""
    srv["groq"].faults("cut")
    with pytest.raises(StreamInterrupted) as ei:
        list(client(srv, retries=0).stream(CANON, MSG, tools=TOOLS).events())
    assert ei.value.attempts[-1]["provider"] == "groq" and srv["cerebras"].requests == []
    srv["groq"].faults("cut")
    items = list(client(srv, retries=0).stream(CANON, MSG, tools=TOOLS))
    assert items[-1].provider == "cerebras" and items[-1].tool_calls
    assert [a["provider"] for a in items[-1].attempts] == ["groq", "cerebras"]


def test_facade_text_and_stream_validate_with_openai_types(srv):
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    c = client(srv)
    resp = c.chat.completions.create(model="groq/llama-3.3-70b-versatile", messages=MSG)
    assert resp.choices[0].message.content == "Hello from groq! You said: hi there"
    ChatCompletion.model_validate(resp.model_dump())
    chunks = [ChatCompletionChunk.model_validate(x.model_dump())
              for x in c.chat.completions.create(model="groq/llama-3.3-70b-versatile", messages=MSG, stream=True)]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "Hello from groq! You said: hi there"
    assert chunks[-1].usage.completion_tokens == 30


def test_response_format_passes_through_and_translates(srv):
    c = client(srv)
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    c.chat("groq/llama-3.3-70b-versatile", MSG, response_format=rf)
    assert srv["groq"].requests[-1]["json"]["response_format"] == rf
    c.chat("ollama/llama3.3", MSG, response_format=rf)
    assert srv["ollama"].requests[-1]["json"]["format"] == {"type": "object"}


# --------------------------------------------------------------------------- faults
def test_429_honours_retry_after_then_succeeds(srv):
    srv["groq"].retry_after = "0.3"
    srv["groq"].faults("429")
    t0 = time.perf_counter()
    r = client(srv).chat("groq/llama-3.3-70b-versatile", MSG)
    assert time.perf_counter() - t0 >= 0.3
    assert statuses(r) == [("groq", 429), ("groq", 200)] and r.attempts[0]["kind"] == "rate_limit"
    assert r.why == "first eligible in priority order; answered on retry 1"


def test_long_retry_after_moves_to_next_candidate(srv):
    srv["groq"].retry_after = "120"
    srv["groq"].faults("429")
    r = client(srv, max_retry_wait=5).chat(CANON, MSG)
    assert statuses(r) == [("groq", 429), ("cerebras", 200)] and r.why.startswith("fallback")


def test_5xx_retried_with_backoff_then_fallback_keeps_conversation(srv):
    srv["groq"].faults("500", "503", "500")
    r = client(srv, retries=2).chat(CANON, MSG)
    assert statuses(r) == [("groq", 500), ("groq", 503), ("groq", 500), ("cerebras", 200)]
    assert srv["cerebras"].requests[-1]["json"]["messages"] == MSG
    assert r.content == "Hello from cerebras! You said: hi there"


@pytest.mark.parametrize("fault,kind", [("hang", "timeout"), ("reset", "connection")])
def test_hang_and_reset_are_retryable(srv, fault, kind):
    srv["groq"].faults(fault, fault)
    srv["groq"].hang_s = 1.0
    r = client(srv, retries=1, timeout=0.3).chat(CANON, MSG)
    assert statuses(r)[-1] == ("cerebras", 200)
    assert [a["kind"] for a in r.attempts[:-1]] == [kind, kind]


@pytest.mark.parametrize("fault", ["html", "truncated"])
def test_unusable_200_goes_to_next_candidate_without_retry(srv, fault):
    srv["groq"].faults(fault)
    r = client(srv).chat(CANON, MSG)
    assert statuses(r) == [("groq", 200), ("cerebras", 200)]
    assert r.attempts[0]["kind"] == "bad_response" and r.attempts[0]["error"] == "ProviderError"


def test_401_disables_that_key_only(srv):
    keys = {"GROQ_API_KEY": GROQ_KEY, "GROQ_API_KEY_2": GROQ_KEY2}
    c = client(srv, keys)
    srv["groq"].faults("401")
    r = c.chat("groq/llama-3.3-70b-versatile", MSG)
    assert [(a["key"], a["status"]) for a in r.attempts] == [("GROQ_API_KEY", 401), ("GROQ_API_KEY_2", 200)]
    assert srv["groq"].requests[-1]["headers"]["authorization"] == f"Bearer {GROQ_KEY2}"
    r2 = c.chat("groq/llama-3.3-70b-versatile", MSG)
    assert [a["key"] for a in r2.attempts] == ["GROQ_API_KEY_2"]
    assert {"key": "GROQ_API_KEY", "status": "excluded", "reason": "key disabled after HTTP 401"}.items() <= \
        next(x for x in r2.candidates if x["key"] == "GROQ_API_KEY").items()


def test_context_length_error_goes_only_to_a_larger_window(srv):
    cat = make_catalog(groq_ctx=8192, cer_ctx=8192)
    srv["groq"].faults("context")
    with pytest.raises(AllAttemptsFailed) as ei:
        client(srv, catalog=cat).chat([CANON, "anthropic/claude-x"][:1], MSG)
    assert len(ei.value.attempts) == 1 and srv["cerebras"].requests == []  # same window: no point trying
    srv["groq"].faults("context")
    r = client(srv, catalog=cat).chat([CANON, "anthropic/claude-x"], MSG)
    assert statuses(r) == [("groq", 400), ("anthropic", 200)]
    assert r.attempts[0]["kind"] == "context_length"
    assert next(c for c in r.candidates if c["provider"] == "cerebras")["status"] == "skipped"


def test_request_needing_more_context_than_a_window_is_filtered(srv):
    cat = make_catalog(groq_ctx=1000)
    r = client(srv, catalog=cat).chat(CANON, MSG, max_tokens=2000)
    assert r.provider == "cerebras"
    ex = next(c for c in r.candidates if c["provider"] == "groq")
    assert ex["status"] == "excluded" and "context window 1000" in ex["reason"]


# --------------------------------------------------------------------------- streams
def test_stream_falls_back_before_first_token(srv):
    srv["groq"].faults("malformed")
    srv["cerebras"].faults("503")
    items = list(client(srv, retries=0).stream([CANON, "anthropic/claude-x"], MSG))
    res = items[-1]
    assert "".join(items[:-1]) == "Hello from anthropic! You said: hi there" == res.content
    assert statuses(res) == [("groq", 200), ("cerebras", 503), ("anthropic", 200)]


@pytest.mark.parametrize("fault", ["stall", "cut"])
def test_stream_broken_after_first_token_is_a_clear_error_with_partial(srv, fault):
    srv["groq"].faults(fault)
    srv["groq"].hang_s = 1.0
    got = []
    with pytest.raises(StreamInterrupted) as ei:
        for x in client(srv, stall_timeout=0.3).stream(CANON, MSG):
            got.append(x)
    assert got == ["Hello "] and ei.value.partial == "Hello "
    assert srv["cerebras"].requests == []  # no fallback: it would duplicate output
    assert ei.value.attempts[0]["provider"] == "groq"


def test_anthropic_and_ollama_streams_interrupted(srv):
    for target, p in (("anthropic/claude-x", "anthropic"), ("ollama/llama3.3", "ollama")):
        srv[p].faults("cut")
        with pytest.raises(StreamInterrupted) as ei:
            list(client(srv).stream(target, MSG))
        assert ei.value.partial == "Hello "


def test_stream_without_usage_is_estimated_and_marked(srv):
    srv["groq"].faults("nousage")
    res = list(client(srv).stream("groq/llama-3.3-70b-versatile", MSG))[-1]
    assert res.usage.estimated and res.usage.output_tokens == -(-len(res.content) // 4)
    assert res.cost_usd is not None


# --------------------------------------------------------------------------- health
def test_circuit_breaker_opens_half_opens_and_closes(srv):
    c = client(srv, retries=0, breaker={"failure_threshold": 2, "window_s": 60, "cooldown_s": 0.4})
    srv["groq"].faults("500", "500")
    c.chat(CANON, MSG)
    c.chat(CANON, MSG)  # second failure opens the circuit
    r = c.chat(CANON, MSG)
    assert statuses(r) == [("cerebras", 200)]
    assert next(x for x in r.candidates if x["provider"] == "groq")["reason"] == "circuit open"
    time.sleep(0.45)  # half-open: one trial
    r = c.chat(CANON, MSG)
    assert statuses(r) == [("groq", 200)]


def test_breaker_counts_retries(srv):
    c = client(srv, retries=2, breaker={"failure_threshold": 3, "cooldown_s": 30})
    srv["groq"].faults("503", "503", "503")
    r = c.chat(CANON, MSG)
    assert statuses(r)[-1] == ("cerebras", 200)
    r = c.chat(CANON, MSG)
    assert statuses(r) == [("cerebras", 200)]


def test_client_side_rpm_limit_spreads_to_next_candidate(srv):
    c = client(srv, providers={"groq": {"rpm": 1}})
    assert c.chat(CANON, MSG).provider == "groq"
    r = c.chat(CANON, MSG)
    assert r.provider == "cerebras"
    assert "rate limit" in next(x for x in r.candidates if x["provider"] == "groq")["reason"]


# --------------------------------------------------------------------------- routing
def test_filters_capabilities_prices_allow_deny(srv):
    c = client(srv)
    with pytest.raises(NoCandidates) as ei:
        c.chat("groq/no-tools", MSG, tools=TOOLS)
    assert "needs tools" in str(ei.value)
    img = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    r = c.chat(["ollama/llama3.3", "anthropic/claude-x"], img)
    assert r.provider == "anthropic"
    assert "takes no image input" in r.candidates[0]["reason"]  # ollama lists text input only
    with pytest.raises(NoCandidates, match="lacks it"):
        c.chat(["groq/no-tools"], img, tools=TOOLS)
    r = client(srv, deny=("groq",)).chat(CANON, MSG)
    assert r.provider == "cerebras"
    r = client(srv, catalog=make_catalog(groq_in=5.0), max_input_price=2).chat(CANON, MSG)
    assert r.provider == "cerebras" and "above cap" in r.candidates[0]["reason"]


def test_no_key_is_a_reason(srv):
    with pytest.raises(NoCandidates, match="no API key"):
        client(srv, keys={}).chat("groq/llama-3.3-70b-versatile", MSG)


def test_strategies(srv):
    cheap = make_catalog(groq_in=3.0)
    r = client(srv, catalog=cheap, strategy="cheapest").chat(CANON, MSG)
    assert r.provider == "cerebras" and r.why.startswith("lowest estimated cost")
    c = client(srv, strategy="round-robin")
    assert [c.chat(CANON, MSG).provider for _ in range(4)] == ["groq", "cerebras", "groq", "cerebras"]
    c = client(srv, strategy="fastest")
    srv["groq"].latency = 0.8  # far above any loopback call, even on a loaded 2-core machine
    c.chat("groq/llama-3.3-70b-versatile", MSG)
    c.chat("cerebras/llama-3.3-70b", MSG)
    srv["groq"].latency = 0.0
    r = c.chat(CANON, MSG)
    assert r.provider == "cerebras" and r.why.startswith("fastest measured")
    c = client(srv, strategy="weighted", providers={"groq": {"weight": 0.0001}, "cerebras": {"weight": 1000}})
    assert sum(c.chat(CANON, MSG).provider == "cerebras" for _ in range(10)) >= 9
    r = client(srv, catalog=cheap, strategy="balanced").chat(CANON, MSG)
    assert r.provider == "cerebras" and "balanced score" in r.why
    r = client(srv, strategy="least-busy").chat(CANON, MSG)
    assert r.why.startswith("fewest calls in flight")
    with pytest.raises(ValueError):
        client(srv).chat(CANON, MSG, strategy="nope")


def test_alias_budget_and_ledger_alias_column(srv, tmp_path):
    from knollm.client import Budget, SQLiteStore

    class Alias:
        models = ["groq/llama-3.3-70b-versatile"]
        strategy = None
        requires = {}

    store = SQLiteStore(tmp_path / "k.db")
    c = client(srv, resolver=lambda n: Alias() if n == "fast" else None, store=store,
               budgets=[Budget(COST * 1.2, "day", alias="fast")])  # room for one call
    assert c.chat("fast", MSG, max_tokens=30).alias == "fast"
    from knollm import BudgetExceeded

    with pytest.raises(BudgetExceeded, match="alias=fast"):
        c.chat("fast", MSG, max_tokens=30)
    assert c.chat("groq/llama-3.3-70b-versatile", MSG, max_tokens=30).alias is None  # not under the alias budget
    assert [r["alias"] for r in store.rows()] == ["fast", None]


def test_alias_resolver_hook(srv):
    class Alias:
        models = ["anthropic/claude-x", "groq/llama-3.3-70b-versatile"]
        strategy = "priority"
        requires = {"tools": True}

    c = client(srv, resolver=lambda name: Alias() if name == "smart" else None)
    r = c.chat("smart", MSG)
    assert (r.provider, r.alias) == ("anthropic", "smart")


def test_keys_never_in_results_or_errors(srv, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    keys = {"GROQ_API_KEY": GROQ_KEY, "GROQ_API_KEY_2": GROQ_KEY2, "CEREBRAS_API_KEY": CER_KEY}
    srv["groq"].default = "echo401"
    srv["cerebras"].default = "500"
    c = client(srv, keys, retries=0)
    with pytest.raises(AllAttemptsFailed) as ei:
        c.chat(CANON, MSG)
    assert "invalid key Bearer ***" in ei.value.attempts[0]["message"]
    with pytest.raises(AllAttemptsFailed) as ei2:
        list(c.stream(["groq/llama-3.3-70b-versatile", CANON], MSG))
    blob = str(ei.value) + repr(ei.value.attempts) + str(ei.value.last) + str(ei2.value) + repr(c.router._deps)
    blob += caplog.text
    srv["groq"].default = srv["cerebras"].default = "ok"
    r = client(srv, keys).chat(CANON, MSG)
    blob += json.dumps(r.to_dict()) + json.dumps(r.model_dump()) + repr(r)
    for k in keys.values():
        assert k not in blob
    assert "GROQ_API_KEY_2" in blob  # labels are fine


# --------------------------------------------------------------------------- async twin
def test_async_client_chat_stream_fallback(srv):
    async def main():
        async with AsyncClient(catalog=make_catalog(), env=env_for(srv, {"GROQ_API_KEY": GROQ_KEY,
                                                                        "CEREBRAS_API_KEY": CER_KEY}),
                               store=False, backoff_base=0.01, retries=0) as c:
            srv["groq"].faults("503")
            r = await c.chat(CANON, MSG)
            items = [x async for x in c.stream(CANON, MSG)]
            resp = await c.chat.completions.create(model=CANON, messages=MSG)
            many = await asyncio.gather(*(c.chat(CANON, MSG) for _ in range(20)))
            return r, items, resp, many

    r, items, resp, many = asyncio.run(main())
    assert statuses(r) == [("groq", 503), ("cerebras", 200)]
    assert "".join(items[:-1]) == items[-1].content == "Hello from groq! You said: hi there"
    assert resp.choices[0].message.content.startswith("Hello from")
    assert all(m.content for m in many)


def test_alias_from_a_real_lockfile(srv, tmp_path, monkeypatch):
    """No resolver given: the client resolves the alias through knollm.lock (KNOLLM_LOCK),
    walking the binding's fallback chain in the lockfile's order."""
    lock = tmp_path / "knollm.lock"
    lock.write_text(
        'version = 1\ndefault_profile = "default"\n\n'
        '[[profiles.default.bindings]]\nalias = "fast"  # a comment the client never sees\n'
        'models = ["cerebras/llama-3.3-70b", "groq/llama-3.3-70b-versatile"]\nstrategy = "priority"\n'
    )
    monkeypatch.setenv("KNOLLM_LOCK", str(lock))
    srv["cerebras"].default = "500"
    try:
        r = client(srv, retries=0).chat("fast", MSG)
    finally:
        srv["cerebras"].default = "ok"
    assert (r.provider, r.alias) == ("groq", "fast")
    assert statuses(r)[0][0] == "cerebras" and statuses(r)[-1] == ("groq", 200)


def test_measured_health_seeds_fastest_and_the_breaker(srv):
    """`health=` (e.g. knollm.probe.health.figures): measured TTFT ranks deployments before
    their first call, and one measured as mostly failing starts half-open (one trial)."""
    from types import SimpleNamespace as F

    measured = {"groq": F(n=40, ttft_p50_ms=900.0, tokens_per_s_p50=50.0, error_rate=0.0),
                "cerebras": F(n=40, ttft_p50_ms=40.0, tokens_per_s_p50=900.0, error_rate=0.0)}
    c = client(srv, strategy="fastest", health=lambda p, m: measured.get(p))
    r = c.chat(CANON, MSG)
    assert r.provider == "cerebras" and r.why.startswith("fastest measured")
    measured["cerebras"] = F(n=40, ttft_p50_ms=40.0, tokens_per_s_p50=900.0, error_rate=0.9)
    c2 = client(srv, strategy="fastest", health=lambda p, m: measured.get(p))
    offers = {o.provider: o for o in c2.router.offers(CANON)[0]}
    dep = c2.router.deployments(offers["cerebras"])[0][0]
    assert dep.breaker.state == "half-open" and dep.stats.err == 0.9
    assert c2.router.deployments(offers["groq"])[0][0].breaker.state == "closed"
    r2 = c2.chat(CANON, MSG)  # cerebras' trial call is allowed; its success closes the breaker
    assert r2.provider == "cerebras" and dep.breaker.state == "closed"
    broken = client(srv, strategy="fastest", health=lambda p, m: 1 / 0)  # a broken source never breaks calls
    assert broken.chat(CANON, MSG).provider in ("groq", "cerebras")


# --------------------------------------------------------------------------- caller tag
def test_tag_reaches_the_ledger_and_the_result_never_the_provider(srv, tmp_path):
    """``tag=`` on chat, stream and chat.completions.create (plain and streamed): a ledger
    column and ``ChatResult.tag``; the request body sent upstream never holds it."""
    from knollm.client import SQLiteStore

    store = SQLiteStore(tmp_path / "k.db")
    c = client(srv, store=store)
    g = "groq/llama-3.3-70b-versatile"
    r = c.chat(g, MSG, tag="team-chat")
    assert r.tag == "team-chat" and r.to_dict()["tag"] == "team-chat"
    assert list(c.stream(g, MSG, tag="team-stream"))[-1].tag == "team-stream"
    o = c.chat.completions.create(model=g, messages=MSG, tag="team-create")
    assert o.choices[0].message.content and o.model_dump()["knollm"]["tag"] == "team-create"
    chunks = list(c.chat.completions.create(model=g, messages=MSG, stream=True, tag="team-create-stream"))
    assert chunks[-1].usage.prompt_tokens == 120
    assert c.chat(g, MSG).tag is None
    rows = store.rows()
    assert [(x["tag"], x["stream"]) for x in rows] == [
        ("team-chat", 0), ("team-stream", 1), ("team-create", 0), ("team-create-stream", 1), (None, 0)]
    assert [x["request_id"] for x in store.rows(tag="team-chat")] == [r.request_id]
    sent = srv["groq"].requests
    assert len(sent) == 5
    for req in sent:
        assert "tag" not in req["json"] and "team-" not in json.dumps(req["json"])
        assert "team-" not in json.dumps(req["headers"]) and "team-" not in req["query"]


@pytest.mark.parametrize("bad,why", [("x" * 201, "1 to 200 characters"), ("", "1 to 200 characters"),
                                     ("a\nb", "printable"), ("tab\there", "printable"), ("nul\x00", "printable"),
                                     (42, "must be a string")])
def test_bad_tag_is_refused_before_any_request(srv, tmp_path, bad, why):
    from knollm.client import SQLiteStore

    store = SQLiteStore(tmp_path / "k.db")
    c = client(srv, store=store)
    g = "groq/llama-3.3-70b-versatile"
    with pytest.raises(ValueError, match=why):
        c.chat(g, MSG, tag=bad)
    with pytest.raises(ValueError, match=why):
        list(c.stream(g, MSG, tag=bad))
    with pytest.raises(ValueError, match=why):
        c.chat.completions.create(model=g, messages=MSG, tag=bad)
    assert srv["groq"].requests == [] and store.rows() == []
    assert c.chat(g, MSG, tag="x" * 200).tag == "x" * 200  # the longest tag, and unicode, are fine
    assert c.chat(g, MSG, tag="équipe é 日本").tag == "équipe é 日本"


def test_budget_per_tag(srv, tmp_path):
    from knollm import BudgetExceeded
    from knollm.client import Budget, SQLiteStore

    store = SQLiteStore(tmp_path / "k.db")
    budget = Budget(COST * 1.2, "day", tag="team-a")  # room for one call of team-a
    c = client(srv, store=store, budgets=[budget])
    g = "groq/llama-3.3-70b-versatile"
    assert c.chat(g, MSG, max_tokens=30, tag="team-a").tag == "team-a"
    n = len(srv["groq"].requests)
    with pytest.raises(BudgetExceeded, match=r"tag=team-a"):
        c.chat(g, MSG, max_tokens=30, tag="team-a")
    with pytest.raises(BudgetExceeded, match=r"tag=team-a"):
        list(c.stream(g, MSG, max_tokens=30, tag="team-a"))
    assert len(srv["groq"].requests) == n  # refused before sending
    assert c.chat(g, MSG, max_tokens=30, tag="team-b").tag == "team-b"  # other callers are not under it
    assert c.chat(g, MSG, max_tokens=30).tag is None
    assert [x["tag"] for x in store.rows()] == ["team-a", "team-b", None]
    assert store.spent(budget) == pytest.approx(COST)


def test_a_key_with_a_line_break_is_refused_before_sending(srv):
    """A key read with its ``\\r`` (a Windows .env) would split the request's headers: every
    driver's client disables that key (the only one here: NoCandidates), names the key's
    variable, never its value, and sends nothing."""
    c = client(srv, keys={"GROQ_API_KEY": GROQ_KEY + "\r"})
    with pytest.raises(NoCandidates) as ei:
        c.chat("groq/llama-3.3-70b-versatile", MSG)
    assert "GROQ_API_KEY" in str(ei.value) and "line break" in str(ei.value)
    assert GROQ_KEY not in str(ei.value) and srv["groq"].requests == []


@pytest.mark.parametrize("where", ["os.environ", "mapping"])
def test_a_changed_base_url_variable_reaches_the_next_plan(monkeypatch, where):
    """A router keeps each offer's deployments, and reads KNOLLM_<PROVIDER>_BASE_URL again at
    every plan: a new value (set in os.environ, or in the mapping the router was given) moves
    the next call to it, the old deployment's state left behind; an unchanged one keeps it."""
    import os

    from knollm.client.routing import Offer, Router, Settings

    env = os.environ if where == "os.environ" else {}
    if where == "os.environ":
        monkeypatch.setenv("GROQ_API_KEY", "gsk-test-0000")
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", "http://127.0.0.1:9/v1")
    else:
        env.update({"GROQ_API_KEY": "gsk-test-0000", "KNOLLM_GROQ_BASE_URL": "http://127.0.0.1:9/v1"})
    r = Router(None, Settings(), env=None if where == "os.environ" else env)
    offer = Offer("groq/m", "groq", "m")
    first = r.deployments(offer)[0][0]
    assert first.base_url == "http://127.0.0.1:9/v1"
    assert r.deployments(offer)[0][0] is first  # unchanged: the same deployment (its breaker, its stats)
    if where == "os.environ":
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", "http://127.0.0.1:10/v1")
    else:
        env["KNOLLM_GROQ_BASE_URL"] = "http://127.0.0.1:10/v1"
    moved = r.deployments(offer)[0][0]
    assert moved.base_url == "http://127.0.0.1:10/v1" and moved is not first
    if where == "os.environ":
        monkeypatch.delenv("KNOLLM_GROQ_BASE_URL")
    else:
        del env["KNOLLM_GROQ_BASE_URL"]
    assert r.deployments(offer)[0][0].base_url != "http://127.0.0.1:10/v1"  # back to the registry's
