"""Chutes: ``pricing.prompt`` / ``pricing.completion`` are numbers in USD per million tokens
(declared in the provider registry, ``dump.price_unit = "usd/1M"``; this Spec's unit is only
the fallback when the registry is replaced by one that does not say)."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.normalize import PER_MILLION
from knollm.catalog.sources.generic import Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Pricing(TypedDict, total=False):
    prompt: float  # USD / million tokens (OpenRouter spells the same key per token)
    completion: float


class Raw(TypedDict, total=False):
    pricing: Pricing


SPEC = Spec(pricing_unit=PER_MILLION)
translate = translator(SPEC)
