"""The normalized catalog schema (pydantic v2, strict, ``extra='forbid'``).

The catalog JSON written by ``knollm catalog`` validates against :class:`CatalogDocument`;
``knollm schema`` (and the site's ``schema.json``) export its JSON Schema.

Provenance
----------
Every price, limit and capability value carries its source in ``Model.sources``:
a map from field path (``"prices.input"``, ``"context_window"``,
``"capabilities.tools"``, …) to one of :data:`SOURCES` (:mod:`knollm.vocab`). ``Model.joins`` records how the
model was matched in each registry (``exact`` / ``alias`` / ``canonical`` / ``family``);
a ``family`` join is low-confidence and only ever fills values that are still unknown.

Precedence (highest first; a lower source only fills what is still unknown). "Same
provider" means the registry entry for this provider and model id (exact or alias join; an
alias join needs the same serving variant: ``:free`` / ``:extended`` / ``-fast`` /
``-Turbo`` / ``-TEE``, a Hugging Face ``:<backend>``); "canonical" / "family" mean
models.dev's entry for the same canonical model or family on *another* provider, or a
differently served sibling on the same one. The order tables live in :mod:`knollm.catalog.build`.

* prices: ``dump`` > ``genai-prices`` same provider > ``models.dev`` same provider >
  ``litellm`` (never canonical or family); models.dev's entry for the exact id beats a
  genai-prices rule / alias join; a region-less registry entry joined to a
  regional offer (``sa-east-1/…``) gives no price when the dump or LiteLLM has a regional
  one (its values stay in ``alternatives``);
* context window, max output: ``probe`` (context window only) > ``dump`` > ``models.dev``
  same provider > ``genai-prices`` same provider > ``litellm`` > ``models.dev`` canonical;
* ``probe``: a ``yes``/``no`` verdict of ``knollm probe`` (newest file per model in the
  dump directory's sibling ``probes/``); the values it overrides stay in ``alternatives``;
* capabilities: ``probe`` > ``dump`` > ``models.dev`` same provider > ``litellm`` > ``models.dev``
  canonical > ``models.dev`` family > ``inferred`` from the name (``-vision``, ``r1``…);
* modalities: as capabilities, then ``inferred`` from the kind;
* name, description: ``dump`` > ``models.dev`` > ``genai-prices`` > ``litellm``;
* deprecation: an explicit flag, true or false, from ``dump`` > ``models.dev`` >
  ``genai-prices`` > ``litellm``; when none says, a retirement date from ``dump`` then ``litellm``, compared
  with the build date (a future date leaves the model live and adds ``retires_<date>``
  to its flags);
* release date: ``models.dev`` same provider > canonical; created: ``dump`` > ``litellm``;
* open weights: ``dump`` > ``models.dev`` same provider > canonical;
* kind: ``dump`` > ``litellm`` > ``models.dev`` > ``inferred`` from the id.

Data truth (issue 10) – rules applied after precedence:

* plausibility: a price outside ``knollm.vocab.PLAUSIBLE_PRICE`` (by kind), a token limit
  outside ``PLAUSIBLE_TOKENS`` or a placeholder (``99999999``) is kept, marked in
  ``Model.suspect`` and reported (file, record, raw value, check); suspect prices never
  rank in "cheapest";
* max output: a value borrowed from another source that exceeds the context window
  shown is not published (the next source's value is tried); the provider's own value
  above its own context is kept and marked suspect;
* zero prices: a zero is "free" only when the provider's own dump says so, the id says
  ``:free``, or every source with a price agrees; a registry zero (or a LiteLLM 0/0)
  contradicted by another source (or uncorroborated) is shown as unknown, its value kept in
  ``alternatives``; ``free`` also needs every known price (per request, per image…) to be 0;
* capabilities and limits from *another* provider's entry (``models.dev`` canonical /
  family) are not applied to image, audio and video models, nor limits to embedding,
  rerank and moderation models; an embedding has no max output; values shown from another
  provider's entry have source ``models.dev~canonical`` / ``models.dev~family``;
* ``alternatives`` keeps each other source's differing value for every field.

Prices are USD per million tokens (per request / per image where so named); ``None``
means unknown – never 0 for unknown. ``free`` is true only when a source says the
price is zero for a text model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from knollm.vocab import CAPABILITIES, CAPABILITY_TABLE, KINDS, PRICE_FIELDS, PRICE_TABLE, SOURCES

__all__ = [
    "SCHEMA_VERSION",
    "SOURCES",
    "CAPABILITIES",
    "PRICE_FIELDS",
    "Source",
    "Prices",
    "Capabilities",
    "Provider",
    "Model",
    "CatalogWarning",
    "SourceInfo",
    "CatalogDocument",
    "json_schema",
]

SCHEMA_VERSION = 1

#: the names below come from :mod:`knollm.vocab` (the one vocabulary); re-exported here
Source = Literal[SOURCES]  # type: ignore[valid-type]
JoinQuality = Literal["exact", "alias", "canonical", "family"]
Kind = Literal[KINDS]  # type: ignore[valid-type]

_STRICT = ConfigDict(extra="forbid", strict=True)

#: USD per million tokens (``request``: per request, ``image``: per image). None = unknown.
Prices = create_model(
    "Prices",
    __config__=_STRICT,
    __doc__="USD per million tokens (``request``: per request, ``image``: per image). None = unknown.",
    __module__=__name__,
    **{p.key: (float | None, None) for p in PRICE_TABLE},
)

#: three-state flags, one per :data:`knollm.vocab.CAPABILITY_TABLE` entry
Capabilities = create_model(
    "Capabilities",
    __config__=_STRICT,
    __doc__="Three-state flags: ``True`` supported, ``False`` not supported, ``None`` unknown.",
    __module__=__name__,
    **{c.key: (bool | None, None) for c in CAPABILITY_TABLE},
)


class Provider(BaseModel):
    model_config = _STRICT
    id: str = Field(description="Knollm's provider id, e.g. 'openai', 'togetherai'")
    name: str
    base_url: str | None = Field(None, description="OpenAI-compatible (or native) API base URL")
    docs_url: str | None = None
    api_key_env: list[str] = Field(default_factory=list, description="environment variable(s) holding the key")
    api_shape: str | None = Field(None, description="'openai', 'anthropic', 'gemini', … (how to call it)")
    kind: Literal["provider", "aggregator", "local"] = "provider"
    sources: list[str] = Field(default_factory=list, description="where this provider's data came from")
    dump_file: str | None = None
    dump_shape: str | None = None
    data_date: str | None = Field(None, description="when this provider's dump was fetched (YYYY-MM-DD)")
    data_date_source: str | None = Field(None, description="'fetch report', 'history' or 'file' (capture date)")
    price_unit: str | None = Field(None, description="unit of the dump's ambiguous price fields (registry dump.price_unit)")
    registry_ids: dict[str, str] = Field(default_factory=dict, description="this provider's id in each registry")
    field_sources: dict[str, Source] = Field(default_factory=dict)
    model_count: int = 0


class Model(BaseModel):
    """One model as offered by one provider."""

    model_config = _STRICT
    key: str = Field(description="'<provider>/<id>', unique in the catalog")
    provider: str
    id: str = Field(description="the model id exactly as the provider spells it")
    canonical_id: str = Field(description="the same underlying model across providers")
    family: str | None = None
    name: str | None = None
    description: str | None = None
    kind: Kind = "other"
    context_window: int | None = None
    max_output: int | None = None
    input_modalities: list[str] = Field(default_factory=list)
    output_modalities: list[str] = Field(default_factory=list)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    prices: Prices = Field(default_factory=Prices)
    free: bool = False
    variable_pricing: bool = Field(False, description="provider says the price varies (e.g. '-1')")
    price_tiers: list[dict[str, float]] = Field(
        default_factory=list,
        description="tiered prices {start, input, output, cache_read, …}: once a request's input tokens exceed "
                    "'start', the tier's prices replace the base ones (source in sources['price_tiers'])")
    suspect: dict[str, str] = Field(
        default_factory=dict,
        description="field path -> plausibility check it failed (knollm.vocab.SUSPECT_CHECKS); the value is kept "
                    "but never ranks in 'cheapest'")
    probe: dict[str, Any] | None = Field(
        None, description="`knollm probe` results for this model: {date, file (the newest), verdicts: {probe: verdict}, "
                    "measured: {probe: {date, file} of that verdict}, files, cost_usd (of them all)}; per probe "
                    "the newest yes/no verdict decides")
    alternatives: dict[str, dict[str, float | int | bool | str | None]] = Field(
        default_factory=dict,
        description="field path -> {source: value} for every other source whose value differs from the one shown "
                    "(sources[path]); what `knollm audit` lists")
    deprecated: bool | None = None
    created: str | None = Field(None, description="ISO date the provider reports for the model")
    release_date: str | None = None
    open_weights: bool | None = None
    owned_by: str | None = None
    quantization: str | None = None
    sources: dict[str, Source] = Field(default_factory=dict, description="field path -> source")
    joins: dict[str, JoinQuality] = Field(default_factory=dict, description="registry -> match quality")
    origin: list[str] = Field(default_factory=list, description="dump files / registries listing this model")
    flags: list[str] = Field(default_factory=list, description="data-quality flags")
    first_seen: str | None = None
    last_seen: str | None = None


class CatalogWarning(BaseModel):
    model_config = _STRICT
    code: str
    file: str
    record: str | None = None
    message: str
    level: Literal["warning", "data", "info"] = Field(
        "warning", description="warning: input not usable as given (fails --strict); data: a data-quality finding "
                               "handled by a documented rule (suspect value, resolved conflict); info: note")


class SourceInfo(BaseModel):
    model_config = _STRICT
    name: str
    kind: Literal["dumps", "registry"]
    version: str | None = None
    path: str | None = None
    files: int | None = None
    records: int | None = None
    data_date: str | None = Field(None, description="registry: the package's release/data date")


class CatalogDocument(BaseModel):
    """The catalog file (what ``knollm catalog`` writes)."""

    model_config = _STRICT
    schema_version: int = SCHEMA_VERSION
    generated_at: str
    data_date: str | None = Field(None, description="newest date the input data was fetched (dump fetch dates, "
                                                     "registry data dates); not the newest model 'created'")
    sources: list[SourceInfo]
    providers: list[Provider]
    models: list[Model]
    warnings: list[CatalogWarning] = Field(default_factory=list)
    stats: dict[str, float | int] = Field(default_factory=dict)


def json_schema() -> dict:
    """The JSON Schema of the catalog file."""
    schema = CatalogDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Knollm catalog"
    return schema
