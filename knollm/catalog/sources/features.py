"""The ``features`` list shared by Novita and Featherless."""

from __future__ import annotations

from knollm.catalog.sources.generic import Put, lower_list

__all__ = ["feature_caps"]

_FEATURES = (
    ("tools", ("function-calling", "tool_use", "tools", "function_calling")),
    ("structured_output", ("structured-outputs", "structured_output")),
    ("reasoning", ("reasoning",)),
    ("vision", ("vision",)),
)


def feature_caps(rec: dict, put: Put, *, authoritative: bool) -> None:
    """Read ``features``; when ``authoritative``, a capability not listed is False."""
    feats = rec.get("features")
    if not isinstance(feats, list):
        return
    fs = set(lower_list(feats))
    for cap, names in _FEATURES:
        hit = any(n in fs for n in names)
        if hit or authoritative:
            put(cap, hit)
