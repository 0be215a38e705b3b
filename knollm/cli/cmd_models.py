"""``knollm models search|show|where``.

``search`` and ``where`` read only the compact cached index (:mod:`knollm.query.index`);
``show`` loads the full catalog (every field with its source).
"""

from __future__ import annotations

from typing import Any

import click

from knollm.errors import FilterError
from knollm.query.filters import Filters
from knollm.cli.filters import complete_model, dumps_option, load_cached_catalog, load_index, model_filters
from knollm.cli.output import emit, output_options
from knollm.fmt import CAP_SHORT, field_rows as show_rows, summary_cells

__all__ = ["command", "summary_cells", "CAP_SHORT", "SEARCH_COLUMNS", "nothing_found", "say_choice"]

SEARCH_COLUMNS = ["key", "context", "input", "output", "caps"]


def nothing_found(message: str) -> int:
    click.echo(message, err=True)
    return 1


@click.group("models")
def command() -> None:
    """Search models, show one with its sources, find every provider of a model.

    \b
    Prices are USD per 1M tokens; '?' = unknown (never shown as 0).
    """


@command.command("search")
@click.argument("text", required=False)
@model_filters
@dumps_option
@output_options
def search(text: str | None, filters: Filters, dumps: str, output: dict) -> int:
    """Models matching TEXT (all words in key, name or canonical id) and every filter.

    Default order: relevance (exact id / name / canonical-id matches first, then the
    first-party offers, deprecated last); --sort changes it.

    \b
    Examples:
      knollm models search llama --max-input-price 1
      knollm models search -c tools -c vision --min-context 128k --sort price
      knollm models search --provider groq --json
    Exit 1 when nothing matches.
    """
    idx = load_index(dumps)
    limit = filters.limit
    try:
        pos = idx.search_positions(filters.replace(text=text, limit=None))
    except FilterError as e:
        raise click.UsageError(str(e)) from None
    total = len(pos)
    pos = pos[:limit] if limit else pos
    models = [idx.summary(idx.rows[i]) for i in pos]
    query = filters.replace(text=text).as_dict()
    if total or output["format"] != "table":  # no empty table header
        emit([summary_cells(m) for m in models], SEARCH_COLUMNS, output,
             json_obj={"query": query, "total": total, "count": len(models), "models": models})
    if output["format"] == "table" and total > len(models):
        click.echo(f"({len(models)} of {total} shown; --limit 0 for all)", err=True)
    if not total:
        hint = idx.suggest_text(text) if text else None
        if hint and idx.search_positions(filters.replace(text=hint, limit=1)):
            return nothing_found(f"no models match {text!r}; did you mean {hint!r}?")
        return nothing_found("no models match")
    return 0


def say_choice(note: str | None) -> None:
    """Print on stderr which offer a bare or canonical id was resolved to."""
    if note:
        click.echo(f"knollm: {note}", err=True)


@command.command("show")
@click.argument("ref", metavar="MODEL", shell_complete=complete_model)
@dumps_option
@output_options
def show(ref: str, dumps: str, output: dict) -> int:
    """Every field of one model with its source (dump, genai-prices, models.dev, litellm, inferred).

    \b
    Example: knollm models show groq/llama-3.3-70b-versatile
    MODEL: a provider/id key, a bare model id or a canonical id; when several providers
    serve it, the first-party offer, else the cheapest paid one (the choice is printed).
    """
    cat = load_cached_catalog(dumps)
    m, note = cat.resolve(ref)
    say_choice(note)
    prov = cat.provider_by_id(m["provider"])
    emit(show_rows(m), ["field", "value", "source"], output, json_obj={"model": m, "provider": prov})
    return 0


@command.command("where")
@click.argument("ref", metavar="MODEL", shell_complete=complete_model)
@click.option("--include-deprecated", is_flag=True, help="Include deprecated offers.")
@dumps_option
@output_options
def where(ref: str, include_deprecated: bool, dumps: str, output: dict) -> int:
    """Every provider serving the canonical model MODEL: cheapest paid offer first, then $0
    offers (free tiers), unknown prices last.

    \b
    MODEL: a canonical id (llama-3.3-70b-instruct), a model id or a provider/id key,
    in any provider's spelling.
    Example: knollm models where llama-3.3-70b-instruct
    """
    from knollm.query.index import CANON, DEPR, PRICES

    idx = load_index(dumps)
    rows = idx.where(ref)
    canon = rows[0][CANON] if rows else None
    if not include_deprecated:
        rows = [r for r in rows if not r[DEPR]]
    from knollm.query.filters import is_paid

    offers = [idx.summary(r) for r in rows]
    paid = [s["key"] for r, s in zip(rows, offers) if is_paid(r)]
    free = [s["key"] for r, s in zip(rows, offers) if not is_paid(r) and r[PRICES][0] is not None]
    cells = [{**summary_cells(s), "offer": "paid" if s["key"] in paid else "$0" if s["key"] in free else "?"}
             for s in offers]
    emit(cells, ["provider", "key", "offer", "input", "output", "context", "caps"], output,
         json_obj={"query": ref, "canonical_id": canon, "count": len(offers), "cheapest_paid": paid[0] if paid else None,
                   "free_offers": free, "offers": offers})
    if output["format"] == "table" and offers:
        cp = paid[0] if paid else "none"
        click.echo(f"cheapest paid: {cp}; {len(free)} $0 offer(s) (free tiers) listed after the paid ones", err=True)
    if not offers:
        return nothing_found(f"{ref}: only deprecated offers (--include-deprecated to list them)")
    return 0
