"""The shared translator: the common OpenAI-list fields of one raw dump record.

Most provider dumps are an OpenAI ``/v1/models`` list with a few well-known extras; this
module reads every spelling those share:

* prices: OpenRouter-style ``pricing.prompt`` / ``pricing.completion`` (unit declared per
  source in the provider registry, ``dump.price_unit``; undeclared: read as USD/token and
  marked ``unit_assumed`` so the build flags them), ``pricing.image`` (USD per *input*
  image: ``image_input``), ``pricing.input`` / ``pricing.output`` per million;
* max output: ``max_completion_tokens``, ``max_output_tokens``, ``max_output_length``,
  ``top_provider.max_completion_tokens``, ``metadata.max_tokens``, ``limits.output``,
  ``limits.completion``, ``config.max_output_length``;
* input / output modalities: ``architecture.*``, ``modalities.input`` / ``.output``,
  ``supported_modalities``;
* context: ``context_length``, ``context_window``, ``max_model_len``, ``context_size``,
  ``max_context_length``, ``metadata.context_length``, ``limits.context``,
  ``max_input_tokens``, ``top_provider.context_length``;
* capabilities: ``supports_*`` flags, ``supported_parameters`` (authoritative),
  ``tags`` / ``metadata.tags``, the input modalities.

A source with odd fields (see :mod:`knollm.catalog.sources`) declares a :class:`Spec`:
its pricing unit, the key holding its model kind, and hooks that read its own price and
capability fields. Values that cannot be read are reported through ``warn(field,
message)`` and left unknown; the record is never lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from knollm.catalog.normalize import (
    PER_MILLION,
    PER_TOKEN,
    BadValue,
    infer_kind,
    iso_date,
    to_bool,
    to_int,
    to_price,
    ts_to_date,
)

__all__ = ["Spec", "Prices", "Put", "Warn", "Offer", "GENERIC", "translate", "translator", "object_caps", "lower_list", "get",
           "is_router"]

Warn = Callable[[str, str], None]
#: ``put(capability, raw value)``: set a capability unless an earlier spelling already did
Put = Callable[[str, Any], None]
#: one offer read from a record: (provider id or None for the dump's own provider, model id, fields)
Offer = tuple["str | None", str, dict]


@dataclass(frozen=True, slots=True)
class Spec:
    """How one source departs from the common OpenAI-list fields."""

    #: unit of ``pricing.prompt`` / ``pricing.completion`` when the registry declares none
    #: (the build passes the declared one as ``price_unit``)
    pricing_unit: float = PER_TOKEN
    #: extra paths to the context window / max output, tried after the common ones
    context_paths: tuple[tuple[str, ...], ...] = ()
    max_output_paths: tuple[tuple[str, ...], ...] = ()
    #: keys holding the model kind, first non-empty wins
    kind_keys: tuple[str, ...] = ("model_type", "mode")
    #: every model in this dump is served from public weights
    open_weights: bool = False
    #: reads the source's own price fields, after the common ones
    prices: Callable[[dict, "Prices"], None] | None = None
    #: reads the source's own capability fields, after ``supported_parameters``
    capabilities: Callable[[dict, Put], None] | None = None
    #: the kind of a record whose ``kind_keys`` say nothing, instead of guessing from the id
    #: (a source that serves one kind only: Featherless serves LLMs)
    default_kind: str | None = None

_CONTEXT_PATHS: tuple[tuple[str, ...], ...] = (
    ("context_length",),
    ("context_window",),
    ("max_model_len",),
    ("context_size",),
    ("max_context_length",),
    ("metadata", "context_length"),
    ("limits", "context"),
    ("max_input_tokens",),
    ("top_provider", "context_length"),
)
_MAX_OUTPUT_PATHS: tuple[tuple[str, ...], ...] = (
    ("max_completion_tokens",),
    ("max_output_tokens",),
    ("max_output_length",),
    ("top_provider", "max_completion_tokens"),
    ("metadata", "max_tokens"),
    ("limits", "output"),
    ("limits", "completion"),
    ("limits", "max_output_tokens"),
    ("config", "max_output_length"),
)


def get(rec: dict, path: tuple[str, ...]) -> Any:
    cur: Any = rec
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _first_int(rec: dict, paths, field: str, warn: Warn) -> int | None:
    for path in paths:
        v = get(rec, path)
        if v is None:
            continue
        if isinstance(v, (dict, list)):
            warn(field, f"'{'.'.join(path)}' is a nested {type(v).__name__}, expected a number")
            continue
        try:
            i = to_int(v)
        except BadValue as e:
            warn(field, f"'{'.'.join(path)}': {e}")
            continue
        if i is not None:
            return i
    return None


class Prices:
    """Collects prices for one record, handling units, '-1' and bad values."""

    def __init__(self, warn: Warn) -> None:
        self.values: dict[str, float] = {}
        self.raw: dict[str, str] = {}  # field -> "label=raw value" (named in plausibility warnings)
        self.variable = False
        #: the source's ``input`` / ``output`` are not per token and their unit is unknown:
        #: the build marks them suspect ``unit_unknown`` (``price_unit_unknown`` in the fields)
        self.unit_unknown = False
        self.warn = warn

    def put(self, field: str, raw: Any, unit: float, label: str) -> None:
        if raw is None or field in self.values:
            return
        if isinstance(raw, (dict, list)):
            self.warn(f"prices.{field}", f"'{label}' is a nested {type(raw).__name__}, expected a number")
            return
        try:
            price, variable = to_price(raw, unit)
        except BadValue as e:
            self.warn(f"prices.{field}", f"'{label}': {e}")
            return
        if variable:
            self.variable = True
            return
        if price is not None:
            self.values[field] = price
            self.raw[field] = f"{label}={raw!r}"

    def put_paths(self, rec: dict, table: tuple[tuple[str, tuple[str, ...], float], ...]) -> None:
        """``put`` each ``(field, path in rec, unit)`` in order; the label is the dotted path."""
        for field, path, unit in table:
            raw = get(rec, path)
            if raw is not None and field not in self.values:
                self.put(field, raw, unit, ".".join(path))


def lower_list(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x).lower() for x in v if isinstance(x, (str, int))]
    return []


def _modalities(rec: dict) -> tuple[list[str] | None, list[str] | None]:
    arch = rec.get("architecture") if isinstance(rec.get("architecture"), dict) else {}
    inp = arch.get("input_modalities")
    out = arch.get("output_modalities")
    if inp is None and isinstance(arch.get("modality"), str) and "->" in arch["modality"]:
        a, b = arch["modality"].split("->", 1)
        inp, out = a.split("+"), b.split("+")
    mods = rec.get("modalities")
    if inp is None and isinstance(mods, dict) and isinstance(mods.get("input"), list):
        inp = mods.get("input")
        out = mods.get("output") if isinstance(mods.get("output"), list) else out
    if inp is None and isinstance(rec.get("supported_modalities"), list):
        inp = rec.get("supported_modalities")
        out = rec.get("supported_output_modalities")
    norm = {"file": "pdf"}
    fix = lambda xs: sorted({norm.get(x, x) for x in lower_list(xs)}) if xs is not None else None  # noqa: E731
    return fix(inp), fix(out)


def _capabilities(spec: Spec, rec: dict, inputs: list[str] | None) -> dict[str, bool]:
    caps: dict[str, bool] = {}

    def put(name: str, value: Any) -> None:
        if name in caps:
            return
        try:
            b = to_bool(value)
        except BadValue:
            return
        if b is not None:
            caps[name] = b

    # explicit boolean flags
    for key in ("supports_tools", "supports_function_calling"):
        put("tools", rec.get(key))
    put("vision", rec.get("supports_vision"))
    put("vision", rec.get("supports_image_input"))
    put("structured_output", rec.get("supports_response_schema"))
    put("structured_output", rec.get("supports_structured_output"))
    put("reasoning", rec.get("supports_reasoning"))
    put("prompt_caching", rec.get("supports_prompt_caching"))
    put("web_search", rec.get("supports_web_search"))
    put("audio_input", rec.get("supports_audio_input"))
    put("pdf_input", rec.get("supports_pdf_input"))
    # authoritative list: when present, absence means "no"
    params = rec.get("supported_parameters")
    if isinstance(params, list):
        ps = set(lower_list(params))
        put("tools", "tools" in ps)
        put("structured_output", "structured_outputs" in ps)
        put("json_mode", "response_format" in ps or "structured_outputs" in ps)
        put("reasoning", "reasoning" in ps or "include_reasoning" in ps)
    if spec.capabilities is not None:
        spec.capabilities(rec, put)
    tags = lower_list(get(rec, ("metadata", "tags")) or rec.get("tags"))
    if tags:
        if "vision" in tags:
            put("vision", True)
        if "reasoning_effort" in tags or "reasoning" in tags:
            put("reasoning", True)
        if "prompt_cache" in tags:
            put("prompt_caching", True)
    if inputs is not None:
        put("vision", "image" in inputs)
        if "audio" in inputs:
            put("audio_input", True)
        if "pdf" in inputs:
            put("pdf_input", True)
    return caps


@lru_cache(maxsize=None)
def _pricing_table(unit: float) -> tuple[tuple[str, tuple[str, ...], float], ...]:
    """The common ``pricing`` object; ``unit`` is the source's unit of ``prompt`` / ``completion``."""
    return (
        # OpenRouter-style (USD/token unless the source says otherwise)
        ("input", ("pricing", "prompt"), unit),
        ("output", ("pricing", "completion"), unit),
        ("cache_read", ("pricing", "input_cache_read"), unit),
        ("cache_write", ("pricing", "input_cache_write"), unit),
        ("request", ("pricing", "request"), 1.0),
        # OpenRouter's (and its clones') ``pricing.image`` is USD per *input* image (the
        # price of reading an image), never a generated image's price (``image``)
        ("image_input", ("pricing", "image"), 1.0),
        # Together / Friendli / HF router / Baseten: per million
        ("input", ("pricing", "input"), PER_MILLION),
        ("output", ("pricing", "output"), PER_MILLION),
    )


