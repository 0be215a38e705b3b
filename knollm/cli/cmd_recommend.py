"""``knollm recommend``: rank models for a use case, each score explained."""

from __future__ import annotations


import click

from knollm.query.filters import Filters
from knollm.cli.filters import CAPABILITY_CHOICES, CountType, PriceType, dumps_option, load_cached_catalog, model_filters
from knollm.cli.output import emit, output_options
from knollm.fmt import fmt_int

__all__ = ["command"]

_USE_CASES = ("chat", "coding", "agents", "rag", "extraction", "summarization", "vision", "reasoning",
              "long-context", "classification", "embedding")  # = knollm.query.recommend.USE_CASES (tested)


#: table columns: the score's components are points, named so, next to the cost in USD
_COLUMNS = ["rank", "key", "score", "$/1k req", "price pts", "context pts", "capabilities pts", "confidence pts"]


def _needs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    out = [x.strip() for v in value for x in v.split(",") if x.strip()]
    for c in out:
        if c not in CAPABILITY_CHOICES:
            raise click.BadParameter(f"{c!r} is not one of {', '.join(CAPABILITY_CHOICES)}", ctx, param)
    return out


@click.command("recommend")
@click.option("--use-case", "-u", type=click.Choice(_USE_CASES), default=None,
              help="What the model is for (see --list-use-cases).")
@click.option("--budget", type=PriceType(), default=None, help="Max USD per 1,000 requests of the use case's token mix.")
@click.option("--needs", multiple=True, callback=_needs, metavar="CAP[,CAP…]",
              help="Extra required capabilities, e.g. tools,vision.")
@click.option("--input", "-i", "input_tokens", type=CountType(), default=None,
              help="Override the use case's input tokens per request.")
@click.option("--output", "-o", "output_tokens", type=CountType(), default=None,
              help="Override the use case's output tokens per request.")
@click.option("--all-offers", is_flag=True, help="Rank every provider offer (default: best offer per model).")
@click.option("--include-free", is_flag=True, help="Also rank $0 offers (free tiers/previews; left out by default).")
@click.option("--list-use-cases", is_flag=True, help="List the use cases (token mix, capabilities) and exit.")
@model_filters(limit=10, sort=None)
@dumps_option
@output_options
def command(use_case: str | None, budget: float | None, needs: list[str], input_tokens: int | None,
            output_tokens: int | None, all_offers: bool, include_free: bool, list_use_cases: bool, filters: Filters,
            dumps: str, output: dict) -> int:
    """Rank models for a use case: a transparent score (0-100) explained per row.

    \b
    score = price (log-scaled cost of the use case's token mix, cheapest = 40)
          + context headroom (15) + preferred capabilities known true (25)
          + source confidence of the values used (20) - deprecated penalty (30)
    Required capabilities (use case + --needs) and the minimum context are filters.
    Computed from catalog data only; see knollm/query/recommend.py and the docs.

    \b
    Examples:
      knollm recommend --use-case coding --budget 5
      knollm recommend -u chat --needs tools,vision --provider groq,openai
    Exit 1 when no model qualifies.
    """
    from knollm.query.recommend import USE_CASES, recommend

    if list_use_cases:
        rows = [u.as_dict() for u in USE_CASES.values()]
        cells = [{**r, "mix": f"{fmt_int(r['input_tokens'])} in / {fmt_int(r['output_tokens'])} out",
                  "required": ",".join(r["required"]), "preferred": ",".join(r["preferred"]),
                  "min_context": fmt_int(r["min_context"])} for r in rows]
        emit(cells, ["name", "mix", "required", "preferred", "min_context", "description"], output, json_obj=rows)
        return 0
    if use_case is None:
        raise click.UsageError("--use-case is required (or --list-use-cases)")
    from knollm.query.cost import Workload

    uc = USE_CASES[use_case]
    w = None
    if input_tokens is not None or output_tokens is not None:
        inp = input_tokens if input_tokens is not None else uc.input_tokens
        w = Workload(inp, output_tokens if output_tokens is not None else uc.output_tokens,
                     min(uc.cached_tokens, inp))
    limit = filters.limit
    cat = load_cached_catalog(dumps)
    res = recommend(cat, use_case, budget=budget, needs=needs, workload=w, filters=filters,
                    distinct=not all_offers, include_free=include_free, limit=limit)
    cells = []
    for r in res["results"]:
        c = r["components"]
        cells.append({"rank": r["rank"], "key": r["key"], "score": f"{r['score']:.1f}",
                      "$/1k req": f"{r['cost_per_1k_requests']:.4g}",
                      **{f"{k} pts": f"{d['points']:g}" for k, d in c.items()},
                      "window": fmt_int(r["model"].get("context_window"))})
    if output["format"] == "table":
        from knollm.fmt import format_table

        if cells:
            click.echo(format_table(cells, _COLUMNS))
            click.echo("(score = the points columns: price, context, capabilities, confidence; "
                       "$/1k req = USD per 1,000 requests of the use case's token mix)")
            click.echo("")
            for r in res["results"]:
                click.echo(f"{r['rank']}. {r['key']}: {r['why']}")
    else:
        out = dict(res)
        out["results"] = [{k: v for k, v in r.items()} for r in res["results"]]
        emit(cells, _COLUMNS, output, json_obj=out)
    if res["excluded_free"] and output["format"] == "table":
        click.echo(f"({res['excluded_free']} $0 offers left out; --include-free to rank them)", err=True)
    if not res["results"]:
        click.echo("no model qualifies", err=True)
        return 1
    return 0
