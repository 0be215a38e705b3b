"""Translation fixes from the gateway's second translation review, each through a real
``knollm serve`` called by the official openai / anthropic SDKs, over one recording loopback
upstream that plays every API (OpenAI-compatible, Anthropic, Gemini, Ollama), or through
the ``h1`` driver against a raw asyncio server:

* h1: a ``Transfer-Encoding: Chunked`` body cut mid-way is a cut answer; an obs-fold header
  is read;
* Gemini: tool results carry their function's name, consecutive ones in one turn;
  ``tool_choice``, ``seed`` and the penalties reach it; its finish reasons are OpenAI's;
* Anthropic: ``stop_sequence`` / ``pause_turn`` come back on ``/v1/messages``;
  ``parallel_tool_calls: false`` / ``disable_parallel_tool_use``, ``top_k``, ``metadata.user_id``,
  ``thinking``, the system blocks' ``cache_control`` and a tool result's ``is_error`` reach it;
  ``response_format`` as its structured outputs (``output_config.format``), or a 400;
* Ollama: a string ``stop`` as a list, ``developer`` as ``system``, an http image a 400;
* OpenAI: ``message.refusal`` (whole and streamed) and ``logprobs`` come back;
* errors on Anthropic's routes in Anthropic's shape and types.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from knollm.client.h1 import AsyncH1, H1Error
from tests.support.client_fixtures import catalog, model
from tests.support.gateway_proc import GatewayProcess
from tests.test_gateway import gateway_env

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

MODELS = {"openai": "groq/llama-3.3-70b-versatile", "anthropic": "anthropic/claude-sonnet-4-5",
          "gemini": "gemini/gemini-2.5-flash", "ollama": "ollama/llama3.2"}
SECRETS = {"GROQ_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2", "GEMINI_API_KEY": "k3"}
U = [{"role": "user", "content": "x"}]
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
         for n in ("get_weather", "get_time")]
ATOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]


# --------------------------------------------------------------------------- upstream answers
def oa(content="ok", finish="stop", **choice):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish,
                         **choice}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def an(text="ok", stop="end_turn", seq=None):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": seq,
            "usage": {"input_tokens": 10, "output_tokens": 5}}


def gm(text="ok", finish="STOP"):
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}}


def ol():
    return {"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": True, "done_reason": "stop",
            "prompt_eval_count": 10, "eval_count": 5}


def sse(events: list[tuple[str | None, dict]]) -> tuple[int, dict, list[bytes]]:
    out = []
    for name, data in events:
        out.append((f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n")
    return 200, {"Content-Type": "text/event-stream"}, out


class Upstream:
    """One loopback server playing every API (by path), recording each request; ``answers[kind]``
    overrides the default answer (a dict, a ``(status, headers, bytes | [bytes])`` or a callable)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: dict = {}
        up = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                p = self.path
                kind = ("anthropic" if p.endswith("/messages") else "gemini" if ":generate" in p or ":stream" in p
                        else "ollama" if p.startswith("/api/chat") else "openai")
                up.requests.append({"kind": kind, "path": p, "body": body, "headers": dict(self.headers)})
                a = up.answers.get(kind)
                if callable(a):
                    a = a(body)
                if a is None:
                    a = {"openai": oa, "anthropic": an, "gemini": gm, "ollama": ol}[kind]()
                status, hdrs, data = a if isinstance(a, tuple) else \
                    (200, {"Content-Type": "application/json"}, json.dumps(a).encode())
                self.send_response(status)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                if isinstance(data, list):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    for d in data:
                        self.wfile.write(d)
                        self.wfile.flush()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base_url = self.root + "/v1"

    def last(self, kind: str | None = None) -> dict:
        return [r for r in self.requests if kind is None or r["kind"] == kind][-1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    up = Upstream()
    tmp = tmp_path_factory.mktemp("translate2")
    cat = catalog(model("groq", "llama-3.3-70b-versatile", vision=True),
                  model("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", vision=True),
                  model("gemini", "gemini-2.5-flash", "gemini-2.5-flash", vision=True),
                  model("ollama", "llama3.2", "llama3.2", vision=True))
    env = gateway_env(tmp, {"groq": up, "anthropic": up, "gemini": up, "ollama": up}, cat, SECRETS)
    opts = json.loads(env["KNOLLM_GATEWAY_CLIENT_OPTIONS"])
    opts["retries"] = 0
    opts["providers"] = {"gemini": {"shape": "gemini", "base_url": up.root + "/v1beta"}}
    env["KNOLLM_GATEWAY_CLIENT_OPTIONS"] = json.dumps(opts)
    with GatewayProcess(env) as gw:
        yield up, gw
    up.httpd.shutdown()


@pytest.fixture
def up(setup):
    setup[0].answers.clear()
    return setup[0]


@pytest.fixture
def oai(setup):
    return openai.OpenAI(base_url=setup[1].base_url, api_key="x", max_retries=0)


@pytest.fixture
def ant(setup):
    return anthropic.Anthropic(base_url=setup[1].url, api_key="x", max_retries=0)


@pytest.fixture
def gw(setup):
    return setup[1]


# --------------------------------------------------------------------------- 1, 13: h1
async def _raw(answer: bytes, stream: bool = False):
    async def handle(r, w):
        await r.readuntil(b"\r\n\r\n")
        w.write(answer)
        await w.drain()
        w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/x"
    d = AsyncH1(4)
    try:
        if not stream:
            return await d.post(url, {}, {"a": 1}, 2.0, 2.0)
        async with d.stream(url, {}, {"a": 1}, 2.0, 2.0) as s:
            return b"".join([c async for c in s.chunks()])
    finally:
        await d.aclose()
        srv.close()


@pytest.mark.parametrize("te", [b"chunked", b"Chunked", b"CHUNKED", b"gzip, Chunked"])
def test_h1_a_chunked_body_cut_midway_is_cut_whatever_the_case_of_its_encoding(te):
    cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n5\r\n{\"ok\"\r\n"
    r = asyncio.run(_raw(cut))
    assert r.status == 200 and isinstance(r.cut, H1Error)  # the cut-answer (billed) path, not a whole answer
    with pytest.raises(H1Error, match="disconnected"):
        asyncio.run(_raw(cut, stream=True))


def test_h1_an_obs_fold_header_does_not_fail_the_answer():
    fold = b"HTTP/1.1 200 OK\r\nx-a: one\r\n two\r\ncontent-length: 12\r\n\r\n{\"ok\": true}"
    r = asyncio.run(_raw(fold))
    assert (r.status, r.text, r.cut) == (200, '{"ok": true}', None)
    assert r.headers["x-a"] == "one two"


# --------------------------------------------------------------------------- 2: Gemini tool results
HIST = [{"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"}]


def test_gemini_tool_results_carry_their_function_name_in_one_turn(up, oai, ant):
    oai.chat.completions.create(model=MODELS["gemini"], messages=HIST, tools=TOOLS)
    contents = up.last("gemini")["body"]["contents"]
    assert contents[-1] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
        {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}]}
    assert len(contents) == 3
    ant.messages.create(model=MODELS["gemini"], max_tokens=50, tools=ATOOLS, messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]}])
    assert up.last("gemini")["body"]["contents"][-1]["parts"][0]["functionResponse"]["name"] == "get_weather"
    oai.responses.create(model=MODELS["gemini"], input=[
        {"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "c9", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c9", "output": "42"}],
        tools=[{"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}])
    assert up.last("gemini")["body"]["contents"][-1]["parts"][0]["functionResponse"]["name"] == "get_time"


# --------------------------------------------------------------------------- 3: stop_sequence, pause_turn
def test_anthropic_stop_sequence_and_pause_turn_come_back_on_messages(up, ant):
    up.answers["anthropic"] = an("one two ", "stop_sequence", "END")
    r = ant.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=U, stop_sequences=["END"])
    assert (r.stop_reason, r.stop_sequence) == ("stop_sequence", "END")
    up.answers["anthropic"] = an("x", "pause_turn")
    r = ant.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=U)
    assert (r.stop_reason, r.stop_sequence) == ("pause_turn", None)

    def stream(body):
        return sse([("message_start", {"type": "message_start", "message": {
                        "id": "m", "type": "message", "role": "assistant", "model": "c", "content": [],
                        "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": "one two "}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
                                                                          "stop_sequence": "END"},
                                       "usage": {"output_tokens": 3}}),
                    ("message_stop", {"type": "message_stop"})])

    up.answers["anthropic"] = stream
    with ant.messages.stream(model=MODELS["anthropic"], max_tokens=50, messages=U, stop_sequences=["END"]) as s:
        m = s.get_final_message()
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "END")


