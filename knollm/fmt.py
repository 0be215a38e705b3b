"""Display formatting for prices, costs, token counts and plain-text tables.

The one home of these helpers for the CLI, the site, ``diff`` and ``fetch`` (standard
library only). Values that are unknown (``None``) print as ``unknown`` (default ``?``),
never as 0. The site's JavaScript has its own copy for the browser (``knollm.js``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["fmt_price", "fmt_usd", "fmt_int", "fmt_tokens", "format_table", "is_tty"]


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
