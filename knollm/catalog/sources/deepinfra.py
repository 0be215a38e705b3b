"""DeepInfra: prices per million under ``metadata.pricing``."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.normalize import PER_MILLION
from knollm.catalog.sources.generic import Prices, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class MetaPricing(TypedDict, total=False):
    input_tokens: float  # USD / million tokens
    output_tokens: float
    cache_read_tokens: float


class Meta(TypedDict, total=False):
    pricing: MetaPricing
    context_length: int  # read by the common translator
    tags: list[str]  # read by the common translator


class Raw(TypedDict, total=False):
    metadata: Meta


def _prices(rec: dict, p: Prices) -> None:
    meta = rec.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("pricing"), dict):
        mp = meta["pricing"]
        p.put("input", mp.get("input_tokens"), PER_MILLION, "metadata.pricing.input_tokens")
        p.put("output", mp.get("output_tokens"), PER_MILLION, "metadata.pricing.output_tokens")
        p.put("cache_read", mp.get("cache_read_tokens"), PER_MILLION, "metadata.pricing.cache_read_tokens")


SPEC = Spec(prices=_prices)
translate = translator(SPEC)
