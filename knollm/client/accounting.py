"""Tokens and money for one call: prompt estimates, worst-case reservations, real cost.

Cost uses the catalog's prices (USD per 1M tokens) through the one cost formula
(:func:`knollm.query.cost.cost_per_request`), plus cache writes and genai-prices tiers
(``price_tiers``: the tier whose ``start`` is the largest not above the prompt size
replaces the input/output prices). A call whose needed price is unknown gets
``cost_usd = None`` and an ``unpriced_reason`` – never $0. Free models cost 0 on purpose.
"""

from __future__ import annotations

import json
from typing import Any

from knollm.query.cost import Workload, cost_per_request

__all__ = ["estimate_tokens", "prompt_tokens", "call_cost", "worst_case_cost"]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 characters per token (rounded up)."""
    return -(-len(text) // 4)


def prompt_tokens(messages: list[dict], params: dict | None = None) -> int:
    """Estimated prompt tokens of ``messages`` (+ tool schemas), ~4 tokens overhead a message."""
    n = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            n += estimate_tokens(c)
        elif isinstance(c, list):
            for p in c:
                n += estimate_tokens(p.get("text", "")) if p.get("type") == "text" else 85  # an image: low-detail
        if m.get("tool_calls"):
            n += estimate_tokens(json.dumps(m["tool_calls"]))
        n += 4
    if params and params.get("tools"):
        n += estimate_tokens(json.dumps(params["tools"]))
    return n


def _tier_prices(prices: dict[str, Any], tiers: list[dict] | None, input_tokens: int) -> dict[str, Any]:
    if not tiers:
        return prices
    best = None
    for t in tiers:
        if t.get("start", 0) <= input_tokens and (best is None or t.get("start", 0) >= best.get("start", 0)):
            best = t
    if best is None:
        return prices
    return {**prices, **{k: best[k] for k in ("input", "output") if best.get(k) is not None}}


def call_cost(offer: Any, usage: dict) -> tuple[float | None, str | None, str | None]:
    """``(cost_usd, price_source, unpriced_reason)`` of a call with ``usage`` on ``offer``."""
    if offer.variable_pricing:
        return None, None, f"{offer.key}: the provider says its price varies"
    if offer.free:
        return 0.0, offer.price_source or "catalog (free)", None
    prices = _tier_prices(offer.prices, offer.tiers, usage["input_tokens"])
    write = usage.get("cache_write_tokens") or 0
    cached = min(usage.get("cached_tokens") or 0, max(0, usage["input_tokens"] - write))
    w = Workload(max(0, usage["input_tokens"] - write), usage["output_tokens"], cached)
    cost = cost_per_request(prices, w)
    if write and cost is not None:
        p = prices.get("cache_write") if prices.get("cache_write") is not None else prices.get("input")
        cost = None if p is None else cost + write * p / 1_000_000
    if cost is None:
        used = (("input", usage["input_tokens"]), ("output", usage["output_tokens"]))
        missing = [k for k, n in used if n and prices.get(k) is None]
        return None, None, f"{offer.key}: no {'/'.join(missing) or 'cache'} price in the catalog"
    return cost, offer.price_source, None


def worst_case_cost(offer: Any, prompt: int, max_tokens: int) -> float | None:
    """Upper bound for a budget reservation: the prompt at full input price plus
    ``max_tokens`` of output (highest tier). None when unpriced. With ``max_tokens=0`` (an
    embeddings call) the output price is not needed."""
    if offer.free:
        return 0.0
    if offer.variable_pricing:
        return None
    pin = [offer.prices.get("input")] + [t.get("input") for t in offer.tiers or []]
    pout = [offer.prices.get("output")] + [t.get("output") for t in offer.tiers or []]
    if pin[0] is None or (pout[0] is None and max_tokens):
        return None
    cw = offer.prices.get("cache_write")
    top_in = max(x for x in pin + [cw] if x is not None)
    out = max_tokens * max(x for x in pout if x is not None) if max_tokens else 0.0
    return (prompt * top_in + out) / 1_000_000 + (offer.prices.get("request") or 0)
