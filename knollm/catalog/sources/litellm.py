"""LiteLLM's cost map: a third-party dump keyed by ``<prefix>/<model>``, one provider per entry.

Each entry names its serving provider in ``litellm_provider`` and spells prices per token.
Its offers go to the ``litellm`` layer, below the providers' own dumps.
"""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.normalize import PER_TOKEN, BadValue, to_int
from knollm.catalog.sources.generic import Offer, Prices, Spec, Warn
from knollm.catalog.sources.generic import translate as translate_fields
from knollm.errors import RecordError

__all__ = ["Raw", "SPEC", "LAYER", "litellm_provider_id", "litellm_model_id", "translate"]

LAYER = "litellm"


class Raw(TypedDict, total=False):
    litellm_provider: str  # required: an entry without it is unusable
    mode: str  # chat, embedding, image_generation… (the kind)
    input_cost_per_token: float  # USD / token
    output_cost_per_token: float
    cache_read_input_token_cost: float
    cache_creation_input_token_cost: float
    output_cost_per_image: float  # USD / image
    input_cost_per_request: float  # USD / request
    max_input_tokens: int  # context (read by the common translator)
    max_output_tokens: int
    max_tokens: int  # legacy: the output limit when max_output_tokens is absent


#: LiteLLM ``litellm_provider`` -> Knollm provider id
def litellm_provider_id(litellm_provider: str) -> str:
    """Knollm provider id for a LiteLLM ``litellm_provider`` value: the ``litellm`` spellings
    in the one provider registry (``knollm/data/providers.toml``)."""
    from knollm.providers import provider_registry

    return provider_registry().resolve_litellm(litellm_provider)


def litellm_model_id(key: str, litellm_provider: str) -> str:
    """Strip LiteLLM's routing prefix (``groq/``, ``together_ai/``…) from a cost-map key."""
    prefixes = {litellm_provider.split("-")[0], litellm_provider, litellm_provider.replace("_", "-")}
    if litellm_provider.startswith("vertex_ai"):
        prefixes.add("vertex_ai")
    if litellm_provider.startswith("bedrock"):
        prefixes.add("bedrock")
    head, sep, rest = key.partition("/")
    if sep and head in prefixes and rest:
        return rest
    return key


_PRICES = tuple((field, (key,), unit) for field, key, unit in (
    ("input", "input_cost_per_token", PER_TOKEN),
    ("output", "output_cost_per_token", PER_TOKEN),
    ("cache_read", "cache_read_input_token_cost", PER_TOKEN),
    ("cache_write", "cache_creation_input_token_cost", PER_TOKEN),
    ("image", "output_cost_per_image", 1.0),  # USD / image
    ("request", "input_cost_per_request", 1.0),  # USD / request
))


def _prices(rec: dict, p: Prices) -> None:
    p.put_paths(rec, _PRICES)


SPEC = Spec(prices=_prices)


def translate(rid: str, rec: dict, warn: Warn, sentinels: frozenset = frozenset()) -> list[Offer]:
    """One cost-map entry -> one offer of the provider it names.

    Raises :class:`~knollm.errors.RecordError` when the entry names no provider. LiteLLM's
    own ``created`` placeholders are not filtered (``sentinels`` is ignored).
    """
    lp = rec.get("litellm_provider")
    if not isinstance(lp, str) or not lp:
        raise RecordError(None, rid, "no 'litellm_provider'; entry skipped")
    mid = litellm_model_id(rid, lp)
    fields = translate_fields(mid, rec, warn, spec=SPEC)
    fields.pop("owned_by", None)
    if "max_output" not in fields:
        try:
            v = to_int(rec.get("max_tokens"))
        except BadValue:
            v = None
        if v is not None and not isinstance(rec.get("max_tokens"), (dict, list)):
            fields["max_output"] = v
    return [(litellm_provider_id(lp), mid, fields)]
