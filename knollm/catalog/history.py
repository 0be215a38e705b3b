"""First-seen / last-seen dates per model across refreshes.

``work/model_catalog/history.json`` maps each model key (``<dump provider>/<model id>``)
to the first and last date a fetched dump listed it::

    {"history_version": 1, "updated": "2026-11-21",
     "models": {"openai/gpt-4o": {"first_seen": "2026-11-01", "last_seen": "2026-11-21"}}}

``knollm fetch`` calls :func:`update_history` for the providers it fetched successfully
(a provider that failed keeps its old dates: it was not seen, nor known to be gone).
The pipeline reads it with :func:`load_history` and fills ``Model.first_seen`` /
``last_seen`` with :func:`apply_history`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date as _date, datetime, timezone
from pathlib import Path

import orjson

from knollm.catalog.diagnostics import Diagnostics
from knollm.errors import CatalogError
from knollm.catalog.readers import read_dumps

__all__ = ["HISTORY_VERSION", "apply_history", "load_history", "update_history"]

HISTORY_VERSION = 1


def _iso(d: str | _date | datetime | None) -> str:
    if d is None:
        return datetime.now(timezone.utc).date().isoformat()
    if isinstance(d, datetime):
        return d.date().isoformat()
    if isinstance(d, _date):
        return d.isoformat()
    return _date.fromisoformat(str(d)[:10]).isoformat()


def load_history(path: str | Path) -> dict[str, dict[str, str]]:
    """``{model key: {"first_seen": date, "last_seen": date}}``; ``{}`` if there is no file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise CatalogError(f"{path}: cannot read history: {e}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise CatalogError(f"{path}: not a Knollm history file (no 'models' object)")
    return {k: v for k, v in models.items() if isinstance(v, dict)}


def update_history(
    history_path: str | Path,
    dumps_dir: str | Path,
    date: str | _date | datetime | None = None,
    providers: Iterable[str] | None = None,
) -> dict[str, int]:
    """Record that every model in the dumps of ``providers`` (all dumps when None) was seen
    on ``date`` (default: today, UTC). Returns ``{"new": n, "seen": n, "total": n}``."""
    day = _iso(date)
    history_path = Path(history_path)
    models = load_history(history_path)
    wanted = None if providers is None else set(providers)
    new = seen = 0
    for dump in read_dumps(dumps_dir, Diagnostics()):
        if wanted is not None and dump.source not in wanted:
            continue
        for rid, _rec in dump.records:
            key = f"{dump.source}/{rid}"
            entry = models.get(key)
            if entry is None:
                models[key] = {"first_seen": day, "last_seen": day}
                new += 1
            else:
                if not entry.get("first_seen") or day < entry["first_seen"]:
                    entry["first_seen"] = day
                if not entry.get("last_seen") or day > entry["last_seen"]:
                    entry["last_seen"] = day
            seen += 1
    doc = {"history_version": HISTORY_VERSION, "updated": day, "models": dict(sorted(models.items()))}
    from knollm.fsutil import atomic_write

    atomic_write(history_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return {"new": new, "seen": seen, "total": len(models)}


def apply_history(catalog: dict, history: dict[str, dict[str, str]]) -> int:
    """Set ``first_seen`` / ``last_seen`` on the catalog's models found in ``history``
    (by key, else by any ``<dump provider>/<id>`` in the model's ``origin``). Returns the
    number of models dated."""
    n = 0
    for m in catalog.get("models", []):
        entry = history.get(m.get("key", ""))
        if entry is None:
            for origin in m.get("origin") or []:
                src = Path(str(origin)).name
                if src.startswith("models_") and src.endswith(".json"):
                    entry = history.get(f"{src[7:-5]}/{m.get('id')}")
                    if entry:
                        break
        if entry:
            m["first_seen"] = entry.get("first_seen")
            m["last_seen"] = entry.get("last_seen")
            n += 1
    return n
