"""Time to the first rendered model table of ``knollm browse`` (issue 17: < 1 s, cache warm).

    python scripts/bench_browse.py [--dumps ../shared/model_catalog] [--runs 7]

Each run is a fresh process that imports Knollm and Textual, loads the cached index, and
runs the app headlessly under Textual's test driver (``App.run_test()`` + ``Pilot``) until
Textual's ``Ready`` event ("the first frame has been displayed", recorded by the app as
``first_frame_at``); the wall time from spawning the process to that point is reported (the full catalog then loads in a thread for the detail pane's sources;
that is not counted), beside fresh ``python -c pass`` processes timed in the same loop
(interleaved). The child also reports its phases (imports, index load, first paint).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import time, json, sys, asyncio
t0 = time.perf_counter()
T0_WALL = time.time()
from knollm.browse.cli import make_app
import knollm.browse.app
t1 = time.perf_counter()
app = make_app(sys.argv[1])
t2 = time.perf_counter()
out = {}
async def go():
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()  # mounted, first table drawn and the screen painted
        out["rows"] = len(app.table_keys())
        out["matches"] = len(app.positions)
        # Textual's Ready: "the DOM is ready and the first frame has been displayed"
        out["painted_at"] = app.first_frame_at
        out["first_table_s"] = app.first_frame_at - T0_WALL
        out["idle_at"] = time.time()  # pilot.pause() returned (the catalog thread has started by then)
        app.exit()
asyncio.run(go())
out.update(imports_s=t1 - t0, index_s=t2 - t1, mount_paint_s=out["first_table_s"] - (t2 - t0))
print(json.dumps(out))
"""

#: the framework's floor: a one-widget Textual app to its first frame (Ready), same driver
HELLO = r"""
import time, json, asyncio
from textual.app import App
from textual.widgets import Static
class Hello(App):
    def compose(self):
        yield Static("hello")
    def on_ready(self):
        print(json.dumps({"painted_at": time.time()}))
async def go():
    async with Hello().run_test(size=(200, 50)) as pilot:
        await pilot.pause()
asyncio.run(go())
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dumps", default=str(ROOT.parent / "shared" / "model_catalog"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", CHILD, args.dumps]
    base = [sys.executable, "-c", "pass"]
    warm = subprocess.run(cmd, env=env, capture_output=True, text=True)  # builds the cache if needed
    if warm.returncode:
        print(warm.stderr, file=sys.stderr)
        return 2
    hello = [sys.executable, "-c", HELLO]
    walls, bases, hellos, phases = [], [], [], []
    for _ in range(args.runs):
        t = time.time()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        phases.append(json.loads(r.stdout.strip().splitlines()[-1]))
        walls.append(phases[-1]["painted_at"] - t)  # spawn -> first paint (not the exit)
        t = time.perf_counter()
        subprocess.run(base, env=env, check=True)
        bases.append(time.perf_counter() - t)
        t = time.time()
        h = subprocess.run(hello, env=env, check=True, capture_output=True, text=True)
        hellos.append(json.loads(h.stdout.strip().splitlines()[-1])["painted_at"] - t)
    mw, mb, mh = statistics.median(walls), statistics.median(bases), statistics.median(hellos)
    med = {k: statistics.median(p[k] for p in phases) for k in ("imports_s", "index_s", "mount_paint_s")}
    idle = statistics.median(p["idle_at"] - p["painted_at"] for p in phases)
    res = {"runs": args.runs, "dumps": args.dumps, "rows_drawn": phases[0]["rows"], "matches": phases[0]["matches"],
           "first_table_wall_s": mw, "first_table_min_s": min(walls), "python_pass_s": mb, "ratio": mw / mb,
           "textual_hello_s": mh, "ratio_to_textual_hello": mw / mh, "loadavg": os.getloadavg()[0],
           "phases_median_s": med, "idle_after_first_frame_s": idle, "target_s": 1.0}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.runs} fresh processes each (interleaved), cache warm, dumps={args.dumps}")
    print(f"  knollm browse, spawn -> first table painted ({res['rows_drawn']} of {res['matches']:,} rows): "
          f"median {mw * 1000:.0f} ms (min {min(walls) * 1000:.0f})")
    print(f"    in-process phases (median): imports {med['imports_s'] * 1000:.0f} ms, index "
          f"{med['index_s'] * 1000:.0f} ms, mount + first frame {med['mount_paint_s'] * 1000:.0f} ms; "
          f"the pilot saw the app idle {idle * 1000:.0f} ms after the first frame")
    print(f"  python -c pass: median {mb * 1000:.0f} ms")
    print(f"  a one-widget Textual app to its first frame: median {mh * 1000:.0f} ms (browse is {mw / mh:.1f}x)")
    print(f"  ratio {mw / mb:.1f}x   target < 1 s: {'OK' if mw < 1.0 else 'OVER'}   (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
