"""What Knollm measured (``knollm probe`` / ``knollm benchmark`` results) on the site.

:func:`load_measured` reads the results next to the dumps (``work/probes``); the plugin
passes them to the pages: the health cell on provider and canonical pages, and the
``measured.md`` page (charts of latency and throughput against price, the benchmark
table, provider health and the probes with their dates). No results: the health column
hides and the page says how to measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knollm.site.render import esc

__all__ = ["Measured", "load_measured", "health_text", "render_measured_page"]

WINDOW_DAYS = 30


class Measured:
    """Benchmarks (newest per target), probe documents and health figures."""

    def __init__(self, benchmarks: list[dict], probes: list[dict], by_provider: dict[str, dict],
                 by_model: dict[tuple[str, str], dict], scores: dict | None = None) -> None:
        self.benchmarks, self.probes = benchmarks, probes
        self.by_provider, self.by_model = by_provider, by_model
        self.scores = scores

    def __bool__(self) -> bool:
        return bool(self.benchmarks or self.probes or self.scores)


def load_measured(dumps: Path | None, now: float | None = None) -> Measured:
    """Results from the dump directory's sibling ``probes/`` (the ledger is private: not read)."""
    from knollm.catalog.probes import probes_dir_for
    from knollm.probe.common import read_results
    from knollm.probe.health import health

    from knollm.fetch.scores import load_scores

    scores = load_scores(dumps)
    d = probes_dir_for(dumps)
    if d is None or not d.is_dir():
        return Measured([], [], {}, {}, scores)
    latest: dict[str, dict] = {}
    for doc in read_results(d, "benchmark"):
        for r in doc.get("results", []):
            latest[r["key"]] = {**{k: v for k, v in r.items() if k != "run_details"}, "date": doc["date"],
                                "runs_per_target": doc.get("runs_per_target")}
    window = WINDOW_DAYS * 86400
    kw = {"probes_dir": d, "store": False, "now": now}
    by_p = {f.provider: f.as_dict() for f in health(window, by="provider", **kw)}
    by_m = {(f.provider, f.model): f.as_dict() for f in health(window, by="model", **kw)}
    return Measured(sorted(latest.values(), key=lambda r: r["key"]), read_results(d, "probe"), by_p, by_m, scores)


def health_text(f: dict | None) -> str:
    """``99.0% ok · p50 420 ms · n=120`` (escaped HTML), or ``–``."""
    if not f:
        return "–"
    lat = "" if f.get("latency_p50_ms") is None else f" · p50 {f['latency_p50_ms']:.0f} ms"
    return esc(f"{f['success_rate'] * 100:.1f}% ok{lat} · n={f['n']} · {f.get('last') or ''}".rstrip(" ·"))


