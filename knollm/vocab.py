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
    "TOKEN_PRICE_FIELDS", "PLAUSIBLE_PRICE", "PLAUSIBLE_PRICE_BY_KIND", "PLAUSIBLE_TOKENS",
    "PLAUSIBLE_TOKENS_BY_KIND", "EMBEDDING_MAX_INPUT", "PLACEHOLDER_TOKENS",
    "SUSPECT_CHECKS",
    "FIRST_PARTY", "PLACEHOLDER_OWNERS", "COMPARE_FIELDS", "first_party", "capability", "as_json",
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
    PriceField("image", "Per image", "image", "USD per generated (output) image."),
    # appended by issue 10 (every dimension the sources carry); per-1M-token fields end in "1M tokens"
    PriceField("cache_write_1h", "Cache write (1h)", "1M tokens",
               "USD per 1M input tokens written to a 1-hour cache (cache_write is the default/5-minute one)."),
    PriceField("image_input", "Per input image", "image", "USD per input image."),
    PriceField("pixel_input", "Per input pixel", "pixel", "USD per input pixel."),
    PriceField("pixel_output", "Per output pixel", "pixel", "USD per generated pixel."),
    PriceField("image_token_input", "Image input tokens", "1M tokens", "USD per 1M image input tokens."),
    PriceField("image_token_output", "Image output tokens", "1M tokens", "USD per 1M image output tokens."),
    PriceField("audio_input", "Audio input tokens", "1M tokens", "USD per 1M audio input tokens."),
    PriceField("audio_output", "Audio output tokens", "1M tokens", "USD per 1M audio output tokens."),
    PriceField("audio_second_input", "Audio input per second", "second",
               "USD per second of input audio (per-minute prices are divided by 60)."),
    PriceField("second_input", "Per input second", "second", "USD per second of input (audio/video models)."),
    PriceField("second_output", "Per output second", "second", "USD per second of generated audio/video."),
    PriceField("video_second_input", "Video input per second", "second", "USD per second of input video."),
    PriceField("character_input", "Input characters", "1M characters", "USD per 1M input characters."),
    PriceField("character_output", "Output characters", "1M characters", "USD per 1M output characters."),
    PriceField("reasoning_output", "Reasoning tokens", "1M tokens", "USD per 1M reasoning (thinking) tokens."),
    PriceField("web_search", "Per web search", "search",
               "USD per web search a provider-run search tool made (Anthropic's web_search server tool: "
               "usage.server_tool_use.web_search_requests)."),
)

#: price fields a token workload uses (the cost formula); the rest are shown, never summed
TOKEN_PRICE_FIELDS: tuple[str, ...] = ("input", "output", "cache_read", "cache_write", "request")

#: plausibility checks (knollm.catalog.plausible): ``(low, high)`` per price field and kind
#: family, USD in the field's unit; a value outside is kept and marked suspect
PLAUSIBLE_PRICE: dict[str, tuple[float, float]] = {
    "input": (0.0, 200.0), "output": (0.0, 800.0), "cache_read": (0.0, 200.0), "cache_write": (0.0, 250.0),
    "cache_write_1h": (0.0, 300.0), "request": (0.0, 10.0), "image": (0.0, 5.0), "image_input": (0.0, 1.0),
    "pixel_input": (0.0, 1e-4), "pixel_output": (0.0, 1e-4), "image_token_input": (0.0, 200.0),
    "image_token_output": (0.0, 800.0), "audio_input": (0.0, 500.0), "audio_output": (0.0, 800.0),
    "audio_second_input": (0.0, 0.1), "second_input": (0.0, 1.0), "second_output": (0.0, 5.0),
    "video_second_input": (0.0, 1.0), "character_input": (0.0, 500.0), "character_output": (0.0, 500.0),
    "reasoning_output": (0.0, 800.0), "web_search": (0.0, 0.1),
}
#: per-token prices of embedding / rerank / moderation models are far lower than chat prices
PLAUSIBLE_PRICE_BY_KIND: dict[str, dict[str, tuple[float, float]]] = {
    "embedding": {"input": (0.0, 20.0), "output": (0.0, 20.0)},
    "rerank": {"input": (0.0, 50.0), "output": (0.0, 50.0)},
    "moderation": {"input": (0.0, 20.0), "output": (0.0, 20.0)},
}
#: token limits: a context window or max output outside this range is suspect
PLAUSIBLE_TOKENS: tuple[int, int] = (16, 10_500_000)  # Llama 4 Scout: 10M
#: token limits by kind (``{kind: {field: (low, high)}}``), checked after ``PLAUSIBLE_TOKENS``:
#: embedding models read at most 131,072 tokens: most read 512-32k (bge / e5 / MiniLM: 512, OpenAI: 8k,
#: Qwen3-Embedding: 32k documented, served at 40,960; voyage-3.x: 32k), the largest documented ones
#: 120k-128k (Cohere embed-v4.0: 128,000; voyage-context-3: 120,000 per request); 128k plus headroom
#: (2^17). Above it (a 1M / 2M context) is a chat model's limit copied onto an embedding model
PLAUSIBLE_TOKENS_BY_KIND: dict[str, dict[str, tuple[int, int]]] = {
    "embedding": {"context_window": (16, 131_072)},
}
#: values that are placeholders, not limits (all nines, 2^31-1, 2^32-1, 10^9…)
PLACEHOLDER_TOKENS: frozenset[int] = frozenset({9_999_999, 99_999_999, 999_999_999, 2_147_483_647,
                                                4_294_967_295, 1_000_000_000, 10_000_000_000})
