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


_PRICES = tuple((field, ("metadata", "pricing", key), PER_MILLION) for field, key in (
    ("input", "input_tokens"), ("output", "output_tokens"), ("cache_read", "cache_read_tokens")))


def _prices(rec: dict, p: Prices) -> None:
    p.put_paths(rec, _PRICES)


SPEC = Spec(prices=_prices)
translate = translator(SPEC)
