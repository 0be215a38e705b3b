"""``knollm serve`` (the OpenAI/Anthropic-compatible gateway) and ``knollm serve keys``."""

from __future__ import annotations

import time

import click

from knollm.cli.filters import PriceType
from knollm.cli.output import emit, emit_json, output_options

__all__ = ["command"]


@click.group("serve", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. A non-loopback address needs at least one gateway key.")
@click.option("--port", type=click.IntRange(1, 65535), default=4000, show_default=True)
@click.option("--lock", "lock", type=click.Path(dir_okay=False), default=None,
              help="Lockfile whose aliases the gateway serves (else $KNOLLM_LOCK).")
@click.option("--catalog", "catalog", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A built catalog JSON to route over (else $KNOLLM_CATALOG, else the cached catalog).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each keeps its own /metrics).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="warning", show_default=True)
@click.pass_context
def command(ctx: click.Context, host: str, port: int, lock: str | None, catalog: str | None, workers: int,
            log_level: str) -> int:
    """Run an OpenAI- and Anthropic-compatible gateway over the Knollm client.

    \b
    Endpoints: POST /v1/chat/completions, POST /v1/responses, POST /v1/messages,
    POST /v1/messages/count_tokens, GET /v1/models, GET /v1/models/{id},
    GET /health, GET /metrics. State (usage ledger, budgets,
    gateway keys) lives in SQLite, or in PostgreSQL when $KNOLLM_DATABASE_URL names one.
    \b
    Example:
      knollm serve --port 4000
      OPENAI_BASE_URL=http://127.0.0.1:4000/v1 OPENAI_API_KEY=unused python app.py
    """
    if ctx.invoked_subcommand is not None:
        return 0
    from knollm.gateway.server import serve

    click.echo(f"knollm gateway on http://{host}:{port}/v1 (Ctrl-C to stop)", err=True)
    serve(host, port, lock=lock, catalog=catalog, workers=workers, log_level=log_level)
    return 0


@command.group("keys")
def keys() -> None:
    """Gateway keys: what callers present to the gateway (stored hashed)."""


def _store():
    from knollm.gateway.keys import KeyStore

    return KeyStore()


def _expires(value: str) -> float:
    """``--expires``: a duration from now (``90m``, ``12h``, ``30d``, ``2w``) or a UTC date
    or time (``2026-12-31``, ``2026-12-31T18:00Z``), as ``knollm usage --since`` reads them."""
    from knollm.cli.cmd_usage import parse_when

    when = parse_when(value, ahead=True)
    if when is None or when <= time.time():
        raise click.BadParameter(f"{value!r} is in the past")
    return when


_EXPIRES_HELP = "Refuse the key from then on: a duration (90m, 12h, 30d, 2w) or a UTC date/time (2026-12-31)."


def _row(k) -> dict:
    d = k.public()
    d["created"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at))
    d["expires"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.expires_at)) if k.expires_at else None
    d["allowed_"] = ",".join(k.allowed) or "*"
    return d


@keys.command("create")
@click.argument("name")
@click.option("--allow", "allowed", multiple=True, metavar="MODEL",
              help="Allowed model/alias (repeatable; '*' globs). Default: any.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens (input + output) per minute.")
@click.option("--budget", "budget", type=PriceType(), default=None, help="USD budget.")
@click.option("--budget-period", "period", type=click.Choice(["day", "month", "total"]), default="total",
              show_default=True, help="What the budget covers: each UTC day, each UTC month, or the key's lifetime.")
