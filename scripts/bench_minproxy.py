"""The floor for ``scripts/bench_gateway.py``: the least a Python proxy on the gateway's
stack (uvicorn + httptools + uvloop serving, aiohttp calling) can do per request.

A bare ASGI app that reads the request body, POSTs it unchanged to the upstream and
returns the upstream's bytes (streams relayed piece by piece): no parsing, routing,
accounting, ledger or metrics. Whatever ``knollm serve`` costs above this is its own work.

    python scripts/bench_minproxy.py PORT UPSTREAM_ROOT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_upstream import lifespan, request_body  # noqa: E402

_session = None


async def _close() -> None:
    if _session is not None:
        await _session.close()


async def app(scope, receive, send):  # noqa: ANN001 - bare ASGI
    global _session
    if scope["type"] == "lifespan":
        await lifespan(receive, send, _close)
        return
    body = await request_body(receive)
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    import aiohttp

    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    async with _session.post(sys.argv[2] + scope["path"], data=body,
                             headers={"content-type": "application/json"}) as r:
        ctype = r.headers.get("content-type", "application/json").encode()
        if ctype.startswith(b"text/event-stream"):
            await send({"type": "http.response.start", "status": r.status, "headers": [(b"content-type", ctype)]})
            async for data in r.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = await r.read()
    await send({"type": "http.response.start", "status": r.status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                http="httptools", loop="uvloop")
