"""Canonical model identity across providers.

Every provider spells the same underlying model differently::

    accounts/fireworks/models/llama-v3p3-70b-instruct   (Fireworks)
    meta-llama/Llama-3.3-70B-Instruct-Turbo             (Together)
    llama-3.3-70b-versatile                             (Groq)

:func:`canonical_id` maps each spelling to one key (here ``llama-3.3-70b-instruct``)
shared by the same *weights / API model* on every provider.  It is a pure function of
``(model_id, provider)``, uses only :mod:`re` and :mod:`functools`, and is cached.

Rules, in the order they are applied
------------------------------------

1. **Routing prefixes** are removed: LiteLLM's ``<provider>/`` (``groq/``,
   ``together_ai/``, ``bedrock/`` ...; the inner provider then drives the
   provider-specific rules), ``@cf/`` / ``@hf/`` (Cloudflare), Fireworks'
   ``accounts/<account>/models/``, Gemini's ``models/``, LiteLLM image-size rows
   (``1024-x-1024/``), Vertex ``-maas`` and quantisation path segments
   (``.../fp-8``, ``.../bf-16``).
   A provider's own name as an id prefix before another vendor's model family
   (``cerebras-gpt-oss-120b``, ``databricks-claude-3-7-sonnet``) is dropped too; before
   anything else it is the provider's own model (``snowflake-arctic``, ``mistral-large``).
2. **Org / namespace**: the org of a ``org/model`` id is dropped when it is the
   model's creator, an official mirror or a serving namespace (``meta-llama``,
   ``Qwen``, ``deepseek-ai``, ``mistralai``, ``google``, ``unsloth``, ``chutesai``,
   ``phala`` ...).  Any other org is *kept* (lower-cased) so that a community
   fine-tune that re-uses a base name (``someone/Llama-3.2-1B-Instruct``) never
   collapses onto the base model.  Bedrock's ``[region.]vendor.model`` and
   Infermatic's ``Org-Model`` spellings are split the same way.
3. **Spelling**: lower case; ``_`` and spaces become ``-``; a ``.`` next to a letter
   is a separator (``FLUX.1-dev`` = ``FLUX-1-dev``), a ``.`` between digits is a
   version; Fireworks' ``v3p3`` / ``qwen2p5`` / ``glm-4p5`` become ``3.3`` / ``2.5`` /
   ``4.5``; ``Meta-Llama-3.1``, ``llama3.1``, ``llama-v3p1``, ``llama3-1`` all become
   ``llama-3.1``; ``qwen-2.5`` → ``qwen2.5``; ``gemma2`` → ``gemma-2``; ``Llama-3_3``
   → ``llama-3.3``; ``-v1_5`` → ``-v1.5``.
4. **Serving suffixes that are not a different model** are stripped: ``:free`` /
   ``:beta`` / ``:nitro`` / ``:extended`` / ``:thinking`` (OpenRouter variants),
   quantisation tags (``-fp8``, ``-bf16``, ``-awq``, ``-int4``, ``Q4_K_M``, ``.gguf``,
   ``@q8_0`` ...), ``-hf``, Chutes ``-TEE``, Together ``-tput`` / ``-free`` and
   ``-Instruct-{Turbo,Lite,Reference}``, Fireworks ``-basic``, Bedrock ``-v1:0``,
   ``-latest`` (an alias is the undated model), Poe host tags (``-T``, ``-FW``,
   ``-DI``, ``-CS``, ``-N``, ``-B10``; only with ``provider="poe"``).
   ``-turbo`` is removed **only** from open-weight ids (those with an ``-instruct``
   or a parameter-size token such as ``70b``, or DeepSeek R1/V3): ``gpt-4-turbo``,
   ``whisper-large-v3-turbo``, ``sdxl-turbo``, ``glm-5-turbo`` keep it.  ``-fast`` is
   removed the same way (Nebius' fast tier) and always with ``provider="nebius"``.
5. **Instruct markers**: Groq's ``-versatile`` / ``-instant`` / ``-specdec`` and
   context tags (``llama3-70b-8192``) mean ``-instruct``; ``llama-3-*-chat`` (Together)
   is ``-instruct``; Gemma's ``-instruct`` is ``-it``.  A base model never equals
   its instruct model: ``Meta-Llama-3.1-8B`` ≠ ``Meta-Llama-3.1-8B-Instruct``.  Two
   exceptions add ``-instruct``: Llama 3.3 70B (only ever released as instruct),
   and bare ``llama-X-Nb`` / ``gemma-X-Nb`` ids from chat-only providers (cerebras,
   groq, sambanova, poe).
6. **Snapshots**: date stamps (``-20241022``, ``-2024-08-06``, ``-0528``, ``-2507``,
   ``-001``, ``-preview-06-17``) are kept, so snapshots differ from each other and
   from the undated alias (``claude-3-5-sonnet`` ≠ ``claude-3-5-sonnet-20241022``).
   Exceptions where the date adds nothing: ``Mistral-Small-3.1-24B-Instruct-2503``
   = ``mistral-small-2503`` = ``mistral-small-3.1-24b-instruct``; Mistral NeMo (one
   release); ``kimi-k2-0711-preview`` = ``Kimi-K2-Instruct`` = ``kimi-k2``.
7. **Family spellings**: Claude is ``claude-3.5-sonnet`` (version first, < 4) or
   ``claude-sonnet-4.5`` (tier first, ≥ 4), whatever the provider wrote
   (``claude-3-5-sonnet``, ``Claude-Sonnet-3.5``, ``claude-4-opus``,
   ``claude-opus-4@20250514``); ``gemini-flash-1.5`` → ``gemini-1.5-flash``;
   ``deepseek-chat-v3-0324`` → ``deepseek-v3-0324``; ``llama4-maverick-instruct`` /
   ``llama-4-maverick`` → ``llama-4-maverick-17b-128e-instruct``; OpenRouter's
   ``qwen3-235b-a22b-2507`` → ``qwen3-235b-a22b-instruct-2507``;
   ``qwen3-coder`` → ``qwen3-coder-480b-a35b-instruct``; ``o3-mini-high`` → ``o3-mini``
   (a reasoning-effort setting); ``c4ai-command-*`` → ``command-*``.
8. **Bedrock / LiteLLM details**: ``-v1:0`` / ``-1:0`` are API versions and go, but
   ``mistral-7b-instruct-v0:2`` is ``v0.2`` and ``claude-v2:1`` is ``claude-2.1``;
   OpenAI fine-tuning rows keep their prefix (``ft:gpt-4o-2024-08-06``); LiteLLM
   region / commitment path segments (``eu/``, ``us-east-1/``, ``1-month-commitment/``)
   are dropped.  ``provider`` may be written ``"models.dev:<id>"`` or
   ``"genai-prices:<id>"``; only the part after the colon is used.

What is deliberately *not* merged: sizes (``7b`` ≠ ``8b``), versions (``qwen2.5`` ≠
``qwen3``), ``-mini`` / ``-nano`` / ``-lite`` / ``-vision`` / ``-coder`` / ``-thinking``
/ ``-base`` / ``-distill-*`` variants, ``-preview`` / ``-exp`` (except Groq and Kimi),
different dated snapshots, and community fine-tunes from different orgs.

:func:`family_id` gives a coarser key (``llama-3.3-70b-instruct`` → ``llama-3.3``,
``gpt-4o-mini`` → ``gpt-4o``) for low-confidence enrichment joins only.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["canonical_id", "family_id", "same_model", "normalize_provider", "serving_variant", "same_variant",
           "region_of"]

# --------------------------------------------------------------------------- tables

#: LiteLLM routing prefixes (``<prefix>/<model>``); the prefix names the serving provider
_ROUTING_PREFIXES = frozenset("""
aiml anyscale azure azure_ai bedrock bedrock_converse cerebras cloudflare dashscope databricks
deepgram deepinfra featherless_ai fireworks_ai friendliai gemini gradient_ai groq heroku hyperbolic
lambda_ai meta_llama morph nebius novita nscale oci ollama ollama_chat openrouter palm perplexity
replicate sagemaker sambanova snowflake text-completion-codestral together_ai v0 vercel_ai_gateway
vertex_ai voyage watsonx xai github github_copilot llamafile lm_studio datarobot
""".split())

#: leading path segments that are pricing-table rows, not part of a model id
_NOISE_SEGMENT = re.compile(r"^(?:\d+-x-\d+|max-x-max|hd|standard|low|medium|high|\d+-steps|max-steps|"
                            r"us|eu|global|global-standard|[a-z]{2}(?:-gov)?-[a-z]+-\d|\d+-(?:month|year)-commitment|"
                            r"invoke|converse)$")

#: orgs dropped from ``org/model``: model creators, official mirrors, serving namespaces
_DROP_ORGS = frozenset("""
meta-llama meta metaai meta-llama-official facebook qwen alibaba alibaba-nlp-official deepseek-ai deepseek
mistralai mistral google models gemini vertex openai anthropic microsoft nvidia moonshotai moonshot
kimi zai-org z-ai zai thudm zhipuai x-ai xai cohere coherelabs cohereforai amazon ai21 ai21labs baidu
minimaxai minimax tencent bytedance bytedance-seed ibm-granite ibm black-forest-labs stabilityai
stability-ai unsloth chutesai phala nousresearch-mirror google-deepmind perplexity perplexity-ai
meituan-longcat xiaomimimo xiaomi openrouter koboldcpp nousresearch alpindale
""".split())

#: Infermatic writes ``Org-Model`` with a dash; these orgs are split off there
_INFERMATIC_ORGS = ("deepseek-ai-", "qwen-", "nvidia-", "sao10k-", "thedrummer-", "nousresearch-",
                    "anthracite-org-", "raifle-", "intfloat-", "doctor-shotgun-", "tts-hexgrad-")

#: providers that only serve chat models, so a bare ``llama-3.1-8b`` there is the instruct model
_CHAT_ONLY = frozenset({"cerebras", "groq", "sambanova", "poe"})
#: model families of other vendors: a provider's own-name prefix before one of these is
#: serving identity (databricks-claude-3-7-sonnet, cerebras-gpt-oss-120b), while before
#: anything else it is the provider's own model name (snowflake-arctic, morph-v3-fast)
_FOREIGN_FAMILY = re.compile(
    r"(?:gpt|o[1-9]|llama|meta-llama|claude|qwen|qwq|mistral|mixtral|codestral|ministral|magistral|devstral|gemma|"
    r"gemini|deepseek|phi|glm|kimi|grok|command|jamba|nemotron|bge|e5|gte|yi|olmo|falcon|whisper|flux|"
    r"stable-diffusion|sdxl|granite|hermes|dbrx|minimax|mpt|starcoder|codellama|titan|nova-|embed)(?:[-_.:\d]|$)")
#: providers whose name is also a model-family prefix (mistral-large, gemini-2.0, deepseek-chat…):
#: their own-name prefix is part of the model id, never stripped
_FAMILY_PROVIDERS = frozenset("""
mistral gemini deepseek moonshot minimax cohere qwen perplexity openai anthropic google nvidia microsoft
amazon meta ibm xai zai ai21 reka writer upstage liquid baidu tencent stepfun kimi grok llama phi gemma glm
""".split())

_BEDROCK = re.compile(
    r"^(?:(?:us|eu|apac|au|jp|ca|global|us-gov)\.)?"
    r"(anthropic|meta|amazon|mistral|cohere|ai21|deepseek|qwen|openai|google|minimax|moonshot|moonshotai|"
    r"nvidia|writer|zai|stability|twelvelabs|luma)\.(.+)$")

# ------------------------------------------------------------------------- patterns

_SUFFIX_QUANT = re.compile(
    r"-(?:(?:fp|bf|int|f|fp-|bf-)(?:4|8|16|32)(?:-dynamic)?|awq|gptq|gguf|ggml|mlx|nvfp4|mxfp4|exl2|"
    r"w4a16|w8a8|4bit|8bit|bnb-4bit|q\d(?:-k)?(?:-[sml0-9])?|iq\d(?:-[a-z]{1,2})*|i1|hf|tee|tput|free|"
    r"basic|maas)$")
_QUANT_TAG = re.compile(r"^(?:q\d(?:[-_]k)?(?:[-_][sml0-9])?|iq\d\w*|f16|fp16|bf16|fp8|int[48]|awq|gguf)$", re.I)
_QUANT_SEGMENT = re.compile(r"^(?:fp|bf|int|f)-?(?:4|8|16|32)$")
_SIZE = re.compile(r"(?:^|-)(?:\d+x)?\d+(?:\.\d+)?[bm](?:-|$)")
_DIGIT_P_DIGIT = re.compile(r"(\d)p(\d)")
_DOT_SEP = re.compile(r"(?<=[a-z])\.|\.(?=[a-z])")
_MULTI_DASH = re.compile(r"-{2,}")

_LLAMA_PREFIX = re.compile(r"(?:meta-)?llama-?v?(?=\d)")
_LLAMA_MINOR = re.compile(r"llama-(\d)-(\d)(?=-|$)")
_LLAMA_BARE = re.compile(r"^llama-\d(?:\.\d)?(?:-vision)?-\d+b$")
_QWEN_VER = re.compile(r"(?<![a-z])qwen-(\d+(?:\.\d+)?)(?=-|$)")
_GEMMA_VER = re.compile(r"(?<![a-z])gemma(\d)")
_MINOR_DASH = re.compile(r"(?<![a-z0-9])(phi-|glm-|v)(\d)-(\d)(?=-|$)")
_CLAUDE_A = re.compile(r"^claude-(\d)(?:[-.](\d)(?!\d))?-(opus|sonnet|haiku)(.*)$")
_CLAUDE_B = re.compile(r"^claude-(opus|sonnet|haiku)-(\d)(?:[-.](\d)(?!\d))?(.*)$")
_GEMINI_SWAP = re.compile(r"^gemini-(flash|pro)-(\d\.\d)(.*)$")
_LLAMA4 = re.compile(r"^llama-4-(maverick|scout)(-17b)?(?:-(?:128|16)e)?(-instruct)?$")
_GROQ_INSTRUCT = re.compile(r"-(?:versatile|instant|specdec|4096|8192|32768)$")
_DATE8_THINKING = re.compile(r"(-\d{8})-thinking$")

#: cheap pre-check: does any of the family rules below possibly apply?
_FAMILY_HINT = re.compile(r"claude|gemini-|deepseek-chat-v|r1|v[23]|prover|c4ai-command|openai-gpt|zai-glm|open-mi")
_OLD_VERSION = re.compile(r"(?:-v0|claude-v\d|claude-instant-v\d)$", re.I)
_BEDROCK_VERSION = re.compile(r"-v?\d+$")
_V_SUFFIX = re.compile(r"-v\d+$")
_CLAUDE_OLD = re.compile(r"^claude-((?:instant-)?)v(?=\d)")
_QWEN2_BARE = re.compile(r"^qwen2(?:\.5)?(?:-coder|-vl)?-\d+b$")
_OLLAMA_SIZE = re.compile(r"\d+(?:\.\d+)?b", re.I)
_LLAMA_CHAT = re.compile(r"llama-[3-9](?:\.\d)?-\d+b-chat")
_POE_HOSTS = re.compile(r"-(?:t|fw|di|cs|n|b10|omni)(?:-128k)?$")

_ALIASES = {
    # OpenRouter / Cerebras / Poe short names for Qwen3 releases
    "qwen3-235b-a22b-2507": "qwen3-235b-a22b-instruct-2507",
    "qwen3-coder": "qwen3-coder-480b-a35b-instruct",
    "qwen3-coder-480b": "qwen3-coder-480b-a35b-instruct",
    "qwen3-coder-480b-a35b": "qwen3-coder-480b-a35b-instruct",
    "qwen3-coder-30b-a3b": "qwen3-coder-30b-a3b-instruct",
    # Mistral API names for open-weight releases
    "mistral-small-2501": "mistral-small-24b-instruct-2501",
    "mistral-small-2503": "mistral-small-3.1-24b-instruct",
    "mistral-small-2506": "mistral-small-3.2-24b-instruct",
    "mistral-small-3.1-24b-instruct-2503": "mistral-small-3.1-24b-instruct",
    "mistral-small-3.2-24b-instruct-2506": "mistral-small-3.2-24b-instruct",
    "mistral-nemo-2407": "mistral-nemo",
    "mistral-nemo-instruct-2407": "mistral-nemo",
    "mistral-nemo-12b-instruct": "mistral-nemo",
    "mistral-large-instruct-2407": "mistral-large-2407",
    "mistral-large-instruct-2411": "mistral-large-2411",
    "mixtral-8x7b-instruct": "mixtral-8x7b-instruct-v0.1",
    "mixtral-8x22b-instruct": "mixtral-8x22b-instruct-v0.1",
    # Kimi K2: the instruct model *is* "Kimi K2"; 0711 was its release
    "mistral-small-3.1": "mistral-small-3.1-24b-instruct",
    "mistral-small-3.2": "mistral-small-3.2-24b-instruct",
    "deepseek-prover-v2": "deepseek-prover-v2-671b",
    "kimi-k2-instruct": "kimi-k2",
    "kimi-k2-0711": "kimi-k2",
    "kimi-k2-0711-preview": "kimi-k2",
    "kimi-k2-0905-preview": "kimi-k2-0905",
    "kimi-k2-instruct-0905": "kimi-k2-0905",
    # reasoning-effort slugs of the same model
    "o3-mini-high": "o3-mini",
    "o4-mini-high": "o4-mini",
    "chatgpt-4o": "chatgpt-4o-latest",
}

_OPEN_MIXTRAL = {"open-mixtral-8x7b": "mixtral-8x7b-instruct-v0.1",
                 "open-mixtral-8x22b": "mixtral-8x22b-instruct-v0.1",
                 "open-mixtral-8x22b-2404": "mixtral-8x22b-instruct-v0.1"}


# -------------------------------------------------------------------------- helpers

@lru_cache(maxsize=256)
def normalize_provider(provider: str | None) -> str | None:
    """Lower-case a provider name and fold known spellings to the Knollm id (``together_ai`` → ``togetherai``)."""
    if not provider:
        return None
    p = provider.strip().lower()
    if ":" in p:  # "models.dev:amazon-bedrock", "genai-prices:groq"
        p = p.split(":", 1)[1]
    if p.startswith("models_"):
        p = p[7:]
    if p.endswith(".json"):
        p = p[:-5]
    if p.startswith("huggingface_"):  # genai-prices: huggingface_<backend>
        return "huggingface"
    from knollm.providers import provider_registry  # the one provider registry (aliases)

    return provider_registry().resolve(p)


def _strip_serving_suffixes(s: str, provider: str | None) -> str:
    """Remove trailing tags that name a deployment, not a model (loops until stable)."""
    while True:
        before = s
        # all tags are short: searching only the tail keeps the $-anchored regex cheap
        cut = len(s) - 20 if len(s) > 20 else 0
        m = _SUFFIX_QUANT.search(s, cut)
        if m and m.start() > 0:
            s = s[: m.start()]
        if provider == "poe":
            m = _POE_HOSTS.search(s, len(s) - 12 if len(s) > 12 else 0)
            if m and m.start() > 0:
                s = s[: m.start()]
        if s.endswith("-latest") and len(s) > 7:
            s = s[:-7]
        if s.endswith("-instruct-reference") or s.endswith("-instruct-lite"):
            s = s[: s.rindex("-")]
        if s.endswith("-turbo") or s.endswith("-fast"):
            stem = s[: s.rindex("-")]
            if ("-instruct" in stem or _SIZE.search(stem) or stem.startswith(("deepseek-r1", "deepseek-v3"))
                    or (provider == "nebius" and s.endswith("-fast"))):
                s = stem
        if s == before:
            return s


def _split_org(raw: str, provider: str | None) -> tuple[str | None, str, str | None]:
    """Return ``(org, name, provider)`` after removing routing prefixes and namespaces."""
    s = raw.strip()
    if s[:3].lower() == "hf:":  # models.dev "hf:<org>/<model>"
        s = s[3:]
    if s.startswith("@"):  # @cf/meta/..., @hf/thebloke/...
        s = s.split("/", 1)[1] if "/" in s else s[1:]
    parts = [p for p in s.split("/") if p]
    # LiteLLM "<provider>/<model>" routing prefix(es); image-size and region rows
    while len(parts) > 1:
        head = parts[0].lower()
        if head in _ROUTING_PREFIXES:
            provider = normalize_provider(head)
            parts = parts[1:]
        elif _NOISE_SEGMENT.match(head):
            parts = parts[1:]
        elif head.startswith("@"):
            parts[0] = head[1:]
        else:
            break
    if len(parts) >= 4 and parts[0].lower() == "accounts":  # accounts/<acct>/models/<name>
        parts = parts[3:]
    elif parts and parts[0] == "models" and len(parts) > 1:  # gemini models/<name>
        parts = parts[1:]
    # quantisation path segments (inference.net ".../fp-8", ".../bf-16")
    while len(parts) > 1 and _QUANT_SEGMENT.match(parts[-1].lower()):
        parts = parts[:-1]
    name = parts[-1] if parts else s
    org = parts[-2].lower().replace("_", "-") if len(parts) >= 2 else None
    return org, name, provider


# ------------------------------------------------------------------------ main API

@lru_cache(maxsize=131072)
def canonical_id(model_id: str, provider: str | None = None) -> str:
    """Map a provider's spelling of a model id to a canonical id shared across providers.

    ``provider`` (a dump name such as ``"groq"``, ``"togetherai"``, ``"poe"``,
    ``"litellm"``; optional) only switches on provider-specific rules (Poe host tags,
    Nebius ``-fast``, Groq ``-preview``, chat-only bare Llama names, Infermatic
    ``Org-Model``).  See the module docstring for the full rule list.

    >>> canonical_id("accounts/fireworks/models/llama-v3p3-70b-instruct", "fireworks")
    'llama-3.3-70b-instruct'
    >>> canonical_id("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together")
    'llama-3.3-70b-instruct'
    """
    if not model_id:
        return ""
    if model_id[:3].lower() == "ft:" and len(model_id) > 3:  # OpenAI fine-tuning of a base model
        return "ft:" + canonical_id(model_id[3:].split(":", 1)[0], provider)
    prov = normalize_provider(provider)
    org, name, prov = _split_org(model_id, prov)
    # a provider that prefixes ids with its own name (cerebras-gpt-oss-120b): the name is
    # serving identity, not model identity (unless the provider's name is a model family)
    if prov and prov not in _FAMILY_PROVIDERS and name[: len(prov) + 1].lower() == prov + "-" \
            and _FOREIGN_FAMILY.match(name[len(prov) + 1:].lower()):
        name = name[len(prov) + 1:]

    # ---- name-level prefixes / suffixes that use '@' or ':' or '.'
    if "@" in name:  # vertex claude@20241022, lmstudio name@q8_0, code-bison@002
        base, _, tag = name.partition("@")
        if tag.lower() in ("default", "latest") or _QUANT_TAG.match(tag):
            name = base
        else:
            name = f"{base}-{tag}"
    if ":" in name:
        base, _, tag = name.partition(":")
        if _OLLAMA_SIZE.fullmatch(tag):  # ollama size tags "llama3:70b"
            name = f"{base}-{tag}"
        elif tag.isdigit() and _OLD_VERSION.search(base):
            # bedrock "mistral-7b-instruct-v0:2" is v0.2, "anthropic.claude-v2:1" is Claude 2.1
            name = f"{base}.{tag}" if tag != "0" else base
        elif tag.isdigit() and not base.lower().startswith(("amazon.", "nova", "titan")):
            name = _BEDROCK_VERSION.sub("", base)  # bedrock API version "-v1:0", "-1:0"
        else:  # openrouter ":free/:beta/:extended/:thinking", amazon ":0"
            name = base
    bm = _BEDROCK.match(name.lower()) if "." in name and org is None else None
    if bm:
        vendor, name = bm.group(1), bm.group(2)
        if vendor == "deepseek" and not name.startswith("deepseek"):
            name = "deepseek-" + name
        if vendor != "amazon" and not _OLD_VERSION.search(name):
            name = _V_SUFFIX.sub("", name)
        prov = prov or "bedrock"

    s = name.lower().replace("_", "-").replace(" ", "-")
    if "." in s:
        s = _DOT_SEP.sub("-", s)
    if prov == "infermatic" and org is None:
        for pre in _INFERMATIC_ORGS:
            if s.startswith(pre) and len(s) > len(pre) + 2:
                org, s = pre[:-1], s[len(pre):]
                break
    if "--" in s:
        s = _MULTI_DASH.sub("-", s)
    s = s.strip("-")
    if org is not None:
        org = org.replace(".", "-")

    # ---- digits: fireworks "3p3", "-v1-5"
    if "p" in s and _DIGIT_P_DIGIT.search(s):
        s = _DIGIT_P_DIGIT.sub(r"\1.\2", s)

    s = _strip_serving_suffixes(s, prov)
    if s.endswith("-thinking"):
        s = _DATE8_THINKING.sub(r"\1", s)

    # ---- families
    if "llama" in s:
        s = s.replace("llamaguard", "llama-guard").replace("meta-llama-guard", "llama-guard")
        if _LLAMA_PREFIX.search(s):
            s = _LLAMA_PREFIX.sub("llama-", s)
        if _LLAMA_MINOR.search(s):
            s = _LLAMA_MINOR.sub(r"llama-\1.\2", s)
        if s.startswith("llama-"):
            if s.endswith("-chat") and _LLAMA_CHAT.fullmatch(s):
                s = s[:-5] + "-instruct"
            s = _GROQ_INSTRUCT.sub("-instruct", s)
            if prov == "groq" and s.endswith("-preview"):
                s = s[:-8] + "-instruct"
            if s == "llama-3.3-70b" or (prov in _CHAT_ONLY and _LLAMA_BARE.match(s)):
                s += "-instruct"
            if s in ("llama-3.2-11b-instruct", "llama-3.2-90b-instruct"):  # 3.2 11B/90B exist only as vision
                s = s[:-9] + "-vision-instruct"
            m = _LLAMA4.match(s)
            if m:
                kind, size, inst = m.groups()
                experts = "128e" if kind == "maverick" else "16e"
                s = f"llama-4-{kind}-17b-{experts}" + ("-instruct" if inst or not size else "")
    elif s.startswith("mixtral-"):
        s = _GROQ_INSTRUCT.sub("-instruct", s)
    if "qwen" in s:
        if _QWEN_VER.search(s):
            s = _QWEN_VER.sub(r"qwen\1", s)
        if prov in _CHAT_ONLY and _QWEN2_BARE.match(s):  # Poe "Qwen-2.5-72B-T" is the instruct model
            s += "-instruct"
    if "gemma" in s:
        s = _GEMMA_VER.sub(r"gemma-\1", s)
        if s.startswith("gemma"):
            if s.endswith("-instruct"):
                s = s[:-9] + "-it"
            elif prov in _CHAT_ONLY and re.fullmatch(r"gemma-\d+(?:n)?-\w+", s) and _SIZE.search(s):
                s += "-it"
            s = _GROQ_INSTRUCT.sub("-it", s)
    if "-" in s and _MINOR_DASH.search(s):
        s = _MINOR_DASH.sub(r"\1\2.\3", s)
    if s.startswith(("claude-v", "claude-instant-v")):
        s = _CLAUDE_OLD.sub(r"claude-\1", s)
    if not _FAMILY_HINT.match(s):
        pass
    elif s.startswith("claude"):
        m = _CLAUDE_A.match(s)
        if m:
            major, minor, tier, rest = m.groups()
        else:
            m = _CLAUDE_B.match(s)
            if m:
                tier, major, minor, rest = m.groups()
        if m:
            ver = major + (f".{minor}" if minor and minor != "0" else "")
            s = (f"claude-{tier}-{ver}" if int(major) >= 4 else f"claude-{ver}-{tier}") + rest
            s = re.sub(r"(-\d{8})-v\d+$", r"\1", s)
    elif s.startswith("gemini-"):
        m = _GEMINI_SWAP.match(s)
        if m:
            s = f"gemini-{m.group(2)}-{m.group(1)}{m.group(3)}"
    elif s.startswith("deepseek-chat-v"):
        s = "deepseek-" + s[14:]
    elif s.startswith(("r1", "v3", "v2", "prover")) and org in ("deepseek", "deepseek-ai"):
        s = "deepseek-" + s
    elif s.startswith("c4ai-command"):
        s = s[5:]
    elif s.startswith("openai-gpt"):
        s = s[7:]
    elif s.startswith("zai-glm"):
        s = s[4:]
    elif s.startswith("open-mi"):
        s = _OPEN_MIXTRAL.get(s, s[5:] if s.startswith(("open-mistral", "open-mixtral")) else s)
    if s.startswith("mistral-nemo") and s.endswith("-2407") and "base" not in s:
        s = "mistral-nemo"
    s = _ALIASES.get(s, s)

    if org and org not in _DROP_ORGS:
        return f"{org}/{s}"
    return s


_FAMILY_STOP = frozenset("""
instruct chat it base preview exp experimental latest mini nano lite turbo thinking reasoning
vision fast high low versatile instant free beta hd tts audio realtime search transcribe
""".split())
_DATE_TOKEN = re.compile(r"^(?:\d{8}|\d{4}|\d{2}|\d{3}|\d{4}-\d{2}-\d{2})$")
_SIZE_TOKEN = re.compile(r"^(?:\d+x)?\d+(?:\.\d+)?[bmk]$|^a\d+(?:\.\d+)?b$|^e\d+b$|^\d+e$")


@lru_cache(maxsize=65536)
def family_id(canonical: str) -> str:
    """Coarse family key of a canonical id, for low-confidence enrichment joins only.

    Keeps the leading "line + version" tokens and stops at the first size
    (``70b``, ``a22b``, ``8x7b``), date (``20241022``, ``0528``, ``2507``) or variant
    token (``instruct``, ``mini``, ``nano``, ``lite``, ``preview``, ``turbo``,
    ``vision``, ``thinking`` ...).  A community org prefix is kept.

    >>> family_id("llama-3.3-70b-instruct")
    'llama-3.3'
    >>> family_id("gpt-4o-mini-2024-07-18")
    'gpt-4o'
    >>> family_id("claude-3.5-sonnet-20241022")
    'claude-3.5-sonnet'
    """
    org, _, name = canonical.rpartition("/")
    # fold ISO dates into one token before splitting
    name = re.sub(r"-(\d{4})-(\d{2})-(\d{2})(?=-|$)", r"-\1\2\3", name)
    toks = name.split("-")
    keep: list[str] = []
    for i, t in enumerate(toks):
        if i > 0 and (t in _FAMILY_STOP or _SIZE_TOKEN.match(t) or _DATE_TOKEN.match(t)):
            break
        keep.append(t)
    fam = "-".join(keep) or name
    return f"{org}/{fam}" if org else fam


def same_model(a: str, b: str, provider_a: str | None = None, provider_b: str | None = None) -> bool:
    """True when ``a`` (as spelled by ``provider_a``) and ``b`` are the same model."""
    return canonical_id(a, provider_a) == canonical_id(b, provider_b)


# ------------------------------------------------------------------ serving variants and regions

#: dash tokens of an id that name a differently priced serving tier of the same model
#: (``canonical_id`` strips them: Nebius ``-fast``, DeepInfra / Together ``-Turbo``, Chutes
#: ``-TEE``, Together ``-tput`` / ``-Free`` / ``-Lite`` / ``-Reference``, Fireworks ``-basic``,
#: Groq ``-specdec``)
_TIER_TOKENS = frozenset({"free", "fast", "turbo", "tee", "tput", "nitro", "lite", "reference", "basic", "specdec"})
_TIER_SPLIT = re.compile(r"[-_.\s]+")
_QUANT_DASH = re.compile(r"\b(fp|bf|int)-(\d+)\b")
_QUANT_TOKEN = re.compile(r"^(?:(?:fp|bf|int|f)(?:4|8|16|32)|awq|gptq|gguf|ggml|mlx|nvfp4|mxfp4|exl2|w4a16|w8a8|"
                          r"4bit|8bit)$")
#: a region path segment: AWS (``sa-east-1``, ``us-gov-west-1``) or an Azure data zone (``eu``, ``us``);
#: ``global`` / ``global-standard`` are the default price, not a region
_REGION_SEGMENT = re.compile(r"^(?:(?:us|eu|ap|ca|sa|me|af|il|mx)(?:-gov)?-(?:east|west|north|south|central|"
                             r"northeast|southeast|northwest|southwest)-\d+|eu|us)$")


@lru_cache(maxsize=65536)
def serving_variant(model_id: str, provider: str | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """The serving tier an id names, as ``(tiers, quantisations)``; two ids of one canonical
    model on one provider are the *same offer* only when their variants are equal.

    ``tiers``: OpenRouter-style ``:free`` / ``:nitro`` / ``:extended`` / ``:beta`` /
    ``:thinking`` selectors, Hugging Face's ``:<backend>`` (``@<backend>``: the router's
    serving provider), and the tier tokens above. ``quantisations``: ``fp8``, ``int8``,
    ``bf16``… (also Inference.net's ``/fp-16`` path segment); a quantisation differs only
    when both ids name one (a provider serving one quantisation often omits it).

    >>> serving_variant("meta-llama/llama-3-8b-instruct:free")[0]
    frozenset({':free'})
    >>> serving_variant("Qwen/Qwen3-32B-fast", "nebius")[0]
    frozenset({'fast'})
    """
    parts = [p for p in model_id.lower().split("/") if p] or [model_id.lower()]
    name = parts[-1]
    tiers: set[str] = set()
    base, sep, tag = name.rpartition(":")
    if sep and base:
        if normalize_provider(provider) == "huggingface":
            tiers.add("@" + tag)
        elif tag.isalpha() and tag != "latest":
            tiers.add(":" + tag)
        name = base
    quant: set[str] = set()
    names = [name]
    if len(parts) > 1 and _QUANT_SEGMENT.match(name):  # Inference.net ".../llama-3.1-8b-instruct/fp-16"
        names.insert(0, parts[-2])
    for n in names:
        for tok in _TIER_SPLIT.split(_QUANT_DASH.sub(r"\1\2", n)):
            if _QUANT_TOKEN.match(tok):
                quant.add(tok)
            elif tok in _TIER_TOKENS:
                tiers.add(tok)
    return frozenset(tiers), frozenset(quant)


def same_variant(a: str, b: str, provider: str | None = None) -> bool:
    """True when ids ``a`` and ``b`` (one provider) name the same serving variant
    (:func:`serving_variant`): equal tiers, and no two different quantisations."""
    ta, qa = serving_variant(a, provider)
    tb, qb = serving_variant(b, provider)
    return ta == tb and (not qa or not qb or qa == qb)


@lru_cache(maxsize=65536)
def region_of(model_id: str) -> str | None:
    """The region a (LiteLLM-style) id names in a path segment (``sa-east-1/meta.llama3-…``
    -> ``sa-east-1``; Azure data zones ``eu/`` / ``us/``), or None: a region-less id."""
    parts = [p for p in model_id.lower().split("/") if p]
    for seg in parts[:-1]:
        if _REGION_SEGMENT.match(seg):
            return seg
    return None
