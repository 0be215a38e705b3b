"""``knollm chat``: call a model through :class:`knollm.Client` and stream the answer."""

from __future__ import annotations

import sys
from typing import Any

import click

from knollm.cli.filters import dumps_option
from knollm.cli.output import emit, emit_json, output_options

__all__ = ["command"]

# spelled out so option parsing does not import the client (checked against STRATEGIES in tests)
STRATEGY_CHOICES = ("priority", "cheapest", "fastest", "round-robin", "weighted", "least-busy", "balanced")


def _catalog(path: str | None, dumps: str) -> Any:
    if path:
        from knollm.query.api import Catalog

        return Catalog.load(path)
    from knollm.cli.filters import load_index

    try:
        return load_index(dumps, quiet=True)
    except Exception:  # noqa: BLE001 - no catalog: explicit provider/model targets still work
        return False


def _summary(r: Any) -> str:
    u = r.usage
    cost = f"${r.cost_usd:.6f}" if r.cost_usd is not None else f"cost unknown ({r.unpriced_reason})"
    est = " (estimated)" if u.estimated else ""
    ttft = f" · ttft {r.ttft_ms:.0f} ms" if r.ttft_ms is not None else ""
    src = f" [{r.price_source}]" if r.price_source else ""
    return (f"{r.provider}/{r.model}{' via ' + r.key if r.key else ''} · {u.input_tokens} in / {u.output_tokens} out"
            f"{est} · {cost}{src}{ttft} · {r.duration_ms:.0f} ms · {len(r.attempts)} attempt(s)")


def _run(client: Any, tgt: Any, messages: list[dict], params: dict, no_stream: bool, quiet: bool) -> Any:
    with client:
        if no_stream:
            res = client.chat(tgt, messages, **params)
            if not quiet:
                click.echo(res.content or "")
            return res
        res = None
        for x in client.stream(tgt, messages, **params):
            if isinstance(x, str):
                if not quiet:
                    sys.stdout.write(x)
                    sys.stdout.flush()
            else:
                res = x
        if not quiet:
            click.echo("")
        return res


def _check_tag(tag: str | None) -> str | None:
    if tag is None:
        return None
    from knollm.client.store import check_tag

    try:
        return check_tag(tag)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--tag") from None


@click.command("chat")
@click.argument("target")
@click.argument("prompt", required=False)
@click.option("--system", "-s", "system", default=None, help="System prompt.")
@click.option("--strategy", type=click.Choice(STRATEGY_CHOICES), default=None,
              help="Routing strategy across the target's providers (default: priority).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Maximum output tokens.")
@click.option("--no-stream", is_flag=True, help="Wait for the whole answer instead of streaming it.")
@click.option("--tag", default=None, metavar="TAG", callback=lambda ctx, p, v: _check_tag(v),
              help="Caller tag written to the ledger row (see `knollm usage --tag`).")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A catalog JSON file (from `knollm catalog`) instead of the cached index.")
@dumps_option
@output_options
def command(target: str, prompt: str | None, system: str | None, strategy: str | None, max_tokens: int | None,
            no_stream: bool, tag: str | None, catalog_path: str | None, dumps: str, output: dict) -> int:
    """Ask TARGET and stream the answer. PROMPT '-' (or none, with piped stdin) reads stdin.

    \b
    TARGET: a catalog key (groq/llama-3.3-70b-versatile), a canonical model id
    (llama-3.3-70b-instruct: any provider serving it), a lockfile alias, or a
    comma-separated fallback chain. Keys come from each provider's env vars
    (GROQ_API_KEY, GROQ_API_KEY_2, ...); KNOLLM_<PROVIDER>_BASE_URL overrides the URL.
    Usage and cost go to the ledger ($KNOLLM_HOME/knollm.db; see `knollm usage`).

    \b
    --json prints one object: content, provider, model, usage {input_tokens,
    output_tokens, cached_tokens}, cost_usd, price_source, ttft_ms, duration_ms,
    attempts [{provider, model, key, status, error, duration_ms}], candidates, why.
    Exit 1 when every candidate failed or the stream broke (the partial text stays printed).
    """
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            raise click.UsageError("give a PROMPT, or '-' / a pipe to read it from stdin")
        prompt = sys.stdin.read()
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    params: dict[str, Any] = {}
    if max_tokens:
        params["max_tokens"] = max_tokens
    if strategy:
        params["strategy"] = strategy
    if tag:
        params["tag"] = tag
    tgt: Any = [t.strip() for t in target.split(",") if t.strip()] if "," in target else target

    from knollm.client import Client
    from knollm.errors import ClientError

    quiet = output["format"] != "table"
    try:
        health = None
        if strategy in ("fastest", "balanced"):  # rank by what probes, benchmarks and the ledger measured
            from knollm.probe.health import figures as health
        res = _run(Client(catalog=_catalog(catalog_path, dumps), health=health), tgt, messages, params, no_stream,
                   quiet)
    except ClientError as e:
        if not quiet and getattr(e, "partial", ""):
            click.echo("")  # end the partial line before the error
        if output["format"] != "json":
            raise
        emit_json({"error": str(e), "error_class": type(e).__name__, "partial": getattr(e, "partial", None),
                   "attempts": getattr(e, "attempts", []), "excluded": getattr(e, "excluded", [])})
        return 1
    if output["format"] == "json":
        emit_json(res.to_dict())
    elif output["format"] == "csv":
        d = res.to_dict()
        row = {**{k: d[k] for k in ("provider", "model", "key", "cost_usd", "price_source", "ttft_ms", "duration_ms")},
               **d["usage"], "content": d["content"]}
        emit([row], list(row), output)
    else:
        if res.tool_calls:
            for tc in res.tool_calls:
                click.echo(f"tool call: {tc['function']['name']}({tc['function']['arguments']})")
        click.echo(_summary(res), err=True)
    return 0
