#!/usr/bin/env python3
"""Simulate a `knollm fetch` of ~40 providers against a local fake server with faults.

Starts tests/support/fake_providers.FakeProviders on 127.0.0.1, writes a provider
registry pointing at it (a mix of healthy, paginated (cursor and page-number), moved to a
legacy URL (404 -> fallback, 410 -> gone too), 401, 429 + Retry-After,
500-then-ok, 503, hanging, stalled, HTML-with-200, truncated, short, huge, error-object
and key-less providers), seeds an old dump for every provider, runs the real fetch core
(knollm.fetch.fetch_all) and prints per-provider outcome, retries, pages, time, the
total time, and two checks: failed providers kept their old dump byte for byte, and
the API key appears in no output.

    python scripts/fetch_simulation.py [--concurrency 8] [--json report.json] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from knollm.fetch import fetch_all, load_registry  # noqa: E402
from tests.support.fake_providers import FakeProviders, write_registry  # noqa: E402

KEY = "sk-sim-9f8e7d6c5b4a+/=SECRET"
SETTINGS = {
    "concurrency": 8,
    "connect_timeout": 2.0,
    "read_timeout": 1.5,
    "total_timeout": 30.0,
    "retries": 3,
    "backoff_base": 0.2,
    "backoff_max": 2.0,
    "max_retry_after": 10.0,
    "max_bytes": 4 * 1024 * 1024,
    "max_pages": 50,
}

# (provider id, behaviour, extra spec, query)
PLAN: list[tuple[str, str, dict, str]] = [
    *[(f"ok{i:02d}", "ok", {}, f"n={n}") for i, n in enumerate([12, 40, 85, 150, 300, 7, 64, 220, 33, 500])],
    *[(f"paged{i}", "anthropic", {"auth": "x-api-key", "headers": {"anthropic-version": "2023-06-01"},
                                  "pagination": "has_more", "page_size": 1000},
       f"n={n}&ps=10") for i, n in enumerate([25, 48, 9, 101])],
    *[(f"token{i}", "pagetoken", {"auth": "query", "shape": "list-key", "list_key": "models",
                                  "pagination": "page_token"}, f"n={n}&ps=20") for i, n in enumerate([61, 15])],
    *[(f"pagenum{i}", "pagenumber", {"auth": "none", "pagination": "page_number", "page_size": 1000},
       f"n={n}&maxper=25") for i, n in enumerate([180, 40])],
    ("moved", "notfound", {"legacy_urls": ["LEGACY:/ok/moved-old/v1/models?n=12"]}, ""),
    ("retired", "gone", {"legacy_urls": ["LEGACY:/gone/retired-old/v1/models"]}, ""),
    ("bare0", "array", {"shape": "array"}, "n=90"),
    ("bare1", "array", {"shape": "array", "auth": "none"}, "n=30"),
    ("costmap", "keyed", {"shape": "keyed", "auth": "none"}, "n=200"),
    *[(f"denied{i}", "unauthorized", {}, "") for i in range(3)],
    ("limited0", "ratelimit", {}, "fails=1&ra=1"),
    ("limited1", "ratelimit", {}, "fails=2&ra=1"),
    ("limited2", "ratelimit", {}, "fails=1&ra=1&radate=1"),
    ("flaky0", "flaky", {}, "fails=1"),
    ("flaky1", "flaky", {}, "fails=2"),
    ("flaky2", "flaky", {}, "fails=3"),
    ("down", "down", {}, ""),
    ("hang0", "hang", {}, ""),
    ("hang1", "hang", {"retries": 1}, ""),
    ("stall", "stall", {"retries": 0}, "n=50"),
    ("html0", "html", {}, ""),
    ("html1", "html", {"auth": "query"}, ""),
    ("trunc0", "truncated", {}, "n=40"),
    ("trunc1", "truncated", {}, "n=5"),
    ("short", "shortbody", {}, "n=20"),
    ("huge", "huge", {}, "size=8388608"),
    ("errobj", "errorobj", {}, ""),
    ("nokey0", "ok", {"key_env": ["SIM_UNSET_KEY_A"]}, ""),
    ("nokey1", "ok", {"key_env": ["SIM_UNSET_KEY_B", "SIM_UNSET_KEY_C"]}, ""),
]

OLD = b'{"object": "list", "data": [{"id": "previous-model-a"}, {"id": "previous-model-b"}]}\n'


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=SETTINGS["concurrency"])
    ap.add_argument("--json", type=Path, default=None, help="write the fetch report JSON here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    logs: list[str] = []
    with FakeProviders() as fp, tempfile.TemporaryDirectory(prefix="knollm-sim-") as tmp:
        tmp_path = Path(tmp)
        providers = {}
        for pid, behaviour, extra, query in PLAN:
            spec = {"url": fp.url(f"/{behaviour}/{pid}/v1/models") + (f"?{query}" if query else ""),
                    "key_env": ["SIM_API_KEY"], **extra}
            if spec.get("auth") == "none":
                spec.pop("key_env")
            if "legacy_urls" in spec:  # legacy hosts live on the same fake server
                spec["legacy_urls"] = [fp.url(u.removeprefix("LEGACY:")) for u in spec["legacy_urls"]]
            providers[pid] = spec
        reg = load_registry(write_registry(tmp_path / "providers.toml", providers,
                                           {**SETTINGS, "concurrency": args.concurrency}))
        out = tmp_path / "dumps"
        out.mkdir()
        for pid in providers:
            (out / f"models_{pid}.json").write_bytes(OLD)

        t0 = time.monotonic()
        report = fetch_all(reg, out, env={"SIM_API_KEY": KEY}, log=logs.append, seed=2026)
        wall = time.monotonic() - t0

        print(f"Simulated fetch of {len(providers)} providers on {fp.base} "
              f"(concurrency {args.concurrency}, read timeout {SETTINGS['read_timeout']}s, "
              f"retries {SETTINGS['retries']}, backoff {SETTINGS['backoff_base']}s×2^n ±jitter)\n")
        print(report.render_text())
        c = report.counts
        print(f"\nTotal wall time {wall:.2f}s; {c['ok']} ok, {c['skipped']} skipped, {c['failed']} failed; "
              f"{sum(r.retries for r in report.results)} retries, "
              f"{sum(r.attempts for r in report.results)} HTTP attempts, "
              f"{sum(r.pages for r in report.results)} pages, "
              f"{sum(r.bytes for r in report.results):,} bytes accepted; exit code {report.exit_code}")
        print(f"Legacy-URL fallbacks: {report.to_dict()['fallbacks'] or 'none'}")

        kept = [r.id for r in report.results if r.status != "ok"
                and (out / f"models_{r.id}.json").read_bytes() == OLD]
        not_ok = [r.id for r in report.results if r.status != "ok"]
        print(f"Old dump intact for {len(kept)}/{len(not_ok)} failed or skipped providers")
        doc = report.to_dict()
        blobs = [json.dumps(doc), report.render_text(), report.render_markdown(), "\n".join(logs)]
        blobs += [p.read_text(errors="replace") for p in out.iterdir()]
        forms = {KEY, quote(KEY, safe=""), quote_plus(KEY)}
        leaks = sum(f in b for b in blobs for f in forms)
        print(f"API key occurrences in report/logs/dumps: {leaks}")
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        print(f"Temp files left in the dump dir: {len(leftovers)}")
        if args.verbose:
            print("\n".join(logs))
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2))
        ok = len(kept) == len(not_ok) and leaks == 0 and not leftovers
        return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
