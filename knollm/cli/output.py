"""Output options shared by every command: ``--json``, ``--csv``, ``--fields`` and a table.

Use the :func:`output_options` decorator on a command, then call :func:`emit` with a list
of row dicts. JSON output is the stable, documented shape; tables are for people and
carry no colour when stdout is not a terminal.
"""

from __future__ import annotations

import csv
import functools
import io
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["output_options", "emit", "emit_json", "format_table", "is_tty", "fmt_price", "fmt_int"]


def output_options(f: Callable) -> Callable:
    """Add ``--json``, ``--csv`` and ``--fields`` to a command; passes ``output`` (dict) to it."""

    @click.option("--json", "as_json", is_flag=True, help="Output JSON (stable shape, see docs).")
    @click.option("--csv", "as_csv", is_flag=True, help="Output CSV.")
    @click.option("--fields", default=None, help="Comma-separated columns to show (table/CSV).")
    @functools.wraps(f)
    def wrapper(*args: Any, as_json: bool, as_csv: bool, fields: str | None, **kwargs: Any):
        if as_json and as_csv:
            raise click.UsageError("--json and --csv are mutually exclusive")
        fmt = "json" if as_json else "csv" if as_csv else "table"
        kwargs["output"] = {"format": fmt, "fields": [x.strip() for x in fields.split(",")] if fields else None}
        return f(*args, **kwargs)

    return wrapper


def is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def emit_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def fmt_price(v: float | None) -> str:
    if v is None:
        return "?"
    if v == 0:
        return "0"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.4f}".rstrip("0").rstrip(".")


def fmt_int(v: int | None) -> str:
    if v is None:
        return "?"
    if v >= 1_000_000 and v % 1_000_000 == 0:
        return f"{v // 1_000_000}M"
    if v >= 1000 and v % 1000 == 0:
        return f"{v // 1000}k"
    if v >= 1000 and v % 1024 == 0:
        return f"{v // 1024}Ki"
    return f"{v:,}"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_width: int = 60) -> str:
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
    bold = is_tty()
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    if bold:
        head = click.style(head, bold=True)
    lines = [head, "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], output: dict, json_obj: Any = None) -> None:
    """Print rows as a table (default), CSV or JSON (``json_obj`` if given, else the rows)."""
    fmt = output.get("format", "table")
    cols = output.get("fields") or list(columns)
    if fmt == "json":
        emit_json(json_obj if json_obj is not None else list(rows))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo(format_table(rows, cols))
