"""The floor for ``scripts/bench_gateway.py``: the least a Python proxy on the gateway's
stack (uvicorn + httptools + uvloop serving through the gateway's one-send protocol
``knollm.gateway.server.GatewayHTTP``, Knollm's ``h1`` driver calling, as ``knollm serve``
does) can do per request.

A bare ASGI app that reads the request body, POSTs it to the upstream and returns the
upstream's bytes (streams relayed piece by piece): no routing, accounting, ledger or
metrics; the body is only parsed and written again, as any driver call takes a JSON
object. Whatever ``knollm serve`` costs above this is its own work.

    python scripts/bench_minproxy.py PORT UPSTREAM_ROOT [h1|aiohttp]

``aiohttp`` relays with an ``aiohttp.ClientSession`` instead (the floor before ``h1``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_upstream import lifespan, request_body  # noqa: E402

_client = None
_DRIVER = sys.argv[3] if len(sys.argv) > 3 else "h1"


async def _close() -> None:
    if _client is not None:
        await (_client.close() if _DRIVER == "aiohttp" else _client.aclose())


async def _relay_aiohttp(url: str, body: bytes, send) -> None:  # noqa: ANN001
    global _client
    import aiohttp

    if _client is None:
        _client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    async with _client.post(url, data=body, headers={"content-type": "application/json"}) as r:
        await _relay(r.status, r.headers.get("content-type", "application/json"), r.content.iter_any(), send)


async def _relay_h1(url: str, body: bytes, send) -> None:  # noqa: ANN001
    global _client
    import orjson

    from knollm.client.h1 import AsyncH1, H1Error, H1Timeout

    if _client is None:
        _client = AsyncH1(1000)
    payload = orjson.loads(body)
    for again in (True, False):
        st = _client.stream(url, {}, payload, 60.0, 10.0)
        try:
            r = await st.__aenter__()
        except H1Error as e:  # (before the answer's head: a kept-alive connection the upstream had closed)
            if again and not isinstance(e, H1Timeout):  # once more on a new one, as the gateway's client does
                continue
            raise
        try:
            await _relay(r.status, r.headers.get("content-type", "application/json"), r.chunks(), send)
        finally:
            await st.__aexit__(None, None, None)
        return


async def _relay(status: int, ctype: str, chunks, send) -> None:  # noqa: ANN001
    if ctype.startswith("text/event-stream"):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
        async for data in chunks:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    data = b"".join([d async for d in chunks])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def app(scope, receive, send):  # noqa: ANN001 - bare ASGI
    if scope["type"] == "lifespan":
        await lifespan(receive, send, _close)
        return
    body = await request_body(receive)
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    relay = _relay_aiohttp if _DRIVER == "aiohttp" else _relay_h1
    await relay(sys.argv[2] + scope["path"], body, send)


if __name__ == "__main__":
    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from knollm.gateway.server import GatewayHTTP

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                http=GatewayHTTP, loop="uvloop")