def _ms(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


_EST = "≈"


def _tps(r: dict) -> str:
    """tokens/s p50, marked ``≈`` (with a tooltip) when estimated from guessed token counts."""
    v = _ms(r.get("tokens_per_s_p50"))
    if r.get("tokens_per_s_estimated") and r.get("tokens_per_s_p50") is not None:
        return (f'<span class="kn-estimated" title="{esc("estimated: no token counts reported")}">'
                f"{esc(_EST)}{esc(v)}</span>")
    return esc(v)


def _scores_section(doc: dict) -> list[str]:
    """Artificial Analysis' scores, with the attribution their terms require."""
    def n(v: float | None, fmt: str = "{:.1f}") -> str:
        return "–" if v is None else fmt.format(v)

    rows = sorted(doc["models"], key=lambda r: -(r["evaluations"].get("artificial_analysis_intelligence_index") or -1))
    out = ["## Quality scores (Artificial Analysis)", "",
           f'Scores and speeds measured by <a href="{esc(doc.get("attribution"))}">Artificial Analysis</a>, '
           f"fetched {esc(str(doc.get('fetched_at'))[:10])} – their measurements, not Knollm's.", "",
           '<div class="kn-table-wrap"><table class="kn-table kn-sortable"><thead><tr><th>Model</th><th>Creator</th>'
           "<th>Intelligence index</th><th>Coding index</th><th>Output tokens/s</th><th>TTFT s</th></tr></thead><tbody>"]
    for r in rows:
        ev = r.get("evaluations") or {}
        out.append(f"<tr><td>{esc(r['name'])}</td><td>{esc(r.get('creator') or '')}</td>"
                   f"<td>{n(ev.get('artificial_analysis_intelligence_index'))}</td>"
                   f"<td>{n(ev.get('artificial_analysis_coding_index'))}</td>"
                   f"<td>{n(r.get('median_output_tokens_per_second'), '{:.0f}')}</td>"
                   f"<td>{n(r.get('median_time_to_first_token_seconds'), '{:.2f}')}</td></tr>")
    return out + ["</tbody></table></div>", ""]


def render_measured_page(m: Measured) -> str:
    from knollm.probe.chart import benchmark_charts

    out = ["---", "title: Measured", "---", "", "# Measured: probes, benchmarks, provider health", "",
           "Figures measured by `knollm probe` and `knollm benchmark` with real requests, each with its date "
           "(see [Probes and benchmarks](probes.md)). They are samples from one place and time, not guarantees.",
           ""]
    if not m:
        out += ["No measurements yet. Run `knollm probe TARGET` or `knollm benchmark TARGET` (results go to "
                "`work/probes/`) and rebuild the site.", ""]
        return "\n".join(out)
    if m.benchmarks:
        charts = benchmark_charts(m.benchmarks)
        out += ["## Latency and throughput against price", "",
                '<div class="kn-charts" data-search-exclude>', charts["latency"], charts["throughput"], "</div>", "",
                "## Benchmarks", "", '<div class="kn-table-wrap"><table class="kn-table kn-sortable">',
                "<thead><tr><th>Model</th><th>Date</th><th>Runs</th><th>Success</th><th>TTFT p50 ms</th>"
                "<th>Latency p50 ms</th><th>Latency p95 ms</th><th>Tokens/s</th><th>$ per run</th></tr></thead><tbody>"]
        for r in m.benchmarks:
            cost = "?" if r.get("cost_per_run_usd") is None else f"{r['cost_per_run_usd']:.6f}"
            sr = "?" if r.get("success_rate") is None else f"{r['success_rate'] * 100:.0f}%"
            out.append(f"<tr><td><code>{esc(r['key'])}</code></td><td>{esc(r['date'][:10])}</td>"
                       f"<td>{esc(r['runs'])}</td><td>{sr}</td><td>{_ms(r.get('ttft_p50_ms'))}</td>"
                       f"<td>{_ms(r.get('latency_p50_ms'))}</td><td>{_ms(r.get('latency_p95_ms'))}</td>"
                       f"<td>{_tps(r)}</td><td>{cost}</td></tr>")
        out += ["</tbody></table></div>", ""]
        if any(r.get("tokens_per_s_estimated") and r.get("tokens_per_s_p50") is not None for r in m.benchmarks):
            out += [esc(f"{_EST} tokens/s estimated: the provider reported no output token counts, so they "
                        "were estimated from the text."), ""]
    if m.by_provider:
        out += [f"## Provider health (last {WINDOW_DAYS} days)", "",
                '<table class="kn-table"><thead><tr><th>Provider</th><th>Health</th><th>Sources</th></tr></thead><tbody>']
        out += [f"<tr><td>{esc(p)}</td><td>{health_text(f)}</td><td>{esc(', '.join(f['sources']))}</td></tr>"
                for p, f in sorted(m.by_provider.items())]
        out += ["</tbody></table>", ""]
    if m.scores:
        out += _scores_section(m.scores)
    if m.probes:
        out += ["## Probes", "", '<table class="kn-table"><thead><tr><th>Model</th><th>Date</th><th>Verdicts</th>'
                "<th>Disagrees with the catalog</th></tr></thead><tbody>"]
        for d in m.probes:
            verdicts = ", ".join(f"{r['probe']}: {r['verdict']}" for r in d.get("results", []))
            dis = "; ".join(f"{x['field']}: catalog {x['catalog']}, probe {x['probe']}"
                            for x in d.get("disagreements") or []) or "–"
            out.append(f"<tr><td><code>{esc(d.get('key'))}</code></td><td>{esc(str(d.get('date'))[:10])}</td>"
                       f"<td>{esc(verdicts)}</td><td>{esc(dis)}</td></tr>")
        out += ["</tbody></table>", ""]
    return "\n".join(out)
