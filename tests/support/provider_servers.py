"""Loopback chat servers with injected faults, for the client tests and the benchmark.

One :class:`ProviderServer` answers, on 127.0.0.1 and a free port, the chat APIs the
client speaks, in the shapes their public docs give:

* ``POST /v1/chat/completions``  OpenAI-compatible (JSON, or SSE ending in ``[DONE]``;
  usage in the last chunk when ``stream_options.include_usage``)
* ``POST /v1/messages``          Anthropic Messages (JSON, or ``event:``/``data:`` SSE)
* ``POST /v1/messages/count_tokens``  Anthropic's token count, ``{"input_tokens": N}``:
  :func:`counted_tokens` of the body (a made-up tokenizer, so a test can tell the
  provider's count from an estimate)
* ``POST /api/chat``             Ollama native (JSON, or NDJSON lines ending ``done: true``)
* ``POST /v1beta/models/M:generateContent`` / ``:streamGenerateContent?alt=sse``  Gemini
* embeddings: ``POST /v1/embeddings`` (OpenAI: ``data[].embedding``, floats or base64 float32
  as ``encoding_format`` asks, ``usage.prompt_tokens``), ``POST /v1beta/models/M:batchEmbedContents``
  (Gemini: ``embeddings[].values``, no usage) and ``POST /api/embed`` (Ollama: ``embeddings``,
  ``prompt_eval_count``). Each vector is :func:`vector_of` its text (token ids: their JSON);
  the usage reported is :attr:`usage`'s input count

Each request takes the next fault from :attr:`script` (then :attr:`default`):
``ok``, ``429`` (with ``Retry-After: retry_after``), ``500``, ``503``, ``401``, ``context``
(400 context-length error), ``hang`` (no answer for ``hang_s``), ``stall`` (stream: first
chunk, then silence), ``cut`` (stream: first chunk, then the connection closes), ``cutN``
(OpenAI / Anthropic streams: N content chunks, then the connection closes),
``malformed`` (an SSE event that is not JSON), ``html`` (200 with an HTML page),
``truncated`` (200 with cut-off JSON), ``bodycut`` (200 announcing the whole answer's
length, then half of it and the connection closes), ``reset`` (connection closed, no answer),
``nousage`` (an answer without usage), ``echo401`` (a 401 whose message repeats the key sent),
``shuffled`` (embeddings: ``data`` in reverse order), ``short`` (embeddings: one vector fewer),
``nodims`` (embeddings: ``dimensions`` ignored), ``think`` (stream: the model's reasoning for
``think_s`` seconds, a piece every 0.1 s, before its text, as each API sends it: OpenAI-compatible
``delta.reasoning_content`` (DeepSeek's), an Anthropic ``thinking`` block with its
``thinking_delta`` and ``signature_delta`` events, Gemini ``thought`` parts, Ollama's
``message.thinking``; an Anthropic request with ``thinking`` enabled is answered with a signed
thinking block first, whole or streamed, and held to Anthropic's rule on giving it back:
:func:`thinking_history_problem`), ``quiet`` (OpenAI-compatible stream: the head, then nothing for ``think_s``
seconds, then the stream: a reasoning model thinking, as OpenAI's send nothing on chat
completions meanwhile). Tools in the request get a tool call back.

Usage reported is :attr:`usage` = (input, output, cached) tokens, so costs are exact.
Every request is recorded in :attr:`requests` (path, headers, JSON body, fault).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.openai_server import _last_user_text, example_from_schema

__all__ = ["ProviderServer", "counted_tokens", "vector_of"]


def vector_of(text: str, dims: int = 8) -> list[float]:
    """The loopback servers' embedding of ``text``: ``dims`` numbers in [-0.5, 0.5] from its
    SHA-256, so a test can tell which input a vector belongs to (exact in float32)."""
    import hashlib

    h = hashlib.sha256(text.encode()).digest()
    return [(h[i % 32] - 128) / 256 for i in range(dims)]


#: the signature of the thinking blocks the Anthropic-shaped servers give (Anthropic's is opaque)
SIGNATURE = "EqQBCgIYAhIMthinking-signature"


def thinking_history_problem(messages: list) -> str | None:
    """What Anthropic's API says of a request with extended thinking enabled whose history
    breaks its rule (None: it keeps it): the assistant turn before the last set of tool
    results must start with its thinking block, given back unmodified (its signature
    checked). Anthropic's documented message, as its API returns it (a 400)."""
    for i, m in enumerate(messages):
        for b in m.get("content") if isinstance(m.get("content"), list) else ():
            if isinstance(b, dict) and b.get("type") == "thinking" and b.get("signature") != SIGNATURE:
                return f"messages.{i}.content.0: Invalid `signature` in `thinking` block"
    if len(messages) < 2 or not isinstance(messages[-1].get("content"), list) or not any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in messages[-1]["content"]):
        return None
    i = len(messages) - 2
    first = (messages[i].get("content") or [{}])[0] if isinstance(messages[i].get("content"), list) else {}
    if first.get("type") in ("thinking", "redacted_thinking"):
        return None
    return (f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must start with a "
            "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend "
            "you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.")


