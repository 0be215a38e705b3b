"""Bad input to the gateway's translated routes is a 400 naming the field (never a 500),
and valid input is not silently changed on the way: ``/v1/chat/completions`` (and the
legacy completions that run through it), ``/v1/messages`` (and its ``count_tokens``) and
``/v1/responses``. Pure checks call the translate functions; what a client sees goes
through a real ``knollm serve`` with the official SDKs, over loopback providers."""

from __future__ import annotations

import json

import pytest

from knollm.errors import GatewayError
from knollm.gateway.responses import responses_to_chat
from knollm.gateway.translate import AnthropicStream, anthropic_to_openai, validate_chat_request
from tests.support.gateway_proc import GatewayProcess
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import CLAUDE, GROQ, SECRETS, gateway_env

IMG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
U = [{"role": "user", "content": "hi"}]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMG}}
CALL = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}


def refused(fn, body) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        fn(body)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


def anth(**kw):
    return {"model": "m", "max_tokens": 10, "messages": U, **kw}


def tool_result(content):
    return [*U, CALL, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                   "content": content}]}]


# --------------------------------------------------------------------------- OpenAI chat
@pytest.mark.parametrize("js", ["x", [1], None])
def test_response_format_json_schema_must_be_an_object(js):
    e = refused(validate_chat_request, {"model": "m", "messages": U,
                                        "response_format": {"type": "json_schema", "json_schema": js}})
    assert e.code == "response_format.json_schema"


