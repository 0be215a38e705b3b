"""Semantic aliases as data, and choosing their models from the catalog.

An alias (:class:`AliasSpec`) is requirements + a typical token mix + ranking weights. No
model or provider name appears in this module: candidates come from
:meth:`knollm.query.api.Catalog.search` with the alias's requirements, and are ranked by
explained components (each 0..1, weighted per alias):

``cost``     cost of the alias's token mix, log-scaled between the cheapest (1) and dearest (0)
``tier``     1 - cost: price as a proxy for model size (used by ``deep`` only)
``recency``  release date (or creation date): 1 for the newest candidate, 0 two years older
``reach``    how many providers offer the same canonical model meeting the requirements
             (log2 scale, 8+ = 1): widely offered models have same-model fallbacks
``context``  context window headroom over the requirement (16x or more = 1)
``caps``     share of the alias's preferred capabilities known true
``size``     local models: parameter count relative to the largest that fits in memory

Only priced offers are chosen (a known input and output price > 0; unknown is never 0);
free offers are used only when no priced one qualifies. The chain is: the best model's
best offer, the same model on another provider, then the next models, each on a provider
not used yet, until ``chain`` entries (2+ fallbacks on different providers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from knollm.lock.facts import check_requires, search_filters
from knollm.query.cost import Workload, estimate

__all__ = ["AliasSpec", "ALIASES", "PREFER_WEIGHTS", "Chooser", "rank_date"]


@dataclass(frozen=True)
class AliasSpec:
    name: str
    description: str
    requires: dict[str, Any]
    input_tokens: int = 2_000
    output_tokens: int = 500
    weights: dict[str, float] = field(default_factory=dict)
    preferred: tuple[str, ...] = ()
    prefer: str | None = None
    cloud_fallback: bool = False

    @property
    def workload(self) -> Workload:
        return Workload(self.input_tokens, self.output_tokens)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "requires": dict(self.requires),
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "weights": dict(self.weights), "preferred": list(self.preferred), "prefer": self.prefer}


ALIASES: dict[str, AliasSpec] = {a.name: a for a in [
    AliasSpec("fast", "Quick, cheap answers with tool calls: small current models.",
              {"tools": True, "min_context": 32_000, "max_output_price": 1.0}, 1_500, 300,
              {"cost": 0.4, "recency": 0.3, "reach": 0.2, "caps": 0.1}, ("structured_output",)),
    AliasSpec("balanced", "General work: tools and structured output at a mid price.",
              {"tools": True, "structured_output": True, "min_context": 128_000, "max_output_price": 15.0},
              4_000, 800, {"recency": 0.35, "reach": 0.3, "cost": 0.2, "caps": 0.15},
              ("vision", "reasoning")),
    AliasSpec("deep", "Hard multi-step reasoning: the most capable current reasoning models.",
              {"reasoning": True, "tools": True, "min_context": 128_000}, 4_000, 4_000,
              {"recency": 0.35, "reach": 0.25, "tier": 0.25, "caps": 0.15},
              ("structured_output", "vision")),
    AliasSpec("vision", "Images in, text out: screenshots, photos, charts.",
              {"vision": True, "tools": True, "min_context": 32_000}, 3_000, 500,
              {"cost": 0.3, "recency": 0.3, "reach": 0.25, "caps": 0.15}, ("structured_output",)),
    AliasSpec("long_context", "Whole documents or repositories in one prompt.",
              {"min_context": 400_000}, 200_000, 2_000,
              {"cost": 0.4, "context": 0.3, "reach": 0.2, "recency": 0.1}, ("tools",)),
    AliasSpec("cheap", "High-volume simple tasks at the lowest price.",
              {"min_context": 16_000}, 1_000, 300, {"cost": 0.7, "reach": 0.2, "recency": 0.1}, ()),
    AliasSpec("local", "Runs on this machine (local model servers found by `knollm local scan`).",
              {"local_only": True, "min_context": 8_000}, 2_000, 500,
              {"size": 0.5, "caps": 0.3, "context": 0.2}, ("tools", "vision"), prefer="local",
              cloud_fallback=True),
]}

#: what a binding's ``prefer`` does to the ranking weights (fastest: the catalog has no
#: latency data, so the cost of a short mix stands in for model size)
PREFER_WEIGHTS: dict[str, dict[str, float]] = {
    "cheapest": {"cost": 0.8, "reach": 0.1, "recency": 0.1},
    "fastest": {"cost": 0.6, "recency": 0.2, "reach": 0.2},
    "newest": {"recency": 0.7, "reach": 0.2, "cost": 0.1},
}


def rank_date(m: dict[str, Any]) -> str:
    return m.get("release_date") or (m.get("created") or "")[:10]


def _days(a: str, b: str) -> int | None:
    import datetime as dt

    try:
        return (dt.date.fromisoformat(a[:10]) - dt.date.fromisoformat(b[:10])).days
    except ValueError:
        return None


class Chooser:
    """Chooses and explains bindings over one catalog (+ local models).

    ``providers``: allowed provider ids (None = all); ``exclude``: never these;
    ``prefer_providers``: ranked first among equals; ``local``: local model dicts from a
    scan; ``memory``: bytes available for local models (None = unknown, not checked).
    """

    def __init__(self, catalog: Any, *, providers: set[str] | None = None, exclude: set[str] | None = None,
                 prefer_providers: list[str] | None = None, local: list[dict[str, Any]] | None = None,
                 memory: int | None = None, local_only: bool = False, budget: dict[str, float] | None = None,
                 require_key: bool = False) -> None:
        self.cat = catalog
        self.providers = providers
        self.exclude = exclude or set()
        self.prefer_providers = list(prefer_providers or [])
        self.local = list(local or [])
        self.memory = memory
        self.local_only = local_only
        self.budget = dict(budget or {})
        self.require_key = require_key
        self._facts: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ provider facts
    def facts(self, pid: str) -> dict[str, Any]:
        if pid not in self._facts:
            from knollm.lock._providers import provider_facts

            self._facts[pid] = provider_facts(pid, self.cat)
        return self._facts[pid]

    def model(self, key: str) -> dict[str, Any]:
        """A catalog or local model by key (raises the catalog's NotFoundError)."""
        for m in self.local:
            if m["key"] == key:
                return m
        return self.cat.model(key)

    def is_local(self, m: dict[str, Any]) -> bool:
        """Whether model ``m`` runs on this machine: a scanned local model, or a model of a local
        provider; never one the scan found to run elsewhere (``local = false``: an Ollama cloud
        model) or named as an Ollama cloud model."""
        from knollm.lock.local import is_cloud_model

        if m.get("local") is False or is_cloud_model(m.get("provider"), m.get("id")):
            return False
        return bool(m.get("local")) or self.facts(m["provider"]).get("kind") == "local"

    def provider_skip(self, pid: str) -> str | None:
        """Why provider ``pid`` cannot be used here, or None."""
        from knollm.lock._providers import key_set

        if pid in self.exclude:
            return "provider excluded by user config"
        if self.providers is not None and pid not in self.providers:
            return "provider not available (user config / --from-keys)"
        f = self.facts(pid)
        if f.get("kind") == "local":
            return None
        if not f.get("key_env") and not f.get("base_url"):
            return "no known API endpoint or key variable for this provider"
        if self.require_key and not key_set(f):
            names = ", ".join(f.get("key_env") or ()) or "?"
            return f"no API key set ({names})"
        return None

    def memory_skip(self, m: dict[str, Any]) -> str | None:
        need = m.get("memory_estimate")
        if self.memory is None or need is None:
            return None
        if need > self.memory:
            return f"needs ~{need / 2**30:.1f} GiB, machine has {self.memory / 2**30:.1f} GiB"
        return None

    # ------------------------------------------------------------------ candidates
    def requirements(self, spec: AliasSpec, requires: dict[str, Any] | None = None) -> dict[str, Any]:
        req = dict(spec.requires if requires is None else requires)
        for k, v in self.budget.items():
            if v is not None and (req.get(k) is None or v < req[k]):
                req[k] = v
        if self.local_only:
            req["local_only"] = True
        return req

    def candidates(self, req: dict[str, Any], w: Workload) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Offers meeting ``req`` with a known cost for ``w``: ``[{model, cost}]`` and skip counts."""
        skipped: dict[str, int] = {}

        def skip(reason: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1

        if req.get("local_only"):
            pool = [m for m in self.local if m.get("kind") == "chat" and self.is_local(m)]
        else:
            pool = self.cat.search(**search_filters(req))
        out = []
        free = []
        for m in pool:
            failed, unknown = check_requires(m, req, local=self.is_local(m))
            if failed or unknown:
                skip("requirements not met or unknown")
                continue
            why = self.provider_skip(m["provider"])
            if why:
                skip(why)
                continue
            if self.is_local(m) and not req.get("local_only"):
                skip("local model (only for local roles)")
                continue
            if self.is_local(m):
                why = self.memory_skip(m)
                if why:
                    skip("does not fit in memory")
                    continue
                out.append({"model": m, "cost": 0.0})
                continue
            if m.get("variable_pricing"):
                skip("variable pricing")
                continue
            per = estimate(m, w)["per_request"]
            if per is None:
                skip("price unknown")
                continue
            (free if per <= 0 else out).append({"model": m, "cost": per})
        if not out and free:
            out = free  # free offers only when nothing priced qualifies
        elif free:
            skipped["free offer (priced offers preferred)"] = len(free)
        return out, skipped

    # ------------------------------------------------------------------ ranking
    def rank(self, spec: AliasSpec, offers: list[dict[str, Any]], weights: dict[str, float],
             req: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per canonical model (its cheapest offer), best first, each component explained."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for o in offers:
            groups.setdefault(o["model"]["canonical_id"], []).append(o)
        rows = []
        for cid, offs in groups.items():
            offs.sort(key=lambda o: (self._pref_rank(o["model"]["provider"]), o["cost"], o["model"]["key"]))
            rows.append({"canonical_id": cid, "offers": offs, "best": offs[0],
                         "providers": sorted({o["model"]["provider"] for o in offs})})
        if not rows:
            return []
        pos = [r["best"]["cost"] for r in rows if r["best"]["cost"] > 0]
        lo, hi = (math.log(min(pos)), math.log(max(pos))) if pos else (0.0, 0.0)
        dates = [d for r in rows for d in [max(rank_date(o["model"]) for o in r["offers"])] if d]
        newest = max(dates) if dates else ""
        need_ctx = req.get("min_context") or 8_000
        sizes = [r["best"]["model"].get("parameters") or 0 for r in rows]
        big = max(sizes) if sizes else 0
        for r in rows:
            m, c = r["best"]["model"], r["best"]["cost"]
            comp: dict[str, dict[str, Any]] = {}
            cf = 1.0 if c <= 0 or hi <= lo else 1.0 - (math.log(c) - lo) / (hi - lo)
            per_m = c * 1000
            comp["cost"] = {"factor": cf, "detail": f"${per_m:.4g} per 1k requests of "
                            f"{spec.input_tokens:,} in/{spec.output_tokens:,} out"}
            comp["tier"] = {"factor": 1.0 - cf if c > 0 else 0.0, "detail": "price as a size proxy"}
            d = max(rank_date(o["model"]) for o in r["offers"])
            age = _days(newest, d) if d and newest else None
            comp["recency"] = {"factor": max(0.0, 1 - age / 730) if age is not None else 0.0,
                               "detail": f"released {d}" if d else "release date unknown"}
            n = len(r["providers"])
            comp["reach"] = {"factor": min(1.0, math.log2(n) / 3) if n > 1 else 0.0,
                             "detail": f"offered by {n} provider(s) meeting the requirements"}
            ctx = m.get("context_window") or 0
            comp["context"] = {"factor": max(0.0, min(1.0, math.log2(ctx / need_ctx) / 4)) if ctx else 0.0,
                               "detail": f"{ctx:,} tokens"}
            caps = m.get("capabilities") or {}
            have = [p for p in spec.preferred if caps.get(p) is True]
            comp["caps"] = {"factor": len(have) / len(spec.preferred) if spec.preferred else 1.0,
                            "detail": f"preferred {len(have)}/{len(spec.preferred)}"
                            + (f" ({','.join(have)})" if have else "")}
            size = m.get("parameters") or 0
            comp["size"] = {"factor": size / big if big else 0.0,
                            "detail": f"{size / 1e9:.1f}B parameters" if size else "size unknown"}
            used = {k: d for k, d in comp.items() if weights.get(k)}
            for k, dd in used.items():
                dd["weight"] = weights[k]
                dd["points"] = round(100 * weights[k] * dd["factor"], 2)
            r["components"] = used
            r["score"] = round(sum(dd["points"] for dd in used.values()), 2)
        rows.sort(key=lambda r: (-r["score"], self._pref_rank(r["best"]["model"]["provider"]), r["best"]["cost"],
                                 r["canonical_id"]))
        return rows

    def _pref_rank(self, pid: str) -> int:
        return self.prefer_providers.index(pid) if pid in self.prefer_providers else len(self.prefer_providers)

    def weights_for(self, spec: AliasSpec, prefer: str | None) -> dict[str, float]:
        return PREFER_WEIGHTS.get(prefer or "", spec.weights)

    # ------------------------------------------------------------------ choosing
    def choose(self, spec: AliasSpec, *, requires: dict[str, Any] | None = None, prefer: str | None = None,
               chain: int = 3) -> dict[str, Any]:
        """``{"alias", "requires", "models": [key…], "ranking": rows, "skipped", "candidates"}``."""
        req = self.requirements(spec, requires)
        offers, skipped = self.candidates(req, spec.workload)
        rows = self.rank(spec, offers, self.weights_for(spec, prefer or spec.prefer), req)
        models: list[dict[str, Any]] = []
        used: set[str] = set()
        for i, r in enumerate(rows):
            if len(models) >= chain:
                break
            take = [o for o in r["offers"] if o["model"]["provider"] not in used]
            # first model: its best offer + the same model on one other provider
            for o in take[: 2 if i == 0 else 1]:
                if len(models) < chain:
                    models.append(o["model"])
                    used.add(o["model"]["provider"])
        if req.get("local_only") and spec.cloud_fallback and not self.local_only:
            cloud = dict(req)
            cloud.pop("local_only", None)
            back = self.choose(ALIASES["balanced"], requires={**ALIASES["balanced"].requires,
                                                               **{k: v for k, v in cloud.items()
                                                                  if k != "min_context"}}, chain=2)
            have = {m["key"] for m in models}
            models += [m for m in back["model_dicts"] if m["key"] not in have]
        return {"alias": spec.name, "requires": req, "models": [m["key"] for m in models],
                "model_dicts": models, "ranking": rows, "skipped": skipped, "candidates": len(offers)}
