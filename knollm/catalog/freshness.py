"""When was each provider's data fetched? (Not the newest model ``created`` date.)

A provider's data date is, first found wins:

1. ``fetch report`` – the ``finished_at`` of the newest fetch report in the dump directory
   (``fetch-report.json`` / ``fetch_report.json`` / ``report.json``, as written by
   ``knollm fetch --report FILE``) whose result for that provider is ``ok``;
2. ``history`` – the newest ``last_seen`` of the provider's models in ``history.json``
   (written by every ``knollm fetch``);
3. ``file`` – the dump file's own capture date (its modification time).

A registry's data date is the newest ``last_updated`` of its entries where the package
has one (models.dev), else unknown; its package version is always given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["REPORT_NAMES", "dump_dates", "newest"]

#: fetch report file names looked for in the dump directory
REPORT_NAMES = ("fetch-report.json", "fetch_report.json", "report.json")


def _report_dates(directory: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in REPORT_NAMES:
        p = directory / name
        if not p.is_file():
            continue
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        when = str(doc.get("finished_at") or doc.get("started_at") or "")[:10] if isinstance(doc, dict) else ""
        if not when:
            continue
        for r in doc.get("results") or []:
            if isinstance(r, dict) and r.get("status") == "ok" and r.get("id"):
                key = Path(str(r.get("dump") or f"models_{r['id']}.json")).name
                if when > out.get(key, ""):
                    out[key] = when
    return out


def _history_dates(directory: Path) -> dict[str, str]:
    p = directory / "history.json"
    if not p.is_file():
        return {}
    try:
        doc = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    out: dict[str, str] = {}
    for key, entry in ((doc or {}).get("models") or {}).items() if isinstance(doc, dict) else ():
        src = str(key).split("/", 1)[0]
        last = str((entry or {}).get("last_seen") or "")[:10] if isinstance(entry, dict) else ""
        name = f"models_{src}.json"
        if last and last > out.get(name, ""):
            out[name] = last
    return out


def dump_dates(directory: str | Path | None, files: list[Path]) -> dict[str, tuple[str, str]]:
    """``{dump file name: (YYYY-MM-DD, how)}``; how is ``fetch report``, ``history`` or ``file``."""
    out: dict[str, tuple[str, str]] = {}
    if directory is None:
        return out
    d = Path(directory)
    reports, history = _report_dates(d), _history_dates(d)
    for f in files:
        name = f.name
        if name in reports:
            out[name] = (reports[name], "fetch report")
        elif name in history:
            out[name] = (history[name], "history")
        else:
            try:
                out[name] = (datetime.fromtimestamp(f.stat().st_mtime, UTC).strftime("%Y-%m-%d"), "file")
            except OSError:
                continue
    return out


def newest(dates: list[str | None]) -> str | None:
    known = [x for x in dates if x]
    return max(known) if known else None

