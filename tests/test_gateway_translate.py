"""Request validation and the Anthropic <-> OpenAI translation used by /v1/messages."""

from __future__ import annotations

import json

import pytest

from knollm.errors import GatewayError
from knollm.gateway.metrics import Metrics
from knollm.gateway.translate import (
    AnthropicStream,
    anthropic_to_openai,
    openai_to_anthropic,
    split_target,
    validate_chat_request,
)

IMG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_split_target():
    assert split_target("groq/llama-3.3-70b-versatile") == ["groq/llama-3.3-70b-versatile"]
    assert split_target(" fast , cheap ") == ["fast", "cheap"]
    assert split_target(["a", "b"]) == ["a", "b"]
    for bad in ("", " , ", None, 3):
        with pytest.raises(GatewayError) as e:
            split_target(bad)
        assert e.value.status == 400


@pytest.mark.parametrize("body, field", [
    ([], None),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
     "response_format"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
])
def test_invalid_chat_requests_name_the_field(body, field):
    with pytest.raises(GatewayError) as e:
        validate_chat_request(body)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    assert e.value.code == field


def test_valid_chat_request_with_tools_images_and_schema():
    body = {"model": "fast", "stream": True, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMG}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}
    assert validate_chat_request(body) is body


def test_anthropic_request_to_openai():
    req = anthropic_to_openai({
        "model": "claude-x", "max_tokens": 100, "system": [{"type": "text", "text": "be kind"}],
        "temperature": 0.2, "stop_sequences": ["END"], "stream": True, "metadata": {"user_id": "u1"},
        "tools": [{"name": "get_weather", "description": "w", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": IMG}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                                              {"type": "text", "text": "calling"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "sunny"}]},
                                         {"type": "text", "text": "thanks"}]},
        ]})
    assert req["messages"][0] == {"role": "system", "content": "be kind"}
    assert req["messages"][1]["content"][1] == {"type": "image_url",
                                                "image_url": {"url": "data:image/png;base64," + IMG}}
    assert req["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                               "arguments": json.dumps({"city": "Paris"})}
    assert req["messages"][2]["content"] == "calling"
    assert req["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    assert req["messages"][4] == {"role": "user", "content": "thanks"}
    assert req["tools"][0]["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    assert req["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert req["parallel_tool_calls"] is False
    assert req["stop"] == ["END"] and req["user"] == "u1" and req["max_tokens"] == 100
    assert req["stream"] is True and req["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("body, field", [
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0]"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file"}}]}]}, "messages[0].content[0]"),
])
def test_invalid_anthropic_requests(body, field):
    with pytest.raises(GatewayError) as e:
        anthropic_to_openai(body)
    assert e.value.status == 400 and e.value.code == field


