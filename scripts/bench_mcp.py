"""Benchmark ``knollm mcp`` (not a test: it prints figures and ratios).

1. Per-call cost of the protocol: the same tool calls, interleaved, N times each, made
   (a) in process on :class:`knollm.mcp.tools.KnollmTools` (the baseline: the Python API
   plus JSON encoding) and (b) through the SDK's client over stdio to a real ``knollm mcp``
   process. Medians and p90 of both and the ratio.
2. Start-up: ``knollm mcp`` spawned until ``list_tools`` answers (the catalog is loaded on
   the first tool call) vs ``python -c pass`` and vs ``import mcp.server.mcpserver`` (the
   SDK's own import), medians of R runs, and the ratios.

    python scripts/bench_mcp.py [--dumps ../shared/model_catalog] [--n 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALLS = [("where_is", {"model": "llama-3.3-70b-instruct"}),
         ("search_models", {"capabilities": ["tools"], "max_input_price": 1, "sort": "price", "limit": 10}),
         ("get_cost_analysis", {"models": ["groq/llama-3.3-70b-versatile"],
                                "usage": {"input_tokens": 2000, "output_tokens": 500, "requests": 10000}})]


def q(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def main(a: argparse.Namespace) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from knollm.mcp.tools import KnollmTools

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "knollm", "mcp", "--dumps", a.dumps], env=env)
    tools = KnollmTools(dumps=a.dumps)
    tools.catalog  # build / load the cache once, outside the timings
    for name, args in CALLS:
        tools.call(name, args)
    local: dict[str, list[float]] = {n: [] for n, _ in CALLS}
    remote: dict[str, list[float]] = {n: [] for n, _ in CALLS}
    async with Client(params, read_timeout_seconds=600) as c:
        await c.list_tools()
        for _ in range(a.n):
            for name, args in CALLS:
                t = time.perf_counter()
                json.dumps(tools.call(name, args))
                local[name].append(time.perf_counter() - t)
                t = time.perf_counter()
                r = await c.call_tool(name, args)
                remote[name].append(time.perf_counter() - t)
                assert not r.is_error, r.content[0].text
    print(f"per call, {a.n} interleaved runs each (ms): in-process KnollmTools vs MCP over stdio")
    for name, _ in CALLS:
        lm, rm = statistics.median(local[name]) * 1e3, statistics.median(remote[name]) * 1e3
        print(f"  {name:18s} in-process p50 {lm:7.2f} p90 {q(local[name], .9) * 1e3:7.2f} | "
              f"mcp p50 {rm:7.2f} p90 {q(remote[name], .9) * 1e3:7.2f} | ratio {rm / lm:5.1f}x")

    starts, bases, sdk = [], [], []
    for _ in range(a.runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bases.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], check=True)
        sdk.append(time.perf_counter() - t)
        t = time.perf_counter()
        async with Client(params, read_timeout_seconds=600) as c:
            await c.list_tools()
        starts.append(time.perf_counter() - t)
    s, b, k = statistics.median(starts), statistics.median(bases), statistics.median(sdk)
    print(f"start-up to list_tools: median {s * 1e3:.0f} ms vs python -c pass {b * 1e3:.0f} ms "
          f"(ratio {s / b:.1f}x) vs importing the SDK alone {k * 1e3:.0f} ms (ratio {s / k:.1f}x), {a.runs} runs")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dumps", default=str(ROOT.parent / "shared" / "model_catalog"))
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
