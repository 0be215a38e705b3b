"""Plausibility checks: is a value believable for its field and the model's kind?

An implausible value is never dropped and never published silently: the build keeps it,
marks the field in ``Model.suspect`` (field path -> check, see
:data:`knollm.vocab.SUSPECT_CHECKS`) and reports a ``data`` diagnostic naming the file,
record, raw value and check. Suspect prices never rank in "cheapest"
(:mod:`knollm.query.cost`, :mod:`knollm.query.index`).

The ranges live in :mod:`knollm.vocab` (``PLAUSIBLE_PRICE``, ``PLAUSIBLE_PRICE_BY_KIND``,
``PLAUSIBLE_TOKENS``, ``PLAUSIBLE_TOKENS_BY_KIND``, ``EMBEDDING_MAX_INPUT``,
``PLACEHOLDER_TOKENS``). A price 10x off (a per-1K or per-token
price read as per-million, a dump in cents) lands outside them: real chat prices are
0-200 $/M input and 0-800 $/M output.
"""

from __future__ import annotations

import re

from knollm.vocab import (
    EMBEDDING_MAX_INPUT,
    PLACEHOLDER_TOKENS,
    PLAUSIBLE_PRICE,
    PLAUSIBLE_PRICE_BY_KIND,
    PLAUSIBLE_TOKENS,
    PLAUSIBLE_TOKENS_BY_KIND,
)

__all__ = ["price_check", "token_check", "price_range", "embedding_max_input"]

_EMBEDDING_FAMILIES = tuple((re.compile(pat, re.IGNORECASE), n) for pat, n in EMBEDDING_MAX_INPUT)


def embedding_max_input(model_id: str | None) -> int | None:
    """The maximum input tokens of the embedding family ``model_id`` belongs to
    (:data:`knollm.vocab.EMBEDDING_MAX_INPUT`, matched on the id's last path segment), or None."""
    if not model_id:
        return None
    name = model_id.rstrip("/").rsplit("/", 1)[-1]
    for pat, n in _EMBEDDING_FAMILIES:
        if pat.fullmatch(name):
            return n
    return None


def price_range(field: str, kind: str | None) -> tuple[float, float] | None:
    """The plausible ``(low, high)`` of price ``field`` for a model of ``kind``."""
    by_kind = PLAUSIBLE_PRICE_BY_KIND.get(kind or "", {})
    return by_kind.get(field) or PLAUSIBLE_PRICE.get(field)


def price_check(field: str, value: float | None, kind: str | None) -> str | None:
    """The failed check's name (``"price_range"``) or None when ``value`` is plausible/unknown."""
    if value is None:
        return None
    rng = price_range(field, kind)
    if rng is None:
        return None
    lo, hi = rng
    return None if lo <= value <= hi else "price_range"


def token_check(value: int | None, field: str | None = None, kind: str | None = None, *,
                model_id: str | None = None) -> str | None:
    """``"placeholder"`` (99999999, 2^31-1…), ``"token_range"``, ``"kind_token_range"`` or None for
    a token limit (``field``: ``context_window`` / ``max_output``).

    ``"kind_token_range"``: outside the range for the model's kind
    (:data:`knollm.vocab.PLAUSIBLE_TOKENS_BY_KIND`: an embedding model's context above 131,072), or,
    given ``model_id``, an embedding model of a known family whose context window is above what the
    family reads (:data:`knollm.vocab.EMBEDDING_MAX_INPUT`: ``@cf/baai/bge-base-en-v1.5`` at 128,000,
    its family reading 512; a value at or below the family's maximum passes). Without ``model_id``
    only the kind's range is checked."""
    if value is None:
        return None
    if value in PLACEHOLDER_TOKENS:
        return "placeholder"
    lo, hi = PLAUSIBLE_TOKENS
    if not lo <= value <= hi:
        return "token_range"
    rng = PLAUSIBLE_TOKENS_BY_KIND.get(kind or "", {}).get(field or "")
    if rng is not None and not rng[0] <= value <= rng[1]:
        return "kind_token_range"
    if kind == "embedding" and field == "context_window":
        family_max = embedding_max_input(model_id)
        if family_max is not None and value > family_max:
            return "kind_token_range"
    return None
