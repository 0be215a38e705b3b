"""Display formatting for prices, costs, token counts and plain-text tables.

The one home of these helpers for the CLI, the site, ``diff``, ``fetch`` and ``browse`` (standard
library and :mod:`knollm.vocab` only). Values that are unknown (``None``) print as ``unknown`` (default ``?``),
never as 0. The site's JavaScript has its own copy for the browser (``knollm.js``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from knollm.vocab import CAPABILITY_TABLE

__all__ = ["fmt_price", "fmt_usd", "fmt_int", "fmt_tokens", "format_table", "is_tty", "field_rows", "summary_cells",
           "CAP_SHORT"]


def _strip(s: str) -> str:
    return s.rstrip("0").rstrip(".") if "." in s else s


def fmt_price(v: float | None, *, dollar: bool = False, zero: str | None = None, precise: bool = False,
              unknown: str = "?") -> str:
    """A USD-per-1M-tokens price: ``3``, ``0.15``, ``0.0375``, ``1,250`` (``dollar``: ``$3``).

    ``zero``: what 0 prints as (default ``0`` / ``$0``; the site says ``free``). ``precise``:
    always up to 4 decimals (for diffs, where a small change must show). Negative: ``unknown``.
    """
    if v is None or v < 0:
        return unknown
    cur = "$" if dollar else ""
    if v == 0:
        return zero if zero is not None else f"{cur}0"
    if precise:
        return cur + _strip(f"{v:,.4f}")
    if v >= 100:
        return f"{cur}{v:,.0f}"
    if v >= 1:
        return cur + _strip(f"{v:.2f}")
    return cur + _strip(f"{v:.4f}")


def fmt_usd(v: float | None, unknown: str = "?") -> str:
    """A cost in USD: ``$1,234``, ``$12.50``, ``$0.000375``, ``$1.20e-07``."""
    if v is None:
        return unknown
    if v == 0:
        return "$0"
    if v >= 100:
        return f"${v:,.0f}"
    if v >= 1:
        return f"${v:,.2f}"
    return "$" + _strip(f"{v:.6f}") if v >= 1e-6 else f"${v:.2e}"


def fmt_int(v: int | None, unknown: str = "?") -> str:
    """An exact count, shortened only when exact: ``128k``, ``2M``, ``32Ki``, ``131,073``."""
    if v is None:
        return unknown
    if v >= 1_000_000 and v % 1_000_000 == 0:
        return f"{v // 1_000_000}M"
    if v >= 1000 and v % 1000 == 0:
        return f"{v // 1000}k"
    if v >= 1000 and v % 1024 == 0:
        return f"{v // 1024}Ki"
    return f"{v:,}"


def fmt_tokens(v: int | None, unknown: str = "?") -> str:
    """A rounded token count for reading at a glance: ``128k``, ``1M``, ``131.1k``."""
    if v is None:
        return unknown
    if v >= 1_000_000:
        return _strip(f"{v / 1_000_000:.1f}") + "M"
    if v >= 1000:
        return _strip(f"{v / 1000:.1f}") + "k"
    return str(v)


def is_tty(stream: Any = None) -> bool:
    try:
        return (stream or sys.stdout).isatty()
    except (AttributeError, ValueError):
        return False


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_width: int = 60,
                 bold: bool | None = None) -> str:
    """Rows as an aligned plain-text table; the header is bold when ``bold`` (default: stdout
    is a terminal). ``None`` -> ``?``, booleans -> yes/no, lists joined with commas."""

    def cell(v: Any) -> str:
        if v is None:
            return "?"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v))
        s = str(v).replace("\n", " ")
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    if is_tty() if bold is None else bold:
        head = f"\x1b[1m{head}\x1b[0m"
    lines = [head, "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- a model's fields
_SHOW_ORDER = ["key", "provider", "id", "name", "canonical_id", "family", "kind", "description", "context_window",
               "max_output", "input_modalities", "output_modalities", "capabilities", "prices", "free",
               "variable_pricing", "price_tiers", "deprecated", "created", "release_date", "open_weights",
               "owned_by", "quantization", "joins", "origin", "flags", "first_seen", "last_seen"]


def field_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per field (prices/capabilities flattened) with its source."""
    src = dict(m.get("sources") or {})
    for path, check in (m.get("suspect") or {}).items():  # marked beside the value's source
        src[path] = f"{src.get(path) or '?'} (SUSPECT: {check})"
    rows = []
    keys = [k for k in _SHOW_ORDER if k in m] + [k for k in m if k not in _SHOW_ORDER and k != "sources"]
    for k in keys:
        v = m[k]
        if k in ("prices", "capabilities") and isinstance(v, dict):
            for sub, sv in v.items():
                path = f"{k}.{sub}"
                val = fmt_price(sv) if k == "prices" and sv is not None else sv
                rows.append({"field": path, "value": val, "source": src.get(path) or ("" if sv is None else "-")})
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or None
        elif isinstance(v, list):
            v = ", ".join(str(x) for x in v) if v and not isinstance(v[0], dict) else (
                "; ".join(str(x) for x in v) if v else None)
        rows.append({"field": k, "value": v, "source": src.get(k, "")})
    return rows


#: capability -> its short name in the ``caps`` column (from :mod:`knollm.vocab`)
CAP_SHORT = {c.key: c.short for c in CAPABILITY_TABLE}


def summary_cells(s: dict[str, Any]) -> dict[str, Any]:
    """Table cells for a model summary dict (the JSON shape of :meth:`Index.summary`)."""
    p = s["prices"]
    sus = s.get("suspect") or {}

    def mark(path: str) -> str:  # a value that failed a plausibility check
        return " ⚠suspect" if path in sus else ""

    return {
        **{k: v for k, v in s.items() if not isinstance(v, (dict, list))},
        "context": fmt_int(s["context_window"]) + mark("context_window"),
        "max_output": fmt_int(s["max_output"]) + mark("max_output"),
        "input": "free" if s.get("free") else fmt_price(p.get("input")) + mark("prices.input"),
        "output": "free" if s.get("free") else fmt_price(p.get("output")) + mark("prices.output"),
        "cache_read": fmt_price(p.get("cache_read")) + mark("prices.cache_read"),
        "caps": ",".join(CAP_SHORT.get(c, c) for c, v in s["capabilities"].items() if v is True),
        "modalities": ",".join(s["input_modalities"]) + "->" + ",".join(s["output_modalities"]),
    }
