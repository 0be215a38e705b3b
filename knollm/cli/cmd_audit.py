"""``knollm audit``: every offer where the sources disagree (see :mod:`knollm.query.audit`)."""

from __future__ import annotations

import click

from knollm.cli.filters import FiniteRange, dumps_option, load_cached_catalog
from knollm.cli.output import emit, output_options

__all__ = ["command"]


@click.command("audit")
@click.option("--markdown", "as_markdown", is_flag=True, help="Output a Markdown table.")
@click.option("--field", "groups", multiple=True,
              type=click.Choice(["price", "context", "max_output", "capability", "deprecation"]),
              help="Only these field groups (repeatable; default all).")
@click.option("--provider", "-p", "providers", multiple=True, help="Only these providers (repeatable).")
@click.option("--tolerance", type=FiniteRange(0, 10), default=0.05, show_default=True,
              help="Relative difference below which numbers agree.")
@click.option("--references", is_flag=True,
              help="Also compare with other providers' entries (models.dev canonical/family).")
@output_options
@dumps_option
def command(as_markdown: bool, groups: tuple[str, ...], providers: tuple[str, ...], tolerance: float,
            references: bool, output: dict, dumps: str) -> int:
    """List every offer where sources disagree: each source's value, the one Knollm shows and why.

    \b
    Examples:
      knollm audit --field price
      knollm audit --markdown > audit.md
      knollm audit --json -p vercel
    """
    from knollm.query.audit import disagreements, render_markdown, row_text, summary

    cat = load_cached_catalog(dumps)
    pset = {cat.index.provider_id(p) for p in providers} if providers else None
    rows = disagreements(cat.data, tolerance=tolerance, fields=groups or None, providers=pset,
                         references=references)
    if as_markdown:
        click.echo(render_markdown(rows), nl=False)
        return 0
    table = [{"model": r["key"], "field": r["field"], "shown": r["shown"], "source": r["shown_source"],
              "values": row_text(r), "why": r["why"]} for r in rows]
    emit(table, ["model", "field", "shown", "source", "values", "why"], output,
         json_obj={"count": len(rows), "tolerance": tolerance, "summary": summary(rows), "rows": rows})
    return 0
