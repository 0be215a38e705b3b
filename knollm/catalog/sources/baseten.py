"""Baseten: an authoritative ``supported_features`` list."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Put, Spec, lower_list, translator

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    supported_features: list[str]  # "tools", "structured_outputs", "json_mode", "reasoning"; absence means no


def _capabilities(rec: dict, put: Put) -> None:
    feats = rec.get("supported_features")
    if isinstance(feats, list):
        fs = set(lower_list(feats))
        put("tools", "tools" in fs)
        put("structured_output", "structured_outputs" in fs)
        put("json_mode", "json_mode" in fs)
        put("reasoning", "reasoning" in fs)


SPEC = Spec(capabilities=_capabilities)
translate = translator(SPEC)
