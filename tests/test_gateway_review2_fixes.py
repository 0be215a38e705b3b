"""Fixes from the gateway's second review, each through a real ``knollm serve`` called by the
official SDKs, over a loopback upstream that sends exactly the shapes in question:

* the provider's reasoning tokens reach the caller (chat ``completion_tokens_details``,
  Responses ``output_tokens_details``, streams included), inside the output tokens: never
  billed twice;
* parallel tool calls whose argument deltas interleave stay open until no more can come
  (Responses and Anthropic streams): no delta after an item's ``done`` / ``content_block_stop``,
  none dropped (text after the calls waits for them);
* a 504 from the gateway's own time limit counts the attempts the providers received
  (``x-knollm-attempts``, ``knollm_gateway_attempts_total``).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.client_fixtures import catalog, model
from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import gateway_env

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

GROQ = "groq/llama-3.3-70b-versatile"
TOGETHER = "togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo"
EMBED = "openai/text-embedding-3-small"
SECRETS = {"GROQ_API_KEY": "sk-groq-1", "TOGETHER_API_KEY": "sk-tog-2", "OPENAI_API_KEY": "sk-oai-3"}
TOOLS_RESP = [{"type": "function", "name": n, "parameters": {"type": "object", "properties": {}}} for n in "fg"]
TOOLS_ANTH = [{"name": n, "input_schema": {"type": "object"}} for n in "fg"]

# the provider's usage: 20 output tokens, 5 of them reasoning (counted in the 20, as OpenAI does)
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
         "completion_tokens_details": {"reasoning_tokens": 5}}
PLAIN = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
COST = (100 * 1.0 + 20 * 2.0) / 1e6  # the catalog's groq prices: output tokens once, reasoning inside them


def _chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> dict:
    d = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "m",
         "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        d["usage"] = usage
    return d


def _call(i: int, args: str, id: str | None = None, name: str | None = None) -> dict:  # noqa: A002
    fn: dict = {"arguments": args}
    if name:
        fn["name"] = name
    d = {"index": i, "function": fn}
    if id:
        d.update(id=id, type="function")
    return d


_TEXT = [_chunk({"role": "assistant", "content": "Thought it"}), _chunk({"content": " through."}), _chunk({}, "stop")]
# two parallel calls whose argument deltas interleave: a0 b0 a1 b1
_INTER = [_chunk({"role": "assistant", "tool_calls": [_call(0, '{"x"', "call_a", "f")]}),
          _chunk({"tool_calls": [_call(1, '{"y"', "call_b", "g")]}),
          _chunk({"tool_calls": [_call(0, ": 1}")]}),
          _chunk({"tool_calls": [_call(1, ": 2}")]}),
          _chunk({}, "tool_calls")]
# a call, then text, then the rest of the call's arguments (a late delta), then more text
_LATE = [_chunk({"role": "assistant", "tool_calls": [_call(0, '{"x"', "call_a", "f")]}),
         _chunk({"content": "do"}),
         _chunk({"tool_calls": [_call(0, ": 1}")]}),
         _chunk({"content": "ne"}),
         _chunk({}, "tool_calls")]
SCENARIOS = {  # the first word of the last user message -> (stream chunks, whole message, finish, usage)
    "reason": (_TEXT, {"role": "assistant", "content": "Thought it through."}, "stop", USAGE),
    "plain": (_TEXT, {"role": "assistant", "content": "Thought it through."}, "stop", PLAIN),
    "inter": (_INTER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"y": 2}'}}]}, "tool_calls",
        USAGE),
    "late": (_LATE, {"role": "assistant", "content": "done", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}, "tool_calls",
        USAGE),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.requests.append(body)  # type: ignore[attr-defined]
        last = (body.get("messages") or [{}])[-1].get("content") or ""
        if isinstance(last, list):
            last = "".join(p.get("text", "") for p in last)
        chunks, msg, finish, usage = SCENARIOS[last.split()[0]]
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for c in [*chunks, _chunk(None, usage=usage)]:  # each chunk its own read upstream
                self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
                self.wfile.flush()
                threading.Event().wait(0.01)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        data = json.dumps({"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "m",
                           "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                           "usage": usage}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Scripted:
    """An OpenAI-compatible provider on loopback answering :data:`SCENARIOS`."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _catalog() -> dict:
    return catalog(
        model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
        model("togetherai", "meta-llama/Llama-3.3-70B-Instruct-Turbo", input=0.5, output=1.0),
        model("openai", "text-embedding-3-small", canonical="text-embedding-3-small", input=0.02, output=None,
              kind="embedding"),
    )


