"""Novita: prices ``*_token_price_per_m`` in units of $0.0001 per million; ``features`` is authoritative."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.normalize import NOVITA_UNIT
from knollm.catalog.sources.generic import Prices, Put, Spec, translator
from knollm.catalog.sources.features import feature_caps

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    """The odd fields of one Novita record (the rest are common OpenAI-list fields)."""

    input_token_price_per_m: int | float  # $0.0001 / million tokens
    output_token_price_per_m: int | float
    features: list[str]  # e.g. "function-calling", "structured-outputs"; absence means no


_PRICES = (("input", ("input_token_price_per_m",), NOVITA_UNIT), ("output", ("output_token_price_per_m",), NOVITA_UNIT))


def _prices(rec: dict, p: Prices) -> None:
    p.put_paths(rec, _PRICES)


def _capabilities(rec: dict, put: Put) -> None:
    feature_caps(rec, put, authoritative=True)


SPEC = Spec(prices=_prices, capabilities=_capabilities)
translate = translator(SPEC)
