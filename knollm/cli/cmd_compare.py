"""``knollm compare A B …``: models side by side (one column per model)."""

from __future__ import annotations

from typing import Any

import click

from knollm.cli.filters import CountType, complete_model, dumps_option, load_cached_catalog
from knollm.cli.output import emit, output_options
from knollm.fmt import fmt_int, fmt_price, fmt_usd, format_table
from knollm.vocab import COMPARE_FIELDS as _FIELDS

__all__ = ["command", "COMPARE_FIELDS"]

#: the rows of the side-by-side table (field paths into the model dict; the site's compare
#: page reads the same list from :data:`knollm.vocab.COMPARE_FIELDS`)
COMPARE_FIELDS = list(_FIELDS)


def _get(m: dict[str, Any], path: str) -> Any:
    v: Any = m
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def _fmt(path: str, v: Any) -> str:
    if v is None:
        return "?"
    if path.startswith("prices."):
        return fmt_price(v)
    if path in ("context_window", "max_output"):
        return fmt_int(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "-"
    return str(v)


@click.command("compare")
@click.argument("refs", nargs=-1, required=True, metavar="MODEL MODEL...", shell_complete=complete_model)
@click.option("--input", "-i", "input_tokens", type=CountType(), default=None,
              help="Also show the cost of this many input tokens per request (with --output).")
@click.option("--output", "-o", "output_tokens", type=CountType(), default="0", show_default=True)
@click.option("--sources", "with_sources", is_flag=True, help="Show each value's source.")
@dumps_option
@output_options
def command(refs: tuple[str, ...], input_tokens: int | None, output_tokens: int, with_sources: bool,
            dumps: str, output: dict) -> int:
    """Compare models side by side: limits, prices, capabilities, modalities (and sources).

    \b
    MODEL: provider/id keys, bare model ids or canonical ids (several offers: the
    first-party one, else the cheapest paid; the choice is printed on stderr).
    Example: knollm compare gpt-4o claude-sonnet-4 --input 2000 --output 500
    The site's compare page shows the same: compare/?m=openai/gpt-4o,anthropic/claude-sonnet-4
    """
    from knollm.cli.cmd_models import say_choice

    cat = load_cached_catalog(dumps)
    models = []
    for ref in refs:
        m, note = cat.resolve(ref)
        say_choice(note)
        models.append(m)
    per_request: list[float | None] = []
    costs: list[dict[str, Any]] = []
    if input_tokens is not None:
        from knollm.query.cost import Workload, applicable_prices, estimate

        w = Workload(input_tokens, output_tokens)
        for m in models:
            e = estimate(m, w)
            p = applicable_prices(m.get("prices") or {}, m.get("price_tiers") or None, w.input_tokens)
            # an estimate that uses a suspect price is unknown (as in `knollm cost`); "suspect" names them
            costs.append({"per_request": None if e["suspect"] else e["per_request"], "tier_start": e["tier_start"],
                          "prices_applied": {k: p.get(k) for k in ("input", "output", "cache_read", "request")},
                          "suspect": e["suspect"]})
        per_request = [c["per_request"] for c in costs]
    if output["format"] == "json":
        emit([], [], output, json_obj={
            "fields": COMPARE_FIELDS,
            # with -i: each model also carries "cost": the estimate, its tier_start and the prices applied
            "models": [{**m, "cost": c} for m, c in zip(models, costs)] if costs else models,
            "cost_per_request": per_request if input_tokens is not None else None,
        })
        return 0
    rows = []
    for f in COMPARE_FIELDS:
        row: dict[str, Any] = {"field": f}
        for m in models:
            v = _fmt(f, _get(m, f))
            if _get(m, f) is not None and f in (m.get("suspect") or {}):
                v += " ⚠suspect"  # kept, but failed a plausibility check (as `models search` marks it)
            if with_sources and _get(m, f) is not None:
                s = (m.get("sources") or {}).get(f)
                if s:
                    v = f"{v} [{s}]"
            row[m["key"]] = v
        rows.append(row)
    if costs:
        row = {"field": f"cost/request ({input_tokens:,} in, {output_tokens:,} out)"}
        for m, c in zip(models, costs):
            row[m["key"]] = "unknown (suspect price)" if c["suspect"] else fmt_usd(c["per_request"])
        rows.append(row)
        # the prices that cost used: a tier's where the input crosses one (the prices.* rows are the base)
        for k in ("input", "output"):
            row = {"field": f"  {k} price applied"}
            for m, c in zip(models, costs):
                row[m["key"]] = _fmt("prices." + k, c["prices_applied"][k])
            rows.append(row)
        row = {"field": "  tier_start"}
        for m, c in zip(models, costs):
            row[m["key"]] = "-" if c["tier_start"] is None else f">{int(c['tier_start']):,} in"
        rows.append(row)
    cols = ["field"] + [m["key"] for m in models]
    if output["format"] == "csv":
        emit(rows, cols, output)
    else:
        click.echo(format_table(rows, cols, max_width=48))
    for m, c in zip(models, costs):
        if c["suspect"]:
            click.echo(f"{m['key']}: cost unknown (a needed price is suspect: "
                       f"{', '.join('prices.' + f for f in c['suspect'])})", err=True)
    return 0