def test_openai_answer_to_anthropic():
    msg = openai_to_anthropic({"id": "chatcmpl-1", "choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "let me check",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 10}}}, "claude-x")
    assert msg["type"] == "message" and msg["model"] == "claude-x" and msg["stop_reason"] == "tool_use"
    assert msg["content"] == [{"type": "text", "text": "let me check"},
                              {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert msg["usage"] == {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 10,
                            "cache_creation_input_tokens": 0}
    length = openai_to_anthropic({"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]}, "m")
    assert length["stop_reason"] == "max_tokens" and length["usage"]["output_tokens"] == 0


def _chunk(delta=None, finish=None, usage=None):
    c = {"object": "chat.completion.chunk", "choices": [] if delta is None else
         [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        c["usage"] = usage
    return c


def test_stream_events_text_then_tool():
    conv = AnthropicStream("claude-x", "msg_1")
    events = []
    for ch in [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hel"}), _chunk({"content": "lo"}),
               _chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                       "function": {"name": "f", "arguments": ""}}]}),
               _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
               _chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
               _chunk({}, "tool_calls"), _chunk(usage={"prompt_tokens": 5, "completion_tokens": 9})]:
        events += list(conv.feed(ch))
    events += list(conv.close())
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0)
    args = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 1)
    assert text == "Hello" and json.loads(args) == {"a": 1}
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_9", "name": "f", "input": {}}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 9


def test_a_charged_call_counts_as_each_series_would():
    """``Metrics.charged`` (one call a served request) gives the lines the per-series counts
    gave: tokens by kind, cost or an unpriced call, interrupted, the upstream duration."""
    a, b = Metrics(), Metrics()
    for m in (a, b):
        m.alias("fast")
    calls = [("groq", "llama", "fast", 12, 10, 2, 0.0015, False, 0.25), ("groq", "llama", "fast", 3, 0, 0, None, True, None),
             ("openai", "gpt", "fast", 5, 7, 0, 0.002, False, 1.5), ("groq", "llama", "fast", 1, 1, 1, 0.0005, False, 0.01)]
    for p, mod, alias, inp, out, cached, cost, interrupted, dur in calls:
        a.charged(p, mod, alias, inp, out, cached, cost, interrupted, dur)
        if interrupted:
            b.interrupted.inc(p, mod, alias)
        for kind, n in (("input", inp), ("output", out), ("cached", cached)):
            b.tokens.inc(p, mod, alias, kind, amount=n)
        if cost is None:
            b.unpriced.inc(p, mod, alias)
        else:
            b.cost.inc(p, mod, alias, amount=cost)
        if dur is not None:
            b.upstream.observe(dur, p, mod, alias)
    ta, tb = a.render().splitlines(), b.render().splitlines()
    strip = [ln for ln in ta if not ln.startswith(("knollm_gateway_gc_", "knollm_gateway_cpu_"))]
    assert strip == [ln for ln in tb if not ln.startswith(("knollm_gateway_gc_", "knollm_gateway_cpu_"))]
    assert 'knollm_gateway_tokens_total{provider="groq",model="llama",alias="fast",kind="input"} 16' in ta
    assert 'knollm_gateway_cost_usd_total{provider="groq",model="llama",alias="fast"} 0.002' in ta
    assert 'knollm_gateway_unpriced_calls_total{provider="groq",model="llama",alias="fast"} 1' in ta
    assert 'knollm_gateway_interrupted_streams_total{provider="groq",model="llama",alias="fast"} 1' in ta
    assert 'knollm_gateway_upstream_duration_seconds_count{provider="groq",model="llama",alias="fast"} 2' in ta


def test_metrics_exposition():
    m = Metrics()
    m.requests.inc("/v1/chat/completions", "200")
    m.requests.inc("/v1/chat/completions", "200")
    m.latency.observe(0.003, "/v1/chat/completions")
    m.cost.inc("groq", "llama \"3\"", "fast", amount=0.0015)
    text = m.render()
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="200"} 2' in text
    assert 'knollm_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="0.0025"} 0' in text
    assert 'knollm_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="0.005"} 1' in text
    assert 'knollm_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"} 1' in text
    assert 'knollm_gateway_cost_usd_total{provider="groq",model="llama \\"3\\"",alias="fast"} 0.0015' in text
    assert "# TYPE knollm_gateway_request_duration_seconds histogram" in text
    m.latency.observe(0.005, "/v1/chat/completions")  # on a bound: counted in that bucket (le)
    m.latency.observe(500.0, "/v1/chat/completions")  # above every bound: +Inf only
    text = m.render()
    for le, n in (("0.0025", 0), ("0.005", 2), ("120", 2), ("+Inf", 3)):
        assert f'knollm_gateway_request_duration_seconds_bucket{{route="/v1/chat/completions",le="{le}"}} {n}' in text
    assert 'knollm_gateway_request_duration_seconds_count{route="/v1/chat/completions"} 3' in text


# --------------------------------------------------------------------------- the Responses API
def test_responses_request_as_chat():
    from knollm.gateway.responses import responses_to_chat

    req = responses_to_chat({
        "model": "groq/x", "instructions": "be brief", "max_output_tokens": 50, "temperature": 0.2,
        "reasoning": {"effort": "low"}, "text": {"format": {"type": "json_object"}},
        "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": False,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "look: "},
                                         {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},  # another model's reasoning: not sent on
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\": 1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]})
    assert req["messages"] == [
        {"role": "system", "content": "be brief"}, {"role": "system", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "look: "},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [  # the calls of one turn: one message
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"}, {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "assistant", "content": "done"}]
    assert req["tools"] == [{"type": "function", "function": {"name": "f", "description": "",
                                                              "parameters": {"type": "object"}, "strict": True}}]
    assert (req["max_tokens"], req["temperature"], req["reasoning_effort"], req["parallel_tool_calls"]) == \
        (50, 0.2, "low", False)
    assert req["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert req["response_format"] == {"type": "json_object"} and "stream" not in req
    turn = responses_to_chat({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]})
    assert turn["messages"][1] == {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    streamed = responses_to_chat({"model": "m", "input": "hi", "stream": True})
    assert streamed["stream"] and streamed["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("body, says", [
    ({"model": "m", "input": ""}, "'input' must not be empty"),
    ({"model": "m", "input": []}, "non-empty array"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "stores none"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "stores none"),
    ({"model": "m", "input": "x", "background": True}, "background"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "send the item itself"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "needs an image_url"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "unsupported content part type 'input_file'"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c"}]}, "call_id, name and arguments"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "role must be"),
    ({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}, "built-in tool 'file_search'"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "grammar"}}}, "not supported"),
    ({"input": "x"}, "'model'"),
])
def test_invalid_responses_requests(body, says):
    from knollm.gateway.responses import responses_to_chat

    with pytest.raises(GatewayError) as e:
        responses_to_chat(body)
    assert e.value.status == 400 and says in str(e.value)


def test_chat_answer_as_a_response():
    from knollm.gateway.responses import chat_to_response

    r = chat_to_response({"model": "llama", "choices": [{"finish_reason": "length", "message": {
        "role": "assistant", "content": "cut", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 2}}},
        {"model": "groq/llama", "instructions": "i", "tools": [], "metadata": {"k": "v"}})
    assert (r["status"], r["incomplete_details"], r["model"], r["instructions"], r["metadata"]) == \
        ("incomplete", {"reason": "max_output_tokens"}, "llama", "i", {"k": "v"})
    assert [o["type"] for o in r["output"]] == ["message", "function_call"]
    assert r["output"][1]["call_id"].startswith("call_") and r["id"].startswith("resp_")
    assert r["usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                          "input_tokens_details": {"cached_tokens": 4}, "output_tokens_details": {"reasoning_tokens": 2}}


def test_responses_stream_events_text_then_a_call():
    from knollm.gateway.responses import ResponsesStream, response_skeleton

    conv = ResponsesStream(response_skeleton({"model": "groq/llama", "input": "x"}, "groq/llama"))
    out = [*conv.feed({"model": "llama", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
           *conv.feed({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
           *conv.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
               {"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
           *conv.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
               {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "length"}]}),
           *conv.feed({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
           *conv.close({"knollm": {"cost_usd": 0.5}})]
    kinds = [k for k, _ in out]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                     # the message is closed before the call opens
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.output_item.added", "response.function_call_arguments.delta",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.incomplete"]
    assert [d["sequence_number"] for _, d in out] == list(range(len(out)))
    assert out[0][1]["response"]["model"] == "llama" and out[0][1]["response"]["status"] == "in_progress"
    final = out[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello" and final["output"][1]["arguments"] == '{"a": 1}'
    assert final["output"][1]["call_id"] == "call_9" and all(o["status"] == "completed" for o in final["output"])
    assert final["usage"]["total_tokens"] == 5 and final["knollm"] == {"cost_usd": 0.5}
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    broken = ResponsesStream(response_skeleton({"model": "m", "input": "x"}, "m"))
    out = [*broken.feed({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
           *broken.fail({"type": "upstream_error", "message": "boom", "code": "stream_interrupted"})]
    assert [k for k, _ in out][-2:] == ["error", "response.failed"]
    assert out[-2][1] == {"type": "error", "sequence_number": len(out) - 2, "code": "stream_interrupted",
                          "message": "boom", "param": None}
    failed = out[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "stream_interrupted", "message": "boom"}
    assert failed["output"][0]["content"][0]["text"] == "Hel"  # what was given out


def test_legacy_completions_translate_both_ways():
    from knollm.gateway.completions import chat_to_completion, completion_chunk, completions_to_chat

    chat = completions_to_chat({"model": "m", "prompt": ["one prompt"], "max_tokens": 9, "logprobs": None,
                                "seed": None, "best_of": 1, "echo": False, "stream": True})
    assert chat == {"model": "m", "max_tokens": 9, "stream": True,
                    "messages": [{"role": "user", "content": "one prompt"}]}
    resp = {"id": "chatcmpl-abc", "object": "chat.completion", "created": 5, "model": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                      "prompt_tokens_details": {"cached_tokens": 0}}}
    assert chat_to_completion(resp) == {
        "id": "cmpl-abc", "object": "text_completion", "created": 5, "model": "x",
        "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    delta = completion_chunk({"id": "chatcmpl-abc", "created": 5, "model": "x",
                              "choices": [{"index": 0, "delta": {"content": "h"}, "finish_reason": None}]})
    assert delta["choices"] == [{"text": "h", "index": 0, "logprobs": None, "finish_reason": None}]
    usage = completion_chunk({"id": "chatcmpl-abc", "created": 5, "model": "x", "choices": [],
                              "usage": {"prompt_tokens": 3}})
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 3} and usage["object"] == "text_completion"
    for body, param in (({"model": "m", "prompt": ["a", "b"]}, "prompt"), ({"model": "m"}, "prompt"),
                        ({"model": "m", "prompt": "a", "n": 2}, "n"), ({"model": "m", "prompt": "a", "tools": []}, "tools"),
                        ({"prompt": "a"}, "model")):
        with pytest.raises(GatewayError) as e:
            completions_to_chat(body)
        assert e.value.status == 400 and e.value.code == param, body
