"""``knollm serve`` as a real subprocess, called by real clients: the official ``openai``
SDK (sync, async, streaming, tools, response_format, images, the Responses API, legacy
completions), the ``anthropic`` SDK (messages, streaming, tools, token counts, models),
LangChain's ``ChatOpenAI`` and ``OpenAI``, pydantic-ai's ``Agent`` and LlamaIndex's
``OpenAILike`` (chat and completions); embeddings are in ``test_gateway_embeddings.py``. The upstream providers are loopback servers
(:class:`tests.support.provider_servers.ProviderServer`) with injected faults; we assert content, usage, the ``x-knollm-*`` headers, fallback, the ledger and
error shapes."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import time
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from typing import Any

from tests.support.client_fixtures import catalog, env_for, model
from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer

openai = pytest.importorskip("openai")

GROQ = "groq/llama-3.3-70b-versatile"
TOGETHER = "togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo"
CLAUDE = "anthropic/claude-x"
CANON = "llama-3.3-70b-instruct"
SECRETS = {"GROQ_API_KEY": "sk-groq-VERYSECRET-1234", "TOGETHER_API_KEY": "sk-tog-VERYSECRET-5678",
           "ANTHROPIC_API_KEY": "sk-ant-VERYSECRET-9012"}
# usage reported by every server: 120 in, 30 out -> exact costs from the catalog prices below
COST = {"groq": (120 * 1.0 + 30 * 2.0) / 1e6, "togetherai": (120 * 0.5 + 30 * 1.0) / 1e6,
        "anthropic": (120 * 3.0 + 30 * 15.0) / 1e6}
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cf000000030101007e0b6d3a0000000049454e44ae426082")).decode()


def test_catalog() -> dict:
    return catalog(
        model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0, vision=True, structured=True),
        model("togetherai", "meta-llama/Llama-3.3-70B-Instruct-Turbo", input=0.5, output=1.0),
        model("anthropic", "claude-x", canonical="claude-x", input=3.0, output=15.0, vision=True),
        model("deepinfra", "meta-llama/Llama-3.3-70B-Instruct", input=0.2, output=0.4),  # no key: never listed
        model("groq", "mystery-model", canonical="mystery-model", input=None, output=None),  # unpriced
    )


test_catalog.__test__ = False  # a helper, not a test


def gateway_env(tmp, servers: dict, catalog: dict | None = None, secrets: dict | None = None,
                **extra: str) -> dict[str, str]:
    """A gateway's environment: the test catalog (or ``catalog``) in ``tmp``, the loopback
    ``servers`` with ``secrets`` (the tests' keys by default), quick retries; ``extra`` env."""
    (tmp / "catalog.json").write_text(json.dumps(test_catalog() if catalog is None else catalog))
    env = env_for(servers, SECRETS if secrets is None else secrets)
    env.update(KNOLLM_HOME=str(tmp), KNOLLM_CATALOG=str(tmp / "catalog.json"),
               KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps({"retries": 1, "backoff_base": 0.01, "backoff_max": 0.02,
                                                         "breaker": {"failure_threshold": 1000}}))
    env.pop("KNOLLM_DATABASE_URL", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def servers():
    srvs = {"groq": ProviderServer("groq").start(), "togetherai": ProviderServer("together").start(),
            "anthropic": ProviderServer("anthropic").start()}
    yield srvs
    for s in srvs.values():
        s.stop()


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with GatewayProcess(gateway_env(tmp, servers)) as g:
        g.home = tmp
        yield g


@pytest.fixture(autouse=True)
def _reset(request):
    if "servers" in request.fixturenames:
        for s in request.getfixturevalue("servers").values():
            s.script.clear()
            s.default = "ok"


@pytest.fixture
def oai(gw):
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)


def ledger(gw) -> list[dict]:
    return ledger_rows(gw.home)


def knollm_headers(raw) -> dict[str, str]:
    return {k: v for k, v in raw.headers.items() if k.startswith("x-knollm-")}


def leave_mid_stream(gw, body: bytes, headers: bytes = b"") -> tuple[bytes, str]:
    """POST a streamed request on a raw socket, read until the first chunk, hang up; then
    the metrics text once the gateway has counted a 499 and has nothing in flight (or
    after 15 s). Returns (what was read, metrics text)."""
    import socket

    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     + headers + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while b"data: {" not in got:  # the first chunk, then the upstream stalls
            piece = sock.recv(65536)
            assert piece, f"the gateway closed the connection before the first chunk: {got[:300]!r}"
            got += piece
    deadline = time.monotonic() + 15
    text = ""
    auth = dict(line.split(": ", 1) for line in headers.decode().split("\r\n") if line.startswith("authorization: "))
    while time.monotonic() < deadline:  # (with keys, /metrics needs one: the caller's)
        with urllib.request.urlopen(urllib.request.Request(gw.url + "/metrics", headers=auth)) as r:
            text = r.read().decode()
        if 'status="499"' in text and "knollm_gateway_in_flight 0" in text:
            break
        time.sleep(0.1)
    return got, text


def no_secret(text: str) -> None:
    for v in SECRETS.values():
        assert v not in text and v[-8:] not in text


# --------------------------------------------------------------------------- openai SDK
def test_openai_sync_chat_headers_usage_and_ledger(gw, oai, servers):
    before = len(ledger(gw))
    raw = oai.chat.completions.with_raw_response.create(model=GROQ, messages=[{"role": "user", "content": "hi"}])
    r = raw.parse()
    assert r.choices[0].message.content == "Hello from groq! You said: hi"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (120, 30)
    h = knollm_headers(raw)
    assert h["x-knollm-provider"] == "groq" and h["x-knollm-model"] == "llama-3.3-70b-versatile"
    assert float(h["x-knollm-cost-usd"]) == pytest.approx(COST["groq"])
    assert h["x-knollm-attempts"] == "1"
    rows = ledger(gw)[before:]
    assert [(x["provider"], x["input_tokens"], x["output_tokens"]) for x in rows] == [("groq", 120, 30)]
    assert rows[0]["cost_usd"] == pytest.approx(COST["groq"])
    assert rows[0]["tag"] is None  # no gateway key (loopback, none configured): no caller tag
    # the provider key went upstream, and nowhere else
    assert servers["groq"].requests[-1]["headers"]["authorization"] == "Bearer " + SECRETS["GROQ_API_KEY"]
    no_secret(json.dumps(rows))


def test_unpriced_call_says_unknown_never_zero(gw, oai):
    raw = oai.chat.completions.with_raw_response.create(model="groq/mystery-model",
                                                        messages=[{"role": "user", "content": "?"}])
    assert raw.headers["x-knollm-cost-usd"] == "unknown"
    meta = raw.parse().model_extra["knollm"]
    assert meta["cost_usd"] is None and "no input/output price" in meta["unpriced_reason"]
    assert ledger(gw)[-1]["cost_usd"] is None


def test_openai_stream_with_usage(gw, oai):
    with oai.chat.completions.with_streaming_response.create(
            model=GROQ, messages=[{"role": "user", "content": "stream please"}], stream=True,
            stream_options={"include_usage": True}) as raw:
        h = knollm_headers(raw)
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from groq! You said: stream please"
    assert h["x-knollm-provider"] == "groq" and h["x-knollm-cost-usd"] == "pending"
    last = chunks[-1]
    assert not last.choices and (last.usage.prompt_tokens, last.usage.completion_tokens) == (120, 30)
    assert last.model_extra["knollm"]["cost_usd"] == pytest.approx(COST["groq"])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_stream_without_usage_option_has_no_usage_chunk(oai):
    chunks = list(oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)


def test_openai_tools_non_stream_and_stream(oai, servers):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    r = oai.chat.completions.create(model=GROQ, messages=msgs, tools=tools, tool_choice="auto")
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert servers["groq"].requests[-1]["json"]["tools"] == tools
    chunks = list(oai.chat.completions.create(model=GROQ, messages=msgs, tools=tools, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
    # the tool result goes back through the gateway to the provider
    follow = msgs + [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = oai.chat.completions.create(model=GROQ, messages=follow, tools=tools)
    assert r2.choices[0].message.content.startswith("Hello from groq")
    assert servers["groq"].requests[-1]["json"]["messages"][-1] == {"role": "tool", "tool_call_id": call.id,
                                                                   "content": "sunny"}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the SDK stream left early
def test_streamed_tool_call_leaves_as_it_arrives(gw, servers):
    """The first tool-call delta reaches the SDK while the upstream is still stalled after
    it: the gateway forwards tool-call deltas as they come, not with the final result."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    servers["groq"].faults("stall")
    servers["groq"].hang_s = 20.0
    try:
        c = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=8)
        with c.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "weather?"}], tools=tools,
                                       stream=True) as stream:
            first = next(iter(stream))
            assert stream.response.headers["x-knollm-provider"] == "groq"
        del stream
        gc.collect()  # the SDK's half-read event generator goes now, inside this test
        call = first.choices[0].delta.tool_calls[0]
        assert (call.index, call.id, call.function.name) == (0, "call_1", "get_weather")
    finally:
        servers["groq"].hang_s = 3.0


def test_client_leaving_a_stream_stops_it(gw, servers):
    """A client that disconnects mid-stream ends the request (status 499 in the metrics,
    nothing left in flight) instead of the gateway reading the upstream to the end. The
    provider bills what it generated: one ``interrupted`` ledger row, counted in the
    metrics."""
    servers["groq"].faults("stall")
    servers["groq"].hang_s = 20.0
    before = {r["request_id"] for r in ledger(gw)}
    try:
        body = json.dumps({"model": GROQ, "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
        got, text = leave_mid_stream(gw, body)
        assert b"x-knollm-provider: groq" in got
        assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="499"}' in text
        assert "knollm_gateway_in_flight 0" in text
        assert f'knollm_gateway_interrupted_streams_total{{provider="groq",model="llama-3.3-70b-versatile",' \
               f'alias="{GROQ}"}}' in text
    finally:
        servers["groq"].hang_s = 3.0
    # settled before the request left the metrics' in-flight count (a row an earlier test's call
    # settled meanwhile on this module's gateway is not this one: only the new interrupted row)
    (row,) = [r for r in ledger(gw) if r["request_id"] not in before and r["outcome"] == "interrupted"]
    assert (row["outcome"], row["provider"], row["stream"], row["tag"], row["usage_estimated"]) == \
        ("interrupted", "groq", 1, None, 1)
    assert row["output_tokens"] == 2 and row["input_tokens"] > 0  # "Hello ", and the prompt's estimate
    assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 1.0 + 2 * 2.0) / 1e6)


def test_openai_response_format_and_image(oai, servers):
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        "answer": {"type": "string"}}}}}
    oai.chat.completions.create(model=GROQ, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is in this image?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}],
        response_format=rf)
    sent = servers["groq"].requests[-1]["json"]
    assert sent["response_format"] == rf
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == "data:image/png;base64," + PNG


# --------------------------------------------------------------------------- openai SDK: the Responses API
WEATHER = [{"type": "function", "name": "get_weather", "description": "the weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def test_openai_responses_text_tools_and_the_ledger(gw, oai, servers):
    """``client.responses.create``: instructions and input as chat messages to the provider,
    the answer as ``output`` items with usage and the ``knollm`` cost; a function call, then
    its output sent back (the whole conversation: the gateway stores no response)."""
    before = len(ledger(gw))
    raw = oai.responses.with_raw_response.create(model=GROQ, instructions="be brief", input="hi",
                                                 max_output_tokens=64)
    r = raw.parse()
    assert (r.output_text, r.status, r.model) == ("Hello from groq! You said: hi", "completed", "llama-3.3-70b-versatile")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (120, 30, 150)
    assert r.usage.output_tokens_details.reasoning_tokens is None  # the provider did not say: unknown, not 0
    assert r.model_extra["knollm"]["cost_usd"] == pytest.approx(COST["groq"])
    assert raw.headers["x-knollm-provider"] == "groq" and float(raw.headers["x-knollm-cost-usd"]) == \
        pytest.approx(COST["groq"])
    sent = servers["groq"].requests[-1]["json"]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 64
    rows = ledger(gw)[before:]
    assert len(rows) == 1 and rows[0]["provider"] == "groq" and rows[0]["cost_usd"] == pytest.approx(COST["groq"])

    r = oai.responses.create(model=GROQ, input="weather in Paris?", tools=WEATHER)
    (call,) = r.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    assert servers["groq"].requests[-1]["json"]["tools"][0]["function"]["name"] == "get_weather"
    r = oai.responses.create(model=GROQ, tools=WEATHER, input=[
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert r.output_text == "Hello from groq! You said: weather in Paris?"
    assert servers["groq"].requests[-1]["json"]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call.call_id, "type": "function", "function": {
            "name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}]

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    oai.responses.create(model=GROQ, text={"format": {"type": "json_schema", "name": "x", "schema": schema}},
                         input=[{"role": "user", "content": [
                             {"type": "input_text", "text": "what is in this image?"},
                             {"type": "input_image", "image_url": "data:image/png;base64," + PNG}]}])
    sent = servers["groq"].requests[-1]["json"]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == "data:image/png;base64," + PNG

    with pytest.raises(openai.BadRequestError) as e:  # no stored responses to continue from
        oai.responses.create(model=GROQ, input="again", previous_response_id="resp_123")
    assert "stores none" in e.value.message and e.value.code == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=GROQ, input="news?", tools=[{"type": "web_search"}])
    assert "runs no tools" in e.value.message


def test_openai_responses_stream_events_and_the_stream_helper(gw, oai):
    """A streamed response: OpenAI's event sequence, numbered; ``response.completed`` holds
    the whole response with usage and the ``knollm`` cost. The SDK's ``responses.stream``
    helper, which rebuilds the response from the events, agrees, for text and for a call."""
    events = list(oai.responses.create(model=GROQ, input="stream me", stream=True))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * (len(events) - 8), "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "Hello from groq! You said: stream me"
    done = events[-1].response
    assert done.output_text == "Hello from groq! You said: stream me" and done.usage.total_tokens == 150
    assert done.model_extra["knollm"]["cost_usd"] == pytest.approx(COST["groq"])

    with oai.responses.stream(model=GROQ, input="helper") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from groq! You said: helper"
    for target in (GROQ, CLAUDE):  # (an Anthropic provider's stream, translated twice)
        with oai.responses.stream(model=target, input="weather in Paris?", tools=WEATHER) as s:
            kinds = [e.type for e in s]
            final = s.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert [(o.type, o.name, json.loads(o.arguments)) for o in final.output] == \
            [("function_call", "get_weather", {"city": "Paris"})]
    with oai.responses.stream(model=CLAUDE, input="helper") as s:
        final = s.get_final_response()
    assert final.output_text == "Hello from anthropic! You said: helper" and final.usage.output_tokens == 30


def test_a_responses_stream_broken_after_output_ends_with_error_and_failed(gw, oai, servers):
    """A provider stream cut after its first text: the deltas given out, then OpenAI's
    ``error`` and ``response.failed`` events (no ``response.completed``: the SDK's stream
    helper raises); the ledger keeps what the provider bills for the cut stream."""
    before = len(ledger(gw))
    servers["groq"].default = "cut"
    events = list(oai.responses.create(model=GROQ, input="cut", stream=True))
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds and kinds[-2:] == ["error", "response.failed"]
    assert events[-2].code == "stream_interrupted" and events[-1].response.error.code == "stream_interrupted"
    assert events[-1].response.status == "failed" and events[-1].response.output_text  # the text given out
    with pytest.raises(RuntimeError):
        with oai.responses.stream(model=GROQ, input="cut again") as s:
            s.get_final_response()
    rows = ledger(gw)[before:]
    assert [(r["outcome"], r["provider"]) for r in rows] == [("interrupted", "groq")] * 2


def test_legacy_completions_plain_stream_and_errors(gw, oai, servers):
    """``client.completions.create``: the prompt as one user message to a chat model, the
    answer as a ``text_completion`` (plain and streamed, usage and cost kept); what only a
    completions model can do is a 400 naming the field."""
    before = len(ledger(gw))
    raw = oai.completions.with_raw_response.create(model=GROQ, prompt="from completions", max_tokens=20, stop=["\n"])
    r = raw.parse()
    assert r.object == "text_completion" and r.choices[0].text == "Hello from groq! You said: from completions"
    assert r.choices[0].finish_reason == "stop" and (r.usage.prompt_tokens, r.usage.completion_tokens) == (120, 30)
    assert raw.headers["x-knollm-provider"] == "groq"
    assert float(raw.headers["x-knollm-cost-usd"]) == pytest.approx(COST["groq"])
    sent = servers["groq"].requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["json"]["stop"] == ["\n"]
    assert sent["json"]["messages"] == [{"role": "user", "content": "from completions"}]
    assert sent["json"]["max_tokens"] == 20 and "prompt" not in sent["json"]
    chunks = list(oai.completions.create(model=GROQ, prompt="streamed", stream=True,
                                         stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from groq! You said: streamed"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30
    assert chunks[-1].model_extra["knollm"]["cost_usd"] == pytest.approx(COST["groq"])
    assert [(x["provider"], x["stream"]) for x in ledger(gw)[before:]] == [("groq", 0), ("groq", 1)]
    for kw, param in (({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2, 3]}, "prompt"),
                      ({"prompt": "x", "echo": True}, "echo"), ({"prompt": "x", "suffix": "y"}, "suffix"),
                      ({"prompt": "x", "logprobs": 2}, "logprobs"), ({"prompt": "x", "best_of": 2}, "best_of")):
        with pytest.raises(openai.BadRequestError) as e:
            oai.completions.create(model=GROQ, **kw)
        assert e.value.code == param, kw


def test_langchain_openai_llm_uses_completions(gw):
    lc = pytest.importorskip("langchain_openai")
    llm = lc.OpenAI(model=GROQ, base_url=gw.base_url, api_key="unused", max_retries=0)
    assert llm.invoke("from the llm class") == "Hello from groq! You said: from the llm class"
    assert "".join(llm.stream("streamed llm")) == "Hello from groq! You said: streamed llm"


def test_openai_async_concurrent(gw):
    async def main():
        c = openai.AsyncOpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        rs = await asyncio.gather(*(c.chat.completions.create(model=GROQ, messages=[
            {"role": "user", "content": f"n{i}"}]) for i in range(12)))
        stream = await c.chat.completions.create(model=CANON, messages=[{"role": "user", "content": "s"}],
                                                 stream=True)
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        await c.close()
        return rs, text

    before = len(ledger(gw))
    rs, text = asyncio.run(main())
    assert sorted(r.choices[0].message.content for r in rs) == sorted(
        f"Hello from groq! You said: n{i}" for i in range(12))
    assert text == "Hello from together! You said: s"  # the canonical id: cheapest provider first
    assert len(ledger(gw)) - before == 13


def test_fallback_across_providers_headers_and_ledger(gw, oai, servers):
    servers["togetherai"].default = "503"
    before = len(ledger(gw))
    raw = oai.chat.completions.with_raw_response.create(model=CANON, messages=[{"role": "user", "content": "fb"}])
    assert raw.parse().choices[0].message.content == "Hello from groq! You said: fb"
    h = knollm_headers(raw)
    assert h["x-knollm-provider"] == "groq" and h["x-knollm-attempts"] == "3"  # 2 tries on together, then groq
    attempts = raw.parse().model_extra["knollm"]["attempts"]
    assert [(a["provider"], a["status"]) for a in attempts] == [("togetherai", 503), ("togetherai", 503),
                                                                ("groq", 200)]
    rows = ledger(gw)[before:]
    assert [(r["provider"], r["attempts"]) for r in rows] == [("groq", 3)]  # charged once, to the one that answered


def test_a_providers_retry_after_reaches_the_caller(gw, oai, servers):
    """Every attempt rate-limited, the provider asking to come back in 45 s (longer than
    the client waits itself, ``max_retry_wait`` 30 s): the gateway's 429 says
    ``retry-after: 45``, so an SDK's own retry waits that long instead of its shorter
    backoff (the openai SDK honours it up to 60 s). A provider's 429 without a wait adds
    none; nothing is charged."""
    groq = servers["groq"]
    before, sent = len(ledger(gw)), len(groq.requests)
    groq.retry_after = "45"
    groq.faults("429")
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "ra"}])
    assert e.value.code == "upstream_rate_limited" and e.value.response.headers["retry-after"] == "45"
    assert len(groq.requests) == sent + 1  # 45 s is past what the client waits: no retry of its own
    groq.retry_after = "0.2"  # a short wait the client honours itself: then the gateway's answer says 1 s
    groq.faults("429", "429")
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "ra"}])
    assert e.value.response.headers["retry-after"] == "1" and len(groq.requests) == sent + 3
    groq.retry_after = "0"
    groq.faults("429", "429")
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "ra"}])
    assert "retry-after" not in e.value.response.headers
    assert len(ledger(gw)) == before


def test_only_timeouts_tell_the_sdks_not_to_retry():
    """Every attempt timed out: 504 with ``x-should-retry: false`` (a timed-out call may
    still be billed at the provider; an SDK's two retries would pay for it again). Every
    attempt failed with a 5xx (nothing billed) or a rate limit: the SDKs' own retries stay
    as they are."""
    from knollm.errors import AllAttemptsFailed, ProviderError
    from knollm.gateway.client_backend import map_client_error

    def failed(**kw):
        return map_client_error(AllAttemptsFailed("m", [{}], ProviderError("x", provider="groq", **kw)))

    timeout = failed(kind="timeout")
    assert (timeout.status, timeout.headers) == (504, {"x-should-retry": "false"})
    for err in (failed(status=500, kind="server"), failed(status=429, kind="rate_limit"),
                failed(status=503, kind="server", retry_after=5)):
        assert err.status in (429, 502) and "x-should-retry" not in err.headers


def test_an_answer_cut_mid_body_is_retried_and_its_cost_counted(gw, oai, servers):
    """The provider's answer began (200) and its body was cut: retried; the cut one is
    billed, so it is in the ledger (interrupted), on its attempt (``charged``), in the
    request's cost (header and ``knollm.cost_usd``) and in the metrics."""
    servers["groq"].faults("bodycut")
    before = len(ledger(gw))
    raw = oai.chat.completions.with_raw_response.create(model=GROQ, messages=[{"role": "user", "content": "cut"}])
    assert raw.parse().choices[0].message.content == "Hello from groq! You said: cut"
    cut, ok = ledger(gw)[before:]
    assert (cut["outcome"], cut["usage_estimated"], ok["outcome"]) == ("interrupted", 1, "ok")
    meta = raw.parse().model_extra["knollm"]
    first, second = meta["attempts"]
    assert first["charged"]["request_id"] == cut["request_id"] and "charged" not in second
    h = knollm_headers(raw)
    assert h["x-knollm-attempts"] == "2"
    assert float(h["x-knollm-cost-usd"]) == pytest.approx(cut["cost_usd"] + ok["cost_usd"]) == meta["cost_usd"]
    with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert f'knollm_gateway_cut_answers_total{{provider="groq",model="llama-3.3-70b-versatile",alias="{GROQ}"}}' \
        in text
    no_secret(json.dumps(meta) + json.dumps([cut, ok]) + json.dumps(dict(raw.headers)) + text)


def test_stream_falls_back_before_first_token(oai, servers):
    servers["togetherai"].faults("500", "500")
    with oai.chat.completions.with_streaming_response.create(
            model=CANON, messages=[{"role": "user", "content": "sfb"}], stream=True) as raw:
        h = knollm_headers(raw)
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Hello from groq! You said: sfb"
    assert h["x-knollm-provider"] == "groq" and h["x-knollm-attempts"] == "3"


def test_all_candidates_fail_is_502_without_keys(oai, servers):
    servers["groq"].default = "500"
    servers["togetherai"].default = "500"
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.create(model=CANON, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    body = e.value.response.json()
    assert body["error"]["type"] == "upstream_error" and body["error"]["message"]
    assert e.value.response.headers["x-knollm-attempts"] == "4"
    no_secret(e.value.response.text)
    assert "Traceback" not in e.value.response.text


def test_stream_broken_after_first_token_ends_with_error_event(gw, servers):
    before = len(ledger(gw))
    servers["groq"].default = "cut"
    req = urllib.request.Request(gw.base_url + "/chat/completions", method="POST",
                                 data=json.dumps({"model": GROQ, "stream": True,
                                                  "messages": [{"role": "user", "content": "cut"}]}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        events = [line[6:] for line in r.read().decode().splitlines() if line.startswith("data: ")]
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents and all(contents)  # the partial text, once
    err = json.loads(events[-1])["error"]
    assert err["type"] == "upstream_error" and err["code"] == "stream_interrupted"
    (row,) = ledger(gw)[before:]  # what the provider bills for it (the request ended: it is written)
    assert (row["outcome"], row["provider"], row["output_tokens"]) == ("interrupted", "groq", 2)


@pytest.mark.parametrize("payload, status, code", [
    ({"model": GROQ, "messages": []}, 400, "messages"),
    ({"model": GROQ, "messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "n"),
    ({"model": "nope/unknown-model", "messages": [{"role": "user", "content": "x"}]}, 400, "no_candidates"),
])
def test_request_errors_are_openai_shaped(oai, payload, status, code):
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.create(**payload)
    assert e.value.status_code == status
    err = e.value.response.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error" and err["message"]
    assert e.value.response.headers["x-knollm-attempts"] == "0"


def _post(url: str, data: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_bad_json_size_limit_and_unknown_route(gw):
    status, _, body = _post(gw.base_url + "/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    # a body announced over the 20 MiB limit is refused before it is read
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(21 * 1024 * 1024))
    conn.endheaders(b'{"model": "x", "messages": [')
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()
    status, headers, body = _post(gw.base_url + "/audio/speech", b"{}")  # a route the gateway does not serve
    assert status == 404 and body["error"]["type"] == "not_found_error"
    assert "x-knollm-attempts" in {k.lower() for k in headers}


def test_metrics_series_per_alias_are_capped(servers, tmp_path):
    """The ``alias`` label is the caller's ``model`` text, and many texts route alike
    (``g,g``, `` g``, ``g,,g``): past the cap (3 here) new ones count as ``(other)``, so
    a caller cannot grow /metrics without bound; the counts stay whole."""
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_METRICS_ALIASES="3")
    variants = [GROQ, f"{GROQ},{GROQ}", f" {GROQ}", f"{GROQ},,{GROQ}", f"{GROQ} ", f"{GROQ},{GROQ},{GROQ}"]
    with GatewayProcess(env) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        for v in variants:
            client.chat.completions.create(model=v, messages=[{"role": "user", "content": "m"}])
        with urllib.request.urlopen(g.url + "/metrics") as r:
            text = r.read().decode()
    prefix = 'knollm_gateway_cost_usd_total{provider="groq",model="llama-3.3-70b-versatile",alias="'
    series = {line[len(prefix):line.index('"}')]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith(prefix)}
    assert set(series) == {*variants[:3], "(other)"}
    assert series["(other)"] == pytest.approx(3 * COST["groq"])
    assert sum(series.values()) == pytest.approx(len(variants) * COST["groq"])


def test_a_response_names_its_ledger_row(gw, oai):
    """Every served answer names its ledger row: ``x-request-id`` (the openai SDK's
    ``_request_id``) and ``knollm.request_id``; a stream's last chunk carries it (its
    headers leave before the call is recorded). ``knollm usage --request-id`` shows that row."""
    import subprocess
    import sys

    from tests.support.gateway_proc import ROOT

    c = oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "which row?"}])
    rid = c._request_id
    assert rid and c.model_extra["knollm"]["request_id"] == rid
    last = None
    for chunk in oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "s"}], stream=True,
                                             stream_options={"include_usage": True}):
        last = chunk
    srid = last.model_extra["knollm"]["request_id"]
    assert srid and srid != rid
    rows = {r["request_id"]: r for r in ledger(gw)}
    assert rows[rid]["stream"] == 0 and rows[srid]["stream"] == 1
    env = {**gw.env, "PYTHONPATH": str(ROOT)}
    for want in (rid, srid):
        r = subprocess.run([sys.executable, "-m", "knollm", "usage", "--request-id", want, "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert row["request_id"] == want and row["cost_usd"] == pytest.approx(COST["groq"])
        assert row["provider"] == "groq" and row["cost_usd"] == rows[want]["cost_usd"]
    r = subprocess.run([sys.executable, "-m", "knollm", "usage", "--request-id", "nope"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no call 'nope'" in r.stderr


def test_models_health_metrics(gw, oai):
    ids = {m.id for m in oai.models.list().data}
    assert {GROQ, TOGETHER, CLAUDE} <= ids
    assert "deepinfra/meta-llama/Llama-3.3-70B-Instruct" not in ids  # no DEEPINFRA key
    with urllib.request.urlopen(gw.url + "/health") as r:
        assert json.loads(r.read()) == {"status": "ok", "store": "sqlite", "keys_required": False,
                                        "ledger_spooled": 0}
    oai.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "m"}])
    assert _post(gw.base_url + "/chat/completions", b"{not json")[0] == 400  # counted as an error
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        text = r.read().decode()
        assert r.headers["content-type"].startswith("text/plain")
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="200"}' in text
    cost = [line for line in text.splitlines() if line.startswith(
        f'knollm_gateway_cost_usd_total{{provider="groq",model="llama-3.3-70b-versatile",alias="{GROQ}"}}')]
    assert cost and float(cost[0].split()[-1]) >= COST["groq"]
    assert 'knollm_gateway_tokens_total{provider="groq",model="llama-3.3-70b-versatile",' \
           f'alias="{GROQ}",kind="input"}}' in text
    assert "knollm_gateway_request_duration_seconds_bucket" in text
    assert 'knollm_gateway_errors_total{route="/v1/chat/completions",type="invalid_request_error"}' in text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(("knollm_gateway_gc_", "knollm_gateway_cpu_seconds_total"))}
    assert 0 < values["knollm_gateway_cpu_seconds_total"]  # the worker's CPU and its time in the collector
    assert all(f'knollm_gateway_gc_seconds_total{{generation="{g}"}}' in values for g in range(3))
    assert sum(v for k, v in values.items() if k.startswith("knollm_gateway_gc_seconds")) < \
        values["knollm_gateway_cpu_seconds_total"]


def test_models_retrieve_and_the_anthropic_shape(gw, oai):
    """``GET /v1/models/{id}`` (the openai SDK's ``models.retrieve``, ids with ``/`` sent as
    ``%2F``), and for the Anthropic SDK (it sends ``anthropic-version``) the same list as
    pages of Anthropic's ``ModelInfo``: the catalog's name, context window and output limit."""
    anthropic = pytest.importorskip("anthropic")
    m = oai.models.retrieve(GROQ)
    assert (m.id, m.owned_by) == (GROQ, "groq")
    assert m.model_extra["knollm"] == {"name": "llama-3.3-70b-versatile", "kind": "chat", "context_window": 128_000,
                                       "max_output": 8192}
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("deepinfra/meta-llama/Llama-3.3-70B-Instruct")  # in the catalog, but no key
    assert e.value.code == "model_not_found" and "GET /v1/models" in e.value.message
    ids = [d.id for d in oai.models.list().data]
    assert len(ids) == 4

    ac = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    page = ac.models.list(limit=2)
    assert [x.id for x in page.data] == ids[:2] and page.has_more and page.last_id == ids[1]
    assert [x.id for x in ac.models.list(limit=3)] == ids  # the SDK pages on with after_id
    before = ac.models.list(limit=2, before_id=ids[3])
    assert [x.id for x in before.data] == ids[1:3] and before.has_more
    info = ac.models.retrieve(GROQ)
    assert (info.type, info.display_name, info.max_input_tokens, info.max_tokens) == \
        ("model", "llama-3.3-70b-versatile", 128_000, 8192)
    assert info.created_at.timestamp() == 0  # unknown release date: the epoch, as Anthropic documents
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.models.retrieve("nope/x")
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        ac.models.list(limit=0)
    with pytest.raises(anthropic.BadRequestError):
        ac.models.list(after_id="nope/x")
    req = urllib.request.Request(gw.base_url + "/models?limit=%C2%B2", headers={"anthropic-version": "2023-06-01"})
    with pytest.raises(urllib.error.HTTPError) as http:  # a digit to str.isdigit, not to int(): "²"
        urllib.request.urlopen(req, timeout=30)
    assert http.value.code == 400 and json.loads(http.value.read())["error"]["type"] == "invalid_request_error"


def test_a_worker_loads_the_catalog_and_settles_the_collector_before_serving(servers, tmp_path, monkeypatch):
    """``app_factory`` (what each uvicorn worker runs) loads the catalog and opens the ledger
    before the first request, then freezes what startup loaded out of the collector and
    raises the young generation's threshold (``KNOLLM_GATEWAY_GC=default`` keeps Python's)."""
    import gc

    from knollm.gateway import server

    for k, v in gateway_env(tmp_path, servers).items():
        monkeypatch.setenv(k, v)
    threshold = gc.get_threshold()
    gc.unfreeze()  # (an in-process CLI test before this one may have frozen its own objects)
    try:
        monkeypatch.setenv("KNOLLM_GATEWAY_GC", "default")
        server.app_factory()
        assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
        monkeypatch.delenv("KNOLLM_GATEWAY_GC")
        app = server.app_factory()
        client = app.state.backend.client
        assert client._router is not None and client._router.source is not None  # the catalog: loaded
        assert client._store is not None
        assert gc.get_threshold()[0] == 7000 and gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_worker_builds_its_driver_and_asks_the_key_store_before_the_first_request(servers, tmp_path, monkeypatch,
                                                                                    caplog):
    """What the first request would otherwise pay for (about 110 ms: the provider registry,
    the HTTP driver, the key store's thread pool) is done at startup: the driver in
    ``app_factory``, the key-store question in the lifespan startup. A store that fails
    then is logged (without its error text) and asked again by the requests."""
    from starlette.testclient import TestClient

    from knollm.gateway import server
    from knollm.gateway.keys import KeyStore

    for k, v in gateway_env(tmp_path, servers).items():
        monkeypatch.setenv(k, v)
    asked: list[int] = []
    any_active = KeyStore.any_active

    def counted(self: KeyStore) -> bool:
        asked.append(1)
        return any_active(self)

    monkeypatch.setattr(KeyStore, "any_active", counted)
    threshold = gc.get_threshold()
    try:
        app = server.app_factory()
        assert app.state.backend.client._driver is not None
        assert asked == []
        with TestClient(app, base_url="http://127.0.0.1") as tc:
            assert asked == [1]  # at startup, before any request
            r = tc.post("/v1/chat/completions", json={"model": "groq/llama-3.3-70b-versatile",
                                                      "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
            assert asked == [1]  # the answer is kept (key_cache_s)

        def broken(self: KeyStore) -> bool:
            raise sqlite3.OperationalError("disk I/O error at /secret/path")

        monkeypatch.setattr(KeyStore, "any_active", broken)
        app = server.app_factory()
        with caplog.at_level("WARNING", logger="knollm.gateway"), TestClient(app, base_url="http://127.0.0.1") as tc:
            assert "did not answer at startup (OperationalError)" in caplog.text
            assert "/secret/path" not in caplog.text
            r = tc.post("/v1/chat/completions", json={"model": "groq/llama-3.3-70b-versatile",
                                                      "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_stream_that_fails_before_output_is_not_counted_as_charged(gw, servers):
    """Every attempt of a stream fails before its first token: the metrics count the error
    and the attempts, never tokens, a cost or an "unpriced" call for it."""
    def counters() -> dict[str, float]:
        with urllib.request.urlopen(gw.url + "/metrics") as r:
            lines = r.read().decode().splitlines()
        return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines
                if ln.startswith(("knollm_gateway_unpriced_calls_total", "knollm_gateway_tokens_total",
                                  "knollm_gateway_cost_usd_total")) and 'provider="groq"' in ln}

    before = counters()
    servers["groq"].default = "500"
    try:
        status, headers, body = _post(gw.base_url + "/chat/completions", json.dumps(
            {"model": GROQ, "stream": True, "messages": [{"role": "user", "content": "nothing"}]}).encode())
    finally:
        servers["groq"].default = "ok"
    assert status == 502 and body["error"]["type"] == "upstream_error"
    assert headers["x-knollm-provider"] == "groq"  # who was tried is still said
    assert counters() == before


# --------------------------------------------------------------------------- anthropic SDK
def test_anthropic_sdk_messages_to_openai_provider(gw, servers):
    anthropic = pytest.importorskip("anthropic")
    c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    raw = c.messages.with_raw_response.create(model=GROQ, max_tokens=100, system="be brief",
                                              messages=[{"role": "user", "content": "hola"}])
    m = raw.parse()
    assert m.content[0].text == "Hello from groq! You said: hola" and m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (120, 30)
    assert raw.headers["x-knollm-provider"] == "groq"
    sent = servers["groq"].requests[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"} and sent["max_tokens"] == 100
    assert m._request_id and m._request_id == raw.headers["x-request-id"]  # the SDK's request-id: the ledger row
    assert ledger(gw)[-1]["request_id"] == m._request_id


def test_anthropic_sdk_stream_and_tools_to_anthropic_provider(gw, servers):
    anthropic = pytest.importorskip("anthropic")
    c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    with c.messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from anthropic! You said: stream"
    assert final.usage.output_tokens == 30 and final.stop_reason == "end_turn"
    # the upstream got a native Anthropic request with the provider key
    assert servers["anthropic"].requests[-1]["headers"]["x-api-key"] == SECRETS["ANTHROPIC_API_KEY"]
    tools = [{"name": "get_weather", "description": "w", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    m = c.messages.create(model=GROQ, max_tokens=50, tools=tools,
                          messages=[{"role": "user", "content": "weather?"}])
    block = [b for b in m.content if b.type == "tool_use"][0]
    assert m.stop_reason == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    with c.messages.stream(model=GROQ, max_tokens=50, tools=tools,
                           messages=[{"role": "user", "content": "weather?"}]) as s:
        streamed = s.get_final_message()
    tb = [b for b in streamed.content if b.type == "tool_use"][0]
    assert tb.input == {"city": "Paris"} and streamed.stop_reason == "tool_use"
    m2 = c.messages.create(model=GROQ, max_tokens=50, tools=tools, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": block.id, "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]}])
    assert m2.content[0].type == "text"
    assert servers["groq"].requests[-1]["json"]["messages"][-1] == {"role": "tool", "tool_call_id": block.id,
                                                                   "content": "sunny"}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_anthropic_sdk_tool_loop_with_extended_thinking_keeps_the_thinking_blocks(gw, servers, streamed):
    """Claude Code's loop with extended thinking on: the answer's signed thinking block comes
    back to the caller (before its tool_use, as Anthropic gave it), and the next request,
    which gives it back with the tool result, reaches Anthropic with it unmodified: Anthropic
    refuses a tool loop whose assistant turn does not start with its thinking block (a 400,
    which the loopback server returns as Anthropic's API does). Before, the gateway left the
    thinking out of the answer, and the second turn failed. A provider without thinking
    (the chat-completions shape) gets the turn without it."""
    anthropic = pytest.importorskip("anthropic")
    from tests.support.provider_servers import SIGNATURE

    c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    tools = [{"name": "get_weather", "description": "w", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    kw = {"max_tokens": 2048, "tools": tools, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    ask = [{"role": "user", "content": "weather?"}]

    def call(model: str, messages: list) -> Any:
        if not streamed:
            return c.messages.create(model=model, messages=messages, **kw)
        with c.messages.stream(model=model, messages=messages, **kw) as s:
            return s.get_final_message()

    m = call(CLAUDE, ask)
    assert [b.type for b in m.content] == ["thinking", "tool_use"] and m.stop_reason == "tool_use"
    assert (m.content[0].thinking, m.content[0].signature) == ("Let me think. ", SIGNATURE)
    assert servers["anthropic"].requests[-1]["json"]["thinking"] == kw["thinking"]
    turn = [b.model_dump(exclude_none=True) for b in m.content]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": m.content[1].id, "content": "sunny"}]}
    m2 = call(CLAUDE, [*ask, {"role": "assistant", "content": turn}, result])
    assert [b.type for b in m2.content] == ["thinking", "text"] and m2.stop_reason == "end_turn"
    assert servers["anthropic"].requests[-1]["json"]["messages"][1] == {"role": "assistant", "content": turn}
    m3 = call(GROQ, [*ask, {"role": "assistant", "content": turn}, result])  # (no thinking on this API)
    assert [b.type for b in m3.content] == ["text"]
    sent = servers["groq"].requests[-1]["json"]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == m.content[1].id
    assert "thinking" not in json.dumps(sent)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_chat_completions_from_a_provider_that_answers_with_thinking_blocks(gw, oai, servers, streamed):
    """An Anthropic-shaped provider whose answers start with a thinking block unasked (as
    MiniMax-M2's Anthropic-compatible API does), called through chat completions: the caller
    gets the text, and nothing of Anthropic's own blocks (no ``x_anthropic`` in the answer)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    servers["anthropic"].thinks = True
    try:
        got = []
        for kw in ({}, {"tools": tools}):
            if streamed:
                chunks = list(oai.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}],
                                                          stream=True, **kw))
                calls: dict = {}
                for c in chunks:
                    for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                        slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                got.append((text, list(calls.values()), [c.model_dump() for c in chunks]))
            else:
                r = oai.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}], **kw)
                calls = [{"name": c.function.name, "arguments": c.function.arguments}
                         for c in r.choices[0].message.tool_calls or []]
                got.append((r.choices[0].message.content, calls, [r.model_dump()]))
    finally:
        servers["anthropic"].thinks = False
    (text, calls, raw), (_, tool_calls, raw2) = got
    assert text == "Hello from anthropic! You said: hi" and calls == []
    assert [(c["name"], json.loads(c["arguments"])) for c in tool_calls] == [("get_weather", {"city": "Paris"})]
    assert "x_anthropic" not in json.dumps(raw + raw2) and "signature" not in json.dumps(raw + raw2)


def test_anthropic_sdk_error_shape(gw):
    anthropic = pytest.importorskip("anthropic")
    c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model=GROQ, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    body = e.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_anthropic_sdk_count_tokens_from_the_provider_or_estimated(gw, servers):
    """``messages.count_tokens`` (and Claude Code's ``beta.messages.count_tokens``, sent with
    ``?beta=true``): an Anthropic deployment counts with its own endpoint and the caller's
    body (system, tools) under the deployment's model id; any other provider, or a count
    that fails, gets Knollm's estimate, said as such. Free: nothing in the ledger."""
    anthropic = pytest.importorskip("anthropic")
    from knollm.client.accounting import prompt_tokens
    from knollm.gateway.translate import anthropic_to_openai
    from tests.support.provider_servers import counted_tokens

    c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    tools = [{"name": "get_weather", "description": "the weather in a city", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    ask = {"system": "You are terse.", "tools": tools,
           "messages": [{"role": "user", "content": "What is the weather in Paris, and in Lyon?"}]}
    rows = len(ledger(gw))
    raw = c.messages.with_raw_response.count_tokens(model=CLAUDE, **ask)
    sent = servers["anthropic"].requests[-1]
    assert sent["path"] == "/v1/messages/count_tokens" and sent["headers"]["x-api-key"] == SECRETS["ANTHROPIC_API_KEY"]
    assert sent["json"] == {**ask, "model": "claude-x"}
    assert raw.parse().input_tokens == counted_tokens(sent["json"])
    assert raw.headers["x-knollm-token-count"] == "provider" and raw.headers["x-knollm-provider"] == "anthropic"
    assert raw.headers["x-knollm-cost-usd"] == "0" and raw.headers["x-knollm-attempts"] == "1"
    assert c.beta.messages.count_tokens(model=CLAUDE, **ask).input_tokens == counted_tokens(sent["json"])
    assert servers["anthropic"].requests[-1]["query"] == ""  # (Claude Code's ?beta=true stays with the gateway)

    before = len(servers["groq"].requests)  # an OpenAI-API provider has no count endpoint: the estimate
    raw = c.messages.with_raw_response.count_tokens(model=GROQ, **ask)
    expected = anthropic_to_openai({**ask, "model": GROQ, "max_tokens": 1})
    assert raw.parse().input_tokens == prompt_tokens(expected["messages"], {"tools": expected["tools"]})
    assert raw.headers["x-knollm-token-count"] == "estimate" and raw.headers["x-knollm-provider"] == "groq"
    assert "no token count" in raw.http_response.json()["knollm"]["reason"]
    assert len(servers["groq"].requests) == before

    servers["anthropic"].script.append("500")  # a count that fails: the estimate, with the reason
    raw = c.messages.with_raw_response.count_tokens(model=CLAUDE, **ask)
    assert raw.headers["x-knollm-token-count"] == "estimate" and raw.headers["x-knollm-attempts"] == "1"
    assert "failed (500)" in raw.http_response.json()["knollm"]["reason"]
    for fault, why in (("429", "failed (429)"), ("503", "failed (503)"), ("reset", "failed (")):
        servers["anthropic"].script.append(fault)  # rate-limited, down, the connection dropped: the estimate
        raw = c.messages.with_raw_response.count_tokens(model=CLAUDE, **ask)
        assert raw.headers["x-knollm-token-count"] == "estimate", fault
        assert why in raw.http_response.json()["knollm"]["reason"], fault
        assert SECRETS["ANTHROPIC_API_KEY"] not in raw.http_response.text
    servers["anthropic"].script.append("echo401")  # a provider echoing the key it refused: never passed on
    raw = c.messages.with_raw_response.count_tokens(model=CLAUDE, **ask)
    assert raw.headers["x-knollm-token-count"] == "estimate" and "failed (401)" in raw.http_response.text
    assert SECRETS["ANTHROPIC_API_KEY"] not in raw.http_response.text
    servers["anthropic"].script.append("context")  # a request the provider rejects: an error, as the call
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.count_tokens(model=CLAUDE, **ask)
    assert e.value.body["type"] == "error" and SECRETS["ANTHROPIC_API_KEY"] not in e.value.response.text
    with pytest.raises(anthropic.BadRequestError):  # no messages
        c.messages.count_tokens(model=CLAUDE, messages=[])
    assert len(ledger(gw)) == rows


def test_a_token_count_that_hangs_gets_the_estimate_in_the_calls_time(servers, tmp_path):
    """An Anthropic count endpoint that does not answer: the estimate once the client's read
    timeout passes (``timeout`` 1 s here), not a request stuck for the gateway's whole limit."""
    anthropic = pytest.importorskip("anthropic")
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps({"timeout": 1, "retries": 0}))
    servers["anthropic"].hang_s = 8
    try:
        with GatewayProcess(env) as g:
            c = anthropic.Anthropic(base_url=g.url, api_key="unused", max_retries=0)
            servers["anthropic"].script.append("hang")
            t = time.monotonic()
            raw = c.messages.with_raw_response.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
            took = time.monotonic() - t
    finally:
        servers["anthropic"].hang_s = 3.0
    assert raw.headers["x-knollm-token-count"] == "estimate" and took < 6
    assert "token count failed" in raw.http_response.json()["knollm"]["reason"]


# --------------------------------------------------------------------------- LangChain
def test_langchain_chat_openai(gw):
    lc = pytest.importorskip("langchain_openai")
    from langchain_core.tools import tool

    llm = lc.ChatOpenAI(base_url=gw.base_url, api_key="unused", model=GROQ, max_retries=0)
    msg = llm.invoke("from langchain")
    assert msg.content == "Hello from groq! You said: from langchain"
    assert msg.usage_metadata["input_tokens"] == 120 and msg.usage_metadata["output_tokens"] == 30
    streamed = "".join(chunk.content for chunk in llm.stream("streamed"))
    assert streamed == "Hello from groq! You said: streamed"

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    call = llm.bind_tools([get_weather]).invoke("weather in Paris?")
    assert call.tool_calls[0]["name"] == "get_weather" and call.tool_calls[0]["args"] == {"city": "Paris"}


# --------------------------------------------------------------------------- LlamaIndex
_LLAMA = """
import sys
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

llm = OpenAILike(model=sys.argv[2], api_base=sys.argv[1], api_key="unused", is_chat_model=True, max_retries=0)
print(llm.chat([ChatMessage(role="user", content="from llama")]).message.content)
print("".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content="stream llama")])))
# OpenAILike's default (is_chat_model=False) calls the completions endpoint
plain = OpenAILike(model=sys.argv[2], api_base=sys.argv[1], api_key="unused", max_retries=0)
print(plain.complete("complete llama").text)
print("".join(r.delta or "" for r in plain.stream_complete("stream complete llama")))
"""


def test_llama_index_openai_like(gw):
    """LlamaIndex's ``OpenAILike`` pointed at the gateway: a chat and a streamed chat, then a
    completion and a streamed one (its default, ``is_chat_model=False``). It runs
    in LlamaIndex's own venv (``.venv/examples/llama-index``, or under
    ``$KNOLLM_EXAMPLES_VENVS``), which ``.ci/install`` builds from PyPI."""
    import os
    import subprocess

    venvs = Path(os.environ.get("KNOLLM_EXAMPLES_VENVS") or Path(__file__).resolve().parents[1] / ".venv" / "examples")
    py = venvs / "llama-index" / "bin" / "python"
    if not py.exists():
        pytest.skip(f"LlamaIndex's venv is not built ({py}; bash .ci/install builds it)")
    out = subprocess.run([str(py), "-c", _LLAMA, gw.base_url, GROQ], capture_output=True, text=True, timeout=180,
                         env={k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["Hello from groq! You said: from llama", "Hello from groq! You said: stream llama",
                                       "Hello from groq! You said: complete llama",
                                       "Hello from groq! You said: stream complete llama"]


# --------------------------------------------------------------------------- pydantic-ai
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_pydantic_ai_agent_with_a_tool_and_a_stream(gw, servers, api):
    """pydantic-ai's ``Agent`` pointed at the gateway, over chat completions
    (``OpenAIChatModel``) and over the Responses API (``OpenAIResponsesModel``): a tool call
    made, run and answered in a second request; a streamed run; usage summed over the run."""
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    kind = OpenAIChatModel if api == "chat" else OpenAIResponsesModel
    model = kind(GROQ, provider=OpenAIProvider(base_url=gw.base_url, api_key="unused"))
    agent = Agent(model, instructions="be brief")
    asked: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Weather in a city."""
        asked.append(city)
        return "sunny"

    before = len(ledger(gw))
    result = agent.run_sync("weather in Paris?")
    assert asked == ["Paris"] and result.output == "Hello from groq! You said: weather in Paris?"
    sent = servers["groq"].requests[-1]["json"]
    assert sent["messages"][-1]["role"] == "tool" and sent["messages"][-1]["content"] == "sunny"
    usage = result.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 240, 60)
    rows = ledger(gw)[before:]
    assert len(rows) == 2 and {r["provider"] for r in rows} == {"groq"}
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(2 * COST["groq"])

    async def streamed() -> str:
        plain = Agent(model)
        async with plain.run_stream("stream please") as run:
            return "".join([piece async for piece in run.stream_text(delta=True)])

    assert asyncio.run(streamed()) == "Hello from groq! You said: stream please"


def _readme_gateway_blocks() -> tuple[str, str]:
    """The bash and the python block of the README's gateway section."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    head = "## Gateway: any OpenAI or Anthropic client, three lines"
    assert head in text, "the README's gateway section is gone"
    section = text.split(head, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, re.S)
    assert [lang for lang, _ in blocks] == ["bash", "python"], blocks
    return blocks[0][1], blocks[1][1]


def test_the_readme_gateway_lines_work_as_a_new_user_runs_them(tmp_path):
    """The README's gateway lines, as a new user runs them: the install names the project's
    own ``gateway`` extra (Knollm is installed from the clone, not from PyPI); ``knollm
    serve`` with only the Groq key and no option, on the default catalog built from the
    embedded data (a fresh cache), Groq pointed at a loopback server; then the three Python
    lines, run as written but for the port."""
    import re
    import shlex
    import subprocess
    import sys
    import tomllib

    from knollm.cli.cmd_serve import command

    root = Path(__file__).resolve().parents[1]
    bash, py = _readme_gateway_blocks()
    install, serve = (part.strip() for part in bash.split("#", 1)[0].split("&&"))
    words = shlex.split(install)
    extra = re.fullmatch(r"\.\[(\w+)\]", words[-1]) if words[:3] == ["pip", "install", "-e"] else None
    assert extra and len(words) == 4, f"the README installs {install!r}, not the clone's extra"
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra.group(1) == "gateway" and "uvicorn>=0.30" in extras["gateway"]
    words = shlex.split(serve)
    env = dict(w.split("=", 1) for w in words if "=" in w)
    assert [w for w in words if "=" not in w] == ["knollm", "serve"] and list(env) == ["GROQ_API_KEY"]
    port = next(p.default for p in command.params if p.name == "port")
    lines = py.strip().splitlines()
    assert len(lines) == 3 and f"127.0.0.1:{port}" in bash and f'base_url="http://127.0.0.1:{port}/v1"' in py

    groq = ProviderServer("groq").start()
    try:
        gw_env = {k: v for k, v in os.environ.items() if not k.startswith("KNOLLM_") and not k.endswith("_API_KEY")}
        gw_env.update(env, KNOLLM_GROQ_BASE_URL=groq.base_url, KNOLLM_HOME=str(tmp_path / "home"),
                      KNOLLM_CACHE_DIR=str(tmp_path / "cache"))
        proc = GatewayProcess()
        proc.env = {**gw_env, "PYTHONPATH": str(root)}  # nothing else of the test's environment
        with proc as g:
            script = py.replace(f"127.0.0.1:{port}", f"127.0.0.1:{g.port}")
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                 env=gw_env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "Hello from groq! You said: hi"
        assert groq.requests and groq.requests[-1]["json"]["model"] == "llama-3.3-70b-versatile"
    finally:
        groq.stop()


def test_lockfile_alias_through_the_gateway(servers, tmp_path):
    """`knollm serve --lock FILE`: the alias is listed in /v1/models and resolves through
    knollm.lock, falling back along the binding's chain (groq fails -> together)."""
    lock = tmp_path / "knollm.lock"
    lock.write_text('version = 1\ndefault_profile = "default"\n\n[[profiles.default.bindings]]\n'
                    f'alias = "fast"\nmodels = ["{GROQ}", "{TOGETHER}"]\nstrategy = "priority"\n')
    servers["groq"].default = "500"
    with GatewayProcess(gateway_env(tmp_path, servers), args=["--lock", str(lock)]) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
        assert "fast" in {m.id for m in client.models.list().data}
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-knollm-provider"] == "togetherai"
        assert int(raw.headers["x-knollm-attempts"]) >= 2
        assert float(raw.headers["x-knollm-cost-usd"]) == pytest.approx(COST["togetherai"])


@pytest.mark.parametrize("pause", [None, 0.2])
def test_a_stream_the_provider_ends_in_one_read_leaves_in_one_piece(pause):
    """``stream.ended`` is True once the provider's end marker is read; the gateway's stream
    then sends the last text with the finish and usage chunks in one write. A provider
    that pauses before its end marker gets its text out first, then the end."""
    from knollm import AsyncClient
    from knollm.gateway.client_backend import _ClientStream
    from knollm.query.api import Catalog
    from tests.test_client_h1 import Scripted

    events = [b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
              b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n',
              b'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n',
              b"data: [DONE]\n\n"]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    body = [head + b"".join(events)] if pause is None else [head + b"".join(events[:3]), pause, events[3]]
    srv = Scripted(lambda n, req: (body, False))
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
    env = {"KNOLLM_GROQ_BASE_URL": f"http://127.0.0.1:{srv.port}/v1", "GROQ_API_KEY": "gsk-one"}

    async def go():
        c = AsyncClient(catalog=cat, env=env, store=False, retries=0, http="h1")
        try:
            s = _ClientStream(c, "groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi"}], {})
            return [b async for b in s], s.outcome
        finally:
            await c.aclose()

    try:
        batches, outcome = asyncio.run(go())
    finally:
        srv.close()
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for b in batches for ch in b if ch["choices"])
    assert text == "Hello" and outcome.served and outcome.output_tokens == 2
    assert batches[-1][-1]["usage"]["completion_tokens"] == 2
    if pause is None:
        assert len(batches) == 1 and len(batches[0]) == 3  # text, finish, usage: one write
    else:
        assert len(batches) == 2 and batches[0][0]["choices"][0]["delta"]["content"] == "Hello"



def test_a_finished_stream_counts_as_200_in_one_write_or_several(tmp_path, servers):
    """A stream the provider sends in one read leaves in one write; one whose end marker
    comes later leaves in two. Both finished: /metrics counts each as a 200, the ledger
    has both, and nothing is counted as a client that went away (499)."""
    from tests.test_client_h1 import Scripted

    events = [b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
              b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n',
              b'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n',
              b"data: [DONE]\n\n"]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    answers = {1: [head + b"".join(events)], 2: [head + b"".join(events[:1]), 0.2, b"".join(events[1:])]}
    srv = Scripted(lambda n, req: (answers[n], False))
    env = gateway_env(tmp_path, servers, KNOLLM_GROQ_BASE_URL=f"http://127.0.0.1:{srv.port}/v1")
    try:
        with GatewayProcess(env) as g:
            client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
            for _ in answers:
                chunks = list(client.chat.completions.create(
                    model=GROQ, messages=[{"role": "user", "content": "hi"}], stream=True,
                    stream_options={"include_usage": True}))
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
                assert chunks[-1].usage.completion_tokens == 2
            with urllib.request.urlopen(g.url + "/metrics") as r:
                text = r.read().decode()
            rows = ledger_rows(tmp_path)
    finally:
        srv.close()
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="200"} 2' in text
    assert 'status="499"' not in text
    assert len(rows) == 2 and {r["output_tokens"] for r in rows} == {2}

def test_one_write_transport_sends_a_turns_writes_together():
    """uvicorn writes an answer's head and body apart; the gateway's transport sends what
    one event-loop turn wrote in one send, sends what is pending before closing, and
    passes everything else to the real transport."""
    from knollm.gateway.server import _OneWrite

    class Real:
        def __init__(self):
            self.sent, self.closed = [], False

        def write(self, data):
            self.sent.append(data)

        def is_closing(self):
            return self.closed

        def close(self):
            self.closed = True

        def get_write_buffer_size(self):
            return 0

        def get_extra_info(self, name):
            return ("127.0.0.1", 1) if name == "peername" else None

    async def go():
        real = Real()
        t = _OneWrite(real, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"{}")
        assert real.sent == [] and t.get_write_buffer_size() == 21
        await asyncio.sleep(0)
        assert real.sent == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        t.write(b"last")
        t.close()  # pending bytes leave before the close
        assert real.sent[-1] == b"last" and real.closed
        await asyncio.sleep(0)
        assert len(real.sent) == 2  # the turn's flush finds nothing more to send
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        assert t.is_closing() is True  # (bound once: still the transport's answer now)
        real.resume_reading = lambda: "resumed"  # a method the transport gained after the wrap
        assert t.resume_reading() == "resumed"
        with pytest.raises(AttributeError):
            t.pause_reading()  # the transport has none: as the transport would say

    asyncio.run(go())


def test_uvicorn_under_the_gateway_protocol_writes_an_answer_in_one_send(monkeypatch):
    """With real uvicorn (the protocol ``knollm serve`` runs): the status line, headers and
    body of an answer are written by uvicorn in two writes and leave in one send."""
    import threading
    import urllib.request

    import uvicorn

    from knollm.gateway import server as srv
    from tests.support.gateway_proc import free_port

    from knollm.client.outbox import Outbox

    sends: list[int] = []  # writes per send: the turn's flush, or a close sending what is pending
    real_flush, real_take = Outbox.flush, Outbox.take

    def flush(self):
        sends.extend(len(queued) for queued in self.pending.values())
        real_flush(self)

    def take(self, transport):
        sends.extend([len(self.pending[transport])] if transport in self.pending else [])
        return real_take(self, transport)

    monkeypatch.setattr(Outbox, "flush", flush)
    monkeypatch.setattr(Outbox, "take", take)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=srv.GatewayHTTP,
                                           lifespan="off", log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.read() == b"{}"
    finally:
        server.should_exit = True
        t.join(10)
    assert sends == [2]  # head and body: two writes, one send


def test_keys_required_asks_the_store_once_for_concurrent_requests():
    """When the cached answer to "are gateway keys configured?" expires, the requests that
    arrive together wait for one question to the store, not one each."""
    from knollm.gateway.app import GatewayConfig, _Access

    class Store:
        asked = 0

        def any_active(self):
            Store.asked += 1
            time.sleep(0.05)
            return True

    async def go():
        access = _Access(Store(), GatewayConfig(key_cache_s=0.2))
        first = await asyncio.gather(*[access._keys_required() for _ in range(20)])
        await asyncio.sleep(0.25)  # expired: asked again, once
        again = await asyncio.gather(*[access._keys_required() for _ in range(20)])
        return first + again

    assert all(asyncio.run(go()))
    assert Store.asked == 2


def test_request_deadlines_fire_on_time_and_leave_nothing_behind():
    """One ticker per event loop fires the requests' time limits (at most a tick late):
    a wait past its limit raises TimeoutError, a cancelled deadline never fires, someone
    else's cancellation stays a cancellation, and an idle loop keeps no ticker."""
    from knollm.client.ticker import Ticker
    from knollm.gateway.app import _Deadline

    async def go():
        loop = asyncio.get_running_loop()
        d = _Deadline(0.2)
        t = loop.time()
        with pytest.raises(TimeoutError):
            await d.wait(asyncio.sleep(5))
        took = loop.time() - t
        d.cancel()
        kept = _Deadline(0.1)
        kept.cancel()  # finished in time: never fires
        await asyncio.sleep(0.3)
        assert not kept.expired
        expired = _Deadline(0.05)
        await asyncio.sleep(0.25)
        with pytest.raises(TimeoutError):  # already past: the wait does not start
            await expired.wait(asyncio.sleep(5))
        expired.cancel()

        async def victim():
            dl = _Deadline(5)
            try:
                await dl.wait(asyncio.sleep(5))
            finally:
                dl.cancel()

        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):  # not a timeout: the caller's own cancel
            await task
        await asyncio.sleep(2 * Ticker.TICK + 0.05)
        return took, id(loop) in Ticker._of_loop

    took, ticker_left = asyncio.run(go())
    assert 0.2 <= took < 4  # its limit, not the 5 s sleep
    assert not ticker_left


def test_two_workers_serve_and_share_the_ledger(servers, tmp_path):
    """``--workers 2``: uvicorn's worker processes each build the app (the one-send
    protocol imported by name, the catalog loaded, the collector settled) and write one
    ledger; concurrent requests are all answered and all recorded."""
    from concurrent.futures import ThreadPoolExecutor

    with GatewayProcess(gateway_env(tmp_path, servers), args=["--workers", "2"]) as g:
        client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)

        def one(i: int) -> str:
            r = client.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": f"w{i}"}])
            return r.choices[0].message.content

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(24)))
        assert answers == [f"Hello from groq! You said: w{i}" for i in range(24)]
        g.home = tmp_path
        rows = ledger(g)
        assert len(rows) == 24 and len({r["request_id"] for r in rows}) == 24
        children = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            except OSError:
                continue
            if fields.get("PPid", "").strip() == str(g.proc.pid):
                children.append(status.parent.name)
        assert len(children) >= 2  # two worker processes under the server


def test_pipelined_requests_are_answered_in_order(gw):
    """Two requests written back to back on one connection (HTTP/1.1 pipelining) get their
    two answers, whole and in order, through the one-send transport."""
    import socket

    body = json.dumps({"model": GROQ, "messages": [{"role": "user", "content": "p1"}]}).encode()
    chat = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body
    health = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(chat + health)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"You said: p1" in first and b'"status":"ok"' in second.replace(b" ", b"")