@pytest.mark.parametrize("text", [None, 5, ["a"]])
def test_chat_text_part_must_be_a_string(text):
    e = refused(validate_chat_request, {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": text}]}]})
    assert e.code == "messages[0].content[1].text"


def _call(**over):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    fn = {**call["function"], **over.pop("function", {})}
    return {**call, **over, "function": fn}


@pytest.mark.parametrize("calls, field", [
    ("x", "messages[0].tool_calls"),
    ({"id": "c1"}, "messages[0].tool_calls"),
    (["x"], "messages[0].tool_calls[0]"),
    ([_call(), _call(id=None)], "messages[0].tool_calls[1]"),
    ([_call(type="tool")], "messages[0].tool_calls[0]"),
    ([{"id": "c1", "type": "function"}], "messages[0].tool_calls[0]"),
    ([_call(function={"name": ""})], "messages[0].tool_calls[0]"),
    ([_call(function={"arguments": {"a": 1}})], "messages[0].tool_calls[0]"),
    ([_call(function={"arguments": None})], "messages[0].tool_calls[0]"),
])
def test_chat_tool_calls_shape_and_json_arguments(calls, field):
    e = refused(validate_chat_request, {"model": "m", "messages": [
        {"role": "assistant", "content": None, "tool_calls": calls}, *U]})
    assert e.code == field
    assert '{"a": 1' not in str(e) and "abc" not in str(e)  # the values are not echoed


def test_chat_tool_calls_that_every_shape_can_send_are_kept():
    calls = [_call(), _call(id="c2", function={"arguments": ""}), _call(id="c3", function={"arguments": '{"a": [1]}'}),
             _call(id="c4", function={"arguments": '{"a": 1'})]  # (cut short by a model: passed on as it is)
    body = {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": calls},
                                       {"role": "assistant", "content": "x", "tool_calls": []}, *U]}
    assert validate_chat_request(body) is body


# --------------------------------------------------------------------------- Anthropic -> OpenAI: refused
@pytest.mark.parametrize("body, field", [
    (anth(messages=[{"role": "user", "content": [{"type": "text", "text": None}]}]), "messages[0].content[0].text"),
    (anth(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
    (anth(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": 5}]}]),
     "messages[0].content[1].text"),
    (anth(messages=[*U, {"role": "assistant", "content": [{"type": "text", "text": None}]}]),
     "messages[1].content[0].text"),
    (anth(system=[{"type": "text", "text": None}]), "system[0].text"),
    (anth(system=[{"type": "text", "text": "a"}, {"type": "text", "text": 7}]), "system[1].text"),
    (anth(messages=tool_result([{"type": "text", "text": None}])), "messages[2].content[0].content[0].text"),
    (anth(messages=tool_result([{"type": "text", "text": {"a": 1}}])), "messages[2].content[0].content[0].text"),
    (anth(messages=tool_result(5)), "messages[2].content[0].content"),
    (anth(system={"type": "text", "text": "be nice"}), "system"),
    (anth(system=5), "system"),
    (anth(system=[{"type": "image", "source": IMAGE["source"]}]), "system[0]"),
    (anth(system=["be nice"]), "system[0]"),
    (anth(messages=[{"role": "user", "content": [{"type": "image", "source": "http://x/a.png"}]}]),
     "messages[0].content[0].source"),
    (anth(messages=[{"role": "user", "content": [{"type": "image", "source": [1]}]}]), "messages[0].content[0].source"),
    (anth(messages=[{"role": "user", "content": [{"type": "image"}]}]), "messages[0].content[0].source"),
    (anth(stop_sequences="END"), "stop_sequences"),
    (anth(stop_sequences=5), "stop_sequences"),
    (anth(stop_sequences=["END", 5]), "stop_sequences"),
    (anth(tools=5), "tools"),
    (anth(tools={"name": "f"}), "tools"),
    (anth(tools="abc"), "tools"),
    (anth(tools=["f"]), "tools[0]"),
    (anth(tools=[{"description": "no name"}]), "tools[0]"),
    (anth(tools=[{"name": "f", "input_schema": "object"}]), "tools[0].input_schema"),
    (anth(tools=[{"type": "code_execution_20250522", "name": "code_execution"}]), "tools[0]"),
    (anth(tools=[{"name": "f"}, {"type": "bash_20250124", "name": "bash"}]), "tools[1]"),
    (anth(messages=tool_result([{"type": "document", "source": {}}])), "messages[2].content[0].content[0]"),
    (anth(messages=[*U, {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]),
     "messages[1].content[0]"),
    (anth(messages=[*U, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                            "input": "abc"}]}]), "messages[1].content[0].input"),
    (anth(messages=[*U, CALL, {"role": "user", "content": [{"type": "tool_result", "content": "r"}]}]),
     "messages[2].content[0].tool_use_id"),
    (anth(stream="false"), "stream"),
    (anth(stream=1), "stream"),
])
def test_bad_anthropic_input_is_a_400_naming_the_field(body, field):
    assert refused(anthropic_to_openai, body).code == field


def test_anthropic_refusals_say_why():
    server_tool = refused(anthropic_to_openai, anth(tools=[{"type": "code_execution_20250522", "name": "code_execution"}]))
    assert "built-in tool 'code_execution_20250522' is not supported: the gateway runs no tools" in str(server_tool)


# --------------------------------------------------------------------------- Anthropic -> OpenAI: kept
def test_a_tool_results_images_go_on_in_a_user_message_after_it():
    """A ``tool`` message carries text only: a tool result's images (a screenshot, an
    image file a tool read, as Claude Code's Read returns) follow the tool messages in a
    user message, with the user's own text after them; never dropped."""
    msgs = [*U, CALL, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "see"}, IMAGE]},
        {"type": "text", "text": "what is it?"}]}]
    out = anthropic_to_openai(anth(messages=msgs))["messages"]
    assert out[-2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "see\n\n[1 image in the next message]"}
    assert out[-1]["role"] == "user"
    assert [p["type"] for p in out[-1]["content"]] == ["text", "image_url", "text"]
    assert out[-1]["content"][1]["image_url"]["url"].endswith(IMG)
    assert out[-1]["content"][2] == {"type": "text", "text": "what is it?"}
    alone = anthropic_to_openai(anth(messages=tool_result([IMAGE])))["messages"]
    assert alone[-2]["role"] == "tool" and [p["type"] for p in alone[-1]["content"]] == ["text", "image_url"]


