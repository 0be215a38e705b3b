"""Building the compact query index (:mod:`knollm.query.index`) from a catalog dict.

:mod:`knollm.query.cache` writes what :func:`build_index` returns (marshal) next to the
full catalog; :class:`knollm.query.index.Index` reads it. Kept apart from ``index`` so that
the cache never imports ``knollm.query.index`` (whose ``Index.load`` imports the cache). Standard library
only at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["QUERY_INDEX_VERSION", "build_index", "model_row"]

#: Version of the marshal index layout written to the cache (not the site's ``index.json``).
QUERY_INDEX_VERSION = 1


def model_row(m: dict[str, Any], capabilities: Sequence[str], price_fields: Sequence[str]) -> tuple:
    pr = m.get("prices") or {}
    cm = m.get("capabilities") or {}
    return (
        m["key"], m["provider"], m["id"], m.get("name"), m["canonical_id"], m.get("family"), m.get("kind"),
        m.get("context_window"), m.get("max_output"),
        tuple(pr.get(f) for f in price_fields),
        tuple(cm.get(c) for c in capabilities),
        tuple(m.get("input_modalities") or ()), tuple(m.get("output_modalities") or ()),
        bool(m.get("free")), m.get("open_weights"), m.get("deprecated"),
        f"{m['key']} {m.get('name') or ''} {m['canonical_id']}".lower(),
        bool(m.get("variable_pricing")),
    )


def _shared(rows: list[tuple]) -> list[tuple]:
    """Make equal values the same object, so :mod:`marshal` writes back-references and
    loading allocates ~4x fewer objects (measured: 40 ms -> 10 ms for 15k rows)."""
    memo: dict[Any, Any] = {}

    def one(x: Any) -> Any:
        if isinstance(x, tuple):
            x = tuple(one(y) for y in x)
        elif x is None or isinstance(x, bool):
            return x
        return memo.setdefault((type(x), x), x)

    return [tuple(one(v) for v in r) for r in rows]


def build_index(cat: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """The index data (marshal-able) of a catalog dict."""
    from knollm.providers import provider_registry
    from knollm.vocab import CAPABILITIES, PRICE_FIELDS

    return {
        "index_version": QUERY_INDEX_VERSION,
        "key": key,
        "capabilities": tuple(CAPABILITIES),
        "price_fields": tuple(PRICE_FIELDS),
        "aliases": provider_registry().aliases(),
        "providers": list(cat["providers"]),
        "rows": _shared([model_row(m, CAPABILITIES, PRICE_FIELDS) for m in cat["models"]]),
        "sources": list(cat.get("sources") or []),
        "generated_at": cat.get("generated_at"),
        "data_date": cat.get("data_date"),
    }
