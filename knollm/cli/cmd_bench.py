"""``knollm bench``: benchmark the catalog pipeline on real dumps (prints figures).

Measured in the same run:

* baseline: plain ``orjson.loads`` of every dump file (bytes already read from disk);
* the in-process pipeline (``build_catalog``) with a per-phase breakdown;
* the whole ``knollm catalog`` process (python start-up + imports + build + write);
* the ratios pipeline / baseline.

``scripts/bench_pipeline.py`` runs the same code (:func:`measure`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from knollm.cli.filters import dumps_option
from knollm.cli.output import emit_json

__all__ = ["command", "measure", "report", "median_time"]


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(dumps: str | Path, repeat: int = 5, *, process: bool = True) -> dict[str, Any]:
    """The figures (seconds, bytes) for the dumps in ``dumps``; ``process``: also time the
    whole ``knollm catalog`` process (and a bare ``python -c pass`` next to it)."""
    import gc
    import subprocess
    import sys
    import tempfile

    import orjson

    from knollm.catalog.build import build_catalog
    from knollm.errors import DumpError

    dumps = Path(dumps)
    files = sorted(dumps.glob("models_*.json"))
    if not files:
        raise DumpError(str(dumps), "no models_*.json dumps to benchmark")
    blobs = [f.read_bytes() for f in files]

    def baseline() -> None:
        gc.disable()
        try:
            for b in blobs:
                orjson.loads(b)
        finally:
            gc.enable()

    base = median_time(baseline, repeat)
    build_catalog(dumps)  # warm imports / registry caches
    phases: list[dict[str, float]] = []

    def pipeline() -> None:
        t: dict[str, float] = {}
        build_catalog(dumps, timings=t)
        phases.append(t)

    pipe = median_time(pipeline, repeat)
    out: dict[str, Any] = {
        "dumps": str(dumps), "files": len(files), "bytes": sum(map(len, blobs)), "repeat": repeat,
        "baseline_s": base, "pipeline_s": pipe, "pipeline_ratio": pipe / base,
        "phases_s": {k: statistics.median(p[k] for p in phases) for k in phases[0]},
    }
    if process:
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "catalog.json"
            cmd = [sys.executable, "-m", "knollm", "catalog", "--dumps", str(dumps), "--out", str(dest), "-q",
                   "--json"]
            proc = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), repeat)
            bare = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat)
            out.update(process_s=proc, process_ratio=proc / base, python_s=bare, output_bytes=dest.stat().st_size)
    return out


def report(f: dict[str, Any]) -> str:
    """The figures as text."""
    lines = [
        f"dumps: {f['files']} files, {f['bytes'] / 1e6:.1f} MB (median of {f['repeat']})",
        f"baseline orjson.loads of all dumps   {f['baseline_s'] * 1000:8.1f} ms",
        f"build_catalog (in process)           {f['pipeline_s'] * 1000:8.1f} ms   "
        f"ratio {f['pipeline_ratio']:6.1f}x baseline",
    ]
    for k, v in sorted(f["phases_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {k:<22} {v * 1000:8.1f} ms")
    if "process_s" in f:
        lines.append(f"`knollm catalog` whole process       {f['process_s'] * 1000:8.1f} ms   "
                     f"ratio {f['process_ratio']:6.1f}x baseline   (python -c pass: {f['python_s'] * 1000:.0f} ms)"
                     f"   output {f['output_bytes'] / 1e6:.1f} MB")
        lines.append(f"goal: whole process < 1500 ms -> {'met' if f['process_s'] < 1.5 else 'NOT met'}")
    return "\n".join(lines)


@click.command("bench")
@dumps_option
@click.option("--repeat", "-r", type=click.IntRange(min=1), default=5, show_default=True,
              help="Runs per figure (the median is reported).")
@click.option("--no-process", is_flag=True, help="Skip timing the whole `knollm catalog` process.")
@click.option("--json", "as_json", is_flag=True, help="Output the figures as JSON (seconds, bytes).")
def command(dumps: str, repeat: int, no_process: bool, as_json: bool) -> int:
    """Benchmark the catalog pipeline on the dumps in --dumps against plain JSON parsing.

    \b
    Example:
      knollm bench --dumps ../shared/model_catalog --repeat 5
    """
    figures = measure(dumps, repeat, process=not no_process)
    if as_json:
        emit_json(figures)
    else:
        click.echo(report(figures))
    return 0
