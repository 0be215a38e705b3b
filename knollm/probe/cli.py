"""``knollm probe``, ``knollm benchmark`` and ``knollm ask`` (``knollm providers health``
lives with the providers group and calls :mod:`knollm.probe.health`)."""

from __future__ import annotations

import sys
from typing import Any

import click

from knollm.cli.filters import PriceType, SecondsType, dumps_option
from knollm.cli.output import emit, emit_json, output_options

__all__ = ["probe_command", "benchmark_command", "ask_command"]


def _catalog(path: str | None, dumps: str) -> Any:
    if path:
        from knollm.query.api import Catalog

        return Catalog.load(path)
    from knollm.cli.filters import load_index

    try:
        return load_index(dumps, quiet=True)
    except Exception:  # noqa: BLE001 - no catalog: provider/model targets still work (unpriced)
        return False


def _targets(refs: tuple[str, ...], provider: str | None, catalog_path: str | None, dumps: str,
             configured: bool = False) -> list:
    from knollm.errors import ProbeError
    from knollm.probe.common import configured_targets, resolve_targets

    cat = _catalog(catalog_path, dumps)
    if configured:
        if not cat:
            raise ProbeError("--configured needs a catalog (--catalog or --dumps)")
        ts = configured_targets(cat)
        if refs:
            ts += [t for t in resolve_targets(cat, list(refs), provider) if t.key not in {x.key for x in ts}]
        if not ts:
            raise ProbeError("--configured: no provider with a key set has a priced chat model")
        return ts
    if not refs:
        raise ProbeError("give a TARGET (or --configured)")
    return resolve_targets(cat, list(refs), provider)


def _usd(v: float | None) -> str:
    return "unknown (unpriced)" if v is None else f"${v:.6f}"


def _announce(what: str) -> Any:
    def say(*args: Any) -> None:
        cost = args[-1]
        who = f" {args[0]}" if len(args) > 1 else ""
        click.echo(f"{what}{who}: at most {_usd(cost)} (worst case; the run is capped there)", err=True)
    return say


_common = [
    click.option("--configured", is_flag=True,
                 help="Add the cheapest priced chat model of every provider whose API key is set."),
    click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, exists=True), default=None,
                 help="A catalog JSON file (from `knollm catalog`) instead of the cached index."),
    click.option("--max-cost", type=PriceType(), default=None,
                 help="Refuse to start when the announced worst case is above this (USD)."),
    click.option("--allow-unpriced", is_flag=True, help="Run targets with no known price (cost cannot be capped)."),
    click.option("--timeout", type=SecondsType(), default=60.0, show_default=True,
                 help="Seconds per request."),
]


def common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return dumps_option(f)


def _fail(e: Exception) -> int:
    click.echo(f"knollm: {e}", err=True)
    return 1


@click.command("probe")
@click.argument("targets", nargs=-1)
@click.option("--provider", default=None, help="Only this provider's offers of a canonical TARGET.")
@click.option("--only", default=None, help="Comma-separated probes (default: all but context_limit).")
@click.option("--context", is_flag=True, help="Also find the context limit from the provider's error (costly: "
                                              "one prompt larger than the catalog's window).")
