"""Wire formats: Gemini native against the loopback server, stream parsing edge cases,
error classification, num_ctx, and that importing the client stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from knollm import Client, ProviderError
from knollm.client.transports import SHAPES, classify_error, num_ctx_for
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, model
from tests.support.provider_servers import ProviderServer

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
KEY = "AIza_gemini_SECRET_7777"


@pytest.fixture(scope="module")
def gemini():
    with ProviderServer("gemini") as s:
        yield s


def gclient(s):
    return Client(catalog=Catalog(catalog(model("gemini", "gemini-2.5-flash", "gemini-2.5-flash"))), store=False,
                  env={"GEMINI_API_KEY": KEY},
                  providers={"gemini": {"shape": "gemini", "base_url": s.root + "/v1beta"}})


def test_gemini_native_plain_stream_and_tools(gemini):
    c = gclient(gemini)
    r = c.chat("gemini/gemini-2.5-flash", MSG, max_tokens=64, temperature=0.2)
    req = gemini.requests[-1]
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-goog-api-key"] == KEY and "authorization" not in req["headers"]
    body = req["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi there"}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 64, "temperature": 0.2}
    assert (r.content, r.usage.input_tokens, r.usage.output_tokens) == ("Hello from gemini! You said: hi there", 120, 30)
    items = list(c.stream("gemini/gemini-2.5-flash", MSG))
    assert gemini.requests[-1]["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert "".join(items[:-1]) == r.content and items[-1].usage.output_tokens == 30
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    t = c.chat("gemini/gemini-2.5-flash", MSG, tools=tools)
    assert gemini.requests[-1]["json"]["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
    assert t.finish_reason == "tool_calls" and json.loads(t.tool_calls[0]["function"]["arguments"]) == {"q": "example"}


def test_sse_parser_comments_multiline_and_crlf():
    st = SHAPES["openai"].stream_parser("p")
    out = []
    for line in [": keep-alive", "", "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}],",
                 "data:  \"model\": \"m\"}", "", "event: x\r", "data: {\"choices\": [{\"delta\": {\"content\": \"b\"},"
                 " \"finish_reason\": \"stop\"}]}", "\r", "data: [DONE]", ""]:
        out += st.feed(line.rstrip("\r") if line != "\r" else line)
    assert out == ["a", "b"] and st.done and st.finish_reason == "stop" and st.model == "m"


def test_malformed_stream_is_a_provider_error():
    st = SHAPES["openai"].stream_parser("p")
    st.feed("data: {not json")
    with pytest.raises(ProviderError) as ei:
        st.feed("")
    assert ei.value.kind == "bad_response"


@pytest.mark.parametrize("status,body,kind,retry", [
    (429, '{"error": {"message": "slow down"}}', "rate_limit", True),
    (503, "<html>busy</html>", "server", True),
    (529, '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', "server", True),
    (401, '{"error": {"message": "bad key"}}', "auth", False),
    (400, '{"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"}}', "context_length", False),
    (413, '{"error": {"code": "context_length_exceeded", "message": "too long"}}', "context_length", False),
    (400, '{"error": {"message": "temperature must be <= 2"}}', "bad_request", False),
    (404, '{"error": {"message": "model not found"}}', "not_found", False),
])
def test_classify_error(status, body, kind, retry):
    e = classify_error("p", status, body, 1.5)
    assert (e.kind, e.retryable, e.status) == (kind, retry, status)
    assert e.retry_after == 1.5


def test_num_ctx():
    assert num_ctx_for(100, 100, None) == 4096
    assert num_ctx_for(10_000, 2000, None) == 12 * 1024  # 12064 rounded up
    assert num_ctx_for(10_000, 2000, 8192) == 8192


def test_import_knollm_client_does_not_import_httpx2():
    code = ("import sys, knollm; from knollm import Client, AsyncClient; Client(catalog=False, store=False); "
            "AsyncClient(catalog=False, store=False); "
            "print('httpx2' in sys.modules, 'pydantic' in sys.modules, 'openai' in sys.modules, "
            "'aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]


def test_line_splitter_matches_str_splitlines_at_any_chunking():
    """The aiohttp driver's SSE line splitting: \n, \r\n and \r, across any chunk boundary
    (a \r\n cut between two reads is one line end), multi-byte UTF-8 cut in half."""
    import random

    from knollm.client.http import LineSplitter

    text = "data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: é—ü\r\n: keep-alive\n\ndata: [DONE]\n\nlast"
    raw = text.encode()
    want = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rng = random.Random(7)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(0, 12)))
        sp, got = LineSplitter(), []
        for a, b in zip([0, *cuts], [*cuts, len(raw)]):
            got += sp.feed(raw[a:b])
        assert got + sp.close() == want


def test_async_driver_choice(monkeypatch):
    from knollm.client.drivers import async_driver
    from knollm.client.h1 import AsyncH1
    from knollm.client.http import AsyncAiohttp, AsyncHTTPX2

    assert isinstance(async_driver("auto", 10), AsyncH1)
    assert isinstance(async_driver("aiohttp", 10), AsyncAiohttp)
    assert isinstance(async_driver("httpx2", 10), AsyncHTTPX2)
    with pytest.raises(ValueError, match="'auto', 'h1', 'aiohttp' or 'httpx2'"):
        async_driver("curl", 10)
    monkeypatch.setitem(sys.modules, "httptools", None)  # as if not installed
    assert isinstance(async_driver("auto", 10), AsyncAiohttp)
    with pytest.raises(ValueError, match="needs httptools"):
        async_driver("h1", 10)
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    assert isinstance(async_driver("auto", 10), AsyncHTTPX2)
    with pytest.raises(ValueError, match="needs aiohttp"):
        async_driver("aiohttp", 10)


def test_query_string_key_is_masked_in_http_logs(gemini, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    c = Client(catalog=Catalog(catalog(model("gemini", "gemini-2.5-flash", "gemini-2.5-flash"))), store=False,
               env={"GEMINI_API_KEY": KEY},
               providers={"gemini": {"shape": "gemini", "base_url": gemini.root + "/v1beta", "auth": "query"}})
    r = c.chat("gemini/gemini-2.5-flash", MSG)
    assert r.content and f"key={KEY}" in gemini.requests[-1]["query"]
    assert "x-goog-api-key" not in gemini.requests[-1]["headers"]
    assert "HTTP Request" in caplog.text and KEY not in caplog.text


def test_rate_limiter_rpm_and_tpm_windows():
    from knollm.client.routing import RateLimiter

    now = [0.0]
    rl = RateLimiter(rpm=2, tpm=1000, clock=lambda: now[0])
    assert rl.wait_time(400) == 0
    ev = rl.acquire(400)
    now[0] = 10
    rl.acquire(100)
    assert rl.wait_time(100) == pytest.approx(50)      # third request within the minute
    RateLimiter.correct(ev, 900)                        # the first call really used 900 tokens
    now[0] = 30
    rl2 = RateLimiter(tpm=1000, clock=lambda: now[0])
    rl2.acquire(900)
    assert rl2.wait_time(200) == pytest.approx(60)      # 900 + 200 > 1000 until the 900 expire
    assert rl2.wait_time(100) == 0
    now[0] = 91
    assert rl.wait_time(100) == 0 and rl2.wait_time(1000) == 0


def test_circuit_breaker_window_and_half_open_trial():
    from knollm.client.routing import CircuitBreaker

    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, window_s=10, cooldown_s=5, clock=lambda: now[0])
    b.record(False)
    now[0] = 11  # the first failure left the window
    b.record(False)
    b.record(False)
    assert b.state == "closed" and b.allow()
    b.record(False)
    assert b.state == "open" and not b.allow()
    now[0] = 16.5
    assert b.state == "half-open" and b.allow() and not b.allow()  # one trial only
    b.record(False)
    assert b.state == "open"
    now[0] = 22
    assert b.allow()
    b.record(True)
    assert b.state == "closed" and b.allow() and b.allow()


def test_call_cost_cache_write_variable_and_free():
    from knollm.client.accounting import call_cost, worst_case_cost
    from knollm.client.routing import Offer

    o = Offer("anthropic/c", "anthropic", "c", prices={"input": 3.0, "output": 15.0, "cache_read": 0.3,
                                                       "cache_write": 3.75}, price_source="catalog:genai-prices")
    u = {"input_tokens": 1000, "output_tokens": 100, "cached_tokens": 200, "cache_write_tokens": 300}
    cost, src, why = call_cost(o, u)
    assert cost == pytest.approx((500 * 3.0 + 200 * 0.3 + 300 * 3.75 + 100 * 15.0) / 1e6) and why is None
    assert worst_case_cost(o, 1000, 100) == pytest.approx((1000 * 3.75 + 100 * 15.0) / 1e6)
    var = Offer("x/y", "x", "y", prices={"input": 1.0, "output": 1.0}, variable_pricing=True)
    assert call_cost(var, u)[0] is None and "varies" in call_cost(var, u)[2]
    assert worst_case_cost(var, 10, 10) is None
    free = Offer("x/f", "x", "f", free=True)
    assert call_cost(free, u)[0] == 0.0
    half = Offer("x/h", "x", "h", prices={"input": 1.0, "output": None})
    assert call_cost(half, u) == (None, None, "x/h: no output price in the catalog")


@pytest.mark.parametrize("driver", ["sync", "h1", "aiohttp", "httpx2"])
def test_https_is_verified_with_one_trust_for_every_driver(tmp_path, monkeypatch, driver):
    """A provider's certificate is checked by every driver against the same trust
    (``SSL_CERT_FILE`` here): untrusted, the call fails before any request reaches the
    server (a connection error, never a silent success); trusted, it is answered."""
    from knollm import AllAttemptsFailed
    from tests.support.async_facade import AsyncFacade
    from tests.support.tls import self_signed

    cert, key = self_signed(tmp_path)
    srv = ProviderServer("groq").start(tls=(cert, key))
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
    env = {"KNOLLM_GROQ_BASE_URL": srv.base_url, "GROQ_API_KEY": "gsk-tls"}

    def call():
        c = Client(catalog=cat, env=env, store=False, retries=0) if driver == "sync" else \
            AsyncFacade(http=driver, catalog=cat, env=env, store=False, retries=0)
        try:
            return c.chat("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi"}])
        finally:
            c.close()

    try:
        assert srv.base_url.startswith("https://127.0.0.1:")
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(AllAttemptsFailed) as ei:  # the system's CAs: our certificate is not among them
            call()
        assert ei.value.attempts[0]["kind"] == "connection" and srv.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        r = call()
        assert r.content == "Hello from groq! You said: hi" and srv.requests[-1]["path"] == "/v1/chat/completions"
    finally:
        srv.stop()


def test_feed_batch_gives_what_feeding_line_by_line_gives():
    """``feed_batch`` (one call per network read) and ``feed`` (one per line) agree on an SSE
    stream with comments, ``event:``/``id:`` fields, a multi-line ``data`` event, tool-call
    deltas and the end marker; lines after ``[DONE]`` are not read."""
    from knollm.client.transports import get_shape

    ev = [
        ": keep-alive",
        'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"He"}}]}', "",
        "event: message", "id: 7",
        'data: {"id":"c1","model":"m","choices":[{"index":0,',
        'data: "delta":{"content":"llo"}}]}', "",
        'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
        '"function":{"name":"f","arguments":"{}"}}]}}]}', "",
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,'
        '"completion_tokens":2}}', "",
        "data: [DONE]", "",
        'data: {"choices":[{"index":0,"delta":{"content":"after the end"}}]}', "",
    ]
    one = get_shape("openai").stream_parser("p")
    by_line: list = []
    for line in ev:
        by_line += one.feed(line)
        if one.tool_deltas:
            by_line += one.take_tool_deltas()
        if one.done:
            break
    batch = get_shape("openai").stream_parser("p")
    got = batch.feed_batch(ev[:5], tools=True) + batch.feed_batch(ev[5:], tools=True)  # an event split across reads
    assert got == by_line == ["He", "llo", {"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "f", "arguments": "{}"}}]
    for st in (one, batch):
        r = st.result()
        assert (r.content, r.finish_reason, r.usage["output_tokens"], st.done) == ("Hello", "stop", 2, True)
    without = get_shape("openai").stream_parser("p")
    assert without.feed_batch(ev, tools=False) == ["He", "llo"] and not without.tool_deltas


def _fields(p) -> dict:
    return {k: getattr(p, k) for k in type(p).__slots__}


def test_feed_batch_of_whole_one_line_events_gives_what_feeding_line_by_line_gives():
    """The usual read of an OpenAI-compatible stream (whole events of one ``data:`` line)
    takes ``feed_batch``'s shortcut; split at every line, in pairs, or at once, with text,
    a refusal, tool-call deltas, usage, the end marker and an event after it, it agrees with
    ``feed`` line by line: the same deltas in order, the same answer, nothing after ``[DONE]``."""
    from knollm.client.transports import get_shape

    ev = []
    for payload in ('{"id":"c9","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}',
                    '{"choices":[{"index":0,"delta":{"content":" there"}}]}',
                    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function",'
                    '"function":{"name":"get","arguments":"{\\"a\\""}}]}}]}',
                    '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}',
                    '{"choices":[{"index":0,"delta":{"refusal":"no"}}]}',
                    '{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,'
                    '"completion_tokens":4}}',
                    "[DONE]", '{"choices":[{"index":0,"delta":{"content":"after the end"}}]}'):
        ev += ["data: " + payload, ""]

    def by_line(tools: bool) -> tuple[list, object]:
        st, out = get_shape("openai").stream_parser("p"), []
        for line in ev:
            out += st.feed(line)
            if st.tool_deltas:
                deltas = st.take_tool_deltas()
                out += deltas if tools else []
            if st.done:
                break
        return out, st.result()

    for tools in (True, False):
        want, answer = by_line(tools)
        assert want[:2] == ["Hi", " there"] and len(want) == (4 if tools else 2)
        splits = [[ev], [ev[i:i + 2] for i in range(0, len(ev), 2)], [[x] for x in ev]]
        splits += [[ev[:cut], ev[cut:]] for cut in range(1, len(ev))]
        for reads in splits:
            st, got = get_shape("openai").stream_parser("p"), []
            for lines in reads:
                got += st.feed_batch(lines, tools)
                if st.done:
                    break
            assert got == want, reads
            assert st.done and _fields(st.result()) == _fields(answer)
            assert (answer.content, answer.finish_reason, answer.usage["output_tokens"]) == ("Hi there", "tool_calls", 4)
            assert answer.tool_calls[0]["function"] == {"name": "get", "arguments": '{"a":1}'}


def test_cut_answer_keeps_usage_given_before_the_cut_and_the_text_so_far():
    from knollm.client.accounting import estimate_tokens
    from knollm.client.transports import cut_answer

    ollama = '{"model":"llama3.3","prompt_eval_count":42,"eval_count":7,"message":{"role":"assistant","content":"Hel'
    p = cut_answer(ollama)
    assert p.usage["input_tokens"] == 42 and p.usage["output_tokens"] == 7 and p.content == '"Hel'
    openai_cut = '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hello wor'
    p = cut_answer(openai_cut)
    assert p.usage is None and p.content == '"Hello wor'  # usage comes last: none before the cut
    p = cut_answer('{"id":"x","obj')
    assert p.usage is None and estimate_tokens(p.content) >= 1  # no text field yet: the whole of what came


def test_embeddings_answers_each_shape_and_what_is_refused():
    """The three embeddings wire formats parsed: floats or base64 float32 (OpenAI-compatible
    APIs may send base64 unasked), the ``index`` order, the usage or its absence; an answer
    with a non-number, a wrong count or no data is a ``bad_response`` (the next candidate)."""
    import array
    import base64

    oai, gem, oll = SHAPES["openai"], SHAPES["gemini"], SHAPES["ollama"]
    b64 = base64.b64encode(array.array("f", [0.5, -0.25]).tobytes()).decode()
    got = oai.parse_embeddings({"data": [{"index": 1, "embedding": b64}, {"index": 0, "embedding": [1, 2.5]}],
                                "usage": {"prompt_tokens": 7, "total_tokens": 7}, "model": "m"}, "p", 2)
    # floats as sent; base64 as its float32 bytes (floats only when read: EmbeddingResult.vectors)
    assert got.vectors == [[1, 2.5], array.array("f", [0.5, -0.25]).tobytes()]
    assert got.usage["input_tokens"] == 7 and got.model == "m"
    assert oai.parse_embeddings({"data": [{"embedding": [1.0]}]}, "p", 1).usage is None  # no usage: estimated later
    assert oai.parse_embeddings({"data": [{"embedding": [1.0]}], "usage": [7]}, "p", 1).usage is None  # not a crash
    assert gem.parse_embeddings({"embeddings": [{"values": [1.0]}], "usageMetadata": "7"}, "p", 1).usage is None
    assert oai.parse_embeddings({"data": [{"embedding": [-1.0e38, 1.0e38]}]}, "p", 1).vectors  # large, finite
    assert gem.parse_embeddings({"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}, "p", 2).vectors == [[0.1], [0.2]]
    assert gem.parse_embeddings({"embeddings": [{"values": [0.1]}], "usageMetadata": {"promptTokenCount": 3}},
                                "p", 1).usage["input_tokens"] == 3
    o = oll.parse_embeddings({"embeddings": [[0.3, 0.4]], "prompt_eval_count": 5}, "p", 1)
    assert o.vectors == [[0.3, 0.4]] and o.usage["input_tokens"] == 5
    assert oll.parse_embeddings({"embeddings": [[0.3]], "prompt_eval_count": 0}, "p", 1).usage is None
    for shape, obj, n, why in (
        (oai, {"data": [{"embedding": ["x"]}]}, 1, "not a list of numbers"),
        (oai, {"data": [{"embedding": []}]}, 1, "not a list of numbers"),
        (oai, {"data": [{"embedding": "not base64!"}]}, 1, "neither numbers nor base64"),
        (oai, {"data": [{"embedding": "AAAA"}]}, 1, "neither numbers nor base64"),  # 3 bytes: not float32s
        (oai, {"data": [{"embedding": ""}]}, 1, "neither numbers nor base64"),
        (oai, {"data": [{"embedding": base64.b64encode(array.array("f", [0.1, float("nan")]).tobytes()).decode()}]},
         1, "NaN, infinite"),
        (oai, {"data": [{"embedding": base64.b64encode(array.array("f", [-float("inf")]).tobytes()).decode()}]},
         1, "NaN, infinite"),
        (oai, {"data": [{"embedding": [0.1, 1e308, 1e308]}]}, 1, "NaN, infinite"),
        (oai, {"data": [{"embedding": [0.5, 1e39]}]}, 1, "NaN, infinite"),  # beyond float32: no base64 form
        (oai, {"data": [{"embedding": [0.1, 0.2]}, {"embedding": [0.1]}]}, 2, "different sizes"),
        (oai, {"data": [{"embedding": [1.0]}]}, 2, "1 embeddings for 2 inputs"),
        (oai, {"object": "list"}, 1, "no data"),
        (gem, {"embeddings": [{"values": None}]}, 1, "not a list of numbers"),
        (oll, {"embeddings": None}, 1, "no embeddings"),
    ):
        with pytest.raises(ProviderError, match=why) as e:
            shape.parse_embeddings(obj, "p", n)
        assert e.value.kind == "bad_response"
    assert SHAPES["anthropic"].embed_url("https://api.anthropic.com/v1", "m") is None
    assert oll.embed_url("http://localhost:11434/v1", "m") == "http://localhost:11434/api/embed"


def test_chat_result_keeps_its_published_positional_order():
    from knollm import ChatResult

    r = ChatResult("hi", "openai", "gpt-4o", None, "openai/gpt-4o", "stop")
    assert (r.content, r.provider, r.model, r.key, r.target, r.finish_reason) == \
        ("hi", "openai", "gpt-4o", None, "openai/gpt-4o", "stop")


@pytest.mark.parametrize("arguments, sent", [
    ('{"city": "Paris"}', {"city": "Paris"}),
    ("", {}),
    (None, {}),
    ({"already": "an object"}, {"already": "an object"}),
    ('{"city": "Par', {"_raw_arguments": '{"city": "Par'}),  # cut short by the model
    ("[1, 2]", {"_raw_arguments": "[1, 2]"}),  # JSON, but not an object
])
def test_tool_call_arguments_go_back_to_object_apis_whole(arguments, sent):
    """Anthropic, Gemini and Ollama take a tool call's arguments back as an object; what is
    not a JSON object is kept whole, never dropped or refused (the same helper in all three)."""
    from knollm.client.transports import get_shape, tool_args

    assert tool_args(arguments) == sent
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    body = get_shape("anthropic").body("m", msgs, {"max_tokens": 5}, False, {})
    assert [b["input"] for m in body["messages"] for b in m["content"] if b.get("type") == "tool_use"] == [sent]
