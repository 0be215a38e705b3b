"""The one cost formula, shared by the CLI, the Python API and the site's calculator.

The site's JavaScript (``knollm/site/assets/knollm.js``, ``costPerRequest``) implements
the same arithmetic; ``tests/test_cost.py`` and the browser test check both give the
same numbers for the same inputs.

For a workload of ``input_tokens`` (of which ``cached_tokens`` are cache reads),
``output_tokens`` per request and ``requests`` requests::

    per_request = (input_tokens - cached_tokens) * input
                + cached_tokens * (cache_read if known else input)
                + output_tokens * output
                + request            (per-request fee, if any)
    total = per_request * requests              prices in USD per 1M tokens -> / 1e6

Tiers (``Model.price_tiers``, from LiteLLM's ``*_above_<N>k_tokens``, genai-prices and
models.dev): when ``input_tokens`` exceeds a tier's ``start``, the highest such tier's
prices replace the base ones for every token of the request (genai-prices' and
LiteLLM's rule); a dimension the tier does not name keeps its base price.

A price that is needed (tokens > 0) but unknown makes the cost unknown (``None``),
never 0. A needed price marked suspect (``Model.suspect``, a failed plausibility check)
makes the estimate ``suspect``: :func:`cost_rows` never ranks it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

__all__ = ["Workload", "applicable_prices", "cost_per_request", "tokens_cost", "cost_rows", "estimate", "parse_count",
           "suspect_prices"]

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
# digits, or comma-separated thousands groups (1,000 / 12,345,678); an optional fraction; a suffix
_COUNT_RE = re.compile(r"^\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*([kKmMbB]?)\s*$")


def parse_count(text: str | int | float) -> int:
    """Parse ``1.5M``, ``200k``, ``1000``, ``1,000`` into an int; ValueError on anything else.

    Commas must group thousands (``1,5M`` is an error, not 15M); a fraction is accepted only
    where the suffix makes the count whole (``1.5M`` yes, ``2.5`` / ``0.4`` / ``1.0005k`` no)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"negative count: {text}")
        return _finite_int(text, text, int)
    m = _COUNT_RE.match(str(text).replace("_", ""))
    if not m:
        hint = "; commas only between groups of three digits, e.g. 1,000" if "," in str(text) else ""
        raise ValueError(f"not a token count: {text!r} (use e.g. 1500, 200k, 1.5M{hint})")
    whole, frac, mult = m.group(1).replace(",", ""), (m.group(2) or ".")[1:], _SUFFIX[m.group(3).lower()]
    if len(whole) + len(frac) > 400:  # beyond any float (and int()'s digit limit): too large
        return _finite_int(math.inf, text, int)
    v, rem = divmod(int(whole + frac) * mult, 10 ** len(frac))  # exact: no float rounding
    if rem:
        raise ValueError(f"not a whole count: {text!r} (counts are whole tokens or requests; a fraction "
                         "only with a suffix that makes it whole, e.g. 1.5k)")
    return _finite_int(v, text, int)


def _finite_int(v: int | float, text: Any, to_int: Any) -> int:
    """``v`` as an int; ValueError (not OverflowError) when it is too large to compute with."""
    try:
        if math.isinf(float(v)):  # float(): a huge int overflows here, as it would in the cost formula
            raise OverflowError
        return int(to_int(v))
    except OverflowError:
        if isinstance(text, str):
            shown = repr(text) if len(text) <= 24 else f"{text[:16]!r}… ({len(text)} characters)"
        else:
            shown = repr(text) if isinstance(text, float) else "an integer of more than 308 digits"
        raise ValueError(f"count too large: {shown} (use e.g. 1500, 200k, 1.5M)") from None


@dataclass(frozen=True)
class Workload:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    requests: int = 1

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cached_tokens", "requests"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.cached_tokens > self.input_tokens:
            raise ValueError("cached_tokens cannot exceed input_tokens")


def applicable_prices(prices: dict[str, Any], tiers: list[dict[str, float]] | None,
                      input_tokens: int) -> dict[str, Any]:
    """``prices`` with the highest tier whose ``start`` is below ``input_tokens`` laid over them."""
    t = _tier(tiers, input_tokens)
    if t is None:
        return prices
    out = dict(prices)
    for k, v in t.items():
        if k != "start":
            out[k] = v
    return out


def _tier(tiers: list[dict[str, float]] | None, input_tokens: int) -> dict[str, float] | None:
    for t in reversed(tiers or ()):
        if input_tokens > t["start"]:
            return t
    return None


def cost_per_request(prices: dict[str, Any], w: Workload, tiers: list[dict[str, float]] | None = None) -> float | None:
    """USD for one request of workload ``w`` at ``prices`` (USD/1M tokens; ``tiers`` as in
    ``Model.price_tiers``, sorted by start); None if unknown."""
    return tokens_cost(applicable_prices(prices, tiers, w.input_tokens), w.input_tokens, w.output_tokens,
                       w.cached_tokens)


def tokens_cost(prices: dict[str, Any], input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float | None:
    """:func:`cost_per_request` of counts already checked (``0 <= cached_tokens <=
    input_tokens``, ``output_tokens >= 0``) at ``prices`` with their tier applied: what a
    served call costs (:func:`knollm.client.accounting.call_cost`), without a ``Workload``."""
    pin, pout = prices.get("input"), prices.get("output")
    fresh = input_tokens - cached_tokens
    total = 0.0
    if fresh > 0:
        if pin is None:
            return None
        total += fresh * pin
    if cached_tokens > 0:
        pcache = prices.get("cache_read")
        p = pcache if pcache is not None else pin
        if p is None:
            return None
        total += cached_tokens * p
    if output_tokens > 0:
        if pout is None:
            return None
        total += output_tokens * pout
    total = total / 1_000_000
    if prices.get("request") is not None:
        total += prices["request"]
    return total


def suspect_prices(model: dict[str, Any], w: Workload) -> list[str]:
    """The price fields workload ``w`` uses on ``model`` that are marked suspect."""
    sus = model.get("suspect") or {}
    if not sus:
        return []
    used = [("input", w.input_tokens - w.cached_tokens), ("output", w.output_tokens), ("request", 1),
            ("cache_read", w.cached_tokens)]
    return [f for f, n in used if n > 0 and f"prices.{f}" in sus]


def estimate(model: dict[str, Any], w: Workload) -> dict[str, Any]:
    """Cost of workload ``w`` on a catalog model: per request and in total (USD); ``suspect``
    lists the suspect prices it used (such an estimate never ranks)."""
    tiers = model.get("price_tiers") or None
    per = cost_per_request(model.get("prices") or {}, w, tiers)
    tier = _tier(tiers, w.input_tokens)
    return {
        "key": model.get("key"),
        "per_request": per,
        "total": None if per is None else per * w.requests,
        "cache_price_used": applicable_prices(model.get("prices") or {}, tiers, w.input_tokens).get("cache_read")
        is not None and w.cached_tokens > 0,
        "tier_start": tier["start"] if tier else None,
        "suspect": suspect_prices(model, w),
    }


def cost_rows(models: Iterable[dict[str, Any]], w: Workload) -> list[dict[str, Any]]:
    """:func:`estimate` for each model (catalog or summary dict), cheapest first; models whose
    cost is unknown or uses a suspect price are left out. Each row is the estimate plus ``model``."""
    out = []
    for m in models:
        e = estimate(m, w)
        if e["total"] is None or e["suspect"]:
            continue
        out.append({**e, "model": m})
    out.sort(key=lambda r: (r["total"], r["per_request"], r["key"]))  # per_request: orders 0 requests too
    return out