def _env(tmp, servers: dict, **extra: str) -> dict[str, str]:
    return gateway_env(tmp, servers, _catalog(), SECRETS, **extra)


@pytest.fixture(scope="module")
def scripted_gw(tmp_path_factory):
    up = Scripted()
    tmp = tmp_path_factory.mktemp("gw_review2")
    try:
        with GatewayProcess(_env(tmp, {"groq": up})) as g:
            g.home = tmp
            yield g
    finally:
        up.stop()


# --------------------------------------------------------------------------- 1. reasoning tokens
def test_the_providers_reasoning_tokens_reach_chat_and_responses_and_are_billed_once(scripted_gw):
    c = openai.OpenAI(base_url=scripted_gw.base_url, api_key="x", max_retries=0)
    msgs = [{"role": "user", "content": "reason"}]
    before = len(ledger_rows(scripted_gw.home))

    raw = c.chat.completions.with_raw_response.create(model=GROQ, messages=msgs)
    r = raw.parse()
    assert (r.usage.completion_tokens, r.usage.completion_tokens_details.reasoning_tokens) == (20, 5)
    assert float(raw.headers["x-knollm-cost-usd"]) == pytest.approx(COST)

    chunks = list(c.chat.completions.create(model=GROQ, messages=msgs, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5
    assert chunks[-1].usage.completion_tokens == 20

    raw = c.responses.with_raw_response.create(model=GROQ, input="reason")
    resp = raw.parse()
    assert resp.output_text == "Thought it through."
    assert (resp.usage.output_tokens, resp.usage.output_tokens_details.reasoning_tokens) == (20, 5)
    assert resp.usage.total_tokens == 120 and resp.model_extra["knollm"]["cost_usd"] == pytest.approx(COST)

    events = list(c.responses.create(model=GROQ, input="reason", stream=True))
    done = events[-1]
    assert done.type == "response.completed"
    assert (done.response.usage.output_tokens, done.response.usage.output_tokens_details.reasoning_tokens) == (20, 5)
    assert done.response.model_extra["knollm"]["cost_usd"] == pytest.approx(COST)

    # a provider that does not say: unknown (null), never a made-up 0; the same cost either way
    raw = c.chat.completions.with_raw_response.create(model=GROQ, messages=[{"role": "user", "content": "plain"}])
    assert raw.parse().usage.completion_tokens_details is None
    assert float(raw.headers["x-knollm-cost-usd"]) == pytest.approx(COST)
    assert c.responses.create(model=GROQ, input="plain").usage.output_tokens_details.reasoning_tokens is None

    rows = ledger_rows(scripted_gw.home)[before:]
    assert len(rows) == 6
    assert {(x["output_tokens"], x["input_tokens"]) for x in rows} == {(20, 100)}
    assert all(x["cost_usd"] == pytest.approx(COST) for x in rows)  # reasoning inside the output: billed once


def test_gemini_thoughts_are_its_reasoning_tokens_inside_the_output():
    from knollm.client.result import ChatResult, Usage
    from knollm.client.transports import get_shape

    shape = get_shape("gemini")
    answer = {"candidates": [{"content": {"parts": [{"text": "hm", "thought": True}, {"text": "Hi"}]},
                              "finishReason": "STOP"}],
              "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 7, "thoughtsTokenCount": 3}}
    p = shape.parse(answer, "gemini")
    assert p.usage["output_tokens"] == 10 and p.usage["reasoning_tokens"] == 3
    st = shape.stream_parser("gemini")
    shape.on_event(st, None, json.dumps(answer))
    assert st.usage == p.usage
    no_thoughts = {**answer, "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 7}}
    assert "reasoning_tokens" not in shape.parse(no_thoughts, "gemini").usage
    res = ChatResult("Hi", "gemini", "m", None, "t", usage=Usage(**p.usage))
    assert res.model_dump()["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert res.model_dump()["usage"]["completion_tokens"] == 10
    assert "completion_tokens_details" not in ChatResult("Hi", "g", "m", None, "t").model_dump()["usage"]


# --------------------------------------------------------------------------- 2. interleaved tool calls
def test_interleaved_parallel_calls_stay_open_in_a_responses_stream(scripted_gw):
    c = openai.OpenAI(base_url=scripted_gw.base_url, api_key="x", max_retries=0)
    events = list(c.responses.create(model=GROQ, input="inter", tools=TOOLS_RESP, stream=True))
    done_at: dict[int, int] = {}
    deltas: dict[int, str] = {}
    for n, e in enumerate(events):
        if e.type == "response.function_call_arguments.delta":
            assert e.output_index not in done_at, f"a delta after output item {e.output_index} was done"
            deltas[e.output_index] = deltas.get(e.output_index, "") + e.delta
        elif e.type == "response.output_item.done":
            done_at[e.output_index] = n
        elif e.type == "response.function_call_arguments.done":
            assert e.arguments == deltas[e.output_index]
    assert deltas == {0: '{"x": 1}', 1: '{"y": 2}'}
    assert list(done_at) == [0, 1]  # each closed once, in order
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.name, i.arguments, i.status) for i in items] == [("f", '{"x": 1}', "completed"),
                                                                ("g", '{"y": 2}', "completed")]
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [(o.call_id, o.arguments) for o in final.output] == [("call_a", '{"x": 1}'), ("call_b", '{"y": 2}')]
    with c.responses.stream(model=GROQ, input="inter", tools=TOOLS_RESP) as s:
        for _ in s:
            pass
        got = s.get_final_response()
    assert [(o.name, o.arguments) for o in got.output] == [("f", '{"x": 1}'), ("g", '{"y": 2}')]


def test_interleaved_parallel_calls_stay_open_in_an_anthropic_stream(scripted_gw):
    ac = anthropic.Anthropic(base_url=scripted_gw.url, api_key="x", max_retries=0)
    stopped: list[int] = []
    partial: dict[int, str] = {}
    with ac.messages.stream(model=GROQ, max_tokens=50, tools=TOOLS_ANTH,
                            messages=[{"role": "user", "content": "inter"}]) as s:
        for e in s:
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
                assert e.index not in stopped, f"a delta after block {e.index} stopped"
                partial[e.index] = partial.get(e.index, "") + e.delta.partial_json
            elif e.type == "content_block_stop":
                stopped.append(e.index)
        msg = s.get_final_message()
    assert stopped == [0, 1] and partial == {0: '{"x": 1}', 1: '{"y": 2}'}
    assert [(b.type, b.id, b.input) for b in msg.content] == [("tool_use", "call_a", {"x": 1}),
                                                              ("tool_use", "call_b", {"y": 2})]
    assert msg.stop_reason == "tool_use"


def test_text_after_the_calls_waits_for_them_and_no_late_delta_is_dropped():
    """Text after the calls does not close them: a call's argument delta that comes after
    the text still reaches it (it was dropped), the calls close in order at the end with
    their whole arguments, and the text follows them whole. No delta after an item's end."""
    from knollm.gateway.responses import ResponsesStream, response_skeleton
    from knollm.gateway.translate import AnthropicStream

    feed = [{"choices": [{"index": 0, "delta": {"tool_calls": [_call(0, '{"x"', "call_a", "f")]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [_call(1, '{"y"', "call_b", "g")]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [_call(0, ": 1}")]}}]},
            {"choices": [{"index": 0, "delta": {"content": "do"}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [_call(1, ": 2}")]}}]},
            {"choices": [{"index": 0, "delta": {"content": "ne"}, "finish_reason": "stop"}]}]
    r = ResponsesStream(response_skeleton({"model": "m", "input": "x"}, "m"))
    out = [ev for ch in feed for ev in r.feed(ch)] + list(r.close())
    kinds = [(k, d.get("output_index")) for k, d in out]
    assert kinds[2:] == [("response.output_item.added", 0), ("response.function_call_arguments.delta", 0),
                         ("response.output_item.added", 1), ("response.function_call_arguments.delta", 1),
                         ("response.function_call_arguments.delta", 0),
                         ("response.function_call_arguments.delta", 1),
                         ("response.function_call_arguments.done", 0), ("response.output_item.done", 0),
                         ("response.function_call_arguments.done", 1), ("response.output_item.done", 1),
                         ("response.output_item.added", 2), ("response.content_part.added", 2),
                         ("response.output_text.delta", 2), ("response.output_text.done", 2),
                         ("response.content_part.done", 2), ("response.output_item.done", 2),
                         ("response.completed", None)]
    final = out[-1][1]["response"]["output"]
    assert [o.get("arguments") for o in final] == ['{"x": 1}', '{"y": 2}', None]
    assert final[2]["content"][0]["text"] == "done"
    a = AnthropicStream("m", "msg_1")
    ev = [e for ch in feed for e in a.feed(ch)] + list(a.close())
    blocks = [(n, d.get("index")) for n, d in ev if n.startswith("content_block")]
    assert blocks == [("content_block_start", 0), ("content_block_delta", 0), ("content_block_start", 1),
                      ("content_block_delta", 1), ("content_block_delta", 0), ("content_block_delta", 1),
                      ("content_block_stop", 0), ("content_block_stop", 1), ("content_block_start", 2),
                      ("content_block_delta", 2), ("content_block_stop", 2)]
    args = {}
    for n, d in ev:
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta":
            args[d["index"]] = args.get(d["index"], "") + d["delta"]["partial_json"]
    assert args == {0: '{"x": 1}', 1: '{"y": 2}'}
    assert [d["delta"]["text"] for n, d in ev if n == "content_block_delta" and d["index"] == 2] == ["done"]


def test_a_late_argument_delta_after_text_reaches_the_sdks(scripted_gw):
    """Through the gateway, as the SDKs assemble it: the call's whole arguments and the whole
    text (the late delta was dropped: the call's input was cut to ``{"x"``)."""
    c = openai.OpenAI(base_url=scripted_gw.base_url, api_key="x", max_retries=0)
    with c.responses.stream(model=GROQ, input="late", tools=TOOLS_RESP) as s:
        for _ in s:
            pass
        got = s.get_final_response()
    assert [(o.type, getattr(o, "arguments", None)) for o in got.output] == [("function_call", '{"x": 1}'),
                                                                            ("message", None)]
    assert got.output_text == "done"
    ac = anthropic.Anthropic(base_url=scripted_gw.url, api_key="x", max_retries=0)
    with ac.messages.stream(model=GROQ, max_tokens=50, tools=TOOLS_ANTH,
                            messages=[{"role": "user", "content": "late"}]) as st:
        msg = st.get_final_message()
    assert [(b.type, getattr(b, "input", None), getattr(b, "text", None)) for b in msg.content] == [
        ("tool_use", {"x": 1}, None), ("text", None, "done")]
    # the chat stream as it came (no conversion): every delta, in order
    chunks = list(c.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "late"}],
                                            tools=[{"type": "function", "function": {"name": "f"}}], stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    args = "".join(tc.function.arguments or "" for ch in chunks if ch.choices
                   for tc in ch.choices[0].delta.tool_calls or [])
    assert (text, args) == ("done", '{"x": 1}')


def test_text_held_for_the_calls_is_given_before_a_broken_streams_error():
    from knollm.gateway.responses import ResponsesStream, response_skeleton
    from knollm.gateway.translate import AnthropicStream

    feed = [{"choices": [{"index": 0, "delta": {"tool_calls": [_call(0, "{}", "call_a", "f")]}}]},
            {"choices": [{"index": 0, "delta": {"content": "partial"}}]}]
    r = ResponsesStream(response_skeleton({"model": "m", "input": "x"}, "m"))
    out = [ev for ch in feed for ev in r.feed(ch)] + list(r.fail({"type": "server_error", "message": "cut"}))
    assert out[-1][0] == "response.failed"
    assert out[-1][1]["response"]["output"][1]["content"][0]["text"] == "partial"
    a = AnthropicStream("m", "msg_1")
    [e for ch in feed for e in a.feed(ch)]
    given = list(a.flush())
    assert [d["delta"]["text"] for n, d in given if n == "content_block_delta"] == ["partial"]


# --------------------------------------------------------------------------- 3. the gateway's time limit
def _attempts_metric(gw, provider: str) -> float:
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("knollm_gateway_attempts_total{") and f'provider="{provider}"' in line)


