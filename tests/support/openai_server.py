"""A small but real OpenAI-compatible HTTP server for tests.

Stdlib only (``http.server.ThreadingHTTPServer``), bound to 127.0.0.1 on a free
port. It answers enough of the OpenAI API for the official ``openai`` SDK and
the libraries built on it:

* ``GET  /v1/models``               the model list (one model, ``knollm-test``)
* ``POST /v1/chat/completions``     non-streaming and streaming (SSE ``data:``
  chunks closed by ``data: [DONE]``); when ``tools`` are given (and the last
  message is not already a tool result) it answers with a tool call whose
  arguments are generated from the tool's JSON schema; ``response_format``
  of type ``json_schema`` / ``json_object`` gets JSON content.
* ``POST /v1/responses``            a minimal non-streaming Responses API answer
  (text, or a function call when tools are given).
* ``POST /v1/messages``             Anthropic's Messages API (non-streaming and
  streaming events, ``tool_use`` when tools are given), so the Anthropic SDK's
  example runs too (its ``base_url`` is the server root, without ``/v1``).

Every request is recorded in :attr:`OpenAIServer.requests` (method, path,
headers, parsed JSON body) so tests can assert on what a library sent.

Replies are deterministic: text replies are ``"Hello from knollm-test! You
said: <last user text>"``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "knollm-test"
REPLY_PREFIX = "Hello from knollm-test! You said: "


# --------------------------------------------------------------------------- helpers
def _resolve(schema: dict, root: dict) -> dict:
    seen = 0
    while "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node
        seen += 1
    return schema


def example_from_schema(schema: dict, root: dict | None = None, name: str = "", depth: int = 0) -> Any:
    """A value that validates against a (simple) JSON schema."""
    root = root if root is not None else schema
    schema = _resolve(schema or {}, root)
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema and schema[key]:
            options = [o for o in schema[key] if _resolve(o, root).get("type") != "null"] or schema[key]
            return example_from_schema(options[0], root, name, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or (typ is None and "properties" in schema):
        props = schema.get("properties", {})
        return {k: example_from_schema(v, root, k, depth + 1) for k, v in props.items()}
    if typ == "array":
        return [example_from_schema(schema.get("items", {}), root, name, depth + 1)]
    if typ == "integer":
        return 42
    if typ == "number":
        return 21.5
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    lowered = name.lower()
    if "city" in lowered or "location" in lowered:
        return "Paris"
    if "name" in lowered:
        return "Ada"
    return "example"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                parts.append(p.get("text") or "")
            else:
                parts.append(str(p))
        return "".join(parts)
    return "" if content is None else str(content)


def _last_user_text(messages: list[dict]) -> str:
    for m in reversed(messages or []):
        if m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


# --------------------------------------------------------------------------- server
class OpenAIServer:
    """Start with :meth:`start` (or as a context manager); ``base_url`` ends in ``/v1``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle --------------------------------------------------------------
    def start(self) -> "OpenAIServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter}"

    # answers ------------------------------------------------------------------
    def chat_answer(self, body: dict) -> dict:
        """The (non-streamed) assistant message for a chat request."""
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        last_role = messages[-1].get("role") if messages else None
        tool_choice = body.get("tool_choice")
        if tools and last_role != "tool" and tool_choice != "none":
            tool = tools[0]
            if isinstance(tool_choice, dict):
                wanted = (tool_choice.get("function") or {}).get("name")
                tool = next((t for t in tools if (t.get("function") or {}).get("name") == wanted), tool)
            fn = tool.get("function") or {}
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            args = example_from_schema(params)
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [{
                    "id": self.next_id("call"),
                    "type": "function",
                    "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)},
                }],
            }
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") or {}
            return {"role": "assistant", "content": json.dumps(example_from_schema(schema))}
        if rf.get("type") == "json_object":
            return {"role": "assistant", "content": json.dumps({"answer": "example"})}
        if last_role == "tool":
            return {"role": "assistant", "content": "The tool said: " + _text_of(messages[-1].get("content"))}
        return {"role": "assistant", "content": REPLY_PREFIX + _last_user_text(messages)}


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # plumbing -----------------------------------------------------------------
    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: dict | None) -> None:
        self.owner.record({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": body,
        })

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        # accept both /v1/x and /x (some clients are given a base URL without /v1)
        return path[3:] if path.startswith("/v1/") else path

    # routes ---------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._record(None)
        if self._path() == "/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "knollm"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        self._record(body)
        path = self._path()
        if path == "/chat/completions":
            if body.get("stream"):
                self._stream_chat(body)
            else:
                self._chat(body)
        elif path == "/responses":
            self._responses(body)
        elif path == "/messages":
            self._anthropic_messages(body)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    # chat -----------------------------------------------------------------------
    @staticmethod
    def _usage(body: dict, text: str) -> dict:
        prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or []) or 1
        completion = max(1, len(text.split()))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _chat(self, body: dict) -> None:
        msg = self.owner.chat_answer(body)
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        text = msg.get("content") or json.dumps(msg.get("tool_calls"))
        self._send_json(200, {
            "id": self.owner.next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or MODEL_ID,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
            "usage": self._usage(body, text),
        })

    def _stream_chat(self, body: dict) -> None:
        msg = self.owner.chat_answer(body)
        cid = self.owner.next_id("chatcmpl")
        created = int(time.time())
        model = body.get("model") or MODEL_ID
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> None:
            payload: dict = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
                             if choices else []}
            if usage is not None:
                payload["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        if msg.get("tool_calls"):
            for i, call in enumerate(msg["tool_calls"]):
                args = call["function"]["arguments"]
                chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": ""}}]})
                half = len(args) // 2
                for piece in (args[:half], args[half:]):
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            finish = "tool_calls"
            text = json.dumps(msg["tool_calls"])
        else:
            text = msg.get("content") or ""
            words = text.split(" ")
            for i, w in enumerate(words):
                chunk({"content": w if i == 0 else " " + w})
            finish = "stop"
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk({}, None, self._usage(body, text), choices=False)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # anthropic messages -------------------------------------------------------
    def _anthropic_messages(self, body: dict) -> None:
        messages = []
        for m in body.get("messages") or []:
            content = m.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
            results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            if results:
                messages.append({"role": "tool", "content": _text_of(results[-1].get("content"))})
            else:
                messages.append({"role": m.get("role", "user"), "content": _text_of(blocks)})
        tools = [{"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema")}}
                 for t in body.get("tools") or [] if t.get("name")]
        msg = self.owner.chat_answer({"messages": messages, "tools": tools})
        mid = self.owner.next_id("msg")
        model = body.get("model") or MODEL_ID
        if msg.get("tool_calls"):
            call = msg["tool_calls"][0]
            block = {"type": "tool_use", "id": "toolu_" + call["id"], "name": call["function"]["name"],
                     "input": json.loads(call["function"]["arguments"])}
            stop, text = "tool_use", ""
        else:
            text = msg.get("content") or ""
            block = {"type": "text", "text": text}
            stop = "end_turn"
        usage = {"input_tokens": max(1, sum(len(m["content"].split()) for m in messages if m.get("content"))),
                 "output_tokens": max(1, len(text.split()))}
        if not body.get("stream"):
            self._send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                  "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(name: str, data: dict) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        event("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 0}}})
        if block["type"] == "text":
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}})
            for i, w in enumerate(text.split(" ")):
                event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}})
        else:
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {**block, "input": {}}})
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "input_json_delta",
                                                    "partial_json": json.dumps(block["input"])}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": usage["output_tokens"]}})
        event("message_stop", {"type": "message_stop"})

    # responses (minimal) --------------------------------------------------------
    def _responses(self, body: dict) -> None:
        inp = body.get("input")
        if isinstance(inp, str):
            messages = [{"role": "user", "content": inp}]
        else:
            messages = [{"role": m.get("role", "user"), "content": m.get("content")} for m in inp or []
                        if isinstance(m, dict) and m.get("role")]
        tools = [{"type": "function", "function": {"name": t.get("name"), "parameters": t.get("parameters")}}
                 for t in body.get("tools") or [] if t.get("type") == "function"]
        last_is_output = bool(inp) and not isinstance(inp, str) and isinstance(inp[-1], dict) \
            and inp[-1].get("type") == "function_call_output"
        msg = self.owner.chat_answer({"messages": messages, "tools": [] if last_is_output else tools})
        rid = self.owner.next_id("resp")
        if msg.get("tool_calls"):
            call = msg["tool_calls"][0]
            output = [{"type": "function_call", "id": self.owner.next_id("fc"), "call_id": call["id"],
                       "name": call["function"]["name"], "arguments": call["function"]["arguments"],
                       "status": "completed"}]
            text = ""
        else:
            text = msg.get("content") or ""
            output = [{"type": "message", "id": self.owner.next_id("msg"), "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        self._send_json(200, {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": body.get("model") or MODEL_ID, "output": output, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": body.get("tools") or [],
            "usage": {"input_tokens": 1, "output_tokens": max(1, len(text.split())), "total_tokens": 2,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        })


if __name__ == "__main__":  # manual use: python -m tests.support.openai_server
    with OpenAIServer() as srv:
        print(srv.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