def test_an_openai_caller_still_gets_openai_finish_reasons_from_anthropic(up, oai):
    up.answers["anthropic"] = an("one", "stop_sequence", "END")
    r = oai.chat.completions.create(model=MODELS["anthropic"], messages=U, stop=["END"])
    assert r.choices[0].finish_reason == "stop"
    up.answers["anthropic"] = an("one", "pause_turn")
    assert oai.chat.completions.create(model=MODELS["anthropic"], messages=U).choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- 4: parallel tool use
def test_parallel_tool_calls_false_reaches_anthropic_as_disable_parallel_tool_use(up, oai, ant):
    oai.chat.completions.create(model=MODELS["anthropic"], messages=U, tools=TOOLS, tool_choice="auto",
                                parallel_tool_calls=False)
    assert up.last("anthropic")["body"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    oai.chat.completions.create(model=MODELS["anthropic"], messages=U, tools=TOOLS, parallel_tool_calls=False)
    assert up.last("anthropic")["body"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    ant.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=U, tools=ATOOLS,
                        tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert up.last("anthropic")["body"]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


# --------------------------------------------------------------------------- 5: Gemini tool_choice, sampling
@pytest.mark.parametrize("choice, config", [
    ("required", {"mode": "ANY"}), ("none", {"mode": "NONE"}), ("auto", {"mode": "AUTO"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
])
def test_gemini_tool_choice_is_its_function_calling_config(up, oai, choice, config):
    oai.chat.completions.create(model=MODELS["gemini"], messages=U, tools=TOOLS, tool_choice=choice)
    assert up.last("gemini")["body"]["toolConfig"] == {"functionCallingConfig": config}


def test_gemini_gets_seed_and_penalties(up, oai):
    oai.chat.completions.create(model=MODELS["gemini"], messages=U, seed=7, presence_penalty=0.5,
                                frequency_penalty=0.3)
    assert up.last("gemini")["body"]["generationConfig"] == {"seed": 7, "presencePenalty": 0.5,
                                                             "frequencyPenalty": 0.3}


# --------------------------------------------------------------------------- 6: Gemini finish reasons
@pytest.mark.parametrize("reason, chat, messages", [
    ("PROHIBITED_CONTENT", "content_filter", "refusal"), ("BLOCKLIST", "content_filter", "refusal"),
    ("SPII", "content_filter", "refusal"), ("IMAGE_SAFETY", "content_filter", "refusal"),
    ("MALFORMED_FUNCTION_CALL", "stop", "end_turn"), ("OTHER", "stop", "end_turn"),
])
def test_gemini_finish_reasons_are_openai_and_anthropic_ones(up, oai, ant, reason, chat, messages):
    up.answers["gemini"] = gm("", reason)
    assert oai.chat.completions.create(model=MODELS["gemini"], messages=U).choices[0].finish_reason == chat
    assert ant.messages.create(model=MODELS["gemini"], max_tokens=5, messages=U).stop_reason == messages


# --------------------------------------------------------------------------- 7: Ollama
def test_ollama_stop_string_developer_role_and_http_images(up, oai):
    oai.chat.completions.create(model=MODELS["ollama"], messages=U, stop="END")
    assert up.last("ollama")["body"]["options"]["stop"] == ["END"]
    oai.chat.completions.create(model=MODELS["ollama"], messages=[{"role": "developer", "content": "Be terse."}, *U])
    assert up.last("ollama")["body"]["messages"][0] == {"role": "system", "content": "Be terse."}
    n = len(up.requests)
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODELS["ollama"], messages=[{"role": "user", "content": [
            {"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "https://e.com/cat.png"}}]}])
    assert "messages[0].content[1].image_url.url" in str(e.value) and "base64" in str(e.value)
    assert len(up.requests) == n  # nothing sent


# --------------------------------------------------------------------------- 8, 9: Messages fields
def test_messages_top_k_user_id_and_thinking_reach_anthropic(up, ant):
    ant.messages.create(model=MODELS["anthropic"], max_tokens=2000, messages=U, top_k=5,
                        metadata={"user_id": "u-42"}, thinking={"type": "enabled", "budget_tokens": 1024})
    b = up.last("anthropic")["body"]
    assert b["top_k"] == 5 and b["metadata"] == {"user_id": "u-42"}
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_messages_thinking_and_top_k_to_an_openai_upstream(up, ant):
    ant.messages.create(model=MODELS["openai"], max_tokens=100, messages=U, top_k=5,
                        metadata={"user_id": "u-42"}, thinking={"type": "enabled", "budget_tokens": 1024})
    b = up.last("openai")["body"]
    assert b["top_k"] == 5 and b["user"] == "u-42"
    assert "thinking" not in b and "x_anthropic" not in b  # no such setting there: not sent


def test_system_cache_control_and_tool_result_errors_reach_anthropic(up, ant):
    system = [{"type": "text", "text": "Long system prompt", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "More."}]
    msgs = [*U, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": "boom"}]}]
    ant.messages.create(model=MODELS["anthropic"], max_tokens=50, system=system, messages=msgs,
                        tools=[{"name": "f", "input_schema": {"type": "object"}}])
    b = up.last("anthropic")["body"]
    assert b["system"] == system
    assert b["messages"][-1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom",
                                             "is_error": True}]
    ant.messages.create(model=MODELS["openai"], max_tokens=50, system=system, messages=msgs,
                        tools=[{"name": "f", "input_schema": {"type": "object"}}])
    b = up.last("openai")["body"]  # the other APIs: joined text, the error said in the result's text
    assert b["messages"][0] == {"role": "system", "content": "Long system prompt\n\nMore."}
    assert b["messages"][-1]["content"] == "Error: boom"


# --------------------------------------------------------------------------- 10: refusal, logprobs
def test_refusal_and_logprobs_come_back_from_an_openai_upstream(up, oai):
    ans = oa(None)
    ans["choices"][0]["message"]["refusal"] = "I can't help with that."
    up.answers["openai"] = ans
    r = oai.chat.completions.create(model=MODELS["openai"], messages=U)
    assert (r.choices[0].message.content, r.choices[0].message.refusal) == (None, "I can't help with that.")
    lp = {"content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107], "top_logprobs": []}]}
    up.answers["openai"] = oa("ok", logprobs=lp)
    r = oai.chat.completions.create(model=MODELS["openai"], messages=U, logprobs=True, top_logprobs=1)
    assert r.choices[0].logprobs.model_dump(exclude_unset=True) == lp

    def stream(body):
        c = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        return sse([(None, {**c, "choices": [{"index": 0, "delta": {"role": "assistant", "refusal": ""}}]}),
                    (None, {**c, "choices": [{"index": 0, "delta": {"refusal": "I can't "}}]}),
                    (None, {**c, "choices": [{"index": 0, "delta": {"refusal": "help."}}]}),
                    (None, {**c, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                    (None, {**c, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})])

    up.answers["openai"] = stream
    with oai.chat.completions.stream(model=MODELS["openai"], messages=U) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.refusal == "I can't help."
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        oai.chat.completions.create(model=MODELS["openai"], messages=U, logprobs=True, stream=True)


def test_plain_answers_stay_plain(up, oai):
    r = oai.chat.completions.create(model=MODELS["openai"], messages=U)
    raw = r.model_dump()
    assert raw["choices"][0]["logprobs"] is None and "refusal" not in r.choices[0].message.model_fields_set


# --------------------------------------------------------------------------- 11: Anthropic response_format
def test_anthropic_response_format_is_its_structured_outputs_or_a_400(up, oai):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    oai.chat.completions.create(model=MODELS["anthropic"], messages=U, response_format={
        "type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": schema}})
    b = up.last("anthropic")["body"]
    assert b["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_format" not in b
    n = len(up.requests)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        oai.chat.completions.create(model=MODELS["anthropic"], messages=U, response_format={"type": "json_object"})
    assert len(up.requests) == n


# --------------------------------------------------------------------------- 12: Anthropic errors
def test_errors_on_anthropic_routes_have_anthropic_types_and_shape(up, gw):
    up.answers["anthropic"] = (500, {"Content-Type": "application/json"},
                               b'{"type":"error","error":{"type":"api_error","message":"boom"}}')
    r = httpx.post(gw.url + "/v1/messages", json={"model": MODELS["anthropic"], "max_tokens": 5, "messages": U})
    assert r.status_code == 502 and r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
    r = httpx.get(gw.url + "/v1/messages")
    assert r.status_code == 405
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "no route GET /v1/messages"}}
    r = httpx.post(gw.url + "/v1/messages/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error" and r.json()["type"] == "error"
    r = httpx.get(gw.url + "/v1/nope")  # (the OpenAI routes keep OpenAI's shape)
    assert r.json()["error"]["type"] == "not_found_error" and "type" not in r.json()


def test_error_body_anthropic_types():
    from knollm.errors import GatewayError
    from knollm.gateway.app import error_body

    for status, kind, want in [(502, "upstream_error", "api_error"), (504, "timeout", "timeout_error"),
                               (500, "server_error", "api_error"), (503, "server_error", "overloaded_error"),
                               (429, "insufficient_quota", "rate_limit_error"),
                               (429, "rate_limit_error", "rate_limit_error"),
                               (401, "authentication_error", "authentication_error"),
                               (403, "permission_error", "permission_error"),
                               (404, "not_found_error", "not_found_error"),
                               (400, "invalid_request_error", "invalid_request_error"),
                               (413, "invalid_request_error", "invalid_request_error")]:
        assert error_body(GatewayError("m", status=status, type=kind), True)["error"]["type"] == want, (status, kind)