#: the citation of ``ProviderServer.cite`` answers (a ``web_search_result_location``, as Anthropic's docs show one)
CITATION = {"type": "web_search_result_location", "url": "https://example.com/", "title": "Example",
            "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0", "cited_text": "Example Domain. This domain is for use"}


def counted_tokens(body: dict) -> int:
    """The loopback Anthropic server's token count: one per word of the system prompt,
    the messages and the tool definitions (as JSON), plus 3."""
    return 3 + len(json.dumps([body.get("system"), body.get("messages"), body.get("tools")]).split())


class ProviderServer:
    handler_base: type = None  # type: ignore[assignment]  # set below: _Handler (subclasses swap it)

    def __init__(self, name: str = "srv", *, usage: tuple[int, int, int] = (120, 30, 0), chunk_delay: float = 0.0) -> None:
        self.name = name
        self.usage = usage
        self.chunk_delay = chunk_delay
        self.script: deque[str] = deque()
        self.default = "ok"
        self.retry_after = "0"
        self.hang_s = 3.0
        self.latency = 0.0  # seconds before every answer
        self.think_s = 1.0  # how long a ``think`` stream reasons before its text
        self.thinks = False  # Anthropic shape: a thinking block first in every answer (MiniMax-M2's API does)
        self.searches = 0  # web searches a provider-run search tool made (Anthropic, Perplexity usage)
        # (Anthropic, with searches) the answer as Anthropic's web search docs show it: a text
        # block before the searches, and the text after them in blocks, one citing a result
        self.cite = False
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._stop = threading.Event()

    # lifecycle
    def start(self, tls: tuple[Any, Any] | None = None) -> ProviderServer:
        """Serve on a free loopback port; ``tls=(certfile, keyfile)`` serves HTTPS."""
        owner = self

        class Handler(self.handler_base):  # type: ignore[name-defined]
            server_owner = owner

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._scheme = "http"
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._httpd is not None
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def faults(self, *names: str) -> ProviderServer:
        self.script.extend(names)
        return self

    def next_fault(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def reply(self, body: dict) -> str:
        return f"Hello from {self.name}! You said: {_last_user_text(body.get('messages') or [])}"

    def tool_call(self, body: dict) -> dict | None:
        # (a server tool, Anthropic's web_search_*: the provider runs it, the caller gets no call)
        tools = [t for t in body.get("tools") or [] if not str(t.get("type", "")).startswith("web_search")]
        msgs = body.get("messages") or []
        if not tools or (msgs and msgs[-1].get("role") in ("tool",)) or \
                (msgs and isinstance(msgs[-1].get("content"), list)
                 and any(p.get("type") == "tool_result" for p in msgs[-1]["content"])):
            return None
        t = tools[0]
        fn = t.get("function") or t  # OpenAI / Ollama {"function": …} or Anthropic {"name", "input_schema"}
        schema = fn.get("parameters") or fn.get("input_schema") or {"type": "object", "properties": {}}
        return {"name": fn.get("name", "tool"), "args": example_from_schema(schema)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: 500 concurrent clients connect at once


def _thinks(body: dict) -> bool:
    """Whether an Anthropic request enables extended thinking."""
    return isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"


def _cut_after(fault: str) -> int | None:
    """N of a ``cutN`` fault (the stream closes after N content chunks), else None."""
    return int(fault[3:]) if fault.startswith("cut") and fault[3:].isdigit() else None


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [w + (" " if i < len(parts) - 1 else "") for i, w in enumerate(parts)]


class _Handler(BaseHTTPRequestHandler):
    server_owner: ProviderServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        # no Nagle: a stream's small writes must not wait 40 ms for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, data: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _start_stream(self, ctype: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _write(self, data: str) -> None:
        self.wfile.write(data.encode())
        self.wfile.flush()
        d = self.server_owner.chunk_delay
        if d:
            time.sleep(d)

    def do_POST(self) -> None:  # noqa: N802, C901 - one dispatcher
        o = self.server_owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        fault = o.next_fault()
        o.record({"path": path, "query": self.path.partition("?")[2], "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body,
                  "fault": fault})
        if o.latency:
            time.sleep(o.latency)
        api = "anthropic" if path.endswith("/messages") else "ollama" if path == "/api/chat" else \
            "gemini" if ":generateContent" in path or ":streamGenerateContent" in path else "openai"
        stream = bool(body.get("stream")) or ":streamGenerateContent" in path
        if api == "gemini":  # translate to the OpenAI-style body the helpers below read
            body = {"model": path.rsplit("/", 1)[-1].split(":")[0],
                    "messages": [{"role": "user", "content": "".join(p.get("text", "") for p in c.get("parts", []))}
                                 for c in body.get("contents", []) if c.get("role") == "user"],
                    "tools": [{"function": f} for t in body.get("tools", []) for f in t.get("functionDeclarations", [])]}
        if fault == "429":
            return self._json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                              {"Retry-After": o.retry_after})
        if fault in ("500", "503"):
            return self._json(int(fault), {"error": {"message": "upstream overloaded", "type": "server_error"}})
        if fault == "echo401":  # some providers echo the credential they rejected
            return self._json(401, {"error": {"message": f"invalid key {self.headers.get('authorization')} "
                                              f"{self.headers.get('x-api-key')}"}})
        if fault == "401":
            return self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_api_key"}})
        if fault == "context":
            return self._json(400, {"error": {"message": "This model's maximum context length is 8192 tokens. "
                                              "However, your messages resulted in 9000 tokens.",
                                              "code": "context_length_exceeded"}})
        if fault == "hang":
            o._stop.wait(o.hang_s)
            self.close_connection = True
            return
        if fault == "reset":
            self.close_connection = True
            self.connection.close()
            return
        if fault == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Bad gateway</body></html>", "text/html")
        if fault == "truncated":
            return self._send(200, b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assis')
        if path.endswith("/embeddings") or path == "/api/embed" or path.endswith(":batchEmbedContents"):
            return self._embeddings(path, body, fault)
        if path.endswith("/messages/count_tokens"):
            return self._json(200, {"input_tokens": counted_tokens(body)})
        if api == "anthropic" and _thinks(body):
            why = thinking_history_problem(body.get("messages") or [])
            if why:
                return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": why}})
        text = o.reply(body)
        call = o.tool_call(body)
        usage = None if fault == "nousage" else o.usage
        if fault == "bodycut" and not stream:
            return self._half({"openai": self._openai, "gemini": self._gemini, "anthropic": self._anthropic,
                               "ollama": self._ollama}[api](body, text, call, usage))
        if api == "openai":
            return self._openai_stream(body, text, call, usage, fault) if stream else \
                self._json(200, self._openai(body, text, call, usage))
        if api == "gemini":
            return self._gemini_stream(body, text, call, usage, fault) if stream else \
                self._json(200, self._gemini(body, text, call, usage))
        if api == "anthropic":
            return self._anthropic_stream(body, text, call, usage, fault) if stream else \
                self._json(200, self._anthropic(body, text, call, usage))
        return self._ollama_stream(body, text, call, usage, fault) if stream else \
            self._json(200, self._ollama(body, text, call, usage))

    def _half(self, obj: Any) -> None:
        """``bodycut``: the whole answer's length announced, half of it sent, the connection closed."""
        whole = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(whole)))
        self.end_headers()
        self.wfile.write(whole[:len(whole) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _embeddings(self, path: str, body: dict, fault: str) -> None:
        o = self.server_owner
        n_in = None if fault == "nousage" else o.usage[0]
        if path.endswith(":batchEmbedContents"):
            reqs = body.get("requests") or []
            texts = ["".join(p.get("text", "") for p in (r.get("content") or {}).get("parts", [])) for r in reqs]
            dims = [(r.get("outputDimensionality") if fault != "nodims" else None) or 8 for r in reqs]
            obj: dict = {"embeddings": [{"values": vector_of(t, d)} for t, d in zip(texts, dims)]}
        else:
            x = body.get("input")
            items = [x] if isinstance(x, str) or (isinstance(x, list) and x and type(x[0]) is int) else x or []
            texts = [t if isinstance(t, str) else json.dumps(t) for t in items]
            vecs = [vector_of(t, (body.get("dimensions") if fault != "nodims" else None) or 8) for t in texts]
            if path == "/api/embed":
                obj = {"model": body.get("model"), "embeddings": vecs, "total_duration": 14143917,
                       "load_duration": 1019500}
                if n_in is not None:
                    obj["prompt_eval_count"] = n_in
            else:
                if body.get("encoding_format") == "base64":
                    import base64
                    import struct

                    enc: list = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vecs]
                else:
                    enc = vecs
                obj = {"object": "list", "model": body.get("model"),
                       "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(enc)]}
                if fault == "shuffled":  # the data in reverse order: the index field says which is which
                    obj["data"].reverse()
                if n_in is not None:
                    obj["usage"] = {"prompt_tokens": n_in, "total_tokens": n_in}
        if fault == "bodycut":
            return self._half(obj)
        if fault == "short":  # one vector fewer than inputs
            for k in ("data", "embeddings"):
                if obj.get(k):
                    obj[k] = obj[k][:-1]
        return self._json(200, obj)

    # -- faults inside a stream
    def _think(self, piece: Any) -> None:
        """The ``think`` fault's reasoning: ``piece(text)`` written every 0.1 s for ``think_s``."""
        until = time.monotonic() + self.server_owner.think_s
        while time.monotonic() < until:
            self._write(piece("Let me think. "))
            time.sleep(0.1)

    def _stream_fault(self, fault: str, first: str, last: str | None = None) -> bool:
        """Write the first event, then misbehave; True if the fault ended the stream."""
        o = self.server_owner
        if fault == "malformed":
            self._write("data: {\"choices\": [{\"delta\": {\"content\": \"oops\"\n\n")
            return True
        self._write(first)
        if fault == "stall":
            o._stop.wait(o.hang_s)
            return True
        if fault == "cut":
            return True
        return False

    # -- OpenAI
    def _openai(self, body: dict, text: str, call: dict | None, usage: tuple | None) -> dict:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if call:
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": call["name"], "arguments": json.dumps(call["args"])}}]}
            finish = "tool_calls"
        out = {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
               "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}]}
        if usage:
            out["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                            "total_tokens": usage[0] + usage[1], "prompt_tokens_details": {"cached_tokens": usage[2]}}
            if self.server_owner.searches:  # Perplexity's chat completions count their searches
                out["usage"]["num_search_queries"] = self.server_owner.searches
        return out

    def _openai_stream(self, body: dict, text: str, call: dict | None, usage: tuple | None, fault: str) -> None:
        self._start_stream()

        def ev(delta: dict, finish: str | None = None, u: dict | None = None, choices: bool = True) -> str:
            d = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body.get("model"),
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
            if u:
                d["usage"] = u
            return "data: " + json.dumps(d) + "\n\n"

        if fault == "think":
            self._think(lambda t: ev({"role": "assistant", "content": None, "reasoning_content": t}))
        elif fault == "quiet":
            time.sleep(self.server_owner.think_s)
        words = _words(text)
        cut = _cut_after(fault)
        if call:
            first = ev({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                              "function": {"name": call["name"], "arguments": ""}}]})
            if self._stream_fault(fault, first):
                return
            args = json.dumps(call["args"])
            for n, i in enumerate(range(0, len(args), 8), 1):
                if n == cut:
                    return
                self._write(ev({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]}))
            self._write(ev({}, "tool_calls"))
        else:
            if self._stream_fault(fault, ev({"role": "assistant", "content": words[0]})):
                return
            for n, w in enumerate(words[1:], 1):
                if n == cut:
                    return
                self._write(ev({"content": w}))
            self._write(ev({}, "stop"))
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            self._write(ev({}, u={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                  "total_tokens": usage[0] + usage[1],
                                  "prompt_tokens_details": {"cached_tokens": usage[2]}}, choices=False))
        self._write("data: [DONE]\n\n")

    # -- Anthropic
    @staticmethod
    def _a_usage(usage: tuple | None, out: bool = True) -> dict:
        if not usage:
            return {}
        # Anthropic's input_tokens excludes cache reads
        u = {"input_tokens": usage[0] - usage[2], "cache_read_input_tokens": usage[2],
             "cache_creation_input_tokens": 0}
        if out:
            u["output_tokens"] = usage[1]
        return u

    def _search_blocks(self) -> list[dict]:
        """The web_search server tool's blocks, as Anthropic's docs show them (one pair a search)."""
        out: list[dict] = []
        for i in range(self.server_owner.searches):
            out += [{"type": "server_tool_use", "id": f"srvtoolu_{i}", "name": "web_search",
                     "input": {"query": f"query {i}"}},
                    {"type": "web_search_tool_result", "tool_use_id": f"srvtoolu_{i}",
                     "content": [{"type": "web_search_result", "url": "https://example.com/", "title": "Example",
                                  "encrypted_content": "EqgfCioIARgBIiQ3", "page_age": "April 30, 2025"}]}]
        return out

    def _cited(self, text: str) -> tuple[list[dict], list[dict]]:
        """``cite`` answers: the text block before the searches, and the answer's text blocks
        after them (the second one citing :attr:`CITATION`); else none, and the text whole."""
        if not (self.server_owner.cite and self.server_owner.searches):
            return [], [{"type": "text", "text": text}]
        return [{"type": "text", "text": "Let me search the web."}], \
            [{"type": "text", "text": "Based on the search results, "},
             {"type": "text", "text": text, "citations": [dict(CITATION)]}]

    def _anthropic(self, body: dict, text: str, call: dict | None, usage: tuple | None) -> dict:
        before, after = self._cited(text)
        content = [{"type": "tool_use", "id": "toolu_1", "name": call["name"], "input": call["args"]}] if call \
            else after
        u = self._a_usage(usage)
        if self.server_owner.searches and u:
            u["server_tool_use"] = {"web_search_requests": self.server_owner.searches}
        thought = [{"type": "thinking", "thinking": "Let me think. ", "signature": SIGNATURE}] \
            if _thinks(body) or self.server_owner.thinks else []
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                "content": thought + before + self._search_blocks() + content,
                "stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None, "usage": u}

    def _anthropic_stream(self, body: dict, text: str, call: dict | None, usage: tuple | None, fault: str) -> None:
        self._start_stream()

        def ev(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        start = ev("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                 "model": body.get("model"), "content": [],
                                                 "usage": {**self._a_usage(usage, False), "output_tokens": 1}}})
        self._write(start)
        before, after = self._cited(text)
        thinking: list[dict] = []
        if fault == "think" or _thinks(body) or self.server_owner.thinks:  # index 0: the thinking block, …
            thinking = [{"type": "thinking", "thinking": "", "signature": ""}]
            self._write(ev("content_block_start", {"index": 0, "content_block": thinking[0]}))
            piece = (lambda t: ev("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta",
                                                                                "thinking": t}}))
            if fault == "think":
                self._think(piece)
            else:
                self._write(piece("Let me think. "))
            self._write(ev("content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                                        "signature": SIGNATURE}}))
            self._write(ev("content_block_stop", {"index": 0}))
        blocks = thinking + before + self._search_blocks()
        for i, b in enumerate(blocks):
            if b["type"] == "thinking":
                continue  # a search's query streams as its server_tool_use block's input
            if b["type"] == "server_tool_use":
                self._write(ev("content_block_start", {"index": i, "content_block": {**b, "input": {}}}))
                self._write(ev("content_block_delta", {"index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(b["input"])}}))
            elif b["type"] == "text":
                self._write(ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}}))
                self._write(ev("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": b["text"]}}))
            else:
                self._write(ev("content_block_start", {"index": i, "content_block": b}))
            self._write(ev("content_block_stop", {"index": i}))
        if not call and len(after) > 1:  # (cite) the text blocks before the last: whole, one citing
            for b in after[:-1]:
                i = len(blocks)
                blocks.append(b)
                self._write(ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}}))
                self._write(ev("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": b["text"]}}))
                self._write(ev("content_block_stop", {"index": i}))
        at = len(blocks)  # the answer's block comes after them
        if call:
            first = ev("content_block_start", {"index": at, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                              "name": call["name"], "input": {}}})
            if self._stream_fault(fault, first):
                return
            self._write(ev("content_block_delta", {"index": at, "delta": {"type": "input_json_delta",
                                                                         "partial_json": json.dumps(call["args"])}}))
        else:
            self._write(ev("content_block_start", {"index": at, "content_block": {"type": "text", "text": ""}}))
            for c in after[-1].get("citations") or ():  # (cite) a citation comes before its block's text
                self._write(ev("content_block_delta", {"index": at, "delta": {"type": "citations_delta",
                                                                             "citation": c}}))
            words = _words(text)
            first = ev("content_block_delta", {"index": at, "delta": {"type": "text_delta", "text": words[0]}})
            if self._stream_fault(fault, first):
                return
            for n, w in enumerate(words[1:], 1):
                if n == _cut_after(fault):
                    return
                self._write(ev("content_block_delta", {"index": at, "delta": {"type": "text_delta", "text": w}}))
        self._write(ev("content_block_stop", {"index": at}))
        final = {"output_tokens": usage[1] if usage else 0}
        if self.server_owner.searches and usage:  # cumulative, in the last message_delta (Anthropic's docs)
            final["server_tool_use"] = {"web_search_requests": self.server_owner.searches}
        self._write(ev("message_delta", {"delta": {"stop_reason": "tool_use" if call else "end_turn"},
                                         "usage": final}))
        self._write(ev("message_stop", {}))

    # -- Gemini
    @staticmethod
    def _g_usage(usage: tuple | None) -> dict:
        return {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1], "cachedContentTokenCount": usage[2],
                "totalTokenCount": usage[0] + usage[1]} if usage else {}

    def _gemini(self, body: dict, text: str, call: dict | None, usage: tuple | None) -> dict:
        part = {"functionCall": {"name": call["name"], "args": call["args"]}} if call else {"text": text}
        out = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
               "modelVersion": body.get("model"), "responseId": "resp-1"}
        if usage:
            out["usageMetadata"] = self._g_usage(usage)
        return out

    def _gemini_stream(self, body: dict, text: str, call: dict | None, usage: tuple | None, fault: str) -> None:
        self._start_stream()

        def ev(parts: list, finish: str | None = None, u: dict | None = None) -> str:
            c = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                c["finishReason"] = finish
            d = {"candidates": [c], "modelVersion": body.get("model")}
            if u:
                d["usageMetadata"] = u
            return "data: " + json.dumps(d) + "\r\n\r\n"

        if fault == "think":  # thought summaries (includeThoughts)
            self._think(lambda t: ev([{"text": t, "thought": True}]))
        words = _words(text)
        if self._stream_fault(fault, ev([{"text": words[0]}])):
            return
        for w in words[1:-1]:
            self._write(ev([{"text": w}]))
        self._write(ev([{"text": words[-1]}] if len(words) > 1 else [], "STOP", self._g_usage(usage) or None))

    # -- Ollama
    def _ollama(self, body: dict, text: str, call: dict | None, usage: tuple | None) -> dict:
        msg: dict[str, Any] = {"role": "assistant", "content": "" if call else text}
        if call:
            msg["tool_calls"] = [{"function": {"name": call["name"], "arguments": call["args"]}}]
        out = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z", "message": msg, "done": True,
               "done_reason": "stop", "total_duration": 1000, "eval_duration": 500}
        if usage:
            out.update(prompt_eval_count=usage[0], eval_count=usage[1])
        return out

    def _ollama_stream(self, body: dict, text: str, call: dict | None, usage: tuple | None, fault: str) -> None:
        self._start_stream("application/x-ndjson")

        def line(content: str, done: bool = False, **extra: Any) -> str:
            return json.dumps({"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z",
                               "message": {"role": "assistant", "content": content, **extra}, "done": done}) + "\n"

        if fault == "think":
            self._think(lambda t: line("", thinking=t))
        words = _words(text)
        if fault == "malformed":
            self._write('{"model": "x", "message": {"content": "oo\n')
            return
        if call:  # Ollama sends a tool call whole, in one line
            if self._stream_fault(fault, line("", tool_calls=[{"function": {"name": call["name"],
                                                                           "arguments": call["args"]}}])):
                return
        else:
            if self._stream_fault(fault, line(words[0])):
                return
            for w in words[1:]:
                self._write(line(w))
        final = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}
        if usage:
            final.update(prompt_eval_count=usage[0], eval_count=usage[1])
        self._write(json.dumps(final) + "\n")


ProviderServer.handler_base = _Handler


if __name__ == "__main__":  # a server in its own process (the benchmark): prints its root URL, runs until stdin closes
    import sys

    srv = ProviderServer(sys.argv[1] if len(sys.argv) > 1 else "srv").start()
    if len(sys.argv) > 2:
        srv.chunk_delay = float(sys.argv[2])
    print(srv.root, flush=True)
    sys.stdin.read()
    srv.stop()
