"""Provider facts the lock needs (key env vars, kind, base URL), read in ONE place.

Uses the unified provider registry (``knollm.providers.provider_registry``) when it is
available and falls back to today's ``provider_table()`` plus the catalog's provider
records, so switching to the registry only touches :func:`provider_facts`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["provider_facts", "key_set"]


def provider_facts(pid: str, catalog: Any = None) -> dict[str, Any]:
    """``{"id", "kind", "key_env": tuple, "base_url"}`` for provider ``pid`` (unknown: empty facts)."""
    try:
        from knollm.providers import provider_registry  # type: ignore[attr-defined]
    except ImportError:
        provider_registry = None
    if provider_registry is not None:
        reg = provider_registry()
        p = reg.find(pid)
        if p is not None:
            return {"id": p.id, "kind": p.kind, "key_env": tuple(p.api.key_env or ()), "base_url": p.api.base_url}
    from knollm.providers import provider_table

    table = provider_table()
    rid = table.resolve(pid)
    info = table.providers.get(rid)
    facts: dict[str, Any] = {"id": rid, "kind": None, "key_env": (), "base_url": None}
    if info is not None:
        facts.update(kind=info.kind, key_env=tuple(info.env or ()), base_url=info.base_url)
    if catalog is not None:
        rec = getattr(catalog, "_by_provider_id", {}).get(rid)
        if rec:
            facts["kind"] = facts["kind"] or rec.get("kind")
            facts["key_env"] = facts["key_env"] or tuple(rec.get("api_key_env") or ())
            facts["base_url"] = facts["base_url"] or rec.get("base_url")
    return facts


def key_set(facts: dict[str, Any]) -> str | None:
    """The name (never the value) of the first key env var that is set, else None."""
    for name in facts.get("key_env") or ():
        if os.environ.get(name):
            return name
    return None
