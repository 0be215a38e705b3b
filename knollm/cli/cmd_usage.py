"""``knollm usage``: totals from the client's usage ledger."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

from knollm.cli.output import emit, output_options

__all__ = ["command", "parse_since", "parse_when", "summarize"]

_BY = ("provider", "model", "alias", "key", "tag", "day", "outcome")
_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``7d`` / ``24h`` / ``30m`` ago, or an ISO date/time (UTC if no zone)."""
    return parse_when(text, now=now)


def parse_when(text: str | None, *, ahead: bool = False, now: float | None = None) -> float | None:
    """Epoch seconds of ``text``: a duration (``90m``, ``24h``, ``7d``, ``2w``) before now, or
    after it with ``ahead``; or an ISO date/time (UTC if no zone, ``Z`` accepted)."""
    if not text:
        return None
    now = time.time() if now is None else now
    m = _REL.match(text.strip())
    if m:
        return now + (1 if ahead else -1) * float(m.group(1)) * _UNIT[m.group(2)]
    from datetime import datetime, timezone

    try:
        d = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 7d, 24h or 2026-01-31") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def summarize(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Ledger rows grouped by ``by``: calls, tokens, cost of priced calls, unpriced/estimated/
    interrupted counts (``outcome``: ``ok``, or ``interrupted`` for a stream cut after its
    output started, charged what the provider bills)."""
    from datetime import datetime, timezone

    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        if by == "day":
            g = datetime.fromtimestamp(r["ts"], timezone.utc).strftime("%Y-%m-%d")
        elif by == "model":
            g = f"{r['provider']}/{r['model']}"
        elif by == "key":
            g = r["key_label"] or "(no key)"
        elif by == "tag":
            g = r.get("tag") or "(no tag)"
        elif by == "outcome":
            g = r.get("outcome") or "ok"
        else:
            g = r[by] or "(none)"
        a = groups.setdefault(g, {by: g, "calls": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0,
                                  "cost_usd": 0.0, "unpriced_calls": 0, "estimated_calls": 0,
                                  "interrupted_calls": 0, "saved_usd": 0.0})
        a["calls"] += 1
        for k in ("input_tokens", "output_tokens", "cached_tokens"):
            a[k] += r[k] or 0
        if r["cost_usd"] is None:
            a["unpriced_calls"] += 1
        else:
            a["cost_usd"] += r["cost_usd"]
        a["estimated_calls"] += bool(r["usage_estimated"])
        a["interrupted_calls"] += r.get("outcome") == "interrupted"
        a["saved_usd"] += r.get("saved_usd") or 0.0  # cache hits: what the live call had cost
    out = sorted(groups.values(), key=lambda a: (-a["cost_usd"], a[by]))
    for a in out:
        a["cost_usd"] = round(a["cost_usd"], 10)
        a["saved_usd"] = round(a["saved_usd"], 10)
    return out


def _ledger_rows(db: str | None, since: float | None, tag: str | None,
                 request_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(where, rows): the ledger named by ``--db``, else ``$KNOLLM_DATABASE_URL`` (the one
    ``knollm serve`` replicas share), else the client's SQLite file. A PostgreSQL URL is
    shown with its password masked."""
    import os

    from knollm.client.store import SQLiteStore, default_db_path
    from knollm.gateway.db import is_postgres

    url = db or os.environ.get("KNOLLM_DATABASE_URL") or ""
    if is_postgres(url):
        from knollm.gateway.db import redact_url
        from knollm.gateway.pgstore import PostgresStore

        store = PostgresStore(url)
        try:
            return redact_url(url), store.rows(since, tag=tag, request_id=request_id)
        finally:
            store.close()
    path = Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url) if url else default_db_path()
    return str(path), (SQLiteStore(path).rows(since, tag=tag, request_id=request_id) if path.exists() else [])


def _spooled(db: str | None) -> tuple[Path, int]:
    """The spool of the ledger ``--db`` names (:mod:`knollm.client.spool`), and how many
    rows wait in it: calls answered while the ledger store failed, not in the ledger yet
    (for the default ledger, with the shared spool of earlier versions)."""
    import os

    from knollm.client.spool import legacy_spool, spool_for, waiting

    url = db or os.environ.get("KNOLLM_DATABASE_URL") or None
    spool = spool_for(url)
    n = waiting(spool)
    if url is None or not url.startswith(("postgres://", "postgresql://", "postgresql+psycopg://")):
        from knollm.client.store import default_db_path

        legacy = legacy_spool(default_db_path() if url is None else
                              Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url))
        if legacy is not None:
            n += waiting(legacy)
    return spool, n


@click.command("usage")
@click.option("--since", default=None, help="Only calls since then: 7d, 24h, 30m or an ISO date.")
@click.option("--by", type=click.Choice(_BY), default="provider", show_default=True,
              help="Group by (tag: the caller, e.g. key:<gateway key name>).")
@click.option("--tag", default=None, metavar="TAG", help="Only calls with this caller tag (e.g. key:ci).")
@click.option("--request-id", "request_id", default=None, metavar="ID",
              help="Show the one call with this request id (the gateway's x-request-id, a result's "
                   "request_id): its whole ledger row.")
@click.option("--db", default=None, metavar="FILE|URL",
              help="Ledger: a file, sqlite:///FILE or postgresql://… (default $KNOLLM_DATABASE_URL, "
                   "else $KNOLLM_HOME/knollm.db, else the user data dir).")
@output_options
def command(since: str | None, by: str, tag: str | None, request_id: str | None, db: str | None,
            output: dict) -> int:
    """Calls, tokens and cost from the usage ledger that `knollm chat` and knollm.Client write.

    \b
    cost_usd sums the calls whose price is known; unpriced_calls counts the others
    (never added as $0); estimated_calls had no (or only partial) usage from the
    provider; interrupted_calls are streams cut after their output started (the upstream
    broke or the caller left), charged what the provider bills; --by outcome splits them.
    --tag keeps the calls of one caller (the client's tag=, or key:<name> for a gateway
    key); --by tag groups by caller. --request-id shows one call's whole row instead (the
    id in the gateway's x-request-id header and its answers' knollm object). Exit 1 when the
    ledger has no matching calls.
    """
    t = parse_since(since)
    where, rows = _ledger_rows(db, t, tag, request_id)
    if request_id is not None:
        if not rows:
            click.echo(f"no call {request_id!r} in the ledger {where} (a call answered while the ledger store "
                       "failed waits in the spool until the next settle)", err=True)
            return 1
        from knollm.client.store import LEDGER_COLUMNS

        emit(rows, list(LEDGER_COLUMNS), output)
        return 0
    spool, waiting = _spooled(db)
    if waiting:  # on stderr: the output's shape stays as documented
        click.echo(f"{waiting} call(s) wait in {spool} (answered while the ledger store failed): not counted "
                   "here; the next call that settles writes them to the ledger", err=True)
    agg = summarize(rows, by)
    cols = [by, "calls", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "unpriced_calls",
            "estimated_calls", "interrupted_calls", "saved_usd"]
    if not agg:
        if output["format"] == "json":
            emit([], cols, output)
        else:
            click.echo(f"no calls in the ledger {where}" + (f" tagged {tag!r}" if tag else "")
                       + (f" since {since}" if since else ""), err=True)
        return 1
    emit(agg, cols, output)
    return 0
