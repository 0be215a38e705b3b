"""Plain SVG charts of benchmark results (no JavaScript, no plotting library).

:func:`scatter_svg` draws labelled points on linear axes with ticks; every label is
XML-escaped (model ids are provider text). :func:`benchmark_charts` makes the two charts
the site shows: latency p50 vs price and throughput vs price.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["scatter_svg", "benchmark_points", "benchmark_charts"]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    import math

    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def scatter_svg(points: list[dict[str, Any]], *, title: str, x_label: str, y_label: str, width: int = 640,
                height: int = 360) -> str:
    """An SVG scatter plot of ``points`` (``{"label", "x", "y"}``; points with a None
    coordinate are left out and counted in a note)."""
    pts = [p for p in points if p.get("x") is not None and p.get("y") is not None]
    left, right, top, bottom = 64, 24, 36, 48
    w, h = width - left - right, height - top - bottom
    xs, ys = [p["x"] for p in pts] or [0.0, 1.0], [p["y"] for p in pts] or [0.0, 1.0]
    xt, yt = _ticks(0.0, max(xs) * 1.1 or 1.0), _ticks(0.0, max(ys) * 1.1 or 1.0)
    x1, y1 = xt[-1] or 1.0, yt[-1] or 1.0

    def sx(v: float) -> float:
        return left + w * v / x1

    def sy(v: float) -> float:
        return top + h - h * v / y1

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="knollm-chart" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="currentColor"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="currentColor"/>']
    for v in xt:
        out.append(f'<line x1="{sx(v):.1f}" y1="{top + h}" x2="{sx(v):.1f}" y2="{top + h + 4}" stroke="currentColor"/>'
                   f'<text x="{sx(v):.1f}" y="{top + h + 16}" text-anchor="middle" font-size="10">{_num(v)}</text>')
    for v in yt:
        out.append(f'<line x1="{left - 4}" y1="{sy(v):.1f}" x2="{left}" y2="{sy(v):.1f}" stroke="currentColor"/>'
                   f'<text x="{left - 6}" y="{sy(v) + 3:.1f}" text-anchor="end" font-size="10">{_num(v)}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 8}" text-anchor="middle" font-size="11">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{top + h / 2}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 14 {top + h / 2})">{escape(y_label)}</text>')
    for p in pts:
        cx, cy = sx(p["x"]), sy(p["y"])
        lab = escape(str(p["label"]))
        out.append(f'<g><circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#3f51b5"><title>{lab}: '
                   f'{_num(p["x"])}, {_num(p["y"])}</title></circle>'
                   f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" font-size="10">{lab}</text></g>')
    missing = len(points) - len(pts)
    if missing:
        out.append(f'<text x="{left + w}" y="{top - 6}" text-anchor="end" font-size="10">'
                   f'{missing} without a price or figure not shown</text>')
    out.append("</svg>")
    return "\n".join(out)


def benchmark_points(results: list[dict[str, Any]], y: str) -> list[dict[str, Any]]:
    """Points ``(blended price, y)`` of benchmark rows; price = (3 x input + output) / 4 USD/1M."""
    pts = []
    for r in results:
        pin, pout = r.get("price_input"), r.get("price_output")
        price = None if pin is None or pout is None else (3 * pin + pout) / 4
        pts.append({"label": r["key"], "x": price, "y": r.get(y)})
    return pts


def benchmark_charts(results: list[dict[str, Any]]) -> dict[str, str]:
    """The two site charts for the latest benchmark row per target."""
    x = "blended price, USD per 1M tokens (3:1 input:output)"
    return {
        "latency": scatter_svg(benchmark_points(results, "latency_p50_ms"), title="Latency p50 vs price",
                               x_label=x, y_label="latency p50 (ms)"),
        "throughput": scatter_svg(benchmark_points(results, "tokens_per_s_p50"), title="Throughput vs price",
                                  x_label=x, y_label="output tokens/s (p50)"),
    }
