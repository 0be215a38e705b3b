"""Catalog data-truth fixes from the second review of the real build.

1. A genai-prices *rule* hit (``contains`` / ``starts_with`` / regex) is not a join when the
   offer id names a size or variant the registry's model lacks (``gemini-1.5-flash-8b`` /
   ``-exp-0827`` / ``-latest`` under ``contains 'gemini-1.5-flash'``).
2. Join quality counts in price precedence: models.dev's exact entry beats a genai-prices
   rule / alias join (the other value stays in ``alternatives``).
3. Embedding / rerank / moderation models take no limits from another provider's entry;
   embeddings have no max output; an embedding context above 131,072 is suspect.
4. Values from another provider's models.dev entry are labelled ``models.dev~canonical`` /
   ``models.dev~family`` in ``sources`` (as in ``alternatives``).
5. Together's 0/0 is unknown unless the id or name says free; a router's 0/0 is variable.
6. Kinds: Featherless serves LLMs only; ``sentence-transformers/*`` and ``text2vec-*`` are
   embeddings; a ``bge-reranker`` is a reranker.
7. Together's ``transcribe`` prices are not per token: kept, marked ``unit_unknown``.

Small hand-written dumps shaped like the real ones (registries replaced by hand-made
snapshots where the rule is about precedence), the packaged genai-prices registry for the
match rules, and the real dumps in ../shared/model_catalog when they are there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knollm.catalog import build as build_mod
from knollm.catalog.build import build_catalog
from knollm.catalog.registries import RegistryModel, RegistrySnapshot


# ---------------------------------------------------------------------------- helpers
def _dump(tmp: Path, source: str, data: Any) -> None:
    (tmp / f"models_{source}.json").write_text(json.dumps(data))


def _openai_list(*records: dict) -> dict:
    return {"object": "list", "data": list(records)}


def _snapshot(name: str, models: dict[str, list[dict[str, Any]]],
              aliases: dict[str, dict[str, str]] | None = None) -> RegistrySnapshot:
    """A registry snapshot: ``{provider: [fields with "id"]}``; ``aliases``: ``{provider: {alias id:
    registry id}}`` (genai-prices ``equals`` match clauses: an ``alias`` join)."""
    snap = RegistrySnapshot(name, "test")
    for pid, entries in models.items():
        bucket = snap.models.setdefault(pid, {})
        for f in entries:
            bucket[f["id"].lower()] = RegistryModel(pid, f["id"], dict(f))
    for pid, table in (aliases or {}).items():
        snap.match_exact[pid] = {a.lower(): snap.models[pid][rid.lower()] for a, rid in table.items()}
    return snap


def _build(tmp: Path, monkeypatch, md: dict | None = None, gp: dict | None = None,
           gp_aliases: dict | None = None) -> dict:
    monkeypatch.setattr(build_mod, "load_models_dev", lambda table: _snapshot("models.dev", md or {}))
    monkeypatch.setattr(build_mod, "load_genai_prices",
                        lambda table, now=None: _snapshot("genai-prices", gp or {}, gp_aliases))
    return build_catalog(tmp, probes=None)


def _by_key(cat: dict) -> dict[str, dict]:
    return {m["key"]: m for m in cat["models"]}


@pytest.fixture(scope="module")
def genai_prices():
    from knollm.catalog.registries import load_genai_prices
    from knollm.providers import provider_registry

    return load_genai_prices(provider_registry())


# ---------------------------------------------------------------------------- 1. rule overreach
def test_genai_rule_does_not_join_a_smaller_or_experimental_sibling(genai_prices):
    from knollm.catalog.registries import genai_match

    def joined(mid: str) -> str | None:
        rm, _ = genai_match(genai_prices, "gemini", mid)
        return rm.id if rm is not None else None

    # the rule `contains 'gemini-1.5-flash'` is the Flash price, not Flash-8B's nor an -exp build's
    for mid in ("gemini-1.5-flash-8b", "models/gemini-1.5-flash-8b", "gemini-1.5-flash-8b-exp-0924",
                "gemini-1.5-flash-exp-0827", "models/gemini-1.5-flash-8b-001", "gemini-2.0-flash-exp",
                "gemini-2.0-flash-thinking-exp-01-21"):
        assert joined(mid) is None, mid
    # a -latest pointer is never priced from a rule: it names whatever model is current today
    assert joined("gemini-1.5-flash-latest") is None
    assert joined("gemini-flash-latest") is None
    # dated snapshots and previews of the model keep its price
    assert joined("gemini-1.5-flash-002") == "gemini-1.5-flash"
    assert joined("models/gemini-1.5-flash-002") == "gemini-1.5-flash"
    assert joined("gemini-2.5-flash-preview-04-17") == "gemini-2.5-flash-preview"
    assert joined("gemini-1.5-flash") == "gemini-1.5-flash"


def test_rule_overreach_tokens():
    from knollm.catalog.registries import rule_overreach

    assert rule_overreach("gemini-1.5-flash-8b", "gemini-1.5-flash")
    for extra in ("mini", "nano", "lite", "exp", "thinking", "latest", "70b", "8x7b"):
        assert rule_overreach(f"acme-2-{extra}", "acme-2"), extra
    assert rule_overreach("acme-2:free", "acme-2") and rule_overreach("acme-2-fp8", "acme-2-bf16")
    assert not rule_overreach("acme-2-20250101", "acme-2")
    assert not rule_overreach("acme-2-preview-06-17", "acme-2")
    assert not rule_overreach("acme-2-mini-2024-07-18", "acme-2-mini")  # the registry names the size


def test_gemini_flash_8b_is_not_priced_as_flash(tmp_path):
    _dump(tmp_path, "gemini", _openai_list({"id": "models/gemini-1.5-flash-8b", "object": "model"},
                                           {"id": "gemini-1.5-flash-002", "object": "model"}))
    cat = _by_key(build_catalog(tmp_path, probes=None))
    eight = cat["gemini/models/gemini-1.5-flash-8b"]
    assert eight["prices"]["input"] != 0.075 and "genai-prices" not in eight["joins"]
    flash = cat["gemini/gemini-1.5-flash-002"]
    assert flash["joins"]["genai-prices"] == "alias" and flash["prices"]["input"] == 0.075


# ---------------------------------------------------------------------------- 2. join quality in precedence
def test_exact_models_dev_price_beats_a_genai_prices_alias(tmp_path, monkeypatch):
    _dump(tmp_path, "gemini", _openai_list({"id": "gemini-flash-latest", "object": "model"},
                                           {"id": "gemini-2.5-pro", "object": "model"}))
    md = {"gemini": [{"id": "gemini-flash-latest", "prices": {"input": 0.3, "output": 2.5}},
                     {"id": "gemini-2.5-pro", "prices": {"input": 1.25, "output": 10.0}}]}
    gp = {"gemini": [{"id": "gemini-3.8-flash", "prices": {"input": 0.75, "output": 3.75}},
                     {"id": "gemini-2.5-pro", "prices": {"input": 1.5, "output": 10.0}}]}
    cat = _by_key(_build(tmp_path, monkeypatch, md=md, gp=gp,
                         gp_aliases={"gemini": {"gemini-flash-latest": "gemini-3.8-flash"}}))
    latest = cat["gemini/gemini-flash-latest"]
    assert latest["joins"] == {"genai-prices": "alias", "models.dev": "exact"}
    assert (latest["prices"]["input"], latest["prices"]["output"]) == (0.3, 2.5)
    assert latest["sources"]["prices.input"] == "models.dev"
    assert latest["alternatives"]["prices.input"] == {"genai-prices": 0.75}  # the other value is kept
    assert latest["alternatives"]["prices.output"] == {"genai-prices": 3.75}
    # genai-prices' exact entry still comes first (documented precedence)
    pro = cat["gemini/gemini-2.5-pro"]
    assert pro["prices"]["input"] == 1.5 and pro["sources"]["prices.input"] == "genai-prices"
    assert pro["alternatives"]["prices.input"] == {"models.dev": 1.25}


# ---------------------------------------------------------------------------- 3. limits of non-generative kinds
def _emb_fixture(tmp: Path) -> None:
    _dump(tmp, "deepinfra", _openai_list(
        {"id": "BAAI/bge-base-en-v1.5", "object": "model", "owned_by": "deepinfra"},
        {"id": "Qwen/Qwen3-Embedding-8B", "object": "model", "metadata": {"context_length": 40960,
                                                                          "max_tokens": 40960}},
        {"id": "Qwen/Qwen3-8B", "object": "model"}))


_MD_OTHER = {"cloudflare-workers-ai": [
    {"id": "BAAI/bge-base-en-v1.5", "context_window": 128000, "max_output": 16384,
     "capabilities": {"tools": False}},
    {"id": "qwen/qwen3-8b", "context_window": 131072, "max_output": 8192, "capabilities": {"tools": True},
     "release_date": "2025-04-29", "family": "qwen3"}]}


def test_embedding_takes_no_limits_from_another_providers_entry(tmp_path, monkeypatch):
    _emb_fixture(tmp_path)
    cat = _by_key(_build(tmp_path, monkeypatch, md=_MD_OTHER))
    bge = cat["deepinfra/BAAI/bge-base-en-v1.5"]
    assert bge["kind"] == "embedding" and bge["joins"]["models.dev"] == "canonical"
    assert bge["context_window"] is None and bge["max_output"] is None
    assert "context_window" not in bge["sources"] and "max_output" not in bge["sources"]
    # an embedding has no max output, whatever its own source says; its 40,960 context (Qwen3's
    # position limit, as Fireworks serves it) is plausible
    qe = cat["deepinfra/Qwen/Qwen3-Embedding-8B"]
    assert qe["max_output"] is None and qe["context_window"] == 40960
    assert qe["suspect"] == {}
    # a chat model still borrows the reference's limits
    chat = cat["deepinfra/Qwen/Qwen3-8B"]
    assert (chat["context_window"], chat["max_output"]) == (131072, 8192)


def test_embedding_context_plausibility():
    from knollm.catalog.plausible import token_check
    from knollm.vocab import SUSPECT_CHECKS

    assert token_check(2_000_000, "context_window", "embedding") == "kind_token_range"
    assert token_check(128000, "context_window", "embedding") is None  # Cohere embed-v4.0
    assert token_check(32768, "context_window", "embedding") is None
    assert token_check(128000, "context_window", "chat") is None
    assert token_check(128000) is None
    assert "kind_token_range" in SUSPECT_CHECKS


# ---------------------------------------------------------------------------- 4. source labels
def test_another_providers_values_are_labelled_as_references(tmp_path, monkeypatch):
    from knollm.vocab import SOURCES

    _emb_fixture(tmp_path)
    md = {"cloudflare-workers-ai": _MD_OTHER["cloudflare-workers-ai"],
          "nebius": [{"id": "Qwen/Qwen3-30B", "capabilities": {"reasoning": True, "tools": True}}]}
    _dump(tmp_path, "nebius", _openai_list({"id": "Qwen/Qwen3-30B-A3B-fast", "object": "model"}))
    cat = _build(tmp_path, monkeypatch, md=md)  # validated against the schema (Source literal)
    by = _by_key(cat)
    chat = by["deepinfra/Qwen/Qwen3-8B"]
    assert chat["sources"]["context_window"] == "models.dev~canonical"
    assert chat["sources"]["capabilities.tools"] == "models.dev~canonical"
    assert chat["sources"]["release_date"] == "models.dev~canonical"
    assert "models.dev" not in chat["sources"].values()
    assert {"models.dev~canonical", "models.dev~family"} <= set(SOURCES)
    # labels agree between sources and alternatives
    for m in cat["models"]:
        j = m["joins"].get("models.dev")
        for path, src in m["sources"].items():
            if src.startswith("models.dev"):
                assert src == {"canonical": "models.dev~canonical", "family": "models.dev~family"}.get(j, "models.dev"), \
                    (m["key"], path, src, j)
        for alts in m["alternatives"].values():
            assert all(s in SOURCES for s in alts)


def test_family_values_are_labelled_family(tmp_path, monkeypatch):
    _dump(tmp_path, "deepinfra", _openai_list({"id": "acme/zephyr-9-13b-instruct", "object": "model"}))
    md = {"openrouter": [{"id": "acme/zephyr-9-70b", "capabilities": {"tools": True}}]}
    m = _by_key(_build(tmp_path, monkeypatch, md=md))["deepinfra/acme/zephyr-9-13b-instruct"]
    assert m["joins"]["models.dev"] == "family"
    assert m["sources"]["capabilities.tools"] == "models.dev~family"


# ---------------------------------------------------------------------------- 5. zeros
def _together(id_: str, type_: str, inp: float, out: float, name: str, ctx: int | None = 32768) -> dict:
    return {"id": id_, "object": "model", "created": 1733443470, "type": type_, "display_name": name,
            "context_length": ctx, "pricing": {"hourly": 0, "input": inp, "output": out, "base": 0, "finetune": 0}}


def test_together_zero_is_unknown_unless_it_says_free(tmp_path):
    _dump(tmp_path, "togetherai", [
        _together("togethercomputer/MoA-1", "chat", 0, 0, "Together AI MoA-1"),
        _together("lgai/exaone-deep-32b", "chat", 0, 0, "EXAONE Deep 32B"),
        _together("meta-llama/Llama-3.3-70B-Instruct-Turbo-Free", "chat", 0, 0, "Meta Llama 3.3 70B Instruct Turbo Free"),
        _together("deepseek-ai/DeepSeek-R1-Distill-Llama-70B-free", "chat", 0, 0, "DeepSeek R1 Distill Llama 70B Free"),
        _together("BAAI/bge-large-en-v1.5", "embedding", 0.016, 0.016, "BAAI-Bge-Large-1.5", None),
    ])
    cat = _by_key(build_catalog(tmp_path, registries=False, probes=None))
    for key in ("togetherai/togethercomputer/MoA-1", "togetherai/lgai/exaone-deep-32b"):
        m = cat[key]
        assert m["prices"]["input"] is None and m["prices"]["output"] is None and m["free"] is False, key
    for key in ("togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free",
                "togetherai/deepseek-ai/DeepSeek-R1-Distill-Llama-70B-free"):
        m = cat[key]
        assert (m["prices"]["input"], m["prices"]["output"], m["free"]) == (0.0, 0.0, True), key
    assert cat["togetherai/BAAI/bge-large-en-v1.5"]["prices"]["input"] == 0.016


def test_router_zero_is_variable_not_free(tmp_path):
    zero = {"prompt": "0", "completion": "0", "image": "0", "request": "0", "input_cache_read": "0",
            "input_cache_write": "0", "web_search": "0", "internal_reasoning": "0"}
    _dump(tmp_path, "redpill", _openai_list(
        {"id": "redpill/auto", "name": "RedPill Auto Router", "created": 1744386356, "context_length": 200000,
         "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
         "pricing": zero},
        {"id": "qwen/qwen3-8b:free", "name": "Qwen3 8B (free)", "context_length": 40960, "pricing": zero}))
    cat = _by_key(build_catalog(tmp_path, registries=False, probes=None))
    auto = cat["redpill/redpill/auto"]
    assert auto["free"] is False and auto["variable_pricing"] is True
    assert all(v is None for v in auto["prices"].values())
    assert cat["redpill/qwen/qwen3-8b:free"]["free"] is True  # a free id's zeros stay free

    from knollm.catalog.sources.generic import is_router

    assert is_router("openrouter/auto") and is_router("redpill/auto") and is_router("switchpoint/router")
    assert not is_router("openrouter/free") and not is_router("moonshot-v1-auto")


# ---------------------------------------------------------------------------- 6. kinds
def test_kind_inference_from_names():
    from knollm.catalog.normalize import infer_kind

    assert infer_kind("sentence-transformers/all-MiniLM-L6-v2") == "embedding"
    assert infer_kind("sentence-transformers/clip-ViT-B-32") == "embedding"
    assert infer_kind("shibing624/text2vec-base-chinese") == "embedding"
    assert infer_kind("multi-qa-mpnet-base-dot-v1") == "embedding"
    assert infer_kind("BAAI/bge-reranker-v2-m3") == "rerank"
    assert infer_kind("@cf/baai/bge-reranker-base") == "rerank"
    assert infer_kind("BAAI/bge-m3") == "embedding"
    assert infer_kind("meta-llama/Llama-3.3-70B-Instruct") == "chat"


def test_featherless_serves_llms_only(tmp_path):
    rec = {"object": "model", "created": 1700000000, "owned_by": "featherless", "model_class": "llama33-70b-16k",
           "context_length": 16384, "max_completion_tokens": 4096, "is_gated": False}
    _dump(tmp_path, "featherless", _openai_list(
        dict(rec, id="ToastyPigeon/QwQ-32B-Snowdrop-v0-EmbedFix"),
        dict(rec, id="bespin-global/bge-reranker-v2-gemma-fine-tuning"),
        dict(rec, id="oliverneut/personachat-llama_3_1B-mpnet-attacker")))
    _dump(tmp_path, "deepinfra", _openai_list(
        {"id": "sentence-transformers/all-MiniLM-L6-v2", "object": "model", "owned_by": "deepinfra"},
        {"id": "BAAI/bge-reranker-v2-m3", "object": "model", "owned_by": "deepinfra"}))
    cat = _by_key(build_catalog(tmp_path, registries=False, probes=None))
    for key in ("featherless/ToastyPigeon/QwQ-32B-Snowdrop-v0-EmbedFix",
                "featherless/bespin-global/bge-reranker-v2-gemma-fine-tuning",
                "featherless/oliverneut/personachat-llama_3_1B-mpnet-attacker"):
        assert cat[key]["kind"] == "chat", key
    assert cat["deepinfra/sentence-transformers/all-MiniLM-L6-v2"]["kind"] == "embedding"
    assert cat["deepinfra/BAAI/bge-reranker-v2-m3"]["kind"] == "rerank"


# ---------------------------------------------------------------------------- 7. transcription prices
def test_together_transcribe_prices_have_an_unknown_unit(tmp_path):
    _dump(tmp_path, "togetherai", [_together("openai/whisper-large-v3", "transcribe", 0.27, 0.85,
                                             "Whisper large-v3", None)])
    cat = build_catalog(tmp_path, registries=False, probes=None)
    m = _by_key(cat)["togetherai/openai/whisper-large-v3"]
    assert m["kind"] == "audio"
    assert m["suspect"] == {"prices.input": "unit_unknown", "prices.output": "unit_unknown"}
    assert "suspect" in m["flags"] and m["free"] is False
    w = [w for w in cat["warnings"] if w["code"] == "unit-unknown"]
    assert len(w) == 1 and "whisper-large-v3" in w[0]["message"] and w[0]["file"] == "models_togetherai.json"


# ---------------------------------------------------------------------------- the real dumps
@pytest.mark.shared
def test_shared_review2_fixes(shared_catalog):
    cat = _by_key(shared_catalog)
    # 1. Flash-8B and the -exp builds are not priced as Flash
    for key in ("gemini/gemini-1.5-flash-8b", "gemini/models/gemini-1.5-flash-8b", "gemini/gemini-1.5-flash-exp-0827",
                "gemini/gemini-1.5-flash-8b-exp-0924"):
        m = cat[key]
        assert m["prices"]["input"] != 0.075 and m["joins"].get("genai-prices") is None, key
    # 2. models.dev's exact entry beats a genai-prices alias/rule price
    latest = cat["gemini/gemini-flash-latest"]
    assert latest["sources"]["prices.input"] == "models.dev" and latest["prices"]["input"] != 0.75
    for m in shared_catalog["models"]:
        if m["joins"].get("models.dev") == "exact" and m["joins"].get("genai-prices") == "alias":
            assert m["sources"].get("prices.input") != "genai-prices" or "models.dev" not in \
                m["alternatives"].get("prices.input", {}), m["key"]
    # 3. no borrowed limits on embeddings; no embedding max output
    bge = cat["deepinfra/BAAI/bge-base-en-v1.5"]
    assert bge["context_window"] != 128000 and bge["max_output"] is None
    for m in shared_catalog["models"]:
        if m["kind"] == "embedding":
            assert m["max_output"] is None, m["key"]
            if (m["context_window"] or 0) > 131072:
                assert m["suspect"].get("context_window") == "kind_token_range", m["key"]
        if m["kind"] in ("embedding", "rerank", "moderation"):
            assert m["sources"].get("context_window") != "models.dev~canonical", m["key"]
    # 4. labels
    for m in shared_catalog["models"]:
        if m["joins"].get("models.dev") in ("canonical", "family"):
            assert "models.dev" not in m["sources"].values(), m["key"]
    # 5. zeros
    for key in ("togetherai/togethercomputer/MoA-1", "togetherai/lgai/exaone-deep-32b"):
        assert cat[key]["free"] is False and cat[key]["prices"]["input"] is None, key
    assert cat["togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo-Free"]["free"] is True
    auto = cat["redpill/redpill/auto"]
    assert auto["free"] is False and auto["variable_pricing"] is True
    # 6. kinds
    assert all(m["kind"] == "chat" for m in shared_catalog["models"] if m["provider"] == "featherless")
    assert cat["deepinfra/sentence-transformers/all-MiniLM-L6-v2"]["kind"] == "embedding"
    assert cat["deepinfra/shibing624/text2vec-base-chinese"]["kind"] == "embedding"
    assert cat["cloudflare-workers-ai/@cf/baai/bge-reranker-base"]["kind"] == "rerank"
    # 7. transcription
    assert cat["togetherai/openai/whisper-large-v3"]["suspect"].get("prices.input") == "unit_unknown"


def test_a_cache_read_priced_above_the_input_is_suspect(shared_catalog):
    """A cache read above the input it replaces (a registry's current cache price beside the
    dump's older input, an input of 0 for "unknown"): both kept and marked, so neither ranks
    (chutes/unsloth/gemma-3-4b-it, input 0 and cache read 0.005, was the cheapest paid model
    for cached workloads)."""
    from knollm.query.api import Catalog
    from knollm.query.cost import Workload

    seen = 0
    for m in shared_catalog["models"]:
        p = m["prices"]
        if p.get("cache_read") is not None and p.get("input") is not None and p["cache_read"] > p["input"]:
            seen += 1
            assert "prices.cache_read" in m["suspect"], m["key"]
            if p["input"] == 0:
                assert m["suspect"].get("prices.input") == "cache_read_above_input", m["key"]
    assert seen >= 1
    rows = Catalog(shared_catalog).costs(Workload(2000, 500, 1500), kinds=["chat"], limit=0)
    assert "chutes/unsloth/gemma-3-4b-it" not in [r["key"] for r in rows[:50]]