#: what an embedding model of a known family reads (``(pattern, max input tokens)``): the
#: pattern must match the whole last path segment of the model id, case-insensitive
#: (``@cf/baai/bge-m3`` -> ``bge-m3``). An embedding model of such a family whose context window is
#: above its family's maximum is suspect (``kind_token_range``): typically a registry's chat-model
#: default (models.dev: 128,000 on Cloudflare's bge / Qwen3 embeddings). A value at or below it is
#: fine. Only families whose limit is documented, each with its evidence (PLaMo-Embedding-1B is not
#: listed: neither its model card nor Cloudflare's page states a limit):
EMBEDDING_MAX_INPUT: tuple[tuple[str, int], ...] = (
    # BAAI bge-{small,base,large}-en-v1.5: BERT, 512 positions; sentence_bert_config max_seq_length 512
    # (https://huggingface.co/BAAI/bge-large-en-v1.5/blob/526a20975a162cebb8088ad96164a79689839bcf/
    # sentence_bert_config.json); Cloudflare: "Maximum Input Tokens 512"
    # (https://developers.cloudflare.com/workers-ai/models/bge-base-en-v1.5/, all three:
    # https://developers.cloudflare.com/workers-ai/models/embedding/)
    (r"bge-(?:small|base|large)-en-v1\.5", 512),
    # BAAI bge-m3: "long documents of up to 8192 tokens", Sequence Length 8192
    # (https://docs.api.nvidia.com/nim/reference/baai-bge-m3; https://deepinfra.com/BAAI/bge-m3: 8,192)
    (r"bge-m3", 8_192),
    # intfloat e5-{small,base,large}[-v2] (BERT, max_position_embeddings 512): the E5 cards' Limitations:
    # "Long texts will be truncated to at most 512 tokens" (https://huggingface.co/intfloat/e5-large-unsupervised/
    # commit/8c8127a6a87dfdaebe0baa246958790232aea15b; e5-base likewise)
    (r"e5-(?:small|base|large)(?:-v2)?", 512),
    # intfloat multilingual-e5-{small,base,large}[-instruct] (XLM-RoBERTa): reads 512 tokens (card; DeepInfra:
    # "support up to 512 tokens per input", https://deepinfra.com/intfloat/multilingual-e5-large-instruct);
    # its config's max_position_embeddings is 514 (512 + XLM-R's 2 padding-offset positions,
    # https://huggingface.co/intfloat/multilingual-e5-large-instruct/blob/main/onnx/config.json), which
    # providers list as the context (Together: "Context length 514",
    # https://www.together.ai/models/multilingual-e5-large-instruct): 514 is not a copied chat limit
    (r"multilingual-e5-(?:small|base|large)(?:-instruct)?", 514),
    # sentence-transformers all-MiniLM-L6-v2 / L12-v2 (BERT): the card's "input text longer than 256 word
    # pieces is truncated" is sentence-transformers' default max_seq_length, not what the network reads:
    # max_position_embeddings 512 and tokenizer model_max_length 512
    # (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/discussions/66). 512, so a provider
    # serving it at 512 is not marked; the check is for 128k-style copies, not 256 vs 512
    (r"all-minilm-l(?:6|12)-v2", 512),
    # nomic-ai nomic-embed-text-v1 / v1.5: "8192 context length text encoder"
    # (https://huggingface.co/nomic-ai/nomic-embed-text-v1); v1.5 "an 8192 context"
    # (https://developers.llamaindex.ai/python/examples/embeddings/nomic); not v2 (a different model)
    (r"nomic-embed-text-v1(?:\.5)?", 8_192),
    # Qwen3-Embedding-{0.6B,4B,8B}: 32k documented (Xinference "Max Tokens: 32768",
    # https://inference.readthedocs.io/en/stable/models/builtin/embedding/qwen3-embedding-8b.html), served at
    # its 40,960 position limit (Fireworks' model list in the dumps; Ollama: "40K context window",
    # https://ollama.com/dengcao/Qwen3-Embedding-8B); not Qwen3-VL-Embedding (another model)
    (r"qwen3-embedding-(?:0\.6b|4b|8b)", 40_960),
)

