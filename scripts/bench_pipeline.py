#!/usr/bin/env python3
"""Benchmark the catalog pipeline on the real dumps (not a test: prints figures).

Prints, measured in the same run:
* baseline: plain ``orjson.loads`` of every dump file (bytes already read from disk);
* the in-process pipeline (``build_catalog``) with a per-phase breakdown;
* the whole ``knollm catalog`` process (python start-up + imports + build + write), and
* the ratios pipeline / baseline.

Usage: python scripts/bench_pipeline.py [--dumps ../shared/model_catalog] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dumps", type=Path, default=ROOT.parent / "shared" / "model_catalog")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not args.dumps.is_dir():
        print(f"no dumps at {args.dumps}", file=sys.stderr)
        return 2
    import orjson

    from knollm.catalog.build import build_catalog

    files = sorted(args.dumps.glob("models_*.json"))
    blobs = [f.read_bytes() for f in files]

    def baseline():
        gc.disable()
        try:
            for b in blobs:
                orjson.loads(b)
        finally:
            gc.enable()

    base = median_time(baseline, args.repeat)
    build_catalog(args.dumps)  # warm imports / registry caches
    phases: list[dict[str, float]] = []

    def pipeline():
        t: dict[str, float] = {}
        build_catalog(args.dumps, timings=t)
        phases.append(t)

    pipe = median_time(pipeline, args.repeat)
    mean_phases = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "catalog.json"
        cmd = [sys.executable, "-m", "knollm", "catalog", "--dumps", str(args.dumps), "--out", str(out), "-q",
               "--json"]
        proc = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat)
        bare = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.repeat)
        size = out.stat().st_size
    total_bytes = sum(map(len, blobs))
    print(f"dumps: {len(files)} files, {total_bytes / 1e6:.1f} MB")
    print(f"baseline orjson.loads of all dumps   {base * 1000:8.1f} ms")
    print(f"build_catalog (in process)           {pipe * 1000:8.1f} ms   ratio {pipe / base:6.1f}x baseline")
    for k, v in sorted(mean_phases.items(), key=lambda kv: -kv[1]):
        print(f"    {k:<22} {v * 1000:8.1f} ms")
    print(f"`knollm catalog` whole process       {proc * 1000:8.1f} ms   ratio {proc / base:6.1f}x baseline"
          f"   (python -c pass: {bare * 1000:.0f} ms)   output {size / 1e6:.1f} MB")
    print(f"goal: whole process < 1500 ms -> {'met' if proc < 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
