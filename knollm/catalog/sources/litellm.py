"""LiteLLM's cost map: a third-party dump keyed by ``<prefix>/<model>``, one provider per entry.

Each entry names its serving provider in ``litellm_provider`` and spells prices per token.
Its offers go to the ``litellm`` layer, below the providers' own dumps.

Every price dimension of the map is read (:data:`PRICE_KEYS`): tokens, cache read/write
(5-minute and 1-hour), images, pixels, image/audio tokens, seconds of audio/video,
characters, reasoning tokens, requests. A ``*_per_minute`` spelling of a per-second key
is divided by 60. Tiers: every ``<price key>_above_<N>k_tokens`` becomes a
``price_tiers`` entry ``{start: N*1000, <field>: price}`` (the tier applies once a
request's input exceeds ``start``), as does each ``tiered_pricing`` range.
"""

from __future__ import annotations

import re
from typing import TypedDict

from knollm.catalog.normalize import PER_TOKEN, BadValue, to_int, to_price
from knollm.catalog.sources.generic import Offer, Prices, Spec, Warn
from knollm.catalog.sources.generic import translate as translate_fields
from knollm.errors import RecordError

__all__ = ["Raw", "SPEC", "LAYER", "PRICE_KEYS", "litellm_provider_id", "litellm_model_id", "price_tiers",
           "translate"]

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


#: cost-map key -> (Knollm price field, multiplier to the field's unit)
PRICE_KEYS: dict[str, tuple[str, float]] = {
    "input_cost_per_token": ("input", PER_TOKEN),
    "output_cost_per_token": ("output", PER_TOKEN),
    "cache_read_input_token_cost": ("cache_read", PER_TOKEN),
    "input_cost_per_token_cache_hit": ("cache_read", PER_TOKEN),
    "cache_creation_input_token_cost": ("cache_write", PER_TOKEN),
    "cache_creation_input_token_cost_above_1hr": ("cache_write_1h", PER_TOKEN),
    "output_cost_per_image": ("image", 1.0),  # USD / image
    "input_cost_per_image": ("image_input", 1.0),
    "input_cost_per_pixel": ("pixel_input", 1.0),  # USD / pixel
    "output_cost_per_pixel": ("pixel_output", 1.0),
    "input_cost_per_image_token": ("image_token_input", PER_TOKEN),
    "output_cost_per_image_token": ("image_token_output", PER_TOKEN),
    "input_cost_per_audio_token": ("audio_input", PER_TOKEN),
    "output_cost_per_audio_token": ("audio_output", PER_TOKEN),
    "input_cost_per_audio_per_second": ("audio_second_input", 1.0),  # USD / second
    "input_cost_per_second": ("second_input", 1.0),
    "output_cost_per_second": ("second_output", 1.0),
    "input_cost_per_video_per_second": ("video_second_input", 1.0),
    "input_cost_per_character": ("character_input", PER_TOKEN),  # per 1M characters
    "output_cost_per_character": ("character_output", PER_TOKEN),
    "output_cost_per_reasoning_token": ("reasoning_output", PER_TOKEN),
    "input_cost_per_request": ("request", 1.0),  # USD / request
    "input_cost_per_query": ("request", 1.0),  # rerank: USD / query
}
# per-minute spellings of the per-second keys
PRICE_KEYS.update({k.replace("_per_second", "_per_minute"): (f, u / 60.0)
                   for k, (f, u) in list(PRICE_KEYS.items()) if k.endswith("_per_second")})

_PRICES = tuple((field, (key,), unit) for key, (field, unit) in PRICE_KEYS.items())
_TIER_RE = re.compile(r"^(?P<key>.+)_above_(?P<n>\d+(?:\.\d+)?)(?P<k>[km]?)_tokens$")


def _prices(rec: dict, p: Prices) -> None:
    p.put_paths(rec, _PRICES)


def price_tiers(rec: dict, warn: Warn) -> list[dict[str, float]]:
    """The entry's token tiers: ``*_above_<N>k_tokens`` keys and ``tiered_pricing`` ranges."""
    tiers: dict[float, dict[str, float]] = {}

    def put(start: float, key: str, raw: object) -> None:
        spec = PRICE_KEYS.get(key)
        if spec is None:
            return
        field, unit = spec
        try:
            price, _variable = to_price(raw, unit)
        except BadValue as e:
            warn(f"price_tiers.{field}", f"'{key}' above {start:g} tokens: {e}")
            return
        if price is not None:
            tiers.setdefault(start, {"start": start})[field] = price

    for key, raw in rec.items():
        m = _TIER_RE.match(key)
        if m and not isinstance(raw, (dict, list)):
            start = float(m["n"]) * {"": 1, "k": 1_000, "m": 1_000_000}[m["k"]]
            put(start, m["key"], raw)
    ranges = rec.get("tiered_pricing")
    if isinstance(ranges, list):
        for t in ranges:
            rng = t.get("range") if isinstance(t, dict) else None
            if not (isinstance(rng, list) and rng and isinstance(rng[0], (int, float))):
                warn("price_tiers", "'tiered_pricing' entry without a numeric 'range'; skipped")
                continue
            if rng[0] <= 0:
                continue  # the first range is the base price
            for key, raw in t.items():
                if key != "range" and not isinstance(raw, (dict, list)):
                    put(float(rng[0]), key, raw)
    return [tiers[k] for k in sorted(tiers)]


SPEC = Spec(prices=_prices)


def translate(rid: str, rec: dict, warn: Warn, sentinels: frozenset = frozenset(),
              price_unit: float | None = None) -> list[Offer]:
    """One cost-map entry -> one offer of the provider it names.

    Raises :class:`~knollm.errors.RecordError` when the entry names no provider. LiteLLM's
    own ``created`` placeholders are not filtered (``sentinels`` is ignored).
    """
    lp = rec.get("litellm_provider")
    if not isinstance(lp, str) or not lp:
        raise RecordError(None, rid, "no 'litellm_provider'; entry skipped")
    mid = litellm_model_id(rid, lp)
    fields = translate_fields(mid, rec, warn, spec=SPEC, price_unit=PER_TOKEN)
    fields.pop("owned_by", None)
    fields.pop("unit_assumed", None)
    tiers = price_tiers(rec, warn)
    if tiers:
        fields["price_tiers"] = tiers
    if "max_output" not in fields and rec.get("max_tokens") is not None:
        raw = rec["max_tokens"]
        if isinstance(raw, (dict, list)):
            warn("max_output", f"'max_tokens' is a nested {type(raw).__name__}, expected a number")
        else:
            try:
                v = to_int(raw)
            except BadValue as e:
                warn("max_output", f"'max_tokens': {e}")
                v = None
            if v is not None:
                fields["max_output"] = v
    return [(litellm_provider_id(lp), mid, fields)]