#: suspect marks: why a value is kept but not trusted (``Model.suspect`` values)
SUSPECT_CHECKS: dict[str, str] = {
    "price_range": "price outside the plausible range for its kind (unit error?)",
    "token_range": "token limit outside the plausible range",
    "kind_token_range": "token limit implausible for the model's kind (an embedding context above 131,072: "
                        "the largest documented embedding context is 128k, Cohere embed-v4.0; or above what "
                        "its model family reads, EMBEDDING_MAX_INPUT: bge-*-en-v1.5 512, bge-m3 8,192…)",
    "placeholder": "a placeholder number, not a limit",
    "cache_read_above_input": "a cache read priced above the input it replaces (sources of different dates, a "
                              "placeholder input of 0): one of the two is wrong",
    "max_output_gt_context": "the provider says max output exceeds its own context window",
    "unit_unknown": "the source's price unit is not declared in the provider registry, or the source lists a "
                    "non-token price (speech-to-text) as input/output in an undocumented unit",
}

#: the sources, highest precedence first (see :mod:`knollm.catalog.schema`)
SOURCE_TABLE: tuple[SourceMark, ...] = (
    SourceMark("probe", "P", "measured by `knollm probe` (a dated request to the provider)", "probe"),
    SourceMark("dump", "D", "the provider's own model list (dump)", "provider dump"),
    SourceMark("genai-prices", "G", "the genai-prices registry", "genai-prices"),
    SourceMark("models.dev", "M", "the models.dev registry", "models.dev"),
    SourceMark("models.dev~canonical", "m",
               "models.dev's entry for the same canonical model on another provider (or a differently served "
               "sibling): a reference, not this offer's own entry", "models.dev (other provider)"),
    SourceMark("models.dev~family", "f", "models.dev's entry for the same model family on another provider: "
               "a low-confidence reference", "models.dev (model family)"),
    SourceMark("litellm", "L", "LiteLLM's cost map", "LiteLLM"),
    SourceMark("inferred", "I", "inferred from the model name", "inferred from name"),
    SourceMark("knollm", "K", "Knollm's provider registry (knollm/data/providers.toml)", "Knollm registry"),
)

#: model kinds; the last one (``other``) is the fallback
KINDS: tuple[str, ...] = ("chat", "completion", "embedding", "image", "audio", "rerank", "moderation", "video",
                          "other")
#: the usual modalities (offered as completions; the data may name others)
MODALITIES: tuple[str, ...] = ("text", "image", "audio", "video", "pdf", "embedding")
#: ``--sort`` keys of the CLI / ``Catalog.search(sort=...)``; ``relevance``: exact id / name /
#: canonical-id matches of the search text first, then first-party offers, deprecated last
SORT_KEYS: tuple[str, ...] = ("price", "context", "name", "provider", "output_price", "relevance")

#: model family prefix -> the provider that makes the model (its "first-party" offer). A family
#: matches when it equals a prefix or starts with ``prefix-`` (``gpt-oss`` -> ``gpt``). Used to
#: resolve a bare id / canonical id to one offer and by the ``relevance`` sort.
FIRST_PARTY: dict[str, str] = {
    "gpt": "openai", "o": "openai", "o-mini": "openai", "chatgpt": "openai", "text-embedding": "openai",
    "dall-e": "openai", "whisper": "openai", "tts": "openai", "codex": "openai", "davinci": "openai",
    "claude": "anthropic", "gemini": "gemini", "gemma": "gemini", "grok": "xai", "deepseek": "deepseek",
    "mistral": "mistral", "ministral": "mistral", "mixtral": "mistral", "devstral": "mistral",
    "codestral": "mistral", "magistral": "mistral", "pixtral": "mistral", "kimi": "moonshot",
    "command": "cohere", "glm": "zai", "minimax": "minimax", "llama": "llama", "qwen": "alibaba",
    "mimo": "xiaomi", "voyage": "voyageai", "jamba": "ai21", "sonar": "perplexity", "ernie": "baidu",
}

#: ``owned_by`` values that are API placeholders, not an owner (shown as unknown)
PLACEHOLDER_OWNERS: frozenset[str] = frozenset(
    {"system", "user", "organization_owner", "organization-owner", "unknown", "custom", "default", "none", ""})

#: the rows of a side-by-side comparison (``knollm compare`` and the site's compare page)
COMPARE_FIELDS: tuple[str, ...] = (
    ("provider", "canonical_id", "kind", "context_window", "max_output")
    + tuple(f"prices.{p.key}" for p in PRICE_TABLE if p.key not in ("cache_write", "image"))
    + ("free",)
    + tuple(f"capabilities.{c.key}" for c in CAPABILITY_TABLE)
    + ("input_modalities", "output_modalities", "open_weights", "deprecated", "release_date")
)


def first_party(family: str | None) -> str | None:
    """The provider id that makes models of ``family`` (:data:`FIRST_PARTY`), or None."""
    if not family:
        return None
    f = family.lower().rsplit("/", 1)[-1]
    while f:
        if f in FIRST_PARTY:
            return FIRST_PARTY[f]
        if "-" not in f:
            return None
        f = f.rsplit("-", 1)[0]
    return None

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
        "suspect": dict(SUSPECT_CHECKS),
        "compare": list(COMPARE_FIELDS),
        "first_party": FIRST_PARTY,
        "placeholder_owners": sorted(PLACEHOLDER_OWNERS),
    }
