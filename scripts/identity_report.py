#!/usr/bin/env python3
"""Sanity report for :mod:`knollm.catalog.identity`.

Prints precision / recall / different-pair accuracy on ``tests/data/identity_pairs.csv``
and, when ``../shared/model_catalog`` exists, the number of canonical models in the real
dumps and the canonical ids served by the most providers (with the raw spellings merged
into each), so a person can spot bad merges and obvious misses.

Usage::

    python scripts/identity_report.py [--top 20] [--catalog DIR] [--show-ids]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knollm.catalog.identity import canonical_id, normalize_provider, same_model  # noqa: E402

PAIRS = ROOT / "tests" / "data" / "identity_pairs.csv"
CATALOG = ROOT.parent / "shared" / "model_catalog"


def pair_scores(path: Path = PAIRS) -> dict:
    """Score :func:`same_model` against the hand-checked pairs file."""
    tp = fp = fn = tn = 0
    errors: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            truth = row["same"].strip() == "1"
            got = same_model(row["id_a"], row["id_b"], row["provider_a"] or None, row["provider_b"] or None)
            if got and truth:
                tp += 1
            elif got:
                fp += 1
            elif truth:
                fn += 1
            else:
                tn += 1
            if got != truth:
                errors.append(f"  {'FP' if got else 'FN'} {row['provider_a']}:{row['id_a']} "
                              f"[{canonical_id(row['id_a'], row['provider_a'] or None)}] vs "
                              f"{row['provider_b']}:{row['id_b']} "
                              f"[{canonical_id(row['id_b'], row['provider_b'] or None)}]  # {row['note']}")
    return {
        "pairs": tp + fp + fn + tn, "same": tp + fn, "different": fp + tn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "different_accuracy": tn / (tn + fp) if tn + fp else 1.0,
        "errors": errors,
    }


def dump_ids(catalog: Path = CATALOG) -> list[tuple[str, str]]:
    """``(provider, record id)`` for every record of every dump in ``catalog``."""
    from knollm.catalog.diagnostics import Diagnostics
    from knollm.catalog.readers import read_dumps

    out = []
    for dump in read_dumps(catalog, Diagnostics()):
        for rid, _rec in dump.records:
            out.append((dump.source, rid))
    return out


def catalog_groups(ids: list[tuple[str, str]]) -> dict[str, dict[str, set[str]]]:
    """canonical id → {provider → raw ids}; ``featherless_best`` folds into ``featherless``."""
    groups: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for prov, rid in ids:
        groups[canonical_id(rid, prov)][normalize_provider(prov)].add(rid)
    return groups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--catalog", type=Path, default=CATALOG)
    ap.add_argument("--show-ids", action="store_true", help="list the raw ids merged into each top id")
    args = ap.parse_args(argv)

    s = pair_scores()
    print(f"pairs file: {PAIRS.relative_to(ROOT)}  ({s['pairs']} pairs: {s['same']} same, {s['different']} different)")
    print(f"  precision          {s['precision']:.3f}")
    print(f"  recall             {s['recall']:.3f}")
    print(f"  different-accuracy {s['different_accuracy']:.3f}")
    for e in s["errors"]:
        print(e)

    if not args.catalog.is_dir():
        print(f"\n(no dumps at {args.catalog}; skipping the catalog report)")
        return 0
    ids = dump_ids(args.catalog)
    canonical_id.cache_clear()
    t0 = time.perf_counter()
    groups = catalog_groups(ids)
    dt = time.perf_counter() - t0
    multi = {c: g for c, g in groups.items() if len(g) >= 2}
    print(f"\ndumps: {args.catalog}")
    print(f"  records            {len(ids)}  (canonicalised cold in {dt * 1000:.0f} ms)")
    print(f"  canonical models   {len(groups)}")
    print(f"  served by 2+ providers: {len(multi)}")
    top = sorted(multi.items(), key=lambda kv: (-len(kv[1]), kv[0]))[: args.top]
    print(f"\ntop {len(top)} canonical ids by provider count:")
    for cid, g in top:
        print(f"  {len(g):3d}  {cid}")
        if args.show_ids:
            spellings = sorted({r for rs in g.values() for r in rs})
            print("       " + "  ".join(spellings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
