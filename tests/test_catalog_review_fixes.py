"""Catalog data-correctness fixes from the review of the real build.

1. OpenRouter / Redpill ``pricing.image`` is the price per *input* image (``image_input``),
   not per generated image (``image``).
2. A models.dev "alias" join (same provider, same canonical id) needs the same serving
   variant: ``:free`` / ``:extended`` / ``-fast`` / ``-Turbo`` / ``-TEE`` siblings and the
   Hugging Face router's entry for a ``<model>:<backend>`` offer give no price.
3. ``free`` needs every known price to be 0; a LiteLLM 0/0 alone is unconfirmed (unknown).
4. A region-less registry price never overrides a regional one (Bedrock ``sa-east-1/…``).
5. Together's text-to-speech prices are per 1M characters (``character_input``), not tokens.

Each rule is checked on small hand-written dumps shaped like the real ones (registries are
replaced by hand-made snapshots, so the tests do not depend on the packaged registry data),
and on the real dumps in ../shared/model_catalog when they are there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knollm.catalog import build as build_mod
from knollm.catalog.build import build_catalog
from knollm.catalog.identity import region_of, same_variant, serving_variant
from knollm.catalog.registries import RegistryModel, RegistrySnapshot

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "model_catalog"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(),
                                  reason=f"real provider dumps not found at {SHARED} (../shared/model_catalog)")


# ---------------------------------------------------------------------------- helpers
def _dump(tmp: Path, source: str, data: Any) -> None:
    (tmp / f"models_{source}.json").write_text(json.dumps(data))


def _openai_list(*records: dict) -> dict:
    return {"object": "list", "data": list(records)}


def _snapshot(name: str, models: dict[str, list[dict[str, Any]]]) -> RegistrySnapshot:
    """A registry snapshot: ``{knollm provider: [fields with "id"]}``."""
    snap = RegistrySnapshot(name, "test")
    for pid, entries in models.items():
        bucket = snap.models.setdefault(pid, {})
        for f in entries:
            bucket[f["id"].lower()] = RegistryModel(pid, f["id"], dict(f))
    return snap


def _build(tmp: Path, monkeypatch, md: dict | None = None, gp: dict | None = None) -> dict:
    """Build ``tmp``'s dumps with the given registries (hand-made, nothing else)."""
    monkeypatch.setattr(build_mod, "load_models_dev", lambda table: _snapshot("models.dev", md or {}))
    monkeypatch.setattr(build_mod, "load_genai_prices", lambda table, now=None: _snapshot("genai-prices", gp or {}))
    return build_catalog(tmp, probes=None)


def _by_key(cat: dict) -> dict[str, dict]:
    return {m["key"]: m for m in cat["models"]}


def _price_sources(m: dict) -> dict[str, str]:
    return {k: v for k, v in m["sources"].items() if k.startswith("prices.")}


# ---------------------------------------------------------------------------- 1. input image price
_OPUS = {"id": "anthropic/claude-3-opus", "name": "Anthropic: Claude 3 Opus", "context_length": 200000,
         "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                          "output_modalities": ["text"]},
         "pricing": {"prompt": "0.000015", "completion": "0.000075", "request": "0", "image": "0.024",
                     "web_search": "0", "internal_reasoning": "0", "input_cache_read": "0.0000015",
                     "input_cache_write": "0.00001875"}}


def test_openrouter_pricing_image_is_the_input_image_price(tmp_path):
    _dump(tmp_path, "openrouter", _openai_list(_OPUS))
    _dump(tmp_path, "redpill", _openai_list(dict(_OPUS, id="anthropic/claude-3-haiku",
                                                 pricing=dict(_OPUS["pricing"], image="0.0004"))))
    cat = _by_key(build_catalog(tmp_path, registries=False, probes=None))
    for key, per_image in (("openrouter/anthropic/claude-3-opus", 0.024), ("redpill/anthropic/claude-3-haiku", 0.0004)):
        m = cat[key]
        assert m["prices"]["image_input"] == pytest.approx(per_image), key  # USD per image, not per million
        assert m["prices"]["image"] is None, key  # never a generated-image price
        assert m["sources"]["prices.image_input"] == "dump" and "prices.image" not in m["sources"]
        assert m["prices"]["input"] == pytest.approx(15.0) and m["prices"]["output"] == pytest.approx(75.0)


