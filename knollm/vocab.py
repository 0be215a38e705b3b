"""Knollm's one vocabulary: capabilities, price fields, model kinds, modalities, sources, sort keys.

Every other part of Knollm reads these names from here: the pydantic schema
(:mod:`knollm.catalog.schema` generates ``Prices`` / ``Capabilities`` and the ``Kind`` /
``Source`` literals), the CLI (filter choices, table abbreviations, ``compare`` rows,
``export`` columns), the site's Python (capability matrix, source marks, the explorer
index) and the site's JavaScript, which reads the ``vocab`` object that
:func:`as_json` puts into ``data/index.json``.

Adding a capability
-------------------
Append one :class:`Capability` to :data:`CAPABILITY_TABLE` and make a translator in
:mod:`knollm.catalog.translate` set it from a raw field. Order matters: a capability's
position is its bit in the explorer index's ``ct`` column (``1 << position``), so append,
never insert (the JS reads the bits from ``vocab.caps``, so an old cached page with a new
index still works).

Stdlib only: this module is on the CLI's fast path and must never import pydantic.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Capability", "PriceField", "SourceMark",
    "CAPABILITY_TABLE", "PRICE_TABLE", "SOURCE_TABLE",
    "CAPABILITIES", "CAPABILITY_BIT", "PRICE_FIELDS", "KINDS", "MODALITIES", "SOURCES", "SORT_KEYS",
    "capability", "as_json",
]


class Capability(NamedTuple):
    """A three-state capability flag (``True`` / ``False`` / ``None`` = unknown)."""

    key: str  #: field name in ``Model.capabilities`` and the CLI's ``--capability`` value
    label: str  #: human label (site, JS, docs)
    abbr: str  #: one letter for dense tables (site matrix cells, explorer rows)
    short: str  #: short name in the CLI's ``caps`` column
    description: str  #: one sentence (JSON Schema description, legends)


class PriceField(NamedTuple):
    """A price in ``Model.prices`` (USD; ``None`` = unknown, never 0 for unknown)."""

    key: str
    label: str
    unit: str  #: what the number is per
    description: str


class SourceMark(NamedTuple):
    """Where a value came from (``Model.sources`` values)."""

    key: str
    mark: str  #: one letter shown beside a value on the site
    text: str  #: long text (legends, tooltips)
    label: str  #: short label (model detail view)


#: the capabilities, in index-bit order (append only)
CAPABILITY_TABLE: tuple[Capability, ...] = (
    Capability("tools", "tool calling", "T", "tools", "Calls tools / functions."),
    Capability("vision", "vision", "V", "vision", "Accepts image input."),
    Capability("structured_output", "structured output", "S", "struct", "Follows a JSON Schema for its output."),
    Capability("json_mode", "JSON mode", "J", "json", "Can be forced to emit valid JSON."),
    Capability("reasoning", "reasoning", "R", "reason", "Thinks before answering (reasoning tokens)."),
    Capability("prompt_caching", "prompt caching", "C", "cache", "Caches prompt prefixes at a lower price."),
    Capability("web_search", "web search", "W", "web", "Can search the web."),
    Capability("audio_input", "audio input", "A", "audio", "Accepts audio input."),
    Capability("pdf_input", "PDF input", "P", "pdf", "Accepts PDF documents."),
    Capability("fine_tuning", "fine-tuning", "F", "ft", "Can be fine-tuned by the customer."),
)

#: the prices, in schema order
PRICE_TABLE: tuple[PriceField, ...] = (
    PriceField("input", "Input", "1M tokens", "USD per 1M input tokens."),
    PriceField("output", "Output", "1M tokens", "USD per 1M output tokens."),
    PriceField("cache_read", "Cache read", "1M tokens", "USD per 1M cached input tokens read."),
    PriceField("cache_write", "Cache write", "1M tokens", "USD per 1M input tokens written to the cache."),
    PriceField("request", "Per request", "request", "USD per request."),
    PriceField("image", "Per image", "image", "USD per generated or input image."),
)

#: the sources, highest precedence first (see :mod:`knollm.catalog.schema`)
SOURCE_TABLE: tuple[SourceMark, ...] = (
    SourceMark("probe", "P", "measured by `knollm probe` (a dated request to the provider)", "probe"),
    SourceMark("dump", "D", "the provider's own model list (dump)", "provider dump"),
    SourceMark("genai-prices", "G", "the genai-prices registry", "genai-prices"),
    SourceMark("models.dev", "M", "the models.dev registry", "models.dev"),
    SourceMark("litellm", "L", "LiteLLM's cost map", "LiteLLM"),
    SourceMark("inferred", "I", "inferred from the model name", "inferred from name"),
)

#: model kinds; the last one (``other``) is the fallback
KINDS: tuple[str, ...] = ("chat", "completion", "embedding", "image", "audio", "rerank", "moderation", "video",
                          "other")
#: the usual modalities (offered as completions; the data may name others)
MODALITIES: tuple[str, ...] = ("text", "image", "audio", "video", "pdf", "embedding")
#: ``--sort`` keys of the CLI / ``Catalog.search(sort=...)``
SORT_KEYS: tuple[str, ...] = ("price", "context", "name", "provider", "output_price")

# ---- derived (never edit these; edit the tables above)
CAPABILITIES: tuple[str, ...] = tuple(c.key for c in CAPABILITY_TABLE)
#: capability -> its bit in the explorer index's ``ct`` column
CAPABILITY_BIT: dict[str, int] = {c.key: 1 << i for i, c in enumerate(CAPABILITY_TABLE)}
PRICE_FIELDS: tuple[str, ...] = tuple(p.key for p in PRICE_TABLE)
SOURCES: tuple[str, ...] = tuple(s.key for s in SOURCE_TABLE)

_BY_KEY = {c.key: c for c in CAPABILITY_TABLE}


def capability(key: str) -> Capability | None:
    """The :class:`Capability` named ``key`` (``None`` when unknown)."""
    return _BY_KEY.get(key)


def _check() -> None:
    for name, keys in (("capability", CAPABILITIES), ("price field", PRICE_FIELDS), ("source", SOURCES),
                       ("kind", KINDS)):
        if len(set(keys)) != len(keys):
            raise ValueError(f"knollm.vocab: duplicate {name} key in {keys}")
    abbrs = [c.abbr for c in CAPABILITY_TABLE]
    if len(set(abbrs)) != len(abbrs):
        raise ValueError(f"knollm.vocab: duplicate capability abbreviation in {abbrs}")
    if len(CAPABILITY_TABLE) > 31:  # the JS reads the ct column with 32-bit integer operators
        raise ValueError("knollm.vocab: more than 31 capabilities do not fit the index's bit field")


_check()


def as_json() -> dict[str, Any]:
    """The vocabulary as written into the site's ``data/index.json`` (``vocab``) for the JS."""
    return {
        "caps": [{"key": c.key, "label": c.label, "abbr": c.abbr, "bit": CAPABILITY_BIT[c.key]}
                 for c in CAPABILITY_TABLE],
        "prices": [{"key": p.key, "label": p.label, "unit": p.unit} for p in PRICE_TABLE],
        "sources": [{"key": s.key, "mark": s.mark, "label": s.label, "text": s.text} for s in SOURCE_TABLE],
        "kinds": list(KINDS),
    }