@click.option("--context-tokens", type=click.IntRange(min=16), default=None,
              help="Window to overflow with --context when the catalog has none.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="work/probes", show_default=True)
@common
@output_options
def probe_command(targets: tuple[str, ...], provider: str | None, only: str | None, context: bool,
                  context_tokens: int | None, out_dir: str, configured: bool, catalog_path: str | None,
                  max_cost: float | None, allow_unpriced: bool, timeout: float, dumps: str, output: dict) -> int:
    """Find out what TARGET does with small real requests: tools (and a call), images, JSON
    mode, structured output, system prompt, usage in streams; --context also the limit.

    \b
    The worst-case cost is announced before any request and the run is capped there.
    Results (date, cost, raw evidence) go to --out; `knollm catalog` reads them as
    source `probe`. Exit 1 when a target cannot run (unknown, unpriced, over --max-cost).
    Example: knollm probe groq/llama-3.3-70b-versatile --max-cost 0.01
    """
    from knollm.errors import KnollmError
    from knollm.probe.probes import probe_target

    names = [x.strip() for x in only.split(",")] if only else None
    docs, rc = [], 0
    try:
        ts = _targets(targets, provider, catalog_path, dumps, configured)
    except KnollmError as e:
        return _fail(e)
    for t in ts:
        try:
            docs.append(probe_target(t, names=names, context=context, context_tokens=context_tokens, max_cost=max_cost,
                                     allow_unpriced=allow_unpriced, out_dir=out_dir, timeout=timeout,
                                     on_announce=_announce("probe")))
        except (KnollmError, ValueError) as e:
            rc = _fail(e)
    if output["format"] == "json":
        emit_json(docs)
        return rc
    rows = [{"target": d["key"], "probe": r["probe"], "verdict": r["verdict"], "detail": r["detail"],
             "cost": _usd(r["cost_usd"])} for d in docs for r in d["results"]]
    emit(rows, ["target", "probe", "verdict", "detail", "cost"], output)
    for d in docs:
        for x in d["disagreements"]:
            click.echo(f"disagreement: {d['key']} {x['field']}: catalog says {x['catalog']}, probe found "
                       f"{x['probe']} ({x['detail']})", err=True)
        click.echo(f"{d['key']}: spent {_usd(d['cost_usd'])} of {_usd(d['announced_usd'])} announced -> "
                   f"{d.get('file')}", err=True)
    return rc


@click.command("benchmark")
@click.argument("targets", nargs=-1)
@click.option("--provider", default=None, help="Only this provider's offers of a canonical TARGET.")
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True, help="Runs per target.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs in flight at once per target.")
@click.option("--prompt-set", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Prompts: .json list, .jsonl ({prompt} or {messages}) or text (one a line).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="work/probes", show_default=True)
@common
@output_options
def benchmark_command(targets: tuple[str, ...], provider: str | None, runs: int, concurrency: int,
                      prompt_set: str | None, max_tokens: int, out_dir: str, configured: bool, catalog_path: str | None,
                      max_cost: float | None, allow_unpriced: bool, timeout: float, dumps: str, output: dict) -> int:
    """Measure TARGETs: TTFT, output tokens/s, latency p50/p95, success rate, cost per run.

    \b
    Streamed requests, no retries (a failure counts), no warm-up call (every run is billed
    and counted). TTFT and latency exclude opening a connection (DNS, TCP, TLS): that is
    column `connect`, the p50 over the runs that opened one (--json: per run `connect_ms`
    and `cold`; per target `connect_p50_ms`, `cold_runs`). Saved with the environment to
    --out; the site charts latency and throughput against price.
    Example: knollm benchmark groq/llama-3.1-8b-instant cerebras/llama3.1-8b --runs 10
    """
    from knollm.errors import KnollmError
    from knollm.probe.bench import benchmark, load_prompt_set, table_rows

    try:
        doc = benchmark(_targets(targets, provider, catalog_path, dumps, configured), runs=runs, concurrency=concurrency,
                        prompts=load_prompt_set(prompt_set), max_tokens=max_tokens, max_cost=max_cost,
                        allow_unpriced=allow_unpriced, out_dir=out_dir, timeout=timeout,
                        on_announce=_announce("benchmark"))
    except KnollmError as e:
        return _fail(e)
    rows = table_rows(doc)
    emit(rows, list(rows[0]) if rows else [], output, json_obj=doc)
    if output["format"] == "table":
        click.echo(f"spent {_usd(doc['cost_usd'])} of {_usd(doc['announced_usd'])} announced -> {doc.get('file')}",
                   err=True)
    # exit 1 when a run failed: every run that was sent answered ("ok" is a count; runs refused
    # by the cost cap were never sent and are no failure)
    return 0 if all(r["ok"] == r["runs"] for r in doc["results"]) else 1


@click.command("ask")
@click.argument("args", nargs=-1, required=True, metavar="TARGET... PROMPT")
@click.option("--system", "-s", default=None, help="System prompt.")
@click.option("--judge", default=None, metavar="TARGET", help="Ask this model to compare the answers (its opinion).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@common
@output_options
def ask_command(args: tuple[str, ...], system: str | None, judge: str | None, max_tokens: int, configured: bool,
                catalog_path: str | None, max_cost: float | None, allow_unpriced: bool, timeout: float, dumps: str,
                output: dict) -> int:
    """Ask several models the same PROMPT (the last argument; '-' reads stdin) in parallel.

    \b
    Answers side by side with tokens, time and cost. --judge asks one more model which
    answer is best: that is labelled as the model's opinion, not a measurement.
    Example: knollm ask groq/llama-3.1-8b-instant openai/gpt-4o-mini "Explain WAL" --judge openai/gpt-4o
    """
    from knollm.errors import KnollmError
    from knollm.probe.ask import ask

    if len(args) < 2:
        raise click.UsageError("give at least one TARGET and a PROMPT")
    *refs, prompt = args
    if prompt == "-":
        prompt = sys.stdin.read()
    try:
        cat = _catalog(catalog_path, dumps)
        from knollm.probe.common import resolve_targets

        ts = resolve_targets(cat, refs)
        if configured and cat:
            from knollm.probe.common import configured_targets

            ts += [t for t in configured_targets(cat) if t.key not in {x.key for x in ts}]
        jt = resolve_targets(cat, [judge])[0] if judge else None
        res = ask(ts, prompt, system=system, judge=jt, max_tokens=max_tokens, max_cost=max_cost,
                  allow_unpriced=allow_unpriced, timeout=timeout, on_announce=_announce("ask"))
    except KnollmError as e:
        return _fail(e)
    if output["format"] == "json":
        emit_json(res)
    else:
        rows = [{"target": a["key"], "in": a.get("input_tokens"), "out": a.get("output_tokens"),
                 "ms": None if a.get("duration_ms") is None else round(a["duration_ms"]),
                 "cost": _usd(a.get("cost_usd")) if a["ok"] else "-",
                 "answer": " ".join((a["content"] or a.get("message") or "").split())[:300]} for a in res["answers"]]
        emit(rows, ["target", "in", "out", "ms", "cost", "answer"], output)
        j = res["judge"]
        if j is not None and output["format"] == "table":
            labels = ", ".join(f"{k} = {v}" for k, v in j["labels"].items())
            click.echo(f"\nOpinion of the model {j['opinion_of']} (a model's opinion, not a measurement; {labels}):")
            click.echo(j["content"] if j["ok"] else f"judge failed: {j.get('message')}")
        click.echo(f"spent {_usd(res['cost_usd'])} of {_usd(res['announced_usd'])} announced", err=True)
    return 0 if all(a["ok"] for a in res["answers"]) else 1