def _prices(spec: Spec, rec: dict, warn: Warn, price_unit: float | None = None) -> Prices:
    p = Prices(warn)
    pricing = rec.get("pricing")
    if pricing is not None and not isinstance(pricing, dict):
        warn("prices", f"'pricing' is a {type(pricing).__name__}, expected an object")
    p.put_paths(rec, _pricing_table(spec.pricing_unit if price_unit is None else price_unit))
    if spec.prices is not None:
        spec.prices(rec, p)
    return p


def _name(rec: dict) -> str | None:
    for key in ("display_name", "name", "title", "clean_name"):
        v = rec.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _str(rec: dict, key: str) -> str | None:
    v = rec.get(key)
    return v.strip() if isinstance(v, str) and v.strip() else None


def translate(rid: str, rec: dict, warn: Warn, *, spec: Spec | None = None,
              sentinels: frozenset = frozenset(), price_unit: float | None = None) -> dict:
    """Normalize one record; ``spec`` says how its source departs from the common fields;
    ``price_unit`` is the registry's unit of ``pricing.prompt`` / ``.completion`` (None:
    undeclared - read with ``spec.pricing_unit`` and marked ``unit_assumed``)."""
    spec = spec or GENERIC
    out: dict[str, Any] = {"id": rid}
    name = _name(rec)
    if name and name != rid:
        out["name"] = name
    desc = _str(rec, "description") or _str(rec, "tagline") or _str(get(rec, ("metadata",)) or {}, "description")
    if desc:
        out["description"] = desc
    inputs, outputs = _modalities(rec)
    explicit_kind = None
    for key in spec.kind_keys:
        explicit_kind = rec.get(key)
        if explicit_kind:
            break
    explicit_kind = explicit_kind if isinstance(explicit_kind, str) else None
    if explicit_kind is None and spec.default_kind is not None:
        kind = spec.default_kind
    else:
        kind = infer_kind(rid, explicit_kind)
    if outputs and "image" in outputs and "text" not in outputs:
        kind = "image"
    elif outputs and "embeddings" in outputs:
        kind = "embedding"
    out["kind"] = kind
    if inputs is not None:
        out["input_modalities"] = inputs
    if outputs is not None:
        out["output_modalities"] = outputs
    ctx = _first_int(rec, spec.context_paths and _CONTEXT_PATHS + spec.context_paths or _CONTEXT_PATHS,
                     "context_window", warn)
    if ctx is not None:
        out["context_window"] = ctx
    mo = _first_int(rec, spec.max_output_paths and _MAX_OUTPUT_PATHS + spec.max_output_paths or _MAX_OUTPUT_PATHS,
                    "max_output", warn)
    if mo is not None:
        out["max_output"] = mo
    caps = _capabilities(spec, rec, inputs)
    if caps:
        out["capabilities"] = caps
    p = _prices(spec, rec, warn, price_unit)
    prices = p.values
    if price_unit is None and isinstance(rec.get("pricing"), dict) and (
            rec["pricing"].get("prompt") is not None or rec["pricing"].get("completion") is not None):
        out["unit_assumed"] = True
    if kind in ("image", "video", "audio"):
        # 0/0 on media models means "not priced per token here", not free
        for k in ("input", "output"):
            if prices.get(k) == 0:
                del prices[k]
    if prices.get("input") == 0 and prices.get("output") == 0 and is_router(rid):
        # a router (``openrouter/auto``, ``redpill/auto``) bills the model it routes to: its
        # 0/0 is "variable", not free
        del prices["input"], prices["output"]
        p.variable = True
    for k in [k for k in prices if k not in ("input", "output")]:
        if prices[k] == 0 and not (k in ("cache_read", "cache_write") and prices.get("input") == 0):
            del prices[k]  # "0" here means "not charged separately"/"not offered", not a price
    if prices:
        out["prices"] = prices
        out["_raw"] = {k: p.raw[k] for k in prices if k in p.raw}
    if p.variable:
        out["variable_pricing"] = True
    if p.unit_unknown and ("input" in prices or "output" in prices):
        out["price_unit_unknown"] = True
    # dates
    created = rec.get("created") if "created" in rec else rec.get("created_at")
    if created is not None and created not in sentinels:
        try:
            d = ts_to_date(created)
            if d:
                out["created"] = d
        except BadValue as e:
            warn("created", str(e))
    # deprecation
    dep = rec.get("deprecation") or rec.get("deprecation_date")
    if dep:
        # a date is a retirement schedule: the build compares it with its own date
        try:
            out["deprecation_date"] = iso_date(dep) if isinstance(dep, str) else None
        except BadValue:
            out["deprecation_date"] = None
        if not out["deprecation_date"]:
            out["deprecated"] = True
    if rec.get("active") is False:
        out["deprecated"] = True
    # open weights: the provider points at public weights
    hf = rec.get("hugging_face_id") or rec.get("hugging_face_url")
    link = rec.get("link") or rec.get("url")
    if (isinstance(hf, str) and hf) or (isinstance(link, str) and "huggingface.co/" in link) or spec.open_weights:
        out["open_weights"] = True
    owner = _str(rec, "owned_by") or _str(rec, "organization")
    if owner:
        out["owned_by"] = owner
    q = _str(rec, "quantization") or _str(rec, "quant")
    if q:
        out["quantization"] = q
    return out