def test_a_504_from_the_gateways_time_limit_counts_the_attempts_the_providers_got(tmp_path):
    srvs = {"groq": ProviderServer("groq").start(), "togetherai": ProviderServer("together").start(),
            "openai": ProviderServer("openai").start()}
    try:
        with GatewayProcess(_env(tmp_path, srvs, KNOLLM_GATEWAY_TIMEOUT_S="2")) as g:
            c = openai.OpenAI(base_url=g.base_url, api_key="x", max_retries=0, timeout=30)
            # a failed attempt (no answer for 1.5 s, then the connection closes), its retry in
            # flight when the 2 s limit passes: both reached the provider
            srvs["groq"].hang_s = 1.5
            srvs["groq"].faults("hang", "hang", "hang")
            with pytest.raises(openai.APIStatusError) as e:
                c.chat.completions.create(model=GROQ + "," + TOGETHER, messages=[{"role": "user", "content": "t"}])
            assert e.value.status_code == 504 and e.value.response.headers["x-should-retry"] == "false"
            assert len(srvs["groq"].requests) == 2 and srvs["togetherai"].requests == []
            assert e.value.response.headers["x-knollm-attempts"] == "2"
            assert _attempts_metric(g, "groq") == 2
            # one attempt, in flight until the limit (the Responses route, same path)
            srvs["groq"].hang_s = 6
            srvs["groq"].script.clear()
            srvs["groq"].faults("hang")
            with pytest.raises(openai.APIStatusError) as e:
                c.responses.create(model=GROQ, input="t")
            assert e.value.status_code == 504 and e.value.response.headers["x-knollm-attempts"] == "1"
            assert len(srvs["groq"].requests) == 3 and _attempts_metric(g, "groq") == 3
            # embeddings
            srvs["openai"].hang_s = 6
            srvs["openai"].faults("hang")
            with pytest.raises(openai.APIStatusError) as e:
                c.embeddings.create(model=EMBED, input="t")
            assert e.value.status_code == 504 and e.value.response.headers["x-knollm-attempts"] == "1"
            assert len(srvs["openai"].requests) == 1 and _attempts_metric(g, "openai") == 1
            # a stream whose first token has not come when the limit passes (the stream's own path:
            # the stopped stream's flow records the attempt in flight)
            srvs["groq"].faults("hang")
            with pytest.raises(openai.APIStatusError) as e:
                c.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "t"}], stream=True)
            assert e.value.status_code == 504 and e.value.response.headers["x-knollm-attempts"] == "1"
            assert len(srvs["groq"].requests) == 4 and _attempts_metric(g, "groq") == 4
    finally:
        for s in srvs.values():
            s.stop()
