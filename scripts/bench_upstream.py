"""A fast loopback OpenAI-compatible upstream for ``scripts/bench_gateway.py``.

A bare ASGI app on uvicorn (no framework), so the upstream is not the bottleneck:
``POST /v1/chat/completions`` answers a fixed completion, or with ``stream: true`` a
fixed SSE stream of ``CHUNKS`` content chunks, a finish chunk and a usage chunk.
``POST /v1/embeddings`` answers one vector per input (``dimensions``, default
``EMBED_DIMS`` = text-embedding-3-small's 1,536) of floats written as OpenAI writes them
(about ten significant digits), or base64 float32 for ``encoding_format: base64``; each
answer shape is built once and reused.

``BENCH_STREAM_PACE_MS`` (environment, default 0): the pause between a stream's events,
so that each leaves in its own write and reaches the caller in its own read, as a
provider's tokens do (the paced measurement of ``scripts/bench_gateway.py``).

    python scripts/bench_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

CHUNKS = 10
TEXT = [f"word{i} " for i in range(CHUNKS)]
USAGE = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}


EMBED_DIMS = int(__import__("os").environ.get("BENCH_EMBED_DIMS") or 1536)
PACE_S = float(__import__("os").environ.get("BENCH_STREAM_PACE_MS") or 0) / 1000
_EMBEDDINGS: dict[tuple, bytes] = {}


def _embeddings(model: str, n: int, dims: int, fmt: str) -> bytes:
    key = (model, n, dims, fmt)
    hit = _EMBEDDINGS.get(key)
    if hit is None:
        import base64
        import random
        import struct

        rng = random.Random(n * 7919 + dims)
        vecs = [[round(rng.uniform(-0.1, 0.1), 10) for _ in range(dims)] for _ in range(n)]
        enc = [base64.b64encode(struct.pack(f"<{dims}f", *v)).decode() for v in vecs] if fmt == "base64" else vecs
        hit = _EMBEDDINGS[key] = json.dumps({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(enc)],
            "usage": {"prompt_tokens": 8 * n, "total_tokens": 8 * n}}).encode()
    return hit


def _completion(model: str) -> bytes:
    return json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(TEXT)},
                                    "finish_reason": "stop"}], "usage": USAGE}).encode()


def _chunks(model: str, usage: bool) -> list[bytes]:
    def c(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                                       "model": model, "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]}).encode() + b"\n\n"
    out = [c({"role": "assistant", "content": ""})] + [c({"content": t}) for t in TEXT] + [c({}, "stop")]
    if usage:
        out.append(b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                                           "model": model, "choices": [], "usage": USAGE}).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


async def lifespan(receive, send, on_shutdown=None):  # noqa: ANN001 - bare ASGI
    """Answer the ASGI lifespan protocol (``on_shutdown``: a coroutine function run at shutdown)."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def request_body(receive) -> bytes:  # noqa: ANN001
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def app(scope, receive, send):  # noqa: ANN001 - bare ASGI
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = await request_body(receive)
    if scope["method"] == "GET":
        payload = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    req = json.loads(body or b"{}")
    model = req.get("model") or "bench"
    if scope["path"].endswith("/embeddings"):
        x = req.get("input")
        n = 1 if isinstance(x, str) else len(x or [])
        payload = _embeddings(model, n, req.get("dimensions") or EMBED_DIMS, req.get("encoding_format") or "float")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        return
    if req.get("stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        usage = bool((req.get("stream_options") or {}).get("include_usage"))
        for i, piece in enumerate(_chunks(model, usage)):
            if PACE_S and i:
                await asyncio.sleep(PACE_S)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = _completion(model)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                http="httptools", loop="uvloop")
