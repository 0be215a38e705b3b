"""The Hugging Face inference router: one record lists several serving providers.

Each entry of ``providers`` becomes its own offer, id ``<model>:<provider>`` (the router's
own syntax), its fields laid over the model's shared ones.
"""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Offer, Warn
from knollm.catalog.sources.generic import translate as translate_fields

__all__ = ["Raw", "ServingProvider", "translate"]


class ServingProvider(TypedDict, total=False):
    provider: str  # required: an entry without it is skipped with a warning
    status: str  # "live" or e.g. "staging" (then the offer is marked deprecated)
    pricing: dict  # {"input": .., "output": ..} per million (common translator)
    context_length: int
    supports_tools: bool
    supports_structured_output: bool


class Raw(TypedDict, total=False):
    providers: list[ServingProvider]


def translate(rid: str, rec: dict, warn: Warn, sentinels: frozenset = frozenset(),
              price_unit: float | None = None) -> list[Offer]:
    """One router record -> one offer per serving provider (``sentinels`` is not used)."""
    subs = rec.get("providers")
    if not isinstance(subs, list) or not subs:
        return [(None, rid, translate_fields(rid, rec, warn, price_unit=price_unit))]
    base = {k: v for k, v in rec.items() if k != "providers"}
    out: list[Offer] = []
    for sub in subs:
        if not isinstance(sub, dict) or not isinstance(sub.get("provider"), str):
            warn("providers", "entry without a 'provider' name skipped")
            continue
        merged = dict(base)
        merged.update({k: v for k, v in sub.items() if k not in ("provider", "status")})
        oid = f"{rid}:{sub['provider']}"
        fields = translate_fields(oid, merged, warn, price_unit=price_unit)
        fields["name"] = f"{rid} via {sub['provider']}"
        fields["serving_provider"] = sub["provider"]
        if sub.get("status") not in (None, "live"):
            fields["deprecated"] = True
        out.append((None, oid, fields))
    return out
