"""Loopback OpenAI-compatible providers with known capabilities, for probes and benchmarks.

A :class:`CapabilityServer` answers ``POST /v1/chat/completions`` on 127.0.0.1 like a
real OpenAI-compatible provider (shapes from the public API reference: JSON answers,
SSE chunks ending in ``data: [DONE]``, usage in a final chunk when
``stream_options.include_usage``; errors as ``{"error": {"message", "type", "code"}}``),
but with capabilities set by its arguments:

* ``tools``: a request with ``tools`` gets a tool call with arguments built from the
  schema; False: HTTP 400 "tools are not supported".
* ``vision``: an ``image_url`` data URL is decoded (PNG, first pixel) and the colour named;
  False: HTTP 400 "image input is not supported".
* ``response_format``: honoured (``json_object``: a JSON object; ``json_schema``: a value
  built from the schema); False: ignored (plain text).
* ``system``: a system prompt asking for "exactly one word: X" is obeyed; False: dropped.
* ``stream_usage``: False: streams never carry usage.
* ``context``: prompts over this many tokens (~4 chars each) get the context-length 400.
* ``ttft`` (s before the first byte), ``token_delay`` (s between streamed tokens).
* ``bill_output``: report this many completion tokens whatever was sent (a provider that
  ignores ``max_tokens`` in its bill).
* ``fail_pattern``: request numbers (mod 10) answered with HTTP 500 – ``(2, 5, 8)`` is
  exactly 30 %.

Usage counts: prompt = characters / 4 (rounded up), completion = streamed words.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
import zlib
from typing import Any

from tests.support.openai_server import example_from_schema
from tests.support.provider_servers import ProviderServer
from tests.support.provider_servers import _Handler as BaseHandler

__all__ = ["CapabilityServer"]


def _png_colour(data: bytes) -> str:
    """Name of the first pixel's colour of an 8-bit RGB PNG."""
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            width = struct.unpack(">I", body[:4])[0]
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    r, g, b = raw[1], raw[2], raw[3]
    names = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
             "black": (0, 0, 0)}
    assert width > 0
    return min(names, key=lambda k: sum((a - c) ** 2 for a, c in zip((r, g, b), names[k])))


class CapabilityServer(ProviderServer):
    """Lifecycle (start/stop, ``base_url``, context manager) from :class:`ProviderServer`."""

    def __init__(self, name: str = "cap", *, tools: bool = True, vision: bool = True, response_format: bool = True,
                 system: bool = True, stream_usage: bool = True, context: int = 8192, ttft: float = 0.0,
                 token_delay: float = 0.0, fail_pattern: tuple[int, ...] = (), answer_words: int = 20,
                 bill_output: int | None = None) -> None:
        super().__init__(name)
        self.tools, self.vision, self.response_format, self.system = tools, vision, response_format, system
        self.stream_usage, self.context, self.ttft, self.token_delay = stream_usage, context, ttft, token_delay
        self.fail_pattern = fail_pattern
        self.answer_words = answer_words
        self.bill_output = bill_output
        self.count = 0
        self.requests: list[dict] = []  # request bodies, in order

    def next_number(self, body: dict) -> int:
        with self._lock:
            n = self.count
            self.count += 1
            self.requests.append(body)
            return n


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


class _Handler(BaseHandler):
    server_owner: CapabilityServer

    def _error(self, status: int, message: str, typ: str = "invalid_request_error", code: str | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": typ, "param": None, "code": code}})

    def do_POST(self) -> None:  # noqa: N802, C901 - one dispatcher
        o = self.server_owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        n = o.next_number(body)
        if o.ttft:
            time.sleep(o.ttft)
        if not self.path.endswith("/chat/completions"):
            return self._error(404, f"unknown path {self.path}", "not_found")
        if n % 10 in o.fail_pattern:
            return self._error(500, "The server had an error while processing your request.", "server_error")
        msgs = body.get("messages") or []
        prompt = sum(len(_text(m.get("content"))) for m in msgs)
        prompt_tokens = -(-prompt // 4)
        if prompt_tokens > o.context:
            return self._error(400, f"This model's maximum context length is {o.context} tokens. However, your "
                                    f"messages resulted in {prompt_tokens} tokens. Please reduce the length of "
                                    f"the messages.", code="context_length_exceeded")
        images = [p for m in msgs if isinstance(m.get("content"), list) for p in m["content"]
                  if isinstance(p, dict) and p.get("type") == "image_url"]
        if images and not o.vision:
            return self._error(400, "Image input is not supported for this model.")
        if body.get("tools") and not o.tools:
            return self._error(400, "tools are not supported for this model.")
        call = None
        text = f"This is {o.name} answering: " + " ".join(f"w{i}" for i in range(o.answer_words))
        system = " ".join(_text(m.get("content")) for m in msgs if m.get("role") == "system")
        rf = body.get("response_format") or {}
        if body.get("tools"):
            fn = body["tools"][0]["function"]
            call = {"id": "call_1", "type": "function", "function": {
                "name": fn["name"], "arguments": json.dumps(example_from_schema(fn.get("parameters") or {}))}}
        elif images:
            url = images[0]["image_url"]["url"]
            text = _png_colour(base64.b64decode(url.split(",", 1)[1])).capitalize() + "."
        elif o.response_format and rf.get("type") == "json_object":
            text = json.dumps({"city": "Paris", "country": "France"})
        elif o.response_format and rf.get("type") == "json_schema":
            text = json.dumps(example_from_schema(rf["json_schema"]["schema"]))
        elif o.system and (m := re.search(r"exactly one word: (\w+)", system)):
            text = m.group(1)
        words = text.split(" ")
        out_tokens = o.bill_output or (len(words) if call is None else 12)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens, "total_tokens": prompt_tokens + out_tokens}
        if body.get("stream"):
            return self._stream(body, words, call, usage)
        msg: dict[str, Any] = {"role": "assistant", "content": None if call else text}
        if call:
            msg["tool_calls"] = [call]
        self._json(200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                         "model": body.get("model"), "usage": usage,
                         "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if call else "stop",
                                      "logprobs": None}]})

    def _stream(self, body: dict, words: list[str], call: dict | None, usage: dict) -> None:
        o = self.server_owner
        self._start_stream()

        def ev(delta: dict, finish: str | None = None, u: dict | None = None) -> None:
            d: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 0,
                                 "model": body.get("model"),
                                 "choices": [] if u else [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if u:
                d["usage"] = u
            self.wfile.write(b"data: " + json.dumps(d).encode() + b"\n\n")
            self.wfile.flush()

        if call:
            ev({"role": "assistant", "tool_calls": [{"index": 0, **call}]})
            ev({}, "tool_calls")
        else:
            for i, w in enumerate(words):
                if i and o.token_delay:
                    time.sleep(o.token_delay)
                ev({"role": "assistant", "content": w} if i == 0 else {"content": " " + w})
            ev({}, "stop")
        if o.stream_usage and (body.get("stream_options") or {}).get("include_usage"):
            ev({}, u=usage)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


CapabilityServer.handler_base = _Handler
