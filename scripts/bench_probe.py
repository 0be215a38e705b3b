"""Benchmark ``knollm benchmark`` itself on loopback providers with injected delays
(not a test: it prints figures and ratios).

Three OpenAI-compatible loopback servers (tests/support/capability_servers.py) with a
known time to first byte and a known delay between streamed tokens, one of which fails
30 % of the time. ``knollm.probe.bench.benchmark`` measures them; the baseline is the
injected truth of the same run (TTFT = injected wait; generation = gaps x token delay).
Prints the terminal table, measured/injected ratios, and writes the site's two charts
as SVG files.

    python scripts/bench_probe.py [--runs 20] [--concurrency 4] [--svg-dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knollm.fmt import format_table  # noqa: E402
from knollm.probe.bench import benchmark, table_rows  # noqa: E402
from knollm.probe.chart import benchmark_charts  # noqa: E402
from knollm.probe.common import resolve_targets  # noqa: E402
from knollm.query.api import Catalog  # noqa: E402
from tests.support.capability_servers import CapabilityServer  # noqa: E402
from tests.support.client_fixtures import model  # noqa: E402

#: name -> (ttft s, token delay s, fail pattern, input $/1M, output $/1M)
SERVERS = {
    "fast-cheap": (0.05, 0.002, (), 0.05, 0.08),
    "mid": (0.15, 0.01, (), 0.6, 0.8),
    "slow-flaky": (0.40, 0.02, (2, 5, 8), 3.0, 15.0),
}
WORDS = 24  # "This is <name> answering:" + w0..w19 -> 24 streamed words


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--svg-dir", default=tempfile.gettempdir())
    a = ap.parse_args()
    servers = {n: CapabilityServer(n, ttft=t, token_delay=d, fail_pattern=f).start()
               for n, (t, d, f, _, _) in SERVERS.items()}
    try:
        cat = Catalog({"models": [model(n, f"{n}-model", input=pi, output=po) for n, (_, _, _, pi, po) in SERVERS.items()],
                       "providers": [{"id": n} for n in SERVERS]})
        prov = {n: {"base_url": s.base_url, "shape": "openai", "api_key": "local"} for n, s in servers.items()}
        ts = resolve_targets(cat, [f"{n}/{n}-model" for n in SERVERS])
        t0 = time.perf_counter()
        doc = benchmark(ts, runs=a.runs, concurrency=a.concurrency, providers=prov, out_dir=None, max_tokens=64)
        wall = time.perf_counter() - t0
    finally:
        for s in servers.values():
            s.stop()
    rows = table_rows(doc)
    print(format_table(rows, list(rows[0])))
    print(f"\n{a.runs} runs x {len(ts)} targets, concurrency {a.concurrency}: {wall:.2f} s wall; "
          f"spent ${doc['cost_usd']:.6f} of ${doc['announced_usd']:.6f} announced\n")
    print("measured / injected (baseline = the servers' injected delays, same run):")
    for r in doc["results"]:
        ttft, delay, fails, _, _ = SERVERS[r["provider"]]
        gen = (WORDS - 1) * delay
        print(f"  {r['key']:28s} ttft p50 {r['ttft_p50_ms']:7.1f} ms / {ttft * 1000:6.1f} = "
              f"{r['ttft_p50_ms'] / (ttft * 1000):.2f}   latency p50 {r['latency_p50_ms']:7.1f} / "
              f"{(ttft + gen) * 1000:6.1f} = {r['latency_p50_ms'] / ((ttft + gen) * 1000):.2f}   "
              f"tok/s {r['tokens_per_s_p50'] or 0:7.1f} / {WORDS / gen:6.1f} = {(r['tokens_per_s_p50'] or 0) / (WORDS / gen):.2f}"
              f"   success {r['success_rate']:.2f} / {1 - len(fails) / 10:.2f}")
    out = Path(a.svg_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, svg in benchmark_charts(doc["results"]).items():
        (out / f"knollm-benchmark-{name}.svg").write_text(svg)
    print(f"\ncharts: {out}/knollm-benchmark-latency.svg, {out}/knollm-benchmark-throughput.svg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
