"""Transparent model ranking for a use case, computed from catalog data only.

A use case is *data* (:data:`USE_CASES`): a typical token mix per request, required and
preferred capabilities, a minimum context and the model kinds that fit. No model or
provider name appears anywhere in this module.

Candidates are the catalog models (via :meth:`Catalog.search`, the shared filter
semantics) that have every required capability known true, the minimum context, a
known price for the token mix that is not marked suspect and, with ``budget``, a cost per 1,000 requests within
it. Each candidate's score (0-100) is the sum of weighted components, each explained:

``price`` (:data:`WEIGHTS`)
    cost per request of the use case's mix (:func:`knollm.query.cost.estimate`), placed on a
    log scale between the cheapest and the dearest candidate: cheapest = full points.
``context``
    headroom over what the use case needs: ``log2(context / need) / 3`` capped at 1
    (8x the need or more = full points).
``capabilities``
    share of the *preferred* capabilities that are known true (unknown earns nothing).
``confidence``
    how well sourced the model's price, context and capability values are: per field a
    source weight (:data:`SOURCE_WEIGHT`: the provider's own dump highest, a name-based
    inference lowest), times the registry join quality (:data:`JOIN_WEIGHT`).
``deprecated``
    a penalty (deprecated models appear only with ``include_deprecated``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from knollm.query.cost import Workload, estimate
from knollm.query.filters import Filters
from knollm.errors import FilterError

__all__ = ["UseCase", "USE_CASES", "WEIGHTS", "SOURCE_WEIGHT", "JOIN_WEIGHT", "recommend"]


@dataclass(frozen=True)
class UseCase:
    name: str
    description: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    required: tuple[str, ...] = ()
    preferred: tuple[str, ...] = ()
    min_context: int = 8_000
    kinds: tuple[str, ...] = ("chat",)
    modalities: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("required", "preferred", "kinds", "modalities"):
            d[k] = list(d[k])
        return d


USE_CASES: dict[str, UseCase] = {u.name: u for u in [
    UseCase("chat", "General assistant chat: short prompts, medium answers.", 1_500, 400,
            preferred=("tools", "structured_output", "vision"), min_context=16_000),
    UseCase("coding", "Code generation / editing with file context and tool calls.", 12_000, 1_500,
            required=("tools",), preferred=("reasoning", "structured_output", "prompt_caching"), min_context=64_000),
    UseCase("agents", "Tool-using agents: long multi-step prompts, many tool calls.", 8_000, 800, cached_tokens=4_000,
            required=("tools",), preferred=("structured_output", "reasoning", "prompt_caching"), min_context=32_000),
    UseCase("rag", "Retrieval-augmented answers over long retrieved context.", 16_000, 500, cached_tokens=2_000,
            preferred=("prompt_caching", "structured_output"), min_context=32_000),
    UseCase("extraction", "Structured extraction from documents into JSON.", 4_000, 600,
            preferred=("structured_output", "json_mode", "pdf_input"), min_context=16_000),
    UseCase("summarization", "Summarize long documents.", 30_000, 800,
            preferred=("prompt_caching",), min_context=64_000),
    UseCase("vision", "Understand images (screenshots, photos, charts).", 3_000, 500,
            required=("vision",), preferred=("structured_output", "tools"), min_context=16_000),
    UseCase("reasoning", "Hard multi-step reasoning / math.", 2_000, 6_000,
            required=("reasoning",), preferred=("tools", "structured_output"), min_context=32_000),
    UseCase("long-context", "Whole-book / whole-repo prompts.", 200_000, 2_000,
            preferred=("prompt_caching",), min_context=200_000),
    UseCase("classification", "High-volume short classification / routing.", 500, 10,
            preferred=("structured_output", "json_mode"), min_context=4_000),
    UseCase("embedding", "Text embeddings for search.", 500, 0, kinds=("embedding",), min_context=512),
]}

WEIGHTS: dict[str, float] = {"price": 40.0, "context": 15.0, "capabilities": 25.0, "confidence": 20.0}
DEPRECATED_PENALTY = 30.0

SOURCE_WEIGHT: dict[str, float] = {"dump": 1.0, "genai-prices": 0.9, "models.dev": 0.9, "litellm": 0.7,
                                   # another provider's models.dev entry (JOIN_WEIGHT discounts the join too)
                                   "models.dev~canonical": 0.9, "models.dev~family": 0.9, "inferred": 0.4}
JOIN_WEIGHT: dict[str, float] = {"exact": 1.0, "alias": 1.0, "canonical": 0.85, "family": 0.6}


def _confidence(m: dict[str, Any], caps: list[str]) -> tuple[float, str]:
    fields = ["prices.input", "prices.output", "context_window"] + [f"capabilities.{c}" for c in caps]
    src = m.get("sources") or {}
    vals = []
    counts: dict[str, int] = {}
    for f in fields:
        s = src.get(f)
        vals.append(SOURCE_WEIGHT.get(s, 0.0) if s else 0.0)
        counts[s or "unknown"] = counts.get(s or "unknown", 0) + 1
    joins = m.get("joins") or {}
    jw = min((JOIN_WEIGHT.get(q, 0.5) for q in joins.values()), default=1.0)
    conf = (sum(vals) / len(vals)) * jw
    detail = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    if joins:
        detail += "; joins " + ",".join(f"{r}={q}" for r, q in joins.items())
    return conf, detail


def recommend(
    catalog: Any,
    use_case: str | UseCase,
    *,
    budget: float | None = None,
    needs: list[str] | None = None,
    workload: Workload | None = None,
    filters: Filters | dict[str, Any] | None = None,
    distinct: bool = True,
    include_free: bool = False,
    limit: int | None = 10,
) -> dict[str, Any]:
    """Rank ``catalog`` models for ``use_case``; ``budget``: max USD per 1,000 requests.

    Models whose cost for the mix is $0 (free tiers, previews) are left out unless
    ``include_free`` or ``filters["free"]`` - their zero price would win every ranking. So are
    models whose estimate uses a price marked suspect (listed in ``excluded_suspect``).

    Returns ``{"use_case", "workload", "weights", "candidates", "excluded_free", "excluded_suspect",
    "results": [row…]}``; each row
    has ``rank``, ``key``, ``score`` (0-100), ``cost_per_request``, ``cost_per_1k_requests``,
    ``components`` (``{name: {"points", "max", "value", "detail"}}``), ``why`` (one line)
    and ``model`` (the catalog model dict).
    """
    if budget is not None and not (math.isfinite(budget) and budget >= 0):  # nan would pass every model
        raise FilterError(f"budget must be a finite USD amount >= 0, not {budget!r}")
    uc = USE_CASES[use_case] if isinstance(use_case, str) else use_case
    w = workload or Workload(uc.input_tokens, uc.output_tokens, uc.cached_tokens)
    required = list(dict.fromkeys(list(uc.required) + list(needs or [])))
    preferred = [c for c in uc.preferred if c not in required]
    need_ctx = max(uc.min_context, w.input_tokens + w.output_tokens)
    f = Filters.of(filters)
    f = f.replace(
        limit=None, sort="name",
        capabilities=tuple(dict.fromkeys(f.capabilities + tuple(required))),
        min_context=max(f.min_context or 0, need_ctx),
        kinds=f.kinds or tuple(uc.kinds),
        modalities=f.modalities or tuple(uc.modalities or ()),
    )
    include_free = include_free or bool(f.free)
    pool = []
    excluded_free = 0
    excluded_suspect: list[str] = []
    for m in catalog.search(f):
        e = estimate(m, w)
        if e["per_request"] is None:
            continue
        if e["suspect"]:  # a suspect price never ranks (nor stretches the price scale)
            excluded_suspect.append(m["key"])
            continue
        if e["per_request"] <= 0 and not include_free:
            excluded_free += 1
            continue
        per1k = e["per_request"] * 1000
        if budget is not None and per1k > budget:
            continue
        pool.append((m, e["per_request"]))
    costs = [c for _, c in pool]
    pos_costs = [c for c in costs if c > 0]
    lo = math.log(min(pos_costs)) if pos_costs else 0.0
    hi = math.log(max(pos_costs)) if pos_costs else 0.0
    rows = []
    for m, c in pool:
        comp: dict[str, dict[str, Any]] = {}
        if c <= 0:
            pf = 1.0
        elif hi > lo:
            pf = 1.0 - (math.log(c) - lo) / (hi - lo)
        else:
            pf = 1.0
        comp["price"] = {"value": c, "factor": round(pf, 4),
                         "detail": f"${c * 1000:.4g} per 1k requests ({w.input_tokens:,} in/{w.output_tokens:,} out)"}
        ctx = m.get("context_window") or 0
        cf = max(0.0, min(1.0, math.log2(ctx / need_ctx) / 3)) if ctx and need_ctx else 0.0
        comp["context"] = {"value": ctx, "factor": round(cf, 4),
                           "detail": f"{ctx:,} tokens = {ctx / need_ctx:.1f}x the {need_ctx:,} needed"}
        caps = m.get("capabilities") or {}
        have = [p for p in preferred if caps.get(p) is True]
        capf = len(have) / len(preferred) if preferred else 1.0
        miss = [p for p in preferred if caps.get(p) is not True]
        comp["capabilities"] = {
            "value": have, "factor": round(capf, 4),
            "detail": (f"required {'+'.join(required)} known; " if required else "")
            + (f"preferred {len(have)}/{len(preferred)}" + (f" (has {','.join(have)})" if have else "")
               + (f" (missing/unknown {','.join(miss)})" if miss else "") if preferred else "no preferences"),
        }
        conf, detail = _confidence(m, required + preferred)
        comp["confidence"] = {"value": round(conf, 4), "factor": round(conf, 4), "detail": f"sources {detail}"}
        for k, d in comp.items():
            d["max"] = WEIGHTS[k]
            d["points"] = round(WEIGHTS[k] * d["factor"], 2)
        score = sum(d["points"] for d in comp.values())
        if m.get("deprecated"):
            comp["deprecated"] = {"value": True, "factor": -1.0, "max": 0.0, "points": -DEPRECATED_PENALTY,
                                  "detail": "deprecated by the provider"}
            score -= DEPRECATED_PENALTY
        rows.append({"key": m["key"], "score": round(score, 2), "cost_per_request": c,
                     "cost_per_1k_requests": c * 1000, "components": comp, "model": m})
    rows.sort(key=lambda r: (-r["score"], r["cost_per_request"], r["key"]))
    if distinct:
        seen: set[str] = set()
        uniq = []
        for r in rows:
            cid = r["model"]["canonical_id"]
            if cid in seen:
                continue
            seen.add(cid)
            uniq.append(r)
        rows = uniq
    if limit:
        rows = rows[:limit]
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        r["why"] = " · ".join(f"{k} {d['points']:+g}/{d['max']:g} ({d['detail']})" for k, d in r["components"].items())
    return {
        "use_case": uc.as_dict() | {"required": required, "preferred": preferred, "context_needed": need_ctx},
        "workload": {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                     "cached_tokens": w.cached_tokens, "requests": 1000},
        "budget_per_1k_requests": budget,
        "weights": dict(WEIGHTS, deprecated_penalty=DEPRECATED_PENALTY),
        "candidates": len(pool),
        "excluded_free": excluded_free,
        "excluded_suspect": excluded_suspect,
        "results": rows,
    }


def use_case_table() -> list[dict[str, Any]]:
    return [u.as_dict() for u in USE_CASES.values()]