# ---------------------------------------------------------------------------- 2. serving variants
def test_serving_variant_names_the_tier():
    assert serving_variant("meta-llama/llama-3-8b-instruct:free")[0] == {":free"}
    assert serving_variant("meta-llama/llama-3-8b-instruct")[0] == frozenset()
    assert serving_variant("Qwen/Qwen3-32B-fast", "nebius")[0] == {"fast"}
    assert serving_variant("moonshotai/Kimi-K2-Instruct:together", "huggingface")[0] == {"@together"}
    assert not same_variant("meta-llama/llama-3-8b-instruct:extended", "meta-llama/llama-3-8b-instruct")
    assert not same_variant("Qwen/Qwen3-32B", "Qwen/Qwen3-32B-TEE", "chutes")
    assert not same_variant("deepseek-ai/DeepSeek-R1-0528-Turbo", "deepseek-ai/DeepSeek-R1-0528", "deepinfra")
    assert not same_variant("@cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-2-7b-chat-fp16")
    # spellings of one offer stay one variant
    assert same_variant("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "deepinfra")
    assert same_variant("models/gemini-2.5-pro", "gemini-2.5-pro", "gemini")
    assert same_variant("meta-llama/llama-3.1-8b-instruct/fp-16", "meta/llama-3.1-8b-instruct", "inference")
    assert same_variant("bedrock-model:0", "bedrock-model")  # a version tag is not a tier


_MD_SIBLINGS = {
    "openrouter": [{"id": "meta-llama/llama-3-8b-instruct", "context_window": 8192,
                    "capabilities": {"tools": True, "reasoning": False},
                    "prices": {"input": 0.04, "output": 0.04, "cache_read": 0.35}}],
    "nebius": [
        {"id": "Qwen/Qwen3-32B", "prices": {"input": 0.1, "output": 0.3, "cache_read": 0.01}},
        # base listed first, its -fast tier second: the fast offer must find the fast entry
        {"id": "meta-llama/Llama-3.1-8B-Instruct", "prices": {"input": 0.02, "output": 0.06}},
        {"id": "meta-llama/Llama-3.1-8B-Instruct-fast", "prices": {"input": 0.03, "output": 0.09}},
    ],
    "deepinfra": [{"id": "meta-llama/Llama-3.1-70B-Instruct", "prices": {"input": 0.4, "output": 0.4}}],
    "huggingface": [{"id": "moonshotai/Kimi-K2-Instruct", "prices": {"input": 1.0, "output": 3.0},
                     "capabilities": {"tools": True}}],
}


def _sibling_dumps(tmp: Path) -> None:
    _dump(tmp, "litellm", {
        "openrouter/meta-llama/llama-3-8b-instruct:free": {
            "max_tokens": 8192, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
            "litellm_provider": "openrouter", "mode": "chat"},
        "openrouter/meta-llama/llama-3-8b-instruct:extended": {
            "max_tokens": 16384, "input_cost_per_token": 2.25e-07, "output_cost_per_token": 2.25e-06,
            "litellm_provider": "openrouter", "mode": "chat"},
    })
    _dump(tmp, "nebius", _openai_list(
        {"id": "Qwen/Qwen3-32B-fast", "created": 1757327371, "object": "model", "owned_by": "system"},
        {"id": "meta-llama/Meta-Llama-3.1-8B-Instruct-fast", "created": 1757327372, "object": "model",
         "owned_by": "system"}))
    _dump(tmp, "deepinfra", _openai_list({"id": "meta-llama/Meta-Llama-3.1-70B-Instruct", "object": "model"}))
    _dump(tmp, "huggingface", _openai_list({
        "id": "moonshotai/Kimi-K2-Instruct", "object": "model", "owned_by": "moonshotai",
        "providers": [{"provider": "together", "status": "live", "context_length": 131072},
                      {"provider": "novita", "status": "live", "pricing": {"input": 0.57, "output": 2.3}}]}))


def test_alias_join_needs_the_same_serving_variant(tmp_path, monkeypatch):
    _sibling_dumps(tmp_path)
    cat = _by_key(_build(tmp_path, monkeypatch, md=_MD_SIBLINGS))

    free = cat["openrouter/meta-llama/llama-3-8b-instruct:free"]
    assert (free["prices"]["input"], free["prices"]["output"]) == (0.0, 0.0)
    assert free["prices"]["cache_read"] is None  # not the paid model's 0.35
    assert set(_price_sources(free).values()) == {"litellm"} and free["free"] is True
    assert free["joins"]["models.dev"] == "canonical"
    # the sibling still gives non-price facts of the same model
    assert free["capabilities"]["tools"] is True and free["sources"]["capabilities.tools"] == "models.dev~canonical"

    ext = cat["openrouter/meta-llama/llama-3-8b-instruct:extended"]
    assert ext["prices"]["input"] == pytest.approx(0.225) and ext["prices"]["output"] == pytest.approx(2.25)
    assert set(_price_sources(ext).values()) == {"litellm"}

    fast = cat["nebius/Qwen/Qwen3-32B-fast"]
    assert all(v is None for v in fast["prices"].values())  # the base tier's price is not the fast tier's
    assert fast["joins"]["models.dev"] == "canonical" and fast["free"] is False
    # the base tier is an offer of its own, with its own price
    base = cat["nebius/Qwen/Qwen3-32B"]
    assert base["prices"]["input"] == 0.1 and "registry_only" in base["flags"]

    # among several siblings, the one naming the same variant is joined
    fast8 = cat["nebius/meta-llama/Meta-Llama-3.1-8B-Instruct-fast"]
    assert (fast8["prices"]["input"], fast8["joins"]["models.dev"]) == (0.03, "alias")

    # a spelling of the same offer still joins with its price
    di = cat["deepinfra/meta-llama/Meta-Llama-3.1-70B-Instruct"]
    assert di["joins"]["models.dev"] == "alias" and di["prices"]["input"] == 0.4
    assert di["sources"]["prices.input"] == "models.dev"


def test_huggingface_backend_offer_gets_no_router_price(tmp_path, monkeypatch):
    _sibling_dumps(tmp_path)
    cat = _by_key(_build(tmp_path, monkeypatch, md=_MD_SIBLINGS))
    together = cat["huggingface/moonshotai/Kimi-K2-Instruct:together"]
    assert together["prices"]["input"] is None and together["prices"]["output"] is None
    assert "models.dev" not in _price_sources(together).values()
    assert together["capabilities"]["tools"] is True  # the model's facts are still the model's
    novita = cat["huggingface/moonshotai/Kimi-K2-Instruct:novita"]  # the backend's own price stays
    assert (novita["prices"]["input"], novita["sources"]["prices.input"]) == (0.57, "dump")
    router = cat["huggingface/moonshotai/Kimi-K2-Instruct"]  # the router's price, on the router's offer
    assert router["prices"]["input"] == 1.0 and "registry_only" in router["flags"]


# ---------------------------------------------------------------------------- 3. free / zeros
def test_free_needs_every_known_price_zero_and_litellm_zero_alone_is_unknown(tmp_path, monkeypatch):
    _dump(tmp_path, "litellm", {
        "rerank-english-v3.0": {"max_tokens": 4096, "max_input_tokens": 4096, "input_cost_per_token": 0.0,
                                "input_cost_per_query": 0.002, "output_cost_per_token": 0.0,
                                "litellm_provider": "cohere", "mode": "rerank"},
        "sagemaker/meta-textgeneration-llama-2-7b": {"max_tokens": 4096, "input_cost_per_token": 0.0,
                                                     "output_cost_per_token": 0.0, "litellm_provider": "sagemaker",
                                                     "mode": "completion"},
        "openrouter/meta-llama/llama-3-8b-instruct:free": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                                           "litellm_provider": "openrouter", "mode": "chat"},
        "perplexity/pplx-70b-online": {"input_cost_per_token": 0.0, "output_cost_per_token": 2.8e-06,
                                       "input_cost_per_request": 0.005, "litellm_provider": "perplexity",
                                       "mode": "chat"},
    })
    _dump(tmp_path, "openrouter", _openai_list(
        {"id": "qwen/qwen3-8b:free", "context_length": 40960,
         "pricing": {"prompt": "0", "completion": "0", "request": "0", "image": "0"}},
        {"id": "acme/paid-per-request", "context_length": 8192,
         "pricing": {"prompt": "0", "completion": "0", "request": "0.01", "image": "0"}}))
    cat = _by_key(_build(tmp_path, monkeypatch))

    rerank = cat["cohere/rerank-english-v3.0"]
    assert rerank["prices"]["request"] == 0.002 and rerank["free"] is False

    sm = cat["amazon-sagemaker/meta-textgeneration-llama-2-7b"]
    assert sm["prices"]["input"] is None and sm["prices"]["output"] is None and sm["free"] is False
    assert "zero_price_unconfirmed" in sm["flags"]
    assert sm["alternatives"]["prices.input"] == {"litellm": 0.0}  # the zero is kept, as for registries

    per_request = cat["openrouter/acme/paid-per-request"]
    assert per_request["prices"]["request"] == 0.01 and per_request["free"] is False
    # explicit zeros stay free: the provider's own dump, or an id that says free
    assert cat["openrouter/qwen/qwen3-8b:free"]["free"] is True
    lfree = cat["openrouter/meta-llama/llama-3-8b-instruct:free"]
    assert lfree["free"] is True and lfree["prices"]["input"] == 0.0
    # one LiteLLM zero beside a real price is a price (input tokens not charged), not "unknown"
    pplx = cat["perplexity/pplx-70b-online"]
    assert pplx["prices"]["input"] == 0.0 and pplx["prices"]["output"] == pytest.approx(2.8)
    assert pplx["free"] is False


