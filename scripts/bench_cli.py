"""Cold-start benchmark of the CLI's query path (issue 4: <= 150 ms, ~15x `python -c pass`).

    python scripts/bench_cli.py [--dumps ../shared/model_catalog] [--runs 30]

Warms the cache once, then times fresh processes of
``knollm models search llama --max-input-price 1`` and ``python -c pass`` interleaved,
and prints the medians and the ratio. Uses ``hyperfine`` when it is installed (also
reported), else a loop of subprocess runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - t) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dumps", default=str(ROOT.parent / "shared" / "model_catalog"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--cache-dir", default=None, help="default: $KNOLLM_CACHE_DIR or the normal cache")
    args = ap.parse_args()
    env = dict(os.environ, KNOLLM_DUMPS=args.dumps)
    if args.cache_dir:
        env["KNOLLM_CACHE_DIR"] = args.cache_dir
    knollm = shutil.which("knollm", path=str(Path(sys.executable).parent)) or "knollm"
    cmd = [knollm, "models", "search", "llama", "--max-input-price", "1"]
    base = [sys.executable, "-c", "pass"]
    warm = subprocess.run(cmd, env=env, capture_output=True, text=True)  # builds the cache if needed
    if warm.returncode not in (0, 1):
        print(warm.stderr, file=sys.stderr)
        return 2
    for _ in range(3):
        _time(cmd, env)
        _time(base, env)
    tc, tb = [], []
    for _ in range(args.runs):
        tc.append(_time(cmd, env))
        tb.append(_time(base, env))
    mc, mb = statistics.median(tc), statistics.median(tb)
    print(f"loop of {args.runs} subprocess runs (interleaved), cache warm, dumps={args.dumps}")
    print(f"  {' '.join(['knollm'] + cmd[1:])}: median {mc:.1f} ms (min {min(tc):.1f})")
    print(f"  python -c pass: median {mb:.1f} ms (min {min(tb):.1f})")
    print(f"  ratio {mc / mb:.1f}x   target <= 150 ms: {'OK' if mc <= 150 else 'OVER'}")
    if shutil.which("hyperfine"):
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "hf.json"
            subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(args.runs), "--export-json", str(out),
                            " ".join(cmd), f"{sys.executable} -c pass"], env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if out.exists():
                res = json.loads(out.read_text())["results"]
                hc, hb = res[0]["median"] * 1000, res[1]["median"] * 1000
                print(f"hyperfine: command median {hc:.1f} ms, python -c pass median {hb:.1f} ms, ratio {hc / hb:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
