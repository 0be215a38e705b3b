"""Loopback servers answering like Ollama and OpenAI-compatible local servers.

Response shapes follow the public API docs: Ollama ``GET /api/tags``, ``POST /api/show``
(``details``, ``model_info`` with ``<arch>.context_length``, ``parameters``,
``capabilities``), ``GET /api/ps``; OpenAI-compatible ``GET /v1/models`` (vLLM adds
``max_model_len``, llama.cpp's server a ``meta`` object).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GiB = 2**30

OLLAMA_TAGS = {"models": [
    {"name": "tiny-chat:3b", "model": "tiny-chat:3b", "modified_at": "2026-10-01T10:00:00.000000Z",
     "size": 2_019_393_189, "digest": "a80c4f17acd5", "details": {
         "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
         "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
    {"name": "huge-chat:405b", "model": "huge-chat:405b", "modified_at": "2026-10-02T10:00:00.000000Z",
     "size": 243 * GiB, "digest": "b11c4f17acd5", "details": {
         "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
         "parameter_size": "405B", "quantization_level": "Q4_0"}},
    {"name": "embedder:latest", "model": "embedder:latest", "modified_at": "2026-10-03T10:00:00.000000Z",
     "size": 274_302_450, "digest": "0a109f422b47", "details": {
         "parent_model": "", "format": "gguf", "family": "nomic-bert", "families": ["nomic-bert"],
         "parameter_size": "137M", "quantization_level": "F16"}},
]}
OLLAMA_SHOW = {
    "tiny-chat:3b": {
        "modelfile": "FROM tiny-chat:3b", "parameters": "num_ctx 16384\nstop \"<|eot_id|>\"", "template": "{{ .Prompt }}",
        "details": OLLAMA_TAGS["models"][0]["details"],
        "model_info": {"general.architecture": "llama", "general.parameter_count": 3_212_749_888,
                       "llama.context_length": 131072, "llama.embedding_length": 3072},
        "capabilities": ["completion", "tools"]},
    "huge-chat:405b": {
        "modelfile": "FROM huge-chat:405b", "parameters": "stop \"<|eot_id|>\"", "template": "{{ .Prompt }}",
        "details": OLLAMA_TAGS["models"][1]["details"],
        "model_info": {"general.architecture": "llama", "general.parameter_count": 405_000_000_000,
                       "llama.context_length": 131072},
        "capabilities": ["completion", "tools"]},
    "embedder:latest": {
        "modelfile": "", "parameters": "", "template": "",
        "details": OLLAMA_TAGS["models"][2]["details"],
        "model_info": {"general.architecture": "nomic-bert", "nomic-bert.context_length": 2048},
        "capabilities": ["embedding"]},
}
OLLAMA_PS = {"models": [
    {"name": "tiny-chat:3b", "model": "tiny-chat:3b", "size": 3_500_000_000, "digest": "a80c4f17acd5",
     "details": OLLAMA_TAGS["models"][0]["details"], "expires_at": "2026-11-23T16:00:00Z",
     "size_vram": 3_500_000_000, "context_length": 16384},
]}
VLLM_MODELS = {"object": "list", "data": [
    {"id": "org/served-model-8b", "object": "model", "created": 1763900000, "owned_by": "vllm",
     "root": "org/served-model-8b", "parent": None, "max_model_len": 32768},
]}
LLAMACPP_MODELS = {"object": "list", "data": [
    {"id": "model.gguf", "object": "model", "created": 1763900000, "owned_by": "llamacpp",
     "meta": {"vocab_type": 2, "n_vocab": 128256, "n_ctx_train": 131072, "n_embd": 4096,
              "n_params": 8_030_261_248, "size": 4_920_734_208}},
]}


class _Handler(BaseHTTPRequestHandler):
    routes: dict[tuple[str, str], Any] = {}

    def log_message(self, *a: Any) -> None:  # quiet
        pass

    def _send(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        r = self.routes.get(("GET", self.path))
        self._send(200, r) if r is not None else self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path == "/api/show" and ("GET", "/api/tags") in self.routes:
            show = OLLAMA_SHOW.get(body.get("model") or body.get("name"))
            self._send(200, show) if show else self._send(404, {"error": "model not found"})
        else:
            self._send(404, {"error": "not found"})


class LocalServer:
    """``kind``: ``ollama``, ``vllm`` or ``llamacpp``. Use as a context manager; ``url`` is its root."""

    def __init__(self, kind: str) -> None:
        routes = {
            "ollama": {("GET", "/api/tags"): OLLAMA_TAGS, ("GET", "/api/ps"): OLLAMA_PS},
            "vllm": {("GET", "/v1/models"): VLLM_MODELS},
            "llamacpp": {("GET", "/v1/models"): LLAMACPP_MODELS},
        }[kind]
        handler = type(f"{kind}Handler", (_Handler,), {"routes": routes})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
