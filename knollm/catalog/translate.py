"""Translate one raw dump record into Knollm's normalized offer fields.

Providers spell the same facts many ways (see ``../shared/README.md``). Each fact has one
small extractor here that knows every spelling seen in the real dumps:

* prices: OpenRouter-style ``pricing.prompt`` strings in USD/token; Chutes, Together,
  DeepInfra, Friendli and the HF router per million; Novita ``*_price_per_m`` in units of
  $0.0001/M; LiteLLM ``*_cost_per_token`` per token;
* context: ``context_length``, ``context_window``, ``max_model_len``, ``context_size``,
  ``max_context_length``, ``metadata.context_length``, ``limits.context``,
  ``max_input_tokens``, ``top_provider.context_length``;
* capabilities: ``supports_tools``, ``function_calling``, ``tool_use``, ``"tools" in
  supported_parameters``, ``features: function-calling`` … → ``tools``; image input,
  ``supports_vision``, ``tags: vision`` → ``vision``; and so on.

``translate(provider_source, record_id, record, warn)`` returns a dict of normalized
fields; values it cannot read are reported through ``warn(field, message)`` and left
unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knollm.catalog.normalize import (
    NOVITA_UNIT,
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

__all__ = ["translate", "translate_litellm", "expand_hf_router", "Warn", "LITELLM_PROVIDER_MAP", "litellm_model_id"]

Warn = Callable[[str, str], None]

#: unit of ``pricing.prompt`` / ``pricing.completion`` per dump source (default: per token)
_PRICING_UNIT = {"chutes": PER_MILLION}

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
    ("top_provider", "max_completion_tokens"),
    ("metadata", "max_tokens"),
    ("limits", "output"),
)


def _get(rec: dict, path: tuple[str, ...]) -> Any:
    cur: Any = rec
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _first_int(rec: dict, paths, field: str, warn: Warn) -> int | None:
    for path in paths:
        v = _get(rec, path)
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


class _Prices:
    """Collects prices for one record, handling units, '-1' and bad values."""

    def __init__(self, warn: Warn) -> None:
        self.values: dict[str, float] = {}
        self.variable = False
        self.warn = warn
        self.zeros: set[str] = set()

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


def _lower_list(v: Any) -> list[str]:
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
    if inp is None and isinstance(rec.get("supported_modalities"), list):
        inp = rec.get("supported_modalities")
        out = rec.get("supported_output_modalities")
    norm = {"file": "pdf"}
    fix = lambda xs: sorted({norm.get(x, x) for x in _lower_list(xs)}) if xs is not None else None  # noqa: E731
    return fix(inp), fix(out)


def _capabilities(source: str, rec: dict, inputs: list[str] | None) -> dict[str, bool]:
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
    # nested capability objects (Mistral: capabilities.*, Friendli: functionality.*)
    c = rec.get("capabilities")
    if isinstance(c, dict):
        put("tools", c.get("function_calling"))
        put("vision", c.get("vision"))
        put("fine_tuning", c.get("fine_tuning"))
        put("audio_input", c.get("audio"))
    f = rec.get("functionality")
    if isinstance(f, dict):
        put("tools", f.get("tool_call"))
        put("structured_output", f.get("structured_output"))
    # authoritative lists: when present, absence means "no"
    params = rec.get("supported_parameters")
    if isinstance(params, list):
        ps = set(_lower_list(params))
        put("tools", "tools" in ps)
        put("structured_output", "structured_outputs" in ps)
        put("json_mode", "response_format" in ps or "structured_outputs" in ps)
        put("reasoning", "reasoning" in ps or "include_reasoning" in ps)
    feats = rec.get("supported_features")  # Baseten
    if isinstance(feats, list):
        fs = set(_lower_list(feats))
        put("tools", "tools" in fs)
        put("structured_output", "structured_outputs" in fs)
        put("json_mode", "json_mode" in fs)
        put("reasoning", "reasoning" in fs)
    feats = rec.get("features")  # Novita (authoritative list), Featherless (only when non-empty)
    if isinstance(feats, list):
        fs = set(_lower_list(feats))
        authoritative = source == "novita"
        for cap, names in (
            ("tools", ("function-calling", "tool_use", "tools", "function_calling")),
            ("structured_output", ("structured-outputs", "structured_output")),
            ("reasoning", ("reasoning",)),
            ("vision", ("vision",)),
        ):
            hit = any(n in fs for n in names)
            if hit or authoritative:
                put(cap, hit)
    tags = _lower_list(_get(rec, ("metadata", "tags")) or rec.get("tags"))
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


def _prices(source: str, rec: dict, warn: Warn) -> _Prices:
    p = _Prices(warn)
    pricing = rec.get("pricing")
    if pricing is not None and not isinstance(pricing, dict):
        warn("prices", f"'pricing' is a {type(pricing).__name__}, expected an object")
        pricing = None
    if isinstance(pricing, dict):
        unit = _PRICING_UNIT.get(source, PER_TOKEN)
        # OpenRouter-style (per token strings) / Chutes (per million numbers)
        p.put("input", pricing.get("prompt"), unit, "pricing.prompt")
        p.put("output", pricing.get("completion"), unit, "pricing.completion")
        p.put("cache_read", pricing.get("input_cache_read"), unit, "pricing.input_cache_read")
        p.put("cache_write", pricing.get("input_cache_write"), unit, "pricing.input_cache_write")
        p.put("request", pricing.get("request"), 1.0, "pricing.request")
        p.put("image", pricing.get("image"), 1.0, "pricing.image")
        # Together / Friendli / HF router: per million
        p.put("input", pricing.get("input"), PER_MILLION, "pricing.input")
        p.put("output", pricing.get("output"), PER_MILLION, "pricing.output")
    meta = rec.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("pricing"), dict):  # DeepInfra
        mp = meta["pricing"]
        p.put("input", mp.get("input_tokens"), PER_MILLION, "metadata.pricing.input_tokens")
        p.put("output", mp.get("output_tokens"), PER_MILLION, "metadata.pricing.output_tokens")
        p.put("cache_read", mp.get("cache_read_tokens"), PER_MILLION, "metadata.pricing.cache_read_tokens")
    if "input_token_price_per_m" in rec or "output_token_price_per_m" in rec:  # Novita
        p.put("input", rec.get("input_token_price_per_m"), NOVITA_UNIT, "input_token_price_per_m")
        p.put("output", rec.get("output_token_price_per_m"), NOVITA_UNIT, "output_token_price_per_m")
    # LiteLLM cost map: per token
    p.put("input", rec.get("input_cost_per_token"), PER_TOKEN, "input_cost_per_token")
    p.put("output", rec.get("output_cost_per_token"), PER_TOKEN, "output_cost_per_token")
    p.put("cache_read", rec.get("cache_read_input_token_cost"), PER_TOKEN, "cache_read_input_token_cost")
    p.put("cache_write", rec.get("cache_creation_input_token_cost"), PER_TOKEN, "cache_creation_input_token_cost")
    p.put("image", rec.get("output_cost_per_image"), 1.0, "output_cost_per_image")
    p.put("request", rec.get("input_cost_per_request"), 1.0, "input_cost_per_request")
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


def translate(source: str, rid: str, rec: dict, warn: Warn, *, sentinels: frozenset = frozenset()) -> dict:
    """Normalize one record of the dump ``models_<source>.json``."""
    out: dict[str, Any] = {"id": rid}
    name = _name(rec)
    if name and name != rid:
        out["name"] = name
    desc = _str(rec, "description") or _str(rec, "tagline") or _str(_get(rec, ("metadata",)) or {}, "description")
    if desc:
        out["description"] = desc
    inputs, outputs = _modalities(rec)
    explicit_kind = rec.get("type") if source == "togetherai" else rec.get("model_type") or rec.get("mode")
    kind = infer_kind(rid, explicit_kind if isinstance(explicit_kind, str) else None)
    if outputs and "image" in outputs and "text" not in outputs:
        kind = "image"
    elif outputs and "embeddings" in outputs:
        kind = "embedding"
    out["kind"] = kind
    if inputs is not None:
        out["input_modalities"] = inputs
    if outputs is not None:
        out["output_modalities"] = outputs
    ctx = _first_int(rec, _CONTEXT_PATHS, "context_window", warn)
    if ctx is not None:
        out["context_window"] = ctx
    mo = _first_int(rec, _MAX_OUTPUT_PATHS, "max_output", warn)
    if mo is not None:
        out["max_output"] = mo
    caps = _capabilities(source, rec, inputs)
    if caps:
        out["capabilities"] = caps
    p = _prices(source, rec, warn)
    prices = p.values
    if kind in ("image", "video", "audio"):
        # 0/0 on media models means "not priced per token here", not free
        for k in ("input", "output"):
            if prices.get(k) == 0:
                del prices[k]
    for k in ("image", "request", "cache_read", "cache_write"):
        if prices.get(k) == 0 and not (k in ("cache_read", "cache_write") and prices.get("input") == 0):
            del prices[k]  # "0" here means "not charged separately"/"not offered", not a price
    if prices:
        out["prices"] = prices
    if p.variable:
        out["variable_pricing"] = True
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
    if (isinstance(hf, str) and hf) or (isinstance(link, str) and "huggingface.co/" in link) or source == "featherless":
        out["open_weights"] = True
    owner = _str(rec, "owned_by") or _str(rec, "organization")
    if owner:
        out["owned_by"] = owner
    q = _str(rec, "quantization") or _str(rec, "quant")
    if q:
        out["quantization"] = q
    return out


# --------------------------------------------------------------------------- LiteLLM

#: LiteLLM ``litellm_provider`` -> Knollm provider id
LITELLM_PROVIDER_MAP = {
    "bedrock": "amazon-bedrock", "bedrock_converse": "amazon-bedrock", "sagemaker": "amazon-sagemaker",
    "openai": "openai", "text-completion-openai": "openai",
    "azure": "azure", "azure_text": "azure", "azure_ai": "azure-ai",
    "vercel_ai_gateway": "vercel", "gemini": "gemini", "palm": "gemini",
    "vertex_ai-anthropic_models": "google-vertex-anthropic",
    "together_ai": "togetherai", "fireworks_ai": "fireworks", "fireworks_ai-embedding-models": "fireworks",
    "mistral": "mistral", "codestral": "mistral", "text-completion-codestral": "mistral",
    "cohere": "cohere", "cohere_chat": "cohere", "lambda_ai": "lambda", "voyage": "voyageai",
    "gradient_ai": "gradient-ai", "meta_llama": "llama", "dashscope": "alibaba",
    "cloudflare": "cloudflare-workers-ai", "featherless_ai": "featherless", "friendliai": "friendli",
    "moonshot": "moonshot", "aleph_alpha": "aleph-alpha", "nlp_cloud": "nlp-cloud", "jina_ai": "jina-ai",
}


def litellm_provider_id(litellm_provider: str) -> str:
    if litellm_provider.startswith("vertex_ai"):
        return LITELLM_PROVIDER_MAP.get(litellm_provider, "google-vertex")
    return LITELLM_PROVIDER_MAP.get(litellm_provider, litellm_provider.replace("_", "-").lower())


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


def translate_litellm(rid: str, rec: dict, warn: Warn) -> tuple[str, dict] | None:
    """One LiteLLM cost-map entry -> (provider id, normalized fields)."""
    lp = rec.get("litellm_provider")
    if not isinstance(lp, str) or not lp:
        warn("provider", "no 'litellm_provider'")
        return None
    mid = litellm_model_id(rid, lp)
    fields = translate("litellm", mid, rec, warn)
    fields.pop("owned_by", None)
    ctx = fields.get("context_window")
    if ctx is None:
        # LiteLLM's legacy max_tokens is the output limit when max_output_tokens is absent
        pass
    if "max_output" not in fields:
        try:
            v = to_int(rec.get("max_tokens"))
        except BadValue:
            v = None
        if v is not None and not isinstance(rec.get("max_tokens"), (dict, list)):
            fields["max_output"] = v
    return litellm_provider_id(lp), fields


# --------------------------------------------------------------------------- HF router

def expand_hf_router(rid: str, rec: dict, warn: Warn) -> list[tuple[str, dict]]:
    """A HuggingFace-router record lists several serving providers: one offer each.

    The offer id is the router's own syntax ``<model>:<provider>``.
    """
    subs = rec.get("providers")
    if not isinstance(subs, list) or not subs:
        return [(rid, translate("huggingface", rid, rec, warn))]
    base = {k: v for k, v in rec.items() if k != "providers"}
    out = []
    for sub in subs:
        if not isinstance(sub, dict) or not isinstance(sub.get("provider"), str):
            warn("providers", "entry without a 'provider' name skipped")
            continue
        merged = dict(base)
        merged.update({k: v for k, v in sub.items() if k not in ("provider", "status")})
        oid = f"{rid}:{sub['provider']}"
        fields = translate("huggingface", oid, merged, warn)
        fields["name"] = f"{rid} via {sub['provider']}"
        fields["serving_provider"] = sub["provider"]
        if sub.get("status") not in (None, "live"):
            fields["deprecated"] = True
        out.append((oid, fields))
    return out