# ---------------------------------------------------------------------------- 4. regions
def test_region_of():
    assert region_of("sa-east-1/meta.llama3-70b-instruct-v1:0") == "sa-east-1"
    assert region_of("us-gov-west-1/amazon.nova-pro-v1:0") == "us-gov-west-1"
    assert region_of("eu/gpt-4o-2024-08-06") == "eu"
    assert region_of("meta.llama3-70b-instruct-v1:0") is None
    assert region_of("global-standard/gpt-4o-mini") is None  # the default price, not a region
    assert region_of("Mr-Vicky-01/some-model") is None


def test_regionless_registry_price_does_not_override_a_regional_one(tmp_path, monkeypatch):
    _dump(tmp_path, "litellm", {
        "bedrock/sa-east-1/meta.llama3-70b-instruct-v1:0": {
            "max_tokens": 8192, "max_input_tokens": 8192, "max_output_tokens": 8192,
            "input_cost_per_token": 4.45e-06, "output_cost_per_token": 5.88e-06, "litellm_provider": "bedrock",
            "mode": "chat"},
        "meta.llama3-70b-instruct-v1:0": {
            "max_tokens": 8192, "input_cost_per_token": 2.65e-06, "output_cost_per_token": 3.5e-06,
            "litellm_provider": "bedrock", "mode": "chat"},
        "bedrock/us-gov-east-1/amazon.nova-pro-v1:0": {
            "input_cost_per_token": 9.6e-07, "output_cost_per_token": 3.84e-06, "litellm_provider": "bedrock",
            "mode": "chat"},
    })
    gp = {"amazon-bedrock": [{"id": "meta.llama3-70b-instruct-v1:0", "prices": {"input": 2.65, "output": 3.5}}]}
    md = {"amazon-bedrock": [{"id": "amazon.nova-pro-v1:0",
                              "prices": {"input": 0.8, "output": 3.2, "cache_read": 0.2}}]}
    cat = _by_key(_build(tmp_path, monkeypatch, md=md, gp=gp))

    sa = cat["amazon-bedrock/sa-east-1/meta.llama3-70b-instruct-v1:0"]
    assert (sa["prices"]["input"], sa["prices"]["output"]) == (pytest.approx(4.45), pytest.approx(5.88))
    assert sa["sources"]["prices.input"] == "litellm" and sa["joins"]["genai-prices"] == "alias"
    assert sa["alternatives"]["prices.input"] == {"genai-prices": 2.65}  # the disagreement is kept
    assert sa["alternatives"]["prices.output"] == {"genai-prices": 3.5}

    gov = cat["amazon-bedrock/us-gov-east-1/amazon.nova-pro-v1:0"]
    assert gov["prices"]["input"] == pytest.approx(0.96) and gov["sources"]["prices.input"] == "litellm"
    assert gov["alternatives"]["prices.input"] == {"models.dev": 0.8}
    assert gov["prices"]["cache_read"] is None  # the default region's cache price does not complete it
    assert gov["alternatives"]["prices.cache_read"] == {"models.dev": 0.2}

    # the region-less offer still takes the registry's price first (documented precedence)
    base = cat["amazon-bedrock/meta.llama3-70b-instruct-v1:0"]
    assert base["prices"]["input"] == 2.65 and base["sources"]["prices.input"] == "genai-prices"


