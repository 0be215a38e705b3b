"""Usage and cost as the providers bill them, end to end: a loopback server sends answers
shaped as the providers document them, a real ``Client`` / ``AsyncClient`` parses, prices
and records them, and the cost is checked against genai-prices' ``calc_price`` on the
very same usage object where genai-prices knows the model.

Each test here failed before the fix it names:

1. Anthropic stream: ``message_delta.usage`` counts are cumulative and may carry the input
   and cache counts too (server tools), not only ``output_tokens``.
2. Anthropic-compatible streams whose ``message_start`` has no usage (MiniMax, Kimi for
   coding): the input was counted 0, unflagged; a cut whole answer's input left out
   Anthropic's cache reads and writes.
3. xAI reports reasoning tokens beside ``completion_tokens`` (``total_tokens`` counts
   them apart): they are output.
4. OpenRouter / Moonshot ``prompt_tokens_details.cache_write_tokens`` were dropped.
5. Anthropic 1-hour cache writes are priced at ``cache_write_1h`` (or unpriced), never
   at the 5-minute price.
6. Gemini's ``toolUsePromptTokenCount`` is billed input.
7. The catalog's ``reasoning_output`` price applies to reasoning tokens; the budget
   reservation stays an upper bound.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from knollm import AllAttemptsFailed, AsyncClient
from knollm.client import SQLiteStore
from knollm.client.accounting import call_cost, prompt_tokens, worst_case_cost
from knollm.client.core import Client
from knollm.client.routing import Offer
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, model

MSG = [{"role": "user", "content": "What is the weather in Paris today, and should I take an umbrella?"}]
PROMPT = prompt_tokens(MSG)  # the client's own estimate of MSG


# --------------------------------------------------------------------------- loopback server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("content-length") or 0)
        srv: Server = self.server.owner  # type: ignore[attr-defined]
        srv.requests.append((self.path, json.loads(self.rfile.read(n) or b"{}")))
        ctype, body, cut = srv.answers.pop(0)
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data.replace(PAUSE, b""))))
        self.end_headers()
        if cut:  # the whole length announced, half sent, the connection closed
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
            return
        for i, part in enumerate(data.split(PAUSE)):  # (PAUSE: the parts in separate network reads)
            if i:
                time.sleep(0.2)
            self.wfile.write(part)
            self.wfile.flush()


#: where a canned body pauses (not sent; the rest follows 0.2 s later)
PAUSE = b"\x00PAUSE\x00"


class Server:
    """Answers each POST with the next canned ``(content type, body, cut)``."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str, bool]] = []
        self.requests: list[tuple[str, dict]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def json(self, obj: dict, cut: bool = False) -> None:
        self.answers.append(("application/json", json.dumps(obj), cut))

    def sse(self, events: list[dict], named: bool = True, done: bool = False) -> None:
        body = "".join((f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n" for e in events)
        self.answers.append(("text/event-stream", body + ("data: [DONE]\n\n" if done else ""), False))


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def srv(server):
    server.answers.clear()
    server.requests.clear()
    return server


# --------------------------------------------------------------------------- helpers
def priced(provider: str, mid: str, **prices: float) -> dict:
    """A catalog model with exactly ``prices`` (USD per 1M tokens), every other one unknown."""
    m = model(provider, mid, mid, input=None, output=None)
    m["prices"].update(prices)
    return m


#: the models as genai-prices 0.2.3 prices them (checked against it below)
SONNET = priced("anthropic", "claude-sonnet-4-5", input=3.0, output=15.0, cache_read=0.3, cache_write=3.75,
                cache_write_1h=6.0)
SONNET_NO_1H = priced("anthropic", "claude-sonnet-4-0", input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
MINIMAX = priced("minimax", "MiniMax-M2", input=0.3, output=1.2)
GROK = priced("xai", "grok-3-mini", input=0.3, output=0.5, cache_read=0.075)
O3 = priced("openai", "o3", input=2.0, output=8.0, cache_read=0.5)
OR_SONNET = priced("openrouter", "anthropic/claude-sonnet-4.5", input=3.0, output=15.0, cache_read=0.3,
                   cache_write=3.75)
FLASH = priced("gemini", "gemini-2.5-flash", input=0.3, output=2.5, cache_read=0.03)
QWEN = priced("alibaba", "qwen-plus", input=0.4, output=1.2, reasoning_output=4.0)
CAT = catalog(SONNET, SONNET_NO_1H, MINIMAX, GROK, O3, OR_SONNET, FLASH, QWEN)


def _kw(srv: Server, store: Any) -> dict:
    b = srv.base
    return dict(
        catalog=Catalog(CAT), store=store, retries=0, backoff_base=0.01,
        env={"ANTHROPIC_API_KEY": "k", "XAI_API_KEY": "k", "OPENROUTER_API_KEY": "k", "OPENAI_API_KEY": "k",
             "KNOLLM_ANTHROPIC_BASE_URL": b, "KNOLLM_XAI_BASE_URL": b, "KNOLLM_OPENROUTER_BASE_URL": b,
             "KNOLLM_OPENAI_BASE_URL": b},
        providers={"minimax": {"shape": "anthropic", "base_url": b, "api_key": "k"},
                   "gemini": {"shape": "gemini", "base_url": b, "api_key": "k"},
                   "alibaba": {"shape": "openai", "base_url": b, "api_key": "k"}})


def call(srv: Server, tmp_path: Any, target: str, *, stream: bool = False, mode: str = "sync") -> tuple[Any, dict]:
    """One call through a real client (sync, or AsyncClient); its result and ledger row."""
    store = SQLiteStore(tmp_path / f"k{len(srv.requests)}.db")
    if mode == "sync":
        c = Client(**_kw(srv, store))
        if stream:
            items = list(c.stream(target, MSG))
            res = items[-1]
        else:
            res = c.chat(target, MSG)
    else:
        async def main():
            async with AsyncClient(**_kw(srv, store)) as c:
                if stream:
                    return [x async for x in c.stream(target, MSG)][-1]
                return await c.chat(target, MSG)

        res = asyncio.run(main())
    (row,) = store.rows()
    assert row["cost_usd"] == res.cost_usd
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == \
        (res.usage.input_tokens, res.usage.output_tokens, res.usage.cached_tokens, res.usage.cache_write_tokens)
    return res, row


def genai(body: dict, ref: str, pid: str, flavor: str = "default") -> tuple[Any, float]:
    """genai-prices' usage (its own extractor) and price of a provider's answer ``body``."""
    gp = pytest.importorskip("genai_prices")
    snap = gp.data_snapshot.get_snapshot()
    prov = next(p for p in snap.providers if p.id == pid)
    ex = next(e for e in prov.extractors if e.api_flavor == flavor)
    gu = ex.extract(body)[1]
    return gu, float(gp.calc_price(gu, ref, provider_id=pid).total_price)


def anthropic_stream(start_usage: dict | None, delta_usage: dict, model_id: str = "claude-sonnet-4-5") -> list[dict]:
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": model_id, "content": [],
           "stop_reason": None, "stop_sequence": None}
    if start_usage is not None:
        msg["usage"] = start_usage
    return [{"type": "message_start", "message": msg},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Light rain"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " after 3pm."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": delta_usage},
            {"type": "message_stop"}]


def openai_answer(usage: dict, model_id: str) -> dict:
    return {"id": "c1", "object": "chat.completion", "model": model_id, "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "101"}, "finish_reason": "stop"}]}


# --------------------------------------------------------------------------- 1
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_anthropic_stream_message_delta_counts_are_cumulative(srv, tmp_path, mode):
    """message_delta's usage overrides every count message_start gave (input and cache
    counts too, as with server tools), and the cost is genai-prices' on that usage."""
    start = {"input_tokens": 2679, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": 3}
    final = {"input_tokens": 10682, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 5000,
             "output_tokens": 510}
    srv.sse(anthropic_stream(start, final))
    res, row = call(srv, tmp_path, "anthropic/claude-sonnet-4-5", stream=True, mode=mode)
    u = res.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_write_tokens, u.estimated) == \
        (10682 + 2000 + 5000, 510, 5000, 2000, False)
    gu, want = genai({"usage": final}, "claude-sonnet-4-5", "anthropic")
    assert gu.input_tokens == u.input_tokens and gu.output_tokens == u.output_tokens
    assert res.cost_usd == pytest.approx(want, rel=1e-9)
    assert res.cost_usd == pytest.approx((10682 * 3 + 5000 * 0.3 + 2000 * 3.75 + 510 * 15) / 1e6)
    assert row["usage_estimated"] == 0


# --------------------------------------------------------------------------- 2
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_anthropic_compatible_stream_input_only_in_message_delta(srv, tmp_path, mode):
    """MiniMax-style: message_start has no usage, message_delta has the input: counted."""
    srv.sse(anthropic_stream(None, {"input_tokens": 5000, "output_tokens": 40}, "MiniMax-M2"))
    res, row = call(srv, tmp_path, "minimax/MiniMax-M2", stream=True, mode=mode)
    assert (res.usage.input_tokens, res.usage.output_tokens, res.usage.estimated) == (5000, 40, False)
    assert res.cost_usd == pytest.approx((5000 * 0.3 + 40 * 1.2) / 1e6)
    assert row["usage_estimated"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_usage_without_input_count_uses_the_prompt_estimate(srv, tmp_path, mode):
    """No input count anywhere (message_delta has output_tokens only): the prompt was sent
    and billed, so the estimate stands in, flagged, never a free prompt."""
    srv.sse(anthropic_stream(None, {"output_tokens": 40}, "MiniMax-M2"))
    res, row = call(srv, tmp_path, "minimax/MiniMax-M2", stream=True, mode=mode)
    assert PROMPT > 0
    assert (res.usage.input_tokens, res.usage.output_tokens, res.usage.estimated) == (PROMPT, 40, True)
    assert res.cost_usd == pytest.approx((PROMPT * 0.3 + 40 * 1.2) / 1e6)
    assert row["usage_estimated"] == 1


def test_cut_anthropic_answer_charges_cache_tokens_as_input(srv, tmp_path):
    """A whole Anthropic answer whose body was cut after its usage: the charged row's input
    adds the cache reads and writes back, as a whole answer's would."""
    usage = {"input_tokens": 120, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 40000,
             "output_tokens": 7}
    srv.json({"usage": usage, "id": "m1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
              "stop_reason": "end_turn", "content": [{"type": "text", "text": "word " * 400}]}, cut=True)
    store = SQLiteStore(tmp_path / "cut.db")
    with pytest.raises(AllAttemptsFailed) as ei:
        Client(**_kw(srv, store)).chat("anthropic/claude-sonnet-4-5", MSG)
    (row,) = store.rows()
    assert row["outcome"] == "interrupted"
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (43120, 40000, 3000)
    assert row["usage_estimated"] == 2  # the output estimated from the text that arrived
    charged = ei.value.attempts[0]["charged"]
    assert charged["input_tokens"] == 43120
    assert row["cost_usd"] == pytest.approx((120 * 3 + 40000 * 0.3 + 3000 * 3.75 + row["output_tokens"] * 15) / 1e6)


# --------------------------------------------------------------------------- 3
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_xai_reasoning_tokens_beside_completion_are_output(srv, tmp_path, mode):
    """xAI's documented example: total 135 = 32 prompt + 9 completion + 94 reasoning."""
    u = {"prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
         "prompt_tokens_details": {"text_tokens": 32, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 6},
         "completion_tokens_details": {"reasoning_tokens": 94, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}}
    srv.json(openai_answer(u, "grok-3-mini"))
    res, _ = call(srv, tmp_path, "xai/grok-3-mini", mode=mode)
    assert (res.usage.input_tokens, res.usage.output_tokens, res.usage.cached_tokens, res.usage.reasoning_tokens) == \
        (32, 103, 6, 94)
    gu, want = genai({"usage": u}, "grok-3-mini", "x-ai", "chat")
    assert gu.output_tokens == 103
    assert res.cost_usd == pytest.approx(want, rel=1e-9)


def test_xai_stream_reasoning_tokens_beside_completion_are_output(srv, tmp_path):
    u = {"prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
         "completion_tokens_details": {"reasoning_tokens": 94}}
    srv.sse([{"id": "c", "model": "grok-3-mini", "choices": [{"index": 0, "delta": {"content": "101"}}]},
             {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
             {"id": "c", "choices": [], "usage": u}], named=False, done=True)
    res, _ = call(srv, tmp_path, "xai/grok-3-mini", stream=True)
    assert (res.usage.output_tokens, res.usage.reasoning_tokens) == (103, 94)
    assert res.cost_usd == pytest.approx((32 * 0.3 + 103 * 0.5) / 1e6)


def test_openai_reasoning_tokens_inside_completion_stay_inside(srv, tmp_path):
    """OpenAI's rule (total = prompt + completion): reasoning is already in the output."""
    u = {"prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 600,
         "completion_tokens_details": {"reasoning_tokens": 448}}
    srv.json(openai_answer(u, "o3"))
    res, _ = call(srv, tmp_path, "openai/o3")
    assert (res.usage.output_tokens, res.usage.reasoning_tokens) == (500, 448)
    _, want = genai({"usage": u}, "o3", "openai", "chat")
    assert res.cost_usd == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- 4
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_openrouter_cache_write_tokens_are_priced(srv, tmp_path, mode):
    u = {"prompt_tokens": 100050, "completion_tokens": 100, "total_tokens": 100150,
         "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100000}}
    srv.json(openai_answer(u, "anthropic/claude-sonnet-4.5"))
    res, row = call(srv, tmp_path, "openrouter/anthropic/claude-sonnet-4.5", mode=mode)
    assert (res.usage.input_tokens, res.usage.cache_write_tokens) == (100050, 100000)
    assert row["cache_write_tokens"] == 100000
    gu, want = genai({"usage": u}, "anthropic/claude-sonnet-4.5", "openrouter", "chat")
    assert gu.cache_write_tokens == 100000
    assert res.cost_usd == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- 5
def _sonnet_answer(usage: dict, model_id: str = "claude-sonnet-4-5") -> dict:
    return {"id": "m3", "type": "message", "role": "assistant", "model": model_id,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_anthropic_1h_cache_writes_at_their_own_price(srv, tmp_path, mode):
    u = {"input_tokens": 50, "cache_creation_input_tokens": 100000, "cache_read_input_tokens": 0,
         "output_tokens": 100, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100000}}
    srv.json(_sonnet_answer(u))
    res, row = call(srv, tmp_path, "anthropic/claude-sonnet-4-5", mode=mode)
    assert (res.usage.cache_write_tokens, res.usage.cache_write_1h_tokens) == (100000, 100000)
    assert row["cache_write_tokens"] == 100000  # the ledger's columns are unchanged: 1h writes are in it
    _, want = genai({"usage": u}, "claude-sonnet-4-5", "anthropic")
    assert res.cost_usd == pytest.approx(want, rel=1e-9) == pytest.approx(0.60165)


def test_anthropic_mixed_ttl_cache_writes(srv, tmp_path):
    """Both TTLs in one call: each part at its price (a stream: message_start's usage)."""
    u = {"input_tokens": 50, "cache_creation_input_tokens": 30000, "cache_read_input_tokens": 1000,
         "output_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 10000, "ephemeral_1h_input_tokens": 20000}}
    srv.sse(anthropic_stream(u, {"output_tokens": 100}))
    res, _ = call(srv, tmp_path, "anthropic/claude-sonnet-4-5", stream=True)
    assert (res.usage.cache_write_tokens, res.usage.cache_write_1h_tokens, res.usage.output_tokens) == \
        (30000, 20000, 100)
    _, want = genai({"usage": {**u, "output_tokens": 100}}, "claude-sonnet-4-5", "anthropic")
    assert res.cost_usd == pytest.approx(want, rel=1e-9)
    assert res.cost_usd == pytest.approx((50 * 3 + 1000 * 0.3 + 10000 * 3.75 + 20000 * 6 + 100 * 15) / 1e6)


def test_anthropic_1h_cache_writes_without_their_price_are_unpriced(srv, tmp_path):
    """No cache_write_1h price: cost None and a reason naming it, never the 5-minute price."""
    u = {"input_tokens": 50, "cache_creation_input_tokens": 100000, "cache_read_input_tokens": 0,
         "output_tokens": 100, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100000}}
    srv.json(_sonnet_answer(u, "claude-sonnet-4-0"))
    res, row = call(srv, tmp_path, "anthropic/claude-sonnet-4-0")
    assert res.cost_usd is None and row["cost_usd"] is None
    assert "cache_write_1h" in res.unpriced_reason and row["unpriced_reason"] == res.unpriced_reason
    # 5-minute writes only: the cache_write price, as before
    u5 = {**u, "cache_creation": {"ephemeral_5m_input_tokens": 100000, "ephemeral_1h_input_tokens": 0}}
    srv.json(_sonnet_answer(u5, "claude-sonnet-4-0"))
    res, _ = call(srv, tmp_path, "anthropic/claude-sonnet-4-0")
    assert res.cost_usd == pytest.approx((50 * 3 + 100000 * 3.75 + 100 * 15) / 1e6)


# --------------------------------------------------------------------------- 6
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gemini_tool_use_prompt_tokens_are_input(srv, tmp_path, mode):
    um = {"promptTokenCount": 1000, "candidatesTokenCount": 200, "toolUsePromptTokenCount": 8000,
          "thoughtsTokenCount": 300, "totalTokenCount": 9500}
    ans = {"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
           "usageMetadata": um, "modelVersion": "gemini-2.5-flash"}
    srv.json(ans)
    res, _ = call(srv, tmp_path, "gemini/gemini-2.5-flash", mode=mode)
    assert ":generateContent" in srv.requests[-1][0]  # the native API
    assert (res.usage.input_tokens, res.usage.output_tokens) == (9000, 500)
    assert res.usage.input_tokens + res.usage.output_tokens == um["totalTokenCount"]
    _, want = genai(ans, "gemini-2.5-flash", "google")
    assert res.cost_usd == pytest.approx(want, rel=1e-9)


def test_gemini_stream_tool_use_prompt_tokens_are_input(srv, tmp_path):
    um = {"promptTokenCount": 1000, "candidatesTokenCount": 200, "toolUsePromptTokenCount": 8000,
          "totalTokenCount": 9200}
    srv.sse([{"candidates": [{"content": {"parts": [{"text": "o"}], "role": "model"}}],
              "usageMetadata": {**um, "candidatesTokenCount": 1}},
             {"candidates": [{"content": {"parts": [{"text": "k"}], "role": "model"}, "finishReason": "STOP"}],
              "usageMetadata": um}], named=False)
    res, _ = call(srv, tmp_path, "gemini/gemini-2.5-flash", stream=True)
    assert (res.usage.input_tokens, res.usage.output_tokens) == (9000, 200)


# --------------------------------------------------------------------------- 7
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_reasoning_tokens_at_the_reasoning_output_price(srv, tmp_path, mode):
    u = {"prompt_tokens": 1000, "completion_tokens": 10000, "total_tokens": 11000,
         "completion_tokens_details": {"reasoning_tokens": 9000}}
    srv.json(openai_answer(u, "qwen-plus"))
    res, row = call(srv, tmp_path, "alibaba/qwen-plus", mode=mode)
    assert (res.usage.output_tokens, res.usage.reasoning_tokens) == (10000, 9000)
    want = (1000 * 0.4 + 1000 * 1.2 + 9000 * 4.0) / 1e6
    assert res.cost_usd == pytest.approx(want) and row["cost_usd"] == pytest.approx(want)


def test_reasoning_output_price_in_the_worst_case_and_call_cost():
    o = Offer("alibaba/qwen-plus", "alibaba", "qwen-plus", prices={"input": 0.4, "output": 1.2, "reasoning_output": 4.0})
    worst = worst_case_cost(o, 1000, 10000)
    assert worst == pytest.approx((1000 * 0.4 + 10000 * 4.0) / 1e6)
    every = {"input_tokens": 1000, "output_tokens": 10000, "cached_tokens": 0, "cache_write_tokens": 0,
             "reasoning_tokens": 10000}
    assert call_cost(o, every)[0] <= worst
    # no reasoning count, or no reasoning_output price: output price for all output
    plain = {**every, "reasoning_tokens": 0}
    assert call_cost(o, plain)[0] == pytest.approx((1000 * 0.4 + 10000 * 1.2) / 1e6)
    o2 = Offer("p/m", "p", "m", prices={"input": 0.4, "output": 1.2})
    assert call_cost(o2, every)[0] == pytest.approx((1000 * 0.4 + 10000 * 1.2) / 1e6)
    # a 1h cache-write price above input makes the reservation's input part
    o3 = Offer("p/m", "p", "m", prices={"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_write_1h": 6.0})
    assert worst_case_cost(o3, 1000, 0) == pytest.approx(1000 * 6.0 / 1e6)


def test_cut_stream_without_input_count_keeps_the_provider_output_count(srv, tmp_path):
    """A MiniMax-style stream (no input count) broken by an error event after its
    message_delta: the input is the prompt estimate (flagged 1), the output the provider's
    count, larger than the estimate from the text."""
    from knollm import StreamInterrupted

    events = [e for e in anthropic_stream(None, {"output_tokens": 400}, "MiniMax-M2") if e["type"] != "message_stop"]
    srv.sse(events)
    srv.sse([{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    error = srv.answers.pop()[1]  # after the text and message_delta, in a read of its own
    srv.answers[-1] = (srv.answers[-1][0], srv.answers[-1][1] + PAUSE.decode() + error, False)
    store = SQLiteStore(tmp_path / "cut.db")
    with pytest.raises(StreamInterrupted):
        list(Client(**_kw(srv, store)).stream("minimax/MiniMax-M2", MSG))
    (row,) = store.rows()
    assert (row["outcome"], row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == \
        ("interrupted", PROMPT, 400, 1)
    assert row["cost_usd"] == pytest.approx((PROMPT * 0.3 + 400 * 1.2) / 1e6)


def test_genai_prices_1h_cache_write_price_reaches_the_catalog():
    """The registry's 1-hour cache-write price (and its tiers) is read, so a real Anthropic
    call writing to the 1-hour cache is priced instead of unpriced."""
    from genai_prices.data import providers
    from genai_prices.types import TieredPrices

    from knollm.catalog.registries import _gp_prices

    seen = 0
    for p in providers:
        for m in p.models:
            mp = m.prices if not isinstance(m.prices, list) else None
            v = getattr(mp, "cache_write_1h_mtok", None) if mp is not None else None
            if v is None:
                continue
            prices, tiers = _gp_prices(mp)
            base = v.base if isinstance(v, TieredPrices) else v
            assert prices["cache_write_1h"] == pytest.approx(float(base)), (p.id, m.id)
            if isinstance(v, TieredPrices):
                assert [t["cache_write_1h"] for t in tiers if "cache_write_1h" in t] == [pytest.approx(float(t.price)) for t in v.tiers]
            seen += 1
    assert seen >= 5  # Anthropic's current models, at least


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("bad", [{"prompt_tokens": "abc", "completion_tokens": 5},
                                 {"prompt_tokens": 10**20, "completion_tokens": 5},
                                 {"prompt_tokens": -2_000_000, "completion_tokens": 5},
                                 {"prompt_tokens": 100, "completion_tokens": 1e308}],
                         ids=["string", "beyond-integer", "negative", "huge-float"])
def test_a_usage_that_is_not_counts_is_estimated_and_the_row_lands(srv, tmp_path, mode, bad):
    """Not token counts: the call answers, its tokens are estimated (flagged) and its row is in
    the ledger. Before, a string raised ValueError and a count beyond SQLite's INTEGER an
    OverflowError at settle: the answered call raised and left no row."""
    srv.json(openai_answer(bad, "o3"))
    res, row = call(srv, tmp_path, "openai/o3", mode=mode)
    assert res.content == "101" and res.usage.estimated and row["usage_estimated"] == 1
    assert 0 < res.usage.input_tokens < 1000 and res.cost_usd is not None and res.cost_usd > 0
