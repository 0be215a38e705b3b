"""A cache hit's latency beside a miss's, on loopback (not a test: it prints figures).

The loopback provider server answers after ``--latency`` seconds (default 0: the bare
HTTP round trip). For N distinct prompts, interleaved: a miss (routed call + store), then
a hit of the same prompt (lookup + ledger row), then the plain routed call without the
cache (baseline). Streams: a live stream vs a replayed one (time to the last delta).
Reports p50/p99 of each and the ratios.

    python scripts/bench_cache.py [--n 200] [--latency 0.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.scratch import scratch_dir  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.0, help="server think time per answer, seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from knollm.client import Client, SQLiteStore
    from knollm.client_cache import CachedClient, ResponseCache
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, env_for, model
    from tests.support.provider_servers import ProviderServer

    srv = ProviderServer("groq").start()
    srv.latency = args.latency
    tmp = scratch_dir("bench-cache-")
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile", input=0.59, output=0.79)))
    client = Client(catalog=cat, env=env_for({"groq": srv}, {"GROQ_API_KEY": "gsk_bench"}),
                    store=SQLiteStore(tmp / "knollm.db"))
    cc = CachedClient(client, ResponseCache(tmp / "cache.db"), enabled=True)
    target = "groq/llama-3.3-70b-versatile"
    t_miss, t_hit, t_base, s_live, s_replay = [], [], [], [], []
    for i in range(5):  # warm up connections and imports
        cc.chat(target, [{"role": "user", "content": f"warm {i}"}])
    for i in range(args.n):
        msg = [{"role": "user", "content": f"prompt {i}"}]
        t = time.perf_counter()
        r1 = cc.chat(target, msg)
        t_miss.append(time.perf_counter() - t)
        t = time.perf_counter()
        r2 = cc.chat(target, msg)
        t_hit.append(time.perf_counter() - t)
        assert not getattr(r1, "cached", False) and r2.cached
        t = time.perf_counter()
        client.chat(target, [{"role": "user", "content": f"base {i}"}])
        t_base.append(time.perf_counter() - t)
        smsg = [{"role": "user", "content": f"stream {i} " + "word " * 40}]
        t = time.perf_counter()
        list(cc.stream(target, smsg))
        s_live.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = list(cc.stream(target, smsg))
        s_replay.append(time.perf_counter() - t)
        assert out[-1].cached
    srv.stop()
    ms = 1000
    res = {name: {"p50_ms": statistics.median(xs) * ms, "p99_ms": pct(xs, 99) * ms} for name, xs in (
        ("miss", t_miss), ("hit", t_hit), ("uncached_call", t_base), ("stream_live", s_live),
        ("stream_replay", s_replay))}
    res["hit_over_miss_p50"] = res["hit"]["p50_ms"] / res["miss"]["p50_ms"]
    res["miss_over_uncached_p50"] = res["miss"]["p50_ms"] / res["uncached_call"]["p50_ms"]
    res["n"], res["server_latency_s"] = args.n, args.latency
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.n} prompts, loopback server latency {args.latency * 1000:.0f} ms, interleaved")
    for name in ("uncached_call", "miss", "hit", "stream_live", "stream_replay"):
        print(f"  {name:14s} p50 {res[name]['p50_ms']:7.2f} ms   p99 {res[name]['p99_ms']:7.2f} ms")
    print(f"  hit / miss (p50): {res['hit_over_miss_p50']:.2f}   miss / uncached call (p50): "
          f"{res['miss_over_uncached_p50']:.2f}   replayed / live stream (p50): "
          f"{res['stream_replay']['p50_ms'] / res['stream_live']['p50_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