GENERIC = Spec()


def object_caps(key: str, names: dict[str, str]) -> Callable[[dict, Put], None]:
    """A capability hook for a nested object ``rec[key]``: ``{capability: its key there}``."""

    def read(rec: dict, put: Put) -> None:
        obj = rec.get(key)
        if isinstance(obj, dict):
            for cap, name in names.items():
                put(cap, obj.get(name))

    return read


#: the last path segment of a router's id: the model it bills is chosen per request
_ROUTER_ID = re.compile(r"^(?:auto|auto-router|auto-model|router|model-router)$")


def is_router(model_id: str) -> bool:
    """True for a routing pseudo-model's id (``openrouter/auto``, ``redpill/auto``, ``*/router``)."""
    return bool(_ROUTER_ID.match(model_id.lower().rstrip("/").rsplit("/", 1)[-1]))


def translator(spec: Spec) -> Callable[..., list[Offer]]:
    """The dispatch-table entry of a one-record-one-offer source described by ``spec``."""

    def translate_one(rid: str, rec: dict, warn: Warn, sentinels: frozenset = frozenset(),
                      price_unit: float | None = None) -> list[Offer]:
        return [(None, rid, translate(rid, rec, warn, spec=spec, sentinels=sentinels, price_unit=price_unit))]

    return translate_one
