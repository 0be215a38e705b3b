"""A loopback OpenAI-compatible chat server playing a scripted model (stdlib only).

``ScriptedModel(script)``: ``script(body, turn)`` gets each ``/v1/chat/completions`` request
body (the real messages and tools the client sent) and the turn number, and returns the
assistant message: ``{"content": "..."}`` or ``{"tool_calls": [(name, arguments_dict), …]}``.
The reply is a real-shaped ChatCompletion (ids, ``finish_reason``, ``usage``). Every
request body is kept in ``requests``. ``status`` > 0 makes every answer that HTTP error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ScriptedModel", "tool_results"]


def tool_results(body: dict[str, Any]) -> dict[str, list[Any]]:
    """The tool messages of a request, by the tool name their call had: name -> [parsed JSON…]."""
    names: dict[str, str] = {}
    out: dict[str, list[Any]] = {}
    for m in body.get("messages") or []:
        for tc in m.get("tool_calls") or []:
            names[tc["id"]] = tc["function"]["name"]
        if m.get("role") == "tool":
            try:
                v = json.loads(m["content"])
            except ValueError:
                v = m["content"]
            out.setdefault(names.get(m.get("tool_call_id"), "?"), []).append(v)
    return out


class ScriptedModel:
    def __init__(self, script: Callable[[dict[str, Any], int], dict[str, Any]]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.status = 0
        self._lock = threading.Lock()
        self._n = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                with owner._lock:
                    owner.requests.append(body)
                    turn = len(owner.requests)
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if owner.status:
                    return self._send(owner.status, {"error": {"message": "scripted failure", "type": "server_error"}})
                msg = owner.script(body, turn)
                out: dict[str, Any] = {"role": "assistant", "content": msg.get("content")}
                finish = "stop"
                if msg.get("tool_calls"):
                    out["tool_calls"] = []
                    for i, (name, args) in enumerate(msg["tool_calls"]):
                        out["tool_calls"].append({"id": f"call_{turn}_{i}", "type": "function",
                                                  "function": {"name": name, "arguments": args if isinstance(args, str)
                                                               else json.dumps(args)}})
                    finish = "tool_calls"
                self._send(200, {"id": f"chatcmpl-{turn}", "object": "chat.completion", "created": 1_700_000_000,
                                 "model": body.get("model"), "choices": [{"index": 0, "message": out,
                                                                          "finish_reason": finish}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedModel:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
