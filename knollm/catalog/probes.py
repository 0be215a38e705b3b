"""Read ``knollm probe`` results as the catalog source ``probe``.

``knollm probe`` (:mod:`knollm.probe.probes`) writes one JSON file per probed model,
``probe-<provider>_<model>-<UTC time>.json``, into ``work/probes/``::

    {"kind": "probe", "format": 1, "date": "2026-11-23T15:40:00Z", "key": "groq/…",
     "provider": "groq", "model": "…", "cost_usd": …, "announced_usd": …,
     "results": [{"probe": "tools", "capability": "tools", "verdict": "yes"|"no"|"partial"|"error"|"skipped",
                  "detail": "…", "context_window": 8192 (context_limit only), "evidence": {…}}, …],
     "disagreements": [{"field", "catalog", "probe", "detail"}]}

For each (provider, model) and each probe, the newest ``yes`` / ``no`` verdict wins (a
later run of some probes keeps the earlier runs' verdicts on the others). A ``yes`` /
``no`` verdict on a probe with a catalog capability becomes that capability (True /
False); a ``context_limit`` ``yes`` becomes ``context_window``. ``partial``, ``error`` and
``skipped`` say nothing, and leave an older verdict standing.
The layer has the highest precedence for capabilities and the context window (a dated
measurement of this provider's endpoint beats what lists claim); the values it
overrides stay in ``Model.alternatives``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knollm.catalog.diagnostics import Diagnostics
from knollm.vocab import CAPABILITIES

__all__ = ["load_probe_layers", "probes_dir_for"]


def probes_dir_for(dumps: str | Path | None) -> Path | None:
    """Where the probe results for a dump directory live: its sibling ``probes/``
    (``work/model_catalog`` -> ``work/probes``, where ``knollm probe`` writes)."""
    return None if dumps is None else Path(dumps).parent / "probes"


def _layer(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's layer from its probe files, oldest first: per probe, the newest ``yes`` /
    ``no`` verdict decides its field, so a later run of some probes (``--only tools``) keeps
    what an earlier run measured of the others; a newer ``partial`` / ``error`` /
    ``skipped`` says nothing and leaves an older measurement standing."""
    caps: dict[str, bool] = {}
    layer: dict[str, Any] = {}
    shown: dict[str, Any] = {}  # probe -> the verdict behind its field (else its newest)
    measured: dict[str, dict[str, Any]] = {}  # probe -> {date, file} of that verdict
    costs = [d.get("cost_usd") for d in docs if isinstance(d.get("cost_usd"), (int, float))]
    for doc in docs:
        for r in doc.get("results") or []:
            if not isinstance(r, dict):
                continue
            name, verdict = str(r.get("probe")), r.get("verdict")
            decided = verdict in ("yes", "no")
            if not decided and shown.get(name) in ("yes", "no"):
                continue  # an older measurement stands
            shown[name] = verdict
            measured[name] = {"date": doc.get("date"), "file": doc.get("_file")}
            if not decided:
                continue
            cap = r.get("capability")
            if cap in CAPABILITIES:
                caps[cap] = verdict == "yes"
            elif cap == "context_window" and isinstance(r.get("context_window"), int) and r["context_window"] > 0:
                layer["context_window"] = r["context_window"]
    if caps:
        layer["capabilities"] = caps
    newest = docs[-1]
    layer["probe"] = {"date": newest.get("date"), "file": newest.get("_file"), "verdicts": shown,
                      "measured": measured, "files": len(docs), "cost_usd": sum(costs) if costs else None}
    return layer


def load_probe_layers(probes_dir: str | Path | None, diags: Diagnostics) -> dict[tuple[str, str], dict[str, Any]]:
    """(provider, model id) -> the ``probe`` layer of its probe files (see :func:`_layer`).
    An unreadable or malformed file is a warning naming it; the others still count."""
    import orjson

    out: dict[tuple[str, str], dict[str, Any]] = {}
    d = Path(probes_dir) if probes_dir is not None else None
    if d is None or not d.is_dir():
        return out
    docs = []
    for p in sorted(d.glob("probe-*.json")):
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            diags.warn("bad-probe-file", str(p), f"not read: {e}")
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "probe" or not doc.get("provider") or not doc.get("model") \
                or not isinstance(doc.get("results"), list) or not doc.get("date"):
            diags.warn("bad-probe-file", str(p), "not a knollm probe result (kind, provider, model, date, results)")
            continue
        doc["_file"] = p.name
        docs.append(doc)
    per_model: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in sorted(docs, key=lambda x: (str(x["date"]), x["_file"])):
        per_model.setdefault((str(doc["provider"]), str(doc["model"])), []).append(doc)
    return {k: _layer(v) for k, v in per_model.items()}
