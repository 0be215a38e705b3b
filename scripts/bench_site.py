#!/usr/bin/env python
"""Measure the site build and the explorer on the real dumps (a report, not a test).

    python scripts/bench_site.py [--dumps ../shared/model_catalog] [--site-dir /tmp/knollm-bench-site]
                                 [--no-browser] [--cold] [--no-build]

Reports: full ``knollm build`` time (catalog + MkDocs), page count, site size, the
explorer index size raw and gzipped, and in headless chromium the time from a keystroke
to rendered results (``performance.now()`` around filter + sort + render in knollm.js,
``window.Knollm.lastRenderMs``) for several queries, plus the calculator's update time.

Page weights: the largest HTML page and the bytes the explorer downloads before its first
results. Throttled first results: the explorer opened in Chromium with its network
throttled through CDP ``Network.emulateNetworkConditions`` (10 Mbit/s down and up, 40 ms
latency, cache disabled): milliseconds from navigation start to the first frame showing
result rows (a MutationObserver added before the page's scripts, then the next animation
frame; the same for any build), median of 3 loads. ``--no-build`` measures an existing ``--site-dir`` (e.g. one built from an
older commit, for a before/after comparison in the same run conditions).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.scratch import scratch_dir  # noqa: E402
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
QUERIES = ["l", "ll", "lla", "llama", "llama 70", "gpt", "qwen coder", "claude", "zzzz-nothing", ""]


def build(dumps: Path, site_dir: Path, cold: bool) -> dict:
    from knollm.cli.cmd_build import build_site

    if cold:
        os.environ["KNOLLM_CACHE_DIR"] = str(scratch_dir("knollm-bench-cache-"))
    t0 = time.perf_counter()
    res = build_site(dumps, site_dir, ROOT / "mkdocs.yml")
    res["total_seconds"] = round(time.perf_counter() - t0, 2)
    return res


def sizes(site: Path) -> dict:
    total = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    ix = (site / "data" / "index.json").read_bytes()
    return {
        "site_bytes": total,
        "site_mb": round(total / 1e6, 1),
        "files": sum(1 for f in site.rglob("*") if f.is_file()),
        "index_raw_bytes": len(ix),
        "index_gzip_bytes": len(gzip.compress(ix, 6)),
        "catalog_json_bytes": (site / "catalog.json").stat().st_size,
        "search_index_bytes": (site / "search" / "search_index.json").stat().st_size,
    }


def page_weights(site: Path) -> dict:
    pages = sorted(((f.stat().st_size, str(f.relative_to(site))) for f in site.rglob("*.html")), reverse=True)
    return {
        "html_pages": len(pages),
        "largest_page": {"path": pages[0][1], "bytes": pages[0][0]} if pages else None,
        "pages_over_300kb": sum(1 for b, _ in pages if b > 300_000),
        "median_page_bytes": pages[len(pages) // 2][0] if pages else None,
    }


#: in the page before any script: the time of the first frame showing a result row (any build)
FIRST_ROWS = """window.__knFirstRows = null;
new MutationObserver(function (_, obs) {
  if (document.querySelector('#kn-results tbody tr')) {
    obs.disconnect();
    requestAnimationFrame(function () { window.__knFirstRows = performance.now(); });
  }
}).observe(document, {childList: true, subtree: true});"""

THROTTLE = {"offline": False, "latency": 40, "downloadThroughput": 10_000_000 / 8,
            "uploadThroughput": 10_000_000 / 8}


def throttled(site: Path, runs: int = 3) -> dict:
    """First explorer results on a 10 Mbit/s, 40 ms link (CDP network throttling, no cache)."""
    from playwright.sync_api import sync_playwright

    from tests.support.http_static import serve_static

    times, transferred = [], []
    with serve_static(site) as base, sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for _ in range(runs):
            ctx = b.new_context(viewport={"width": 1400, "height": 900})
            pg = ctx.new_page()
            cdp = ctx.new_cdp_session(pg)
            cdp.send("Network.enable")
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
            cdp.send("Network.emulateNetworkConditions", THROTTLE)
            got: dict[str, int] = {}
            cdp.on("Network.loadingFinished", lambda e: got.__setitem__(e["requestId"], e["encodedDataLength"]))
            pg.add_init_script(FIRST_ROWS)
            pg.goto(base + "explorer/", wait_until="commit")
            pg.wait_for_function("() => window.__knFirstRows !== null", timeout=60_000)
            ms = pg.evaluate("window.__knFirstRows")
            transferred.append(sum(got.values()))
            times.append(ms)
            ctx.close()
        b.close()
    return {"network": "10 Mbit/s, 40 ms (CDP Network.emulateNetworkConditions, cache disabled)",
            "first_results_ms_median": round(statistics.median(times)), "first_results_ms": [round(t) for t in times],
            "bytes_before_first_results": int(statistics.median(transferred))}  # transferred when the rows show


def browser(site: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.support.http_static import serve_static

    out: dict = {}
    with serve_static(site) as base, sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = b.new_page(viewport={"width": 1300, "height": 900})
        t0 = time.perf_counter()
        pg.goto(base + "explorer/")
        pg.wait_for_selector("#kn-explorer[data-ready]")
        out["explorer_ready_ms"] = round((time.perf_counter() - t0) * 1000)
        per_query = {}
        samples = []
        for _ in range(3):
            for q in QUERIES:
                pg.fill("#kn-q", "")
                pg.fill("#kn-q", q[:-1] if q else "x")
                # the keystroke: one input event, measured inside the page
                ms = pg.evaluate(
                    """(q) => { const el = document.getElementById('kn-q');
                                const t0 = performance.now();
                                el.value = q; el.dispatchEvent(new Event('input', {bubbles: true}));
                                const t1 = performance.now();
                                return [t1 - t0, window.Knollm.lastRenderMs, window.Knollm.lastCount]; }""", q)
                per_query.setdefault(q or "(empty)", []).append(ms)
                samples.append(ms[0])
        out["keystroke_to_render_ms"] = {
            "median": round(statistics.median(samples), 2),
            "p95": round(sorted(samples)[int(0.95 * (len(samples) - 1))], 2),
            "max": round(max(samples), 2),
        }
        out["per_query_ms"] = {q: {"ms": round(statistics.median(x[0] for x in v), 2), "rows": v[0][2]}
                               for q, v in per_query.items()}
        # a facet click (capability) on the full catalog
        pg.fill("#kn-q", "")
        pg.click("#kn-f-caps .kn-facet-btn")
        t = pg.evaluate("""() => { const cb = document.querySelector('input[data-facet="cap"][value="tools"]');
                                  const t0 = performance.now(); cb.click(); return performance.now() - t0; }""")
        out["facet_click_ms"] = round(t, 2)
        pg.goto(base + "calculator/")
        pg.wait_for_selector("#kn-calculator[data-ready]")
        calc = []
        for v in ("1000", "2000", "15k", "100k", "1M"):
            calc.append(pg.evaluate("""(v) => { const el = document.getElementById('kn-w-in');
                                  const t0 = performance.now(); el.value = v;
                                  el.dispatchEvent(new Event('input', {bubbles: true}));
                                  return performance.now() - t0; }""", v))
        out["calculator_update_ms_median"] = round(statistics.median(calc), 2)
        b.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dumps", type=Path, default=ROOT.parent / "shared" / "model_catalog")
    ap.add_argument("--site-dir", type=Path, default=Path(tempfile.gettempdir()) / "knollm-bench-site")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--cold", action="store_true", help="empty catalog cache (measure the catalog build too)")
    ap.add_argument("--no-build", action="store_true", help="measure the existing --site-dir")
    ap.add_argument("--baseline-site", type=Path, default=None,
                    help="also measure this site (built from another commit) and print the ratios")
    a = ap.parse_args()
    if not a.no_build and not a.dumps.is_dir():
        print(f"no dumps at {a.dumps}", file=sys.stderr)
        return 1
    os.chdir(ROOT)
    report = {} if a.no_build else {"build": build(a.dumps, a.site_dir, a.cold)}
    report["sizes"] = sizes(a.site_dir)
    report["pages"] = page_weights(a.site_dir)
    if not a.no_browser:
        report["throttled"] = throttled(a.site_dir)
        report["browser"] = browser(a.site_dir)
    if a.baseline_site:
        base = {"sizes": sizes(a.baseline_site), "pages": page_weights(a.baseline_site)}
        if not a.no_browser:
            base["throttled"] = throttled(a.baseline_site)
        report["baseline"] = base
        ratios = {"largest_page": report["pages"]["largest_page"]["bytes"] / base["pages"]["largest_page"]["bytes"]}
        if not a.no_browser:
            ratios["first_results_ms"] = (report["throttled"]["first_results_ms_median"]
                                          / base["throttled"]["first_results_ms_median"])
            ratios["bytes_before_first_results"] = (report["throttled"]["bytes_before_first_results"]
                                                    / base["throttled"]["bytes_before_first_results"])
        report["ratio_vs_baseline"] = {k: round(v, 3) for k, v in ratios.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
