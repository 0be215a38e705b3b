"""Benchmark embeddings through Knollm (not a test: it prints figures and ratios).

    python scripts/bench_embeddings.py [--inputs 16] [--dims 1536] [--requests 400] [--rounds 3]

One run starts ``scripts/bench_upstream.py`` (its ``POST /v1/embeddings`` answers
``--inputs`` vectors of ``--dims`` floats, as OpenAI writes them) and ``knollm serve`` on the
default catalog, whose ``openai`` provider points at that upstream, then measures, in the
same run:

1. the gateway: the same embeddings request sent directly to the upstream and through the
   gateway for ``openai/text-embedding-3-small``, asking for floats and for base64 (what
   the openai SDK asks by default), from an aiohttp load generator that reads the answer's
   bytes. Added latency p50 at concurrency 1; throughput at concurrency 16 as a ratio of
   direct with the same encoding (median of the rounds, each against direct in the same
   round); the gateway's CPU per request (with its SQLite ledger).
2. the client: ``AsyncClient.embed`` (routing, every vector checked, cost, no ledger) with
   its ``vectors`` read as Python floats, beside two baselines measured in the same run:
   a bare ``aiohttp`` post asking floats plus ``orjson.loads``, and one asking base64 plus
   ``orjson.loads`` and each vector decoded to floats (what the openai SDK does without
   numpy). CPU of this process per call at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_gateway import _cpu_s, _pct, _tree, _wait  # noqa: E402
from tests.support.gateway_proc import GatewayProcess, free_port  # noqa: E402
from tests.support.scratch import scratch_dir  # noqa: E402

TARGET = "openai/text-embedding-3-small"


async def _load(url: str, body: bytes, n: int, conc: int) -> tuple[list[float], float, int]:
    """(latencies s, wall s, errors) of ``n`` posts of ``body`` to ``url`` from ``conc`` workers."""
    import aiohttp

    lat: list[float] = []
    errors = 0
    queue = iter(range(n))
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn, headers={"content-type": "application/json"}) as s:
        async def worker() -> None:
            nonlocal errors
            for _ in queue:
                t0 = time.perf_counter()
                async with s.post(url + "/embeddings", data=body) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        continue
                lat.append(time.perf_counter() - t0)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return lat, time.perf_counter() - t, errors


def bench_gateway(up: str, inputs: list[str], n: int, rounds: int) -> None:
    home = str(scratch_dir("knollm-bench-embed-"))
    env = {"KNOLLM_HOME": home, "KNOLLM_OPENAI_BASE_URL": up, "OPENAI_API_KEY": "bench-key",
           "KNOLLM_DATABASE_URL": f"sqlite:///{home}/knollm.db"}
    with GatewayProcess(env) as gw:
        def body(model: str, fmt: str) -> bytes:
            return json.dumps({"model": model, "input": inputs, "encoding_format": fmt}).encode()

        paths = (("direct float", up, body("text-embedding-3-small", "float"), []),
                 ("gateway float", gw.base_url, body(TARGET, "float"), _tree(gw.proc.pid)),
                 ("direct base64", up, body("text-embedding-3-small", "base64"), []),
                 ("gateway base64", gw.base_url, body(TARGET, "base64"), _tree(gw.proc.pid)))
        for _, url, b, _ in paths:  # warm: imports, catalog, pools, the upstream's answer
            lat, _, errs = asyncio.run(_load(url, b, 20, 4))
            if errs:
                raise SystemExit(f"{url}: {errs} errors while warming up")
        p50 = {}
        for name, url, b, _ in paths:
            lat, _, _ = asyncio.run(_load(url, b, max(50, n // 2), 1))
            p50[name] = (_pct(lat, 50) * 1000, _pct(lat, 99) * 1000)
        per_round: dict[str, list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for name, url, b, pids in paths:
                c0 = _cpu_s(pids)
                lat, wall, errs = asyncio.run(_load(url, b, n, 16))
                per_round.setdefault(name, []).append((len(lat) / wall, (_cpu_s(pids) - c0) / n * 1e6))
        mb = len(paths[0][2]) / 1e3
    print(f"\n1. the gateway: {len(inputs)} inputs a request, {ARGS.dims} dimensions a vector (request {mb:.1f} kB)")
    for name, _, _, _ in paths:
        rps = [r[0] for r in per_round[name]]
        line = f"   {name:15} p50 {p50[name][0]:6.2f} ms  p99 {p50[name][1]:6.2f} ms"
        direct = name.replace("gateway", "direct")  # the same encoding asked of the upstream directly
        base50 = p50[direct][0]
        if name != direct:
            ratios = sorted(r / d[0] for r, d in zip(rps, per_round[direct]))
            cpu = statistics.median(r[1] for r in per_round[name])
            line += (f"  added p50 {p50[name][0] - base50:5.2f} ms;  concurrency 16: "
                     f"{statistics.median(ratios):.0%} of direct (rounds {', '.join(f'{x:.0%}' for x in ratios)}),"
                     f" gateway CPU {cpu:,.0f} us/request")
        else:
            line += f"  concurrency 16: {statistics.median(rps):,.0f} requests/s"
        print(line)


def bench_client(up: str, inputs: list[str], n: int) -> None:
    import aiohttp
    import orjson

    from knollm import AsyncClient

    body = json.dumps({"model": "text-embedding-3-small", "input": inputs, "encoding_format": "float"}).encode()
    env = {"KNOLLM_OPENAI_BASE_URL": up, "OPENAI_API_KEY": "bench-key"}

    async def drive(one) -> float:  # noqa: ANN001
        it = iter(range(n))

        async def worker() -> None:
            for _ in it:
                await one()

        await asyncio.gather(*(one() for _ in range(16)))
        c0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(16)))
        return (time.process_time() - c0) / n * 1e6

    def floats(b64: str) -> list[float]:
        raw = base64.b64decode(b64)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))

    async def bare(fmt: str) -> float:
        data = body if fmt == "float" else body.replace(b'"float"', b'"base64"')
        async with aiohttp.ClientSession() as s:
            async def one() -> None:
                async with s.post(up + "/embeddings", data=data, headers={"content-type": "application/json",
                                                                          "authorization": "Bearer bench-key"}) as r:
                    obj = orjson.loads(await r.read())
                    if fmt == "base64":
                        [floats(d["embedding"]) for d in obj["data"]]
            return await drive(one)

    async def client() -> float:
        c = AsyncClient(env=env, store=False)

        async def one() -> None:
            (await c.embed(TARGET, inputs)).vectors

        try:
            return await drive(one)
        finally:
            await c.aclose()

    base_f, base_b, ours = asyncio.run(bare("float")), asyncio.run(bare("base64")), asyncio.run(client())
    base = min(base_f, base_b)
    print(f"\n2. the client at concurrency 16 ({n} calls each; the default catalog's {TARGET})")
    print(f"   bare aiohttp post, floats + orjson.loads          {base_f:8,.0f} us CPU/call")
    print(f"   bare aiohttp post, base64 decoded to floats       {base_b:8,.0f} us CPU/call")
    print(f"   AsyncClient.embed + .vectors                      {ours:8,.0f} us CPU/call "
          f"({ours / base:.2f}x the cheaper baseline)")


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=16, help="texts per request (default 16)")
    ap.add_argument("--dims", type=int, default=1536, help="dimensions per vector (default 1536)")
    ap.add_argument("--requests", type=int, default=400, help="requests per measurement (default 400)")
    ap.add_argument("--rounds", type=int, default=3)
    ARGS = ap.parse_args()
    os.environ["BENCH_EMBED_DIMS"] = str(ARGS.dims)
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_upstream.py"), str(port)],
                                env={**os.environ, "BENCH_EMBED_DIMS": str(ARGS.dims)})
    up = f"http://127.0.0.1:{port}/v1"
    inputs = [f"document {i}: " + "a few words of text " * 10 for i in range(ARGS.inputs)]
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
    try:
        _wait(up + "/models")
        bench_gateway(up, inputs, ARGS.requests, ARGS.rounds)
        bench_client(up, inputs, ARGS.requests)
    finally:
        upstream.kill()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
