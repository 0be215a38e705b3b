"""``knollm catalog`` (build the normalized catalog JSON) and ``knollm schema``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from knollm.cli.filters import check_dumps
from knollm.cli.output import emit_json

__all__ = ["command", "schema_command", "format_summary"]


def format_summary(cat: dict, seconds: float | None = None) -> str:
    s = cat["stats"]
    src = ", ".join(f"{x['name']} {x.get('version') or ''}".strip() for x in cat["sources"])
    lines = [
        f"providers            {s['providers']} ({s['providers_with_dump']} with a dump)",
        f"models               {s['models']} ({s['dump_models']} from dumps)",
        f"canonical models     {s['canonical_models']}",
        f"served by 2+ providers {s['canonical_models_multi_provider']} canonical models "
        f"({s['models_on_multi_provider_canonicals']} offers)",
        f"coverage             price {s['coverage_price_pct']}%  context {s['coverage_context_pct']}%  "
        f"tools {s['coverage_tools_pct']}%  vision {s['coverage_vision_pct']}%",
        f"warnings             {s['warnings']}",
        f"data findings        {s.get('data_findings', 0)} ({s.get('suspect_models', 0)} models with a suspect value, "
        f"{s.get('disputed_models', 0)} with disagreeing sources: knollm audit)",
        f"sources              {src}",
    ]
    if seconds is not None:
        lines.append(f"built in             {seconds:.2f} s")
    return "\n".join(lines)


@click.command("catalog")
@click.option("--dumps", type=click.Path(path_type=Path), envvar="KNOLLM_DUMPS", default="work/model_catalog",
              show_default=True, callback=check_dumps,
              help="Directory of models_<provider>.json dumps (a given one must exist; the default may not).")
@click.option("--out", type=click.Path(path_type=Path), default="work/catalog.json", show_default=True,
              help="Where to write the catalog JSON ('-' for stdout).")
@click.option("--strict", is_flag=True, help="Fail (exit 1) if any warning is emitted.")
@click.option("--no-registries", is_flag=True, help="Dumps only (skip genai-prices and models.dev).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print warnings.")
def command(dumps: Path, out: Path, strict: bool, no_registries: bool, as_json: bool, quiet: bool) -> int:
    """Build the normalized catalog from DUMPS + the registries and write it as JSON."""
    import orjson

    from knollm.catalog.build import build_catalog
    from knollm.catalog.diagnostics import Diagnostics
    from knollm.errors import StrictModeError

    diags = Diagnostics()
    t0 = time.perf_counter()
    try:
        cat = build_catalog(dumps, strict=strict, registries=not no_registries, diags=diags)
    except StrictModeError:
        for d in diags.warnings:
            click.echo(f"warning: {d}", err=True)
        click.echo(f"error: --strict and {len(diags.warnings)} warning(s)", err=True)
        return 1
    secs = time.perf_counter() - t0
    data = orjson.dumps(cat, option=orjson.OPT_APPEND_NEWLINE)
    if str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        from knollm.fsutil import atomic_write

        atomic_write(out, data)
    if not quiet:
        for d in diags:
            click.echo(f"{d.level}: {d}", err=True)
    if str(out) != "-":
        if as_json:
            emit_json({"out": str(out), "seconds": round(secs, 3), **cat["stats"]})
        else:
            click.echo(format_summary(cat, secs))
            click.echo(f"written              {out}")
    return 0


@click.command("schema")
def schema_command() -> int:
    """Print the JSON Schema of the catalog file."""
    from knollm.catalog.schema import json_schema

    emit_json(json_schema())
    return 0