def test_anthropic_text_blocks_are_not_glued_together():
    req = anthropic_to_openai(anth(
        system=[{"type": "text", "text": "You are X."}, {"type": "text", "text": "Be terse.", "cache_control": {
            "type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."},
                                                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                      {"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]}]},
                  {"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE, {"type": "text", "text": "and"}]}],
        stop_sequences=[]))
    assert req["messages"][0] == {"role": "system", "content": "You are X.\n\nBe terse."}  # as the client's own
    assert req["messages"][1] == {"role": "user", "content": "Hello\n\nworld"}
    assert req["messages"][2]["content"] == "One.\n\nTwo."
    assert req["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "line 1\n\nline 2"}
    assert [p["type"] for p in req["messages"][4]["content"]] == ["text", "image_url", "text"]  # separate parts
    assert "stop" not in req


def test_anthropic_single_text_blocks_stay_plain_strings():
    req = anthropic_to_openai(anth(system=[{"type": "text", "text": "be kind"}], stream=False, tools=[],
                                   messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                             {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
                                             {"role": "user", "content": [{"type": "text", "text": ""}]}]))
    assert req["messages"] == [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "yo"}, {"role": "user", "content": ""}]
    assert "stream" not in req and "tools" not in req
    custom = anthropic_to_openai(anth(tools=[{"type": "custom", "name": "f", "input_schema": {"type": "object"}}]))
    assert custom["tools"] == [{"type": "function", "function": {"name": "f", "description": "",
                                                                 "parameters": {"type": "object"}}}]


# --------------------------------------------------------------------------- Responses
@pytest.mark.parametrize("body, field", [
    ({"model": "m", "input": "hi", "stream": "false"}, "stream"),
])
def test_bad_responses_input_is_a_400_naming_the_field(body, field):
    e = refused(responses_to_chat, body)
    assert e.code == field and '{"a": 1' not in str(e)


def test_responses_stream_false_and_empty_arguments_are_kept():
    req = responses_to_chat({"model": "m", "stream": False, "input": [
        *U, {"type": "function_call", "call_id": "c", "name": "f", "arguments": ""},
        {"type": "function_call_output", "call_id": "c", "output": "r"}]})
    assert "stream" not in req and req["messages"][1]["tool_calls"][0]["function"]["arguments"] == ""


# --------------------------------------------------------------------------- the stream's usage
def test_anthropic_stream_usage_counts_cache_reads_as_the_whole_answer_does():
    from knollm.gateway.translate import openai_to_anthropic

    usage = {"prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 40}}
    conv = AnthropicStream("m", "msg_1")
    events = [*conv.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}),
              *conv.feed({"choices": [], "usage": usage}), *conv.close()]
    delta = [d for n, d in events if n == "message_delta"][0]
    whole = openai_to_anthropic({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                                 "usage": usage}, "m")
    assert delta["usage"] == whole["usage"] == {"input_tokens": 80, "output_tokens": 30,
                                                "cache_read_input_tokens": 40, "cache_creation_input_tokens": 0}


# --------------------------------------------------------------------------- through the gateway
@pytest.fixture(scope="module")
def servers():
    srvs = {"groq": ProviderServer("groq", usage=(120, 30, 40)).start(), "togetherai": ProviderServer("together").start(),
            "anthropic": ProviderServer("anthropic", usage=(120, 30, 40)).start()}
    yield srvs
    for s in srvs.values():
        s.stop()


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway_checks")
    with GatewayProcess(gateway_env(tmp, servers)) as g:
        yield g


@pytest.fixture
def claude(gw):
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)


def test_gateway_anthropic_stream_reports_cache_reads(claude):
    for model in (GROQ, CLAUDE):
        whole = claude.messages.create(model=model, max_tokens=20, messages=U)
        with claude.messages.stream(model=model, max_tokens=20, messages=U) as s:
            final = s.get_final_message()
        assert whole.usage.cache_read_input_tokens == 40, model
        assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens,
                final.usage.cache_creation_input_tokens) == \
            (whole.usage.input_tokens, whole.usage.output_tokens, whole.usage.cache_read_input_tokens,
             whole.usage.cache_creation_input_tokens), model


def test_gateway_bad_anthropic_input_is_a_400_not_a_500(claude, servers):
    import anthropic

    before = {k: len(s.requests) for k, s in servers.items()}
    cases = [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
        ({"messages": U, "system": [{"type": "text", "text": None}]}, "system[0].text"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": "http://x/a.png"}]}]},
         "messages[0].content[0].source"),
        ({"messages": U, "stop_sequences": "END"}, "stop_sequences"),
        ({"messages": U, "tools": 5}, "tools"),
        ({"messages": U, "tools": [{"type": "code_execution_20250522", "name": "code_execution"}]}, "built-in tool"),
        ({"messages": tool_result([{"type": "document", "source": {}}])}, "unsupported block type 'document'"),
        ({"messages": U, "stream": "false"}, "'stream' must be a boolean"),
    ]
    for extra, says in cases:
        with pytest.raises(anthropic.BadRequestError) as e:
            claude.messages.create(model=CLAUDE, max_tokens=10, **extra)
        err = e.value.response.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error", extra
        assert says in err["error"]["message"], (extra, err)
    with pytest.raises(anthropic.BadRequestError) as e:  # the token count reads the same request
        claude.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": [{"type": "text",
                                                                                           "text": None}]}])
    assert "messages[0].content[0].text" in e.value.response.json()["error"]["message"]
    assert {k: len(s.requests) for k, s in servers.items()} == before  # nothing reached a provider


