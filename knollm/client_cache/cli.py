"""``knollm cache stats|clear|warm FILE``: the client's response cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from knollm.cli.filters import FiniteRange, dumps_option
from knollm.cli.output import emit, emit_json, output_options

__all__ = ["command", "read_prompts"]


def _db_option(f: Any) -> Any:
    return click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
                        help="The cache file (default: cache.db beside the ledger, $KNOLLM_HOME).")(f)


def _cache(db: str | None) -> Any:
    from knollm.client_cache.store import ResponseCache

    return ResponseCache(db)


@click.group("cache")
def command() -> None:
    """The client's response cache: how much it holds and saved, clear it, warm it.

    \b
    The cache is opt-in: knollm.client_cache.CachedClient(client, enabled=True), or
    cache=True per call. It lives in cache.db beside the usage ledger.
    """


@command.command("stats")
@_db_option
@output_options
def stats(db: str | None, output: dict) -> int:
    """Entries, bytes, expired entries, hits, misses, bypassed calls, evictions, the USD saved."""
    with _cache(db) as c:
        s = c.stats()
    if output["format"] == "json":
        emit_json(s)
        return 0
    rate = "-" if s["hit_rate"] is None else f"{s['hit_rate']:.0%}"
    rows = [{"what": k, "value": v} for k, v in (
        ("path", s["path"]), ("entries", s["entries"]), ("bytes", f"{s['bytes']:,} of {s['max_bytes']:,}"),
        ("expired", s["expired"]), ("hits", s["hits"]), ("misses", s["misses"]), ("hit rate", rate),
        ("bypassed", s["bypassed"]), ("evictions", s["evictions"]), ("saved", f"${s['saved_usd']:.6f}"))]
    emit(rows, ["what", "value"], output)
    if s["providers"] and output["format"] == "table":
        click.echo("")
        emit(s["providers"], ["provider", "entries", "bytes", "hits"], output)
    return 0


@command.command("clear")
@click.option("--provider", default=None, help="Only this provider's entries.")
@click.option("--expired", is_flag=True, help="Only expired entries.")
@_db_option
@output_options
def clear(provider: str | None, expired: bool, db: str | None, output: dict) -> int:
    """Delete cached answers (all of them also resets the counters)."""
    with _cache(db) as c:
        n = c.clear(provider, expired)
    emit([{"removed": n}], ["removed"], output, json_obj={"removed": n})
    return 0


def read_prompts(path: str | Path, target: str | None) -> list[dict[str, Any]]:
    """The requests of a prompt file: JSON Lines of ``{"target"?, "messages" | "prompt",
    "system"?, params…}``, or plain text (one prompt per line, needs ``target``). Blank lines
    and ``#`` comments are skipped. ValueError names the file and line."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            try:
                d = json.loads(s)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
        else:
            d = {"prompt": s}
        msgs = d.pop("messages", None)
        if msgs is None:
            if "prompt" not in d:
                raise ValueError(f"{path}:{n}: needs 'messages' or 'prompt'")
            system = d.pop("system", None)
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": d.pop("prompt")}]
        tgt = d.pop("target", None) or target
        if not tgt:
            raise ValueError(f"{path}:{n}: no target (give --target or a 'target' field)")
        out.append({"line": n, "target": tgt, "messages": msgs, "params": d})
    return out


@command.command("warm")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "-t", default=None, help="The target for lines that name none.")
@click.option("--ttl", type=FiniteRange(min=0), default=None, help="Seconds the new entries live (default: the cache's).")
@click.option("--sampled", is_flag=True, help="Also cache requests with temperature > 0.")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A catalog JSON file (from `knollm catalog`) instead of the cached index.")
@_db_option
@dumps_option
@output_options
def warm(file: str, target: str | None, ttl: float | None, sampled: bool, catalog_path: str | None,
         db: str | None, dumps: str, output: dict) -> int:
    """Run every prompt in FILE through the client with the cache on (hits are not re-sent).

    \b
    FILE: JSON Lines ({"target": "groq/llama-3.3-70b-versatile", "prompt": "…",
    "system": "…", "max_tokens": 200} or {"messages": [...]}), or one prompt per line
    with --target. Each line reports what the cache did: hit, stored, bypassed (with
    the reason: temperature > 0 without --sampled) or not stored (the cache did not
    take it). Exit 1 when a request failed.
    """
    from knollm.client import Client
    from knollm.client_cache.wrap import CachedClient
    from knollm.errors import ClientError

    try:
        reqs = read_prompts(file, target)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    catalog: Any
    if catalog_path:
        from knollm.query.api import Catalog

        catalog = Catalog.load(catalog_path)
    else:
        from knollm.cli.filters import load_index

        try:
            catalog = load_index(dumps, quiet=True)
        except Exception:  # noqa: BLE001 - explicit provider/model targets work without a catalog
            catalog = False
    rows, failed = [], 0
    with CachedClient(Client(catalog=catalog), _cache(db), enabled=True, sampled=sampled) as cc:
        for r in reqs:
            try:
                res, outcome, why = cc._chat(r["target"], r["messages"], {"cache_ttl": ttl, **r["params"]})
            except ClientError as e:
                failed += 1
                rows.append({"line": r["line"], "target": r["target"], "result": "error", "provider": None,
                             "cost_usd": None, "reason": None, "error": str(e)})
                continue
            if outcome == "bypassed" and "temperature" in why:
                why = why.replace("pass cache_sampled=True", "--sampled")
            rows.append({"line": r["line"], "target": r["target"], "result": outcome,
                         "provider": f"{res.provider}/{res.model}", "cost_usd": res.cost_usd, "reason": why or None,
                         "error": None})
        st = cc.cache.stats()
    emit(rows, ["line", "target", "result", "provider", "cost_usd", "reason", "error"], output,
         json_obj={"requests": rows, "failed": failed, "cache": st})
    if output["format"] == "table":
        counts = ", ".join(f"{sum(r['result'] == k for r in rows)} {k}"
                           for k in ("hit", "stored", "bypassed", "not stored"))
        click.echo(f"{len(rows)} request(s): {counts}, {failed} failed; cache {st.get('entries', 0)} entries",
                   err=True)
    return 1 if failed else 0
