"""Benchmark of knollm.lock on the real dumps.

    python scripts/bench_lock.py [--dumps ../shared/model_catalog] [--runs 200]

1. ``resolve_alias`` (what a client does per request without a watcher) against the
   baseline of reading the same lockfile and ``tomllib.loads`` it: the ratio is the cost
   of discovery + validation + profile resolution on top of parsing.
2. ``LockWatcher.resolve`` with ``watch=True`` (a stat per call) against the same baseline.
3. Choosing all standard aliases (``lock init``'s work, catalog already loaded) against
   ``Catalog.search`` with the balanced alias's filters done once per alias (the floor).
Medians, interleaved, in one process; printed with the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median(fn, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dumps", default=str(ROOT.parent / "shared" / "model_catalog"))
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    if not Path(args.dumps).is_dir():
        print(f"no dumps at {args.dumps}", file=sys.stderr)
        return 1
    from knollm.lock import LockWatcher, resolve_alias
    from knollm.lock.facts import search_filters
    from knollm.lock.ops import init_lock, make_chooser
    from knollm.lock.roles import ALIASES
    from knollm.query.api import Catalog

    os.environ["KNOLLM_CONFIG"] = os.devnull + "-none"
    cat = Catalog.load(dumps=args.dumps)
    with tempfile.TemporaryDirectory() as d:
        lock = Path(d) / "knollm.lock"
        init_lock(make_chooser(cat), lock)
        print(f"lockfile: {lock.stat().st_size:,} bytes, {len(tomllib.loads(lock.read_text())['pins'])} pins")
        base = _median(lambda: tomllib.loads(lock.read_text("utf-8")), args.runs)
        res = _median(lambda: resolve_alias("deep", lock=lock), args.runs)
        w = LockWatcher(lock, watch=True)
        watch = _median(lambda: w.resolve("deep"), args.runs)
        print(f"baseline read+tomllib.loads: {base * 1e3:.3f} ms")
        print(f"resolve_alias:               {res * 1e3:.3f} ms  ratio {res / base:.2f}x")
        print(f"LockWatcher.resolve (watch): {watch * 1e3:.3f} ms  ratio {watch / base:.3f}x")
        specs = [s for s in ALIASES.values() if s.name != "local"]
        runs = max(3, args.runs // 40)
        floor = _median(lambda: [cat.search(**search_filters(s.requires)) for s in specs], runs)
        choose = _median(lambda: [make_chooser(cat).choose(s) for s in specs], runs)
        print(f"search floor ({len(specs)} aliases):    {floor * 1e3:.1f} ms")
        print(f"choose {len(specs)} aliases:             {choose * 1e3:.1f} ms  ratio {choose / floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