@click.option("--expires", "expires", default=None, metavar="WHEN", help=_EXPIRES_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
def create(name: str, allowed: tuple[str, ...], rpm: int | None, tpm: int | None, budget: float | None, period: str,
           expires: str | None, as_json: bool) -> int:
    """Create a key; it is printed once and only its hash is stored.

    \b
    Example: knollm serve keys create ci --allow 'groq/*' --rpm 60 --budget 5 --budget-period month
    """
    key, token = _store().create(name, allowed=list(allowed), rpm=rpm, tpm=tpm, budget_usd=budget,
                                 budget_period=period, expires_at=None if expires is None else _expires(expires))
    if as_json:
        emit_json({"key": token, **key.public()})
    else:
        click.echo(token)
        click.echo(f"created gateway key {key.name!r} (id {key.id}); it is shown only now", err=True)
    return 0


@keys.command("list")
@click.option("--active", is_flag=True, help="Only keys neither revoked nor expired.")
@output_options
def list_(active: bool, output: dict) -> int:
    """Every gateway key (prefix, limits, spend; never the key)."""
    rows = [_row(k) for k in _store().list(include_revoked=not active) if k.active or not active]
    emit([{**r, "allowed": r["allowed_"]} for r in rows],
         ["id", "name", "prefix", "status", "allowed", "rpm", "tpm", "budget_usd", "budget_period", "spent_period_usd",
          "spent_usd", "reserved_usd", "created", "expires"], output,
         json_obj=[{k: v for k, v in r.items() if k != "allowed_"} for r in rows])
    return 0 if rows else 1


@keys.command("update")
@click.argument("ref", metavar="ID|NAME")
@click.option("--allow", "allowed", multiple=True, metavar="MODEL",
              help="Replace the allowed models/aliases (repeatable; '*' globs).")
@click.option("--allow-any", is_flag=True, help="Remove the model restriction.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="New requests-per-minute limit.")
@click.option("--no-rpm", is_flag=True, help="Remove the RPM limit.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="New tokens-per-minute limit.")
@click.option("--no-tpm", is_flag=True, help="Remove the TPM limit.")
@click.option("--budget", "budget", type=PriceType(), default=None, help="New USD budget.")
@click.option("--no-budget", is_flag=True, help="Remove the budget.")
@click.option("--budget-period", "period", type=click.Choice(["day", "month", "total"]), default=None,
              help="What the budget covers from now on (what the key spent this day/month counts).")
@click.option("--expires", "expires", default=None, metavar="WHEN", help=_EXPIRES_HELP)
@click.option("--no-expiry", is_flag=True, help="The key never expires.")
@click.option("--json", "as_json", is_flag=True, help="Print the updated record as JSON.")
def update(ref: str, allowed: tuple[str, ...], allow_any: bool, rpm: int | None, no_rpm: bool, tpm: int | None,
           no_tpm: bool, budget: float | None, no_budget: bool, period: str | None, expires: str | None,
           no_expiry: bool, as_json: bool) -> int:
    """Change a key's limits; the key itself stays the same. Running gateways apply it
    at the key's next request.

    \b
    Example: knollm serve keys update ci --budget 20 --budget-period month
    """
    from knollm.gateway.keys import KEEP

    for flag, other, a, b in ((allow_any, allowed, "--allow-any", "--allow"), (no_rpm, rpm, "--no-rpm", "--rpm"),
                              (no_tpm, tpm, "--no-tpm", "--tpm"),
                              (no_budget, budget, "--no-budget", "--budget"),
                              (no_expiry, expires, "--no-expiry", "--expires")):
        if flag and other not in (None, ()):
            raise click.UsageError(f"{a} and {b} contradict each other")
    changes = {"allowed": () if allow_any else (allowed or KEEP),
               "rpm": None if no_rpm else (KEEP if rpm is None else rpm),
               "tpm": None if no_tpm else (KEEP if tpm is None else tpm),
               "budget_usd": None if no_budget else (KEEP if budget is None else budget),
               "budget_period": KEEP if period is None else period,
               "expires_at": None if no_expiry else (KEEP if expires is None else _expires(expires))}
    if all(v is KEEP for v in changes.values()):
        raise click.UsageError("nothing to change: give --allow, --allow-any, --rpm, --no-rpm, --tpm, --no-tpm, "
                               "--budget, --no-budget, --budget-period, --expires or --no-expiry")
    key = _store().update(ref, **changes)
    if as_json:
        emit_json(key.public())
    else:
        click.echo(f"updated gateway key {key.name!r} (id {key.id}): allowed {','.join(key.allowed) or '*'}, "
                   f"rpm {key.rpm or 'none'}, tpm {key.tpm or 'none'}, budget {key.budget_text()}, expires "
                   f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(key.expires_at)) if key.expires_at else 'never'}",
                   err=True)
    return 0


@keys.command("revoke")
@click.argument("ref", metavar="ID|NAME")
def revoke(ref: str) -> int:
    """Revoke a key (running gateways refuse it from their next request with it).

    A NAME shared by a rotated key (the old one revoked) names the one not revoked."""
    key = _store().revoke(ref)
    click.echo(f"revoked gateway key {key.name!r} (id {key.id})", err=True)
    return 0