# ---------------------------------------------------------------------------- 5. per-character prices
def test_together_text_to_speech_is_priced_per_character(tmp_path):
    _dump(tmp_path, "togetherai", [
        {"id": "cartesia/sonic", "object": "model", "created": 0, "type": "audio", "running": False,
         "display_name": "Cartesia Sonic", "organization": "Together", "context_length": 0,
         "pricing": {"hourly": 0, "input": 65, "output": 0, "base": 0, "finetune": 0}},
        {"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "object": "model", "created": 1733443470, "type": "chat",
         "display_name": "Meta Llama 3.3 70B Instruct Turbo", "organization": "Meta", "context_length": 131072,
         "pricing": {"hourly": 0, "input": 0.88, "output": 0.88, "base": 0, "finetune": 0}},
    ])
    cat = _by_key(build_catalog(tmp_path, registries=False, probes=None))
    sonic = cat["togetherai/cartesia/sonic"]
    assert sonic["prices"]["input"] is None and sonic["prices"]["output"] is None
    assert sonic["prices"]["character_input"] == 65.0 and sonic["sources"]["prices.character_input"] == "dump"
    llama = cat["togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo"]
    assert llama["prices"]["input"] == 0.88 and llama["prices"]["character_input"] is None


# ---------------------------------------------------------------------------- the real dumps
@needs_shared
@pytest.mark.shared
def test_shared_review_fixes(shared_catalog):
    cat = _by_key(shared_catalog)
    raw = {}
    for source in ("openrouter", "redpill"):
        for r in json.loads((SHARED / f"models_{source}.json").read_bytes())["data"]:
            img = (r.get("pricing") or {}).get("image")
            if img not in (None, "", "0", 0):
                raw[f"{source}/{r['id']}"] = float(img)
    assert len(raw) > 50
    for key, per_image in raw.items():  # 1.
        m = cat[key]
        assert m["prices"]["image_input"] == pytest.approx(per_image), key
        assert m["sources"].get("prices.image") != "dump", key
    opus = cat["openrouter/anthropic/claude-3-opus"]
    assert opus["prices"]["image_input"] == 0.024 and opus["prices"]["image"] is None

    free = cat["openrouter/meta-llama/llama-3-8b-instruct:free"]  # 2.
    assert free["free"] is True and free["prices"]["input"] == 0.0
    ext = cat["openrouter/meta-llama/llama-3-8b-instruct:extended"]
    assert ext["prices"]["input"] == pytest.approx(0.225) and ext["sources"]["prices.input"] == "litellm"
    assert "models.dev" not in _price_sources(cat["nebius/Qwen/Qwen3-32B-fast"]).values()
    assert cat["openrouter/qwen/qwen3-8b:free"]["prices"]["cache_read"] is None
    hf = [m for m in shared_catalog["models"] if m["provider"] == "huggingface" and ":" in m["id"]]
    assert hf and not [m["key"] for m in hf if "models.dev" in _price_sources(m).values()]

    paid_free = [m["key"] for m in shared_catalog["models"]  # 3.
                 if m["free"] and any(v not in (None, 0) for v in m["prices"].values())]
    assert paid_free == []
    assert cat["cohere/rerank-english-v3.0"]["free"] is False
    assert not [m["key"] for m in shared_catalog["models"] if m["provider"] == "amazon-sagemaker" and m["free"]]

    sa = cat["amazon-bedrock/sa-east-1/meta.llama3-70b-instruct-v1:0"]  # 4.
    assert (sa["prices"]["input"], sa["prices"]["output"]) == (4.45, 5.88)
    assert sa["alternatives"]["prices.input"].get("genai-prices") == 2.65
    regional = [m for m in shared_catalog["models"] if region_of(m["id"]) and
                {"dump", "litellm"} & set(_price_sources(m).values())]
    assert regional and not [m["key"] for m in regional
                             if {"genai-prices", "models.dev"} & set(_price_sources(m).values())]

    for mid in ("cartesia/sonic", "cartesia/sonic-2"):  # 5.
        m = cat[f"togetherai/{mid}"]
        assert m["prices"]["input"] is None and m["prices"]["character_input"] == 65.0
