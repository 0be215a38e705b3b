"""Provider facts the lock needs (key env vars, kind, base URL), read in ONE place.

The one provider registry (``knollm.providers.provider_registry``), completed by the
catalog's provider records for providers the registry does not describe.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["provider_facts", "key_set"]


def provider_facts(pid: str, catalog: Any = None) -> dict[str, Any]:
    """``{"id", "kind", "key_env": tuple, "base_url"}`` for provider ``pid``: the provider
    registry first, then the catalog's provider record (registry facts filled from
    models.dev) for what the registry does not say. Unknown provider: empty facts."""
    from knollm.providers import provider_registry

    reg = provider_registry()
    rid = reg.resolve(pid)
    facts: dict[str, Any] = {"id": rid, "kind": None, "key_env": (), "base_url": None}
    p = reg.providers.get(rid)
    if p is not None:
        facts.update(kind=p.kind, key_env=tuple(p.api.key_env), base_url=p.api.base_url)
    if catalog is not None and (not facts["key_env"] or not facts["base_url"] or not facts["kind"]):
        rec = catalog.provider_by_id(rid) if hasattr(catalog, "provider_by_id") else None
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
