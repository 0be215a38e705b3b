"""``knollm providers list|show`` (reads only the compact cached index)."""

from __future__ import annotations

from typing import Any

import click

from knollm.cli.filters import complete_provider, dumps_option, load_index
from knollm.cli.output import emit, output_options

__all__ = ["command", "provider_summary"]

_FIELDS = ("id", "name", "kind", "api_shape", "base_url", "docs_url", "api_key_env", "model_count", "dump_file",
           "sources")


def provider_summary(p: dict[str, Any]) -> dict[str, Any]:
    """The stable JSON shape of a provider in ``providers list``."""
    return {k: p.get(k) for k in _FIELDS}


@click.group("providers")
def command() -> None:
    """List providers or show one (calling facts, model count, sources)."""


@command.command("list")
@click.option("--with-dump", is_flag=True, help="Only providers with a model-list dump.")
@click.option("--sort", type=click.Choice(["id", "models"]), default="id", show_default=True)
@dumps_option
@output_options
def list_(with_dump: bool, sort: str, dumps: str, output: dict) -> int:
    """Every provider in the catalog.

    \b
    Example: knollm providers list --with-dump --sort models
    """
    idx = load_index(dumps)
    provs = [provider_summary(p) for p in idx.providers if not with_dump or p.get("dump_file")]
    if sort == "models":
        provs.sort(key=lambda p: (-(p["model_count"] or 0), p["id"]))
    else:
        provs.sort(key=lambda p: p["id"])
    cells = [{**p, "models": p["model_count"], "dump": "yes" if p["dump_file"] else "",
              "sources": ",".join(p["sources"] or [])} for p in provs]
    emit(cells, ["id", "name", "models", "dump", "api_shape", "sources"], output, json_obj=provs)
    return 0 if provs else 1


@command.command("show")
@click.argument("provider_id", metavar="ID", shell_complete=complete_provider)
@click.option("--models", "n_models", type=click.IntRange(min=0), default=10, show_default=True,
              help="List this many of its cheapest models (0: none).")
@dumps_option
@output_options
def show(provider_id: str, n_models: int, dumps: str, output: dict) -> int:
    """One provider: how to call it, where its data came from, and its cheapest models.

    \b
    Example: knollm providers show groq
    """
    from knollm.cli.cmd_models import summary_cells

    idx = load_index(dumps)
    p = idx.provider(provider_id)
    pos = idx.search_positions(providers=[p["id"]], sort="price", include_deprecated=True)
    models = [idx.summary(idx.rows[i]) for i in pos]
    priced = sum(1 for m in models if m["prices"]["input"] is not None)
    data = {**p, "models": {"count": len(models), "priced": priced,
                            "cheapest": models[:n_models] if n_models else []}}
    checked = dict(zip(("checked", "unverified"), _checked(p["id"])))
    data.update(checked)
    if output["format"] != "table":
        fields = [{"field": k, "value": v if not isinstance(v, (list, dict)) else str(v)}
                  for k, v in {**p, **checked}.items()]
        emit(fields, ["field", "value"], output, json_obj=data)
        return 0
    lines = []
    for k in ("id", "name", "kind", "base_url", "docs_url", "api_shape"):
        lines.append(f"{k:<14}{p.get(k) if p.get(k) is not None else '?'}")
    lines.append(f"{'api_key_env':<14}{', '.join(p.get('api_key_env') or []) or '?'}")
    lines.append(f"{'sources':<14}{', '.join(p.get('sources') or [])}")
    if p.get("dump_file"):
        lines.append(f"{'dump':<14}{p['dump_file']} ({p.get('dump_shape')})")
    if p.get("registry_ids"):
        lines.append(f"{'registry ids':<14}{', '.join(f'{a}={b}' for a, b in p['registry_ids'].items())}")
    fs = p.get("field_sources") or {}
    if fs:
        lines.append(f"{'field sources':<14}{', '.join(f'{a}={b}' for a, b in fs.items())}")
    lines.append(f"{'checked':<14}{checked['checked'] or 'not yet'}")
    if checked["unverified"]:
        lines.append(f"{'unverified':<14}{checked['unverified']}")
    lines.append(f"{'models':<14}{len(models)} ({priced} priced)")
    click.echo("\n".join(lines))
    if n_models and models:
        click.echo("")
        emit([summary_cells(m) for m in models[:n_models]], ["key", "input", "output", "context", "caps"], output)
    return 0


def _checked(pid: str) -> tuple[str | None, str | None]:
    """When the registry's calling facts were checked against the docs, and what stayed unverified.

    Read with tomllib from the packaged registry (validated wherever it is loaded in full):
    importing :mod:`knollm.providers` would pull pydantic into this fast path (~0.4 s)."""
    import tomllib
    from importlib.resources import files

    try:
        entry = tomllib.loads((files("knollm") / "data" / "providers.toml").read_text("utf-8"))["providers"][pid]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None, None
    checked, unverified = entry.get("checked"), entry.get("unverified")
    return (str(checked) if checked else None), (" ".join(unverified.split()) if unverified else None)


@command.command("health")
@click.option("--window", default="7d", show_default=True, help="Time window: 30m, 24h, 7d, 2w.")
@click.option("--by", type=click.Choice(["provider", "model"]), default="provider", show_default=True)
@click.option("--probes", "probes_dir", type=click.Path(file_okay=False), default="work/probes", show_default=True,
              help="Directory of probe / benchmark results.")
@click.option("--no-ledger", is_flag=True, help="Ignore the client's usage ledger.")
@output_options
def health(window: str, by: str, probes_dir: str, no_ledger: bool, output: dict) -> int:
    """Success rate and latency per provider (or model) from probes, benchmarks and the ledger.

    \b
    The ledger keeps successful calls only: failures come from probes and benchmarks.
    Example: knollm providers health --window 24h --by model
    """
    from knollm.probe.health import health as compute, parse_window

    try:
        secs = parse_window(window)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--window") from None
    figs = [f.as_dict() for f in compute(secs, by=by, probes_dir=probes_dir, store=False if no_ledger else None)]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    rows = [{"provider": f["provider"], "model": f["model"] or "", "calls": f["n"],
             "ok %": f"{f['success_rate'] * 100:.1f}", "ttft p50": ms(f["ttft_p50_ms"]),
             "lat p50": ms(f["latency_p50_ms"]), "lat p95": ms(f["latency_p95_ms"]),
             "tok/s": ("≈" if f.get("tokens_per_s_estimated") else "") + ms(f["tokens_per_s_p50"]),
             "sources": ",".join(f["sources"]), "last": f["last"]} for f in figs]
    cols = ["provider"] + (["model"] if by == "model" else []) + ["calls", "ok %", "ttft p50", "lat p50", "lat p95",
                                                                  "tok/s", "sources", "last"]
    emit(rows, cols, output, json_obj=figs)
    return 0 if figs else 1
