"""Tokens and money for one call: prompt estimates, worst-case reservations, real cost.

Cost uses the catalog's prices (USD per 1M tokens) through the one cost formula
(:func:`knollm.query.cost.cost_per_request`), plus cache writes and price tiers
(``price_tiers``: once the input exceeds a tier's ``start``, every price the tier names
replaces the base one, as :func:`knollm.query.cost.applicable_prices` lays them over).
Cache writes at a 1-hour TTL (``cache_write_1h_tokens``, part of ``cache_write_tokens``) are
priced at ``cache_write_1h``, never at the 5-minute ``cache_write`` price; reasoning tokens
(``reasoning_tokens``, part of ``output_tokens``) at ``reasoning_output`` when the catalog
has that price, else as output.
A call whose needed price is unknown gets
``cost_usd = None`` and an ``unpriced_reason`` – never $0. Free models cost 0 on purpose.
Searches a provider's own search tool made (``web_searches``: Anthropic's web_search server
tool) are billed apart, at the catalog's ``web_search`` price (USD a search); a call that
searched where the catalog has no such price is unpriced, never charged for its tokens only.
"""

from __future__ import annotations

import json
from typing import Any

from knollm.query.cost import applicable_prices, tokens_cost

__all__ = ["estimate_tokens", "prompt_tokens", "call_cost", "worst_case_cost", "search_bound"]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate, on the high side: ~4 ASCII characters per token (rounded
    up), and every other character a token, or a third of its UTF-8 bytes when more (CJK,
    Cyrillic, emoji and the like take about a token a character, often more, in common
    tokenizers; 4 characters a token would under-size Ollama's ``num_ctx`` and budgets)."""
    n = len(text)
    if text.isascii():  # (O(1) for str)
        return -(-n // 4)
    ascii_n = len(text.encode("ascii", "ignore"))
    other = n - ascii_n
    other_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_n
    return -(-ascii_n // 4) + max(other, -(-other_bytes // 3))


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
    native = params.get("x_anthropic") if params else None  # (transports.ANTHROPIC_NATIVE)
    if isinstance(native, dict) and native.get("turns"):
        # assistant turns sent to Anthropic as the caller gave them (their search results are
        # input tokens the translated messages above do not hold)
        n += sum(estimate_tokens(json.dumps(t)) for t in native["turns"] if t is not None)
    if isinstance(native, dict) and native.get("thought"):  # likewise the thinking blocks given back
        n += sum(estimate_tokens(json.dumps(b)) for t in native["thought"] if t is not None
                 for b in t if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
    return n


def call_cost(offer: Any, usage: dict) -> tuple[float | None, str | None, str | None]:
    """``(cost_usd, price_source, unpriced_reason)`` of a call with ``usage`` on ``offer``
    (a normalized usage dict: ``input_tokens``, ``output_tokens``, ``cached_tokens``,
    ``cache_write_tokens``, and optionally ``cache_write_1h_tokens`` (part of the cache
    writes) and ``reasoning_tokens`` (part of the output))."""
    if offer.variable_pricing:
        return None, None, f"{offer.key}: the provider says its price varies"
    if offer.free and not usage.get("web_searches"):
        return 0.0, offer.price_source or "catalog (free)", None
    prices = applicable_prices(offer.prices, offer.tiers, usage["input_tokens"])
    write = usage.get("cache_write_tokens") or 0
    write_1h = min(usage.get("cache_write_1h_tokens") or 0, write)
    cached = min(usage.get("cached_tokens") or 0, max(0, usage["input_tokens"] - write))
    if usage["output_tokens"] < 0 or cached < 0:
        raise ValueError(f"token counts must be >= 0: {usage!r}")
    cost = tokens_cost(prices, max(0, usage["input_tokens"] - write), usage["output_tokens"], cached)
    if write_1h and cost is not None:
        p1 = prices.get("cache_write_1h")
        if p1 is None:  # never the 5-minute price: a 1-hour write costs more (2x input at Anthropic)
            return None, None, (f"{offer.key}: no cache_write_1h price in the catalog "
                                f"({write_1h} cache-write tokens at a 1-hour TTL)")
        cost += write_1h * p1 / 1_000_000
    if write > write_1h and cost is not None:
        p = prices.get("cache_write") if prices.get("cache_write") is not None else prices.get("input")
        cost = None if p is None else cost + (write - write_1h) * p / 1_000_000
    reasoning = min(usage.get("reasoning_tokens") or 0, usage["output_tokens"])
    if reasoning and cost is not None and prices.get("reasoning_output") is not None:
        # part of output_tokens, charged at output above: the difference to their own price
        cost += reasoning * (prices["reasoning_output"] - prices["output"]) / 1_000_000
    if cost is None:
        used = (("input", usage["input_tokens"]), ("output", usage["output_tokens"]))
        missing = [k for k, n in used if n and prices.get(k) is None]
        return None, None, f"{offer.key}: no {'/'.join(missing) or 'cache'} price in the catalog"
    searches = usage.get("web_searches") or 0
    if searches:  # a provider-run search tool's fee, billed per search beside the tokens
        p = prices.get("web_search")
        if p is None:  # never $0 for searches the provider bills
            return None, None, f"{offer.key}: no web_search price in the catalog ({searches} web searches)"
        cost += searches * p
    return cost, offer.price_source, None


def search_bound(params: dict | None) -> int | None:
    """The most web searches a call's provider-run search tools may make, each billed apart:
    the sum of each such tool's ``max_uses`` (Anthropic's ``web_search_*`` server tools);
    0 without one; None when one has no ``max_uses`` (the provider bounds the searches by
    nothing the caller set, so no worst case can be given)."""
    n = 0
    for t in (params or {}).get("tools") or ():
        kind = t.get("type") if isinstance(t, dict) else None
        if isinstance(kind, str) and kind.startswith("web_search"):
            uses = t.get("max_uses")
            if type(uses) is not int or uses < 1:
                return None
            n += uses
    return n


def worst_case_cost(offer: Any, prompt: int, max_tokens: int, searches: int | None = 0) -> float | None:
    """Upper bound for a budget reservation: the prompt at full input price (or cache-write
    price, 1-hour one included, when higher) plus ``max_tokens`` of output (at the
    reasoning-token price when higher: every output token may be reasoning), at the highest
    prices that can apply
    to an input of up to ``prompt`` tokens (the base ones, and each tier whose ``start`` the
    prompt can exceed), plus ``searches`` web searches at the ``web_search`` price
    (:func:`search_bound`; None: unbounded, so no worst case). None when unpriced. With
    ``max_tokens=0`` (an embeddings call) the output price is not needed."""
    if searches is None:
        return None
    if offer.free and not searches:
        return 0.0
    if offer.variable_pricing:
        return None
    # the price sets an input of 0..prompt tokens can get: below every tier, and just above
    # each tier's start the prompt reaches (a tier out of reach gives the prompt's own set)
    sets = [applicable_prices(offer.prices, offer.tiers, n)
            for n in [0, prompt] + [min(prompt, t["start"] + 1) for t in offer.tiers or ()]]
    worst = 0.0
    for p in sets:
        if p.get("input") is None or (p.get("output") is None and max_tokens):
            return None
        top_in = max(x for x in (p.get("input"), p.get("cache_write"), p.get("cache_write_1h"), p.get("cache_read"))
                     if x is not None)
        out = max_tokens * max(p["output"], p.get("reasoning_output") or 0) if max_tokens else 0.0
        if searches and p.get("web_search") is None:
            return None
        fees = (p.get("request") or 0) + (searches * p["web_search"] if searches else 0.0)
        worst = max(worst, (prompt * top_in + out) / 1_000_000 + fees)
    return worst
