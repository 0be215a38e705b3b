"""``knollm cost``: what a token workload costs, per model, cheapest first.

The arithmetic is :mod:`knollm.query.cost` (the same function the site's calculator mirrors);
the models come from the compact cached index, so this stays fast.
"""

from __future__ import annotations


import click

from knollm.query.filters import Filters
from knollm.cli.filters import CountType, complete_model, dumps_option, load_index, model_filters
from knollm.cli.output import emit, output_options
from knollm.fmt import fmt_price, fmt_usd

__all__ = ["command"]


@click.command("cost")
@click.argument("models", nargs=-1, metavar="[MODEL]...", shell_complete=complete_model)
@click.option("--input", "-i", "input_tokens", type=CountType(), required=True,
              help="Input tokens per request (e.g. 2000, 200k, 1.5M).")
@click.option("--output", "-o", "output_tokens", type=CountType(), default="0", show_default=True,
              help="Output tokens per request.")
@click.option("--cached", type=CountType(), default="0", show_default=True,
              help="Of the input tokens, how many are cache reads (billed at the cache-read price).")
@click.option("--requests", "-r", type=CountType(), default="1", show_default=True,
              help="Number of requests (e.g. 10k).")
@click.option("--include-free", is_flag=True,
              help="Also list $0 offers (free tiers) among the filtered models; by default they are counted, not listed "
                   "(--free implies it).")
@model_filters(limit=20, sort=None)
@dumps_option
@output_options
def command(models: tuple[str, ...], input_tokens: int, output_tokens: int, cached: int, requests: int,
            include_free: bool, filters: Filters, dumps: str, output: dict) -> int:
    """Cost of a workload per model (the listed MODELs, else every model matching the filters),
    cheapest first. Models whose cost is unknown are left out (listed ones are reported);
    $0 offers (free tiers) are counted but listed only with --include-free (or --free), so the
    cheapest *paid* models come first. MODEL: a key, a bare id or a canonical id.

    \b
    per request = (input - cached) x input price + cached x cache-read price (else input price)
                + output x output price  [USD per 1M tokens, / 1e6]  + per-request fee
    total       = per request x requests
    Above a price tier's start (e.g. 200k input tokens) the tier's prices apply to the whole
    request; the input/output/cache_read columns show the prices applied, tier the tier.

    \b
    Examples:
      knollm cost --input 2000 --output 500 --requests 10k -c tools
      knollm cost -i 1.5M -o 200k openai/gpt-4o groq/llama-3.3-70b-versatile
    Exit 1 when no model has a known cost.
    """
    from knollm.query.cost import Workload, applicable_prices

    include_free = include_free or bool(filters.free)  # --free asks for the $0 offers: list them
    try:
        w = Workload(input_tokens, output_tokens, cached, requests)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    idx = load_index(dumps)
    limit = filters.limit
    unknown: list[str] = []
    hidden_free = 0
    if models:
        from knollm.cli.cmd_models import say_choice

        keys = []
        for ref in models:
            pos, note = idx.resolve(ref)  # NotFoundError with suggestions
            say_choice(note)
            keys.append(idx.rows[pos][0])
        results = idx.costs(w, models=keys)
        have = {r["key"] for r in results}
        unknown = [k for k in keys if k not in have]
        matched = len(keys)
    else:
        results = idx.costs(w, filters=filters.replace(limit=None))
        matched = len(results)
        if not include_free:
            paid = [r for r in results if r["per_request"] > 0]  # not total: -r 0 makes every total $0
            hidden_free = len(results) - len(paid)
            results = paid
    if limit and not models:
        results = results[:limit]

    def applied(r: dict) -> dict:
        """The prices the estimate used: the base ones, or the tier's where the input crosses one."""
        p = applicable_prices(r["model"]["prices"], r["model"].get("price_tiers"), w.input_tokens)
        return {k: p.get(k) for k in ("input", "output", "cache_read", "request")}

    rows = [{"key": r["key"], "per_request": r["per_request"], "total": r["total"],
             "cache_price_used": r["cache_price_used"], "tier_start": r["tier_start"],
             "prices_applied": applied(r), "model": r["model"]} for r in results]
    data = {
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                     "cached_tokens": w.cached_tokens, "requests": w.requests},
        "count": len(rows),
        "total_matched": matched,
        "results": rows,
        "unknown": unknown,
        "hidden_free": hidden_free,
    }
    cells = []
    for r in rows:
        p = r["prices_applied"]
        t = r["tier_start"]
        cells.append({"key": r["key"], "per_request": fmt_usd(r["per_request"]), "total": fmt_usd(r["total"]),
                      "input": fmt_price(p["input"]), "output": fmt_price(p["output"]),
                      "cache_read": fmt_price(p["cache_read"]) if r["cache_price_used"] else "",
                      "tier": "" if t is None else f">{int(t):,}", "tier_start": "" if t is None else int(t),
                      "per_request_usd": r["per_request"], "total_usd": r["total"]})
    # input/output/cache_read: the prices applied (a tier's, where the input crosses one: see tier)
    tiered = any(r["tier_start"] is not None for r in rows)
    cols = ["key", "per_request", "total", "input", "output"] + (["cache_read"] if cached else []) + (
        ["tier"] if tiered else [])
    if output["format"] == "csv" and not output.get("fields"):
        cols = ["key", "per_request_usd", "total_usd", "input", "output"] + (["cache_read"] if cached else []) + [
            "tier_start"]
    emit(cells, cols, output, json_obj=data)
    if output["format"] == "table":
        click.echo(f"workload: {w.input_tokens:,} in ({w.cached_tokens:,} cached) + {w.output_tokens:,} out "
                   f"x {w.requests:,} requests; prices USD/1M tokens"
                   + ("; tier >N: the input is above N tokens, so that tier's prices apply" if tiered else ""),
                   err=True)
    for k in unknown:
        sus = idx.summary(idx.model(k)).get("suspect") or {}
        why = f"a needed price is suspect: {', '.join(sorted(sus))}" if any(
            p.startswith("prices.") for p in sus) else "a needed price is missing"
        click.echo(f"{k}: cost unknown ({why})", err=True)
    if hidden_free and output["format"] == "table":
        click.echo(f"({hidden_free} matching model(s) cost $0 here - free tiers or previews - and are not "
                   "listed; --include-free lists them)", err=True)
    if not rows:
        click.echo("no paid model with a known cost matches" if hidden_free else
                   "no model with a known cost matches", err=True)
        return 1
    return 0