def test_gateway_anthropic_system_blocks_joined_as_the_client_does(claude, servers):
    claude.messages.create(model=CLAUDE, max_tokens=10, system=[{"type": "text", "text": "You are X."},
                                                                {"type": "text", "text": "Be terse."}],
                           messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                                                  {"type": "text", "text": "world"}]}])
    sent = servers["anthropic"].requests[-1]["json"]
    assert sent["system"] == "You are X.\n\nBe terse."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello\n\nworld"}]}]
    claude.messages.create(model=GROQ, max_tokens=10, system="be brief", stop_sequences=["END"], messages=U)
    sent = servers["groq"].requests[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"} and sent["stop"] == ["END"]


def test_gateway_openai_bad_tool_calls_are_a_400_not_a_500(gw, servers):
    openai = pytest.importorskip("openai")
    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    before = {k: len(s.requests) for k, s in servers.items()}
    for model, messages, field in (
            (CLAUDE, [{"role": "assistant", "content": None, "tool_calls": "x"}, *U], "messages[0].tool_calls"),
            (CLAUDE, [{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages[0].content[0].text")):
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=model, messages=messages)
        assert e.value.response.json()["error"]["code"] == field
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=GROQ, messages=U, response_format={"type": "json_schema",
                                                                             "json_schema": "x"})
    assert e.value.response.json()["error"]["code"] == "response_format.json_schema"
    assert {k: len(s.requests) for k, s in servers.items()} == before
    for v in SECRETS.values():
        assert v not in str(e.value.response.text)



def test_gateway_passes_on_tool_call_arguments_a_model_cut_short(gw, servers):
    """Agents send back a model's tool call whose arguments were cut short (not JSON). An
    OpenAI-compatible provider gets the string as it is; Anthropic, whose API takes an
    object, gets it whole as ``{"_raw_arguments": ...}``: the call is served, nothing is
    dropped. The same through the Responses API."""
    openai = pytest.importorskip("openai")
    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    truncated = [*U, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1'}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    assert oai.chat.completions.create(model=GROQ, messages=truncated).choices[0].message.content
    sent = servers["groq"].requests[-1]["json"]["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"a": 1'
    assert oai.chat.completions.create(model=CLAUDE, messages=truncated).choices[0].message.content
    blocks = servers["anthropic"].requests[-1]["json"]["messages"][1]["content"]
    assert {"type": "tool_use", "id": "c1", "name": "f", "input": {"_raw_arguments": '{"a": 1'}} in blocks
    r = oai.responses.create(model=CLAUDE, input=[*U, {"type": "function_call", "call_id": "c", "name": "f",
                                                       "arguments": "abc"},
                                                  {"type": "function_call_output", "call_id": "c", "output": "r"}])
    assert r.output_text
    blocks = servers["anthropic"].requests[-1]["json"]["messages"][1]["content"]
    assert any(b.get("input") == {"_raw_arguments": "abc"} for b in blocks)



def test_gateway_carries_a_tool_results_image_to_the_provider(claude, servers):
    """Claude Code's Read returns an image file as an image block in a tool_result: through
    the gateway to an OpenAI-compatible provider it arrives as the tool message's text and
    the image in the user message that follows."""
    claude.messages.create(model=GROQ, max_tokens=10, messages=tool_result([{"type": "text", "text": "a chart"},
                                                                            IMAGE]))
    sent = servers["groq"].requests[-1]["json"]["messages"]
    assert sent[-2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a chart\n\n[1 image in the next message]"}
    assert sent[-1]["role"] == "user" and sent[-1]["content"][1]["image_url"]["url"].endswith(IMG)
