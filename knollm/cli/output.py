"""Output options shared by every command: ``--json``, ``--csv``, ``--fields`` and a table.

Use the :func:`output_options` decorator on a command, then call :func:`emit` with a list
of row dicts. Value formatting (prices, counts, tables) lives in :mod:`knollm.fmt`. JSON output is the stable, documented shape; tables are for people and
carry no colour when stdout is not a terminal.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Sequence
from typing import Any

import click

from knollm.fmt import format_table

__all__ = ["output_options", "emit", "emit_json"]


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


def emit_json(obj: Any) -> None:
    import orjson

    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


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
