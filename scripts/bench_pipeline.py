#!/usr/bin/env python3
"""Benchmark the catalog pipeline on the real dumps (not a test: prints figures).

The same as ``knollm bench`` (code: :mod:`knollm.cli.cmd_bench`): baseline ``orjson.loads``
of every dump, ``build_catalog`` in process with phases, the whole ``knollm catalog``
process, and the ratios against the baseline, all measured in the same run.

Usage: python scripts/bench_pipeline.py [--dumps ../shared/model_catalog] [--repeat 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from knollm.cli import main as knollm_main

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--dumps" or a.startswith("--dumps=") for a in args):
        args = ["--dumps", str(ROOT.parent / "shared" / "model_catalog"), *args]
    return knollm_main(["bench", *args])


if __name__ == "__main__":
    sys.exit(main())
