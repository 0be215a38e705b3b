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
            "print('httpx2' in sys.modules, 'pydantic' in sys.modules, 'openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]
