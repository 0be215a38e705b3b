"""``knollm export``: the (filtered) catalog models as JSON, CSV or Parquet.

JSON is the full model dicts (the catalog schema); CSV and Parquet are flat tables built
with pandas (imported only here): prices and capabilities become ``price_<field>`` /
``cap_<name>`` columns, lists are comma-joined (CSV) or lists (Parquet).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from knollm.query.filters import Filters
from knollm.cli.filters import dumps_option, load_cached_catalog, model_filters
from knollm.vocab import CAPABILITIES, PRICE_FIELDS

__all__ = ["command", "flatten", "FLAT_COLUMNS"]

FLAT_SCALARS = ["key", "provider", "id", "name", "canonical_id", "family", "kind", "context_window", "max_output",
                "free", "variable_pricing", "open_weights", "deprecated", "created", "release_date", "owned_by",
                "quantization"]
FLAT_LISTS = ["input_modalities", "output_modalities", "origin", "flags"]


def _cols() -> list[str]:
    return (FLAT_SCALARS + [f"price_{p}" for p in PRICE_FIELDS] + [f"cap_{c}" for c in CAPABILITIES] + FLAT_LISTS
            + ["price_source", "sources"])


FLAT_COLUMNS = _cols  # call for the column list


def flatten(m: dict[str, Any], join_lists: bool) -> dict[str, Any]:
    row: dict[str, Any] = {k: m.get(k) for k in FLAT_SCALARS}
    pr = m.get("prices") or {}
    caps = m.get("capabilities") or {}
    for p in PRICE_FIELDS:
        row[f"price_{p}"] = pr.get(p)
    for c in CAPABILITIES:
        row[f"cap_{c}"] = caps.get(c)
    for k in FLAT_LISTS:
        v = list(m.get(k) or [])
        row[k] = ",".join(v) if join_lists else v
    src = m.get("sources") or {}
    row["price_source"] = src.get("prices.input")
    row["sources"] = ";".join(f"{a}={b}" for a, b in src.items())
    return row


@click.command("export")
@click.option("--format", "-f", "fmt", type=click.Choice(["json", "csv", "parquet"]), default=None,
              help="Output format (default json; parquet needs --out).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (default stdout; '-' = stdout).")
@model_filters(limit=None, sort="provider")
@dumps_option
def command(fmt: str | None, as_json: bool, out: Path | None, filters: Filters, dumps: str) -> int:
    """Export the models matching the filters (default: all non-deprecated) as JSON, CSV or Parquet.

    \b
    Examples:
      knollm export --format csv -c tools > tools.csv
      knollm export --format parquet --out models.parquet --include-deprecated
      knollm export --json --provider groq
    Exit 1 when no model matches.
    """
    if as_json and fmt not in (None, "json"):
        raise click.UsageError("--json conflicts with --format " + fmt)
    fmt = fmt or "json"
    to_stdout = out is None or str(out) == "-"
    if fmt == "parquet" and to_stdout and sys.stdout.isatty():
        raise click.UsageError("parquet is binary: use --out FILE (or redirect stdout)")
    cat = load_cached_catalog(dumps)
    models = cat.search(filters)
    if fmt == "json":
        import orjson

        data = orjson.dumps({"count": len(models), "filters": filters.as_dict(), "models": models},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    else:
        import pandas as pd

        df = pd.DataFrame([flatten(m, join_lists=(fmt == "csv")) for m in models], columns=_cols())
        if fmt == "csv":
            data = df.to_csv(index=False).encode()
        else:
            import io

            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            data = buf.getvalue()
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        from knollm.fsutil import atomic_write

        atomic_write(out, data)
        click.echo(f"wrote {len(models)} models to {out} ({fmt})", err=True)
    if not models:
        click.echo("no models match", err=True)
        return 1
    return 0
