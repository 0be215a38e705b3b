"""The embedding context range of the ``kind_token_range`` check.

Real embedding models document contexts above 32k: Cohere embed-v4.0 reads 128,000 tokens
(Cohere / AWS Bedrock / OCI docs), voyage-context-3 120,000 per request (Voyage docs),
Qwen3-Embedding is served at 40,960 (Fireworks' own model list). Such a value is true and must
not be marked suspect (a suspect value is hidden). A context far above the largest documented
one (1M, 2M: a chat model's limit copied onto an embedding model) is still suspect.

So is a context above what the model's family reads (``EMBEDDING_MAX_INPUT``): models.dev lists
Cloudflare's ``@cf/baai/bge-base-en-v1.5`` (reads 512 tokens), ``bge-m3`` (8,192) and
``qwen3-embedding-0.6b`` (32k, served at 40,960) at 128,000, a chat default, not an input limit.

Small hand-written dumps shaped like the real ones, and the real dumps in ../shared/model_catalog
when they are there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knollm.catalog.build import build_catalog
from knollm.catalog.plausible import embedding_max_input, token_check
from knollm.vocab import PLAUSIBLE_TOKENS_BY_KIND, SUSPECT_CHECKS

#: LiteLLM cost-map shaped records (``models_litellm.json``): embedding models and their contexts
_LITELLM = {
    "sample_spec": {"max_input_tokens": "max input tokens", "mode": "one of chat, embedding, ..."},
    # Cohere embed-v4.0 on Azure AI: 128k documented
    "azure_ai/embed-v-4-0": {"litellm_provider": "azure_ai", "mode": "embedding", "max_input_tokens": 128000,
                             "max_tokens": 128000, "input_cost_per_token": 1.2e-07, "output_cost_per_token": 0.0},
    "voyage/voyage-context-3": {"litellm_provider": "voyage", "mode": "embedding", "max_input_tokens": 120000,
                                "max_tokens": 120000, "input_cost_per_token": 1.8e-07, "output_cost_per_token": 0.0},
    # made up: a chat model's 2M context copied onto an embedding model
    "azure_ai/knolltest-embed-2m": {"litellm_provider": "azure_ai", "mode": "embedding",
                                    "max_input_tokens": 2000000, "max_tokens": 2000000,
                                    "input_cost_per_token": 1e-07, "output_cost_per_token": 0.0},
    # models.dev-style Cloudflare values: a chat default (128k) on models that read 512 / 8,192 tokens
    "cloudflare/@cf/baai/bge-base-en-v1.5": {"litellm_provider": "cloudflare", "mode": "embedding",
                                             "max_input_tokens": 128000, "max_tokens": 128000,
                                             "input_cost_per_token": 6.7e-08, "output_cost_per_token": 0.0},
    "cloudflare/@cf/baai/bge-m3": {"litellm_provider": "cloudflare", "mode": "embedding",
                                   "max_input_tokens": 128000, "max_tokens": 128000,
                                   "input_cost_per_token": 1.2e-08, "output_cost_per_token": 0.0},
    # the same families at their real limits
    "together_ai/BAAI/bge-base-en-v1.5": {"litellm_provider": "together_ai", "mode": "embedding",
                                          "max_input_tokens": 512, "max_tokens": 512,
                                          "input_cost_per_token": 8e-09, "output_cost_per_token": 0.0},
    "deepinfra/BAAI/bge-m3": {"litellm_provider": "deepinfra", "mode": "embedding", "max_input_tokens": 8192,
                              "max_tokens": 8192, "input_cost_per_token": 1e-08, "output_cost_per_token": 0.0},
}
#: Fireworks' list: Qwen3-Embedding served at 40,960 (the model's position limit)
_FIREWORKS = {"object": "list", "data": [
    {"id": "accounts/fireworks/models/qwen3-embedding-8b", "object": "model", "owned_by": "fireworks",
     "kind": "HF_BASE_MODEL", "supports_chat": True, "context_length": 40960}]}


def _by_key(cat: dict) -> dict[str, dict]:
    return {m["key"]: m for m in cat["models"]}


@pytest.fixture(scope="module")
def fixture_catalog(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("emb-ctx")
    (tmp / "models_litellm.json").write_text(json.dumps(_LITELLM))
    (tmp / "models_fireworks.json").write_text(json.dumps(_FIREWORKS))
    return build_catalog(tmp, registries=False, probes=None)


def test_token_check_embedding_range():
    assert PLAUSIBLE_TOKENS_BY_KIND["embedding"]["context_window"] == (16, 131_072)
    for real in (512, 8192, 32768, 40960, 120000, 128000, 131072):
        assert token_check(real, "context_window", "embedding") is None, real
    for wrong in (131073, 200000, 1_000_000, 2_000_000):
        assert token_check(wrong, "context_window", "embedding") == "kind_token_range", wrong
    assert token_check(2_000_000, "context_window", "chat") is None  # the range is the embedding kind's only
    assert "131,072" in SUSPECT_CHECKS["kind_token_range"]


@pytest.mark.parametrize("key, ctx", [
    ("azure-ai/embed-v-4-0", 128000),
    ("voyageai/voyage-context-3", 120000),
    ("fireworks/accounts/fireworks/models/qwen3-embedding-8b", 40960),
])
def test_documented_large_embedding_context_is_not_suspect(fixture_catalog, key, ctx):
    m = _by_key(fixture_catalog)[key]
    assert m["kind"] == "embedding" and m["context_window"] == ctx
    assert "context_window" not in m["suspect"] and "suspect" not in m["flags"]


def test_implausible_embedding_context_is_still_suspect(fixture_catalog):
    m = _by_key(fixture_catalog)["azure-ai/knolltest-embed-2m"]
    assert m["kind"] == "embedding" and m["context_window"] == 2_000_000  # kept, marked
    assert m["suspect"] == {"context_window": "kind_token_range"} and "suspect" in m["flags"]
    w = [w for w in fixture_catalog["warnings"]
         if w["code"] == "implausible" and w["record"] == "azure_ai/knolltest-embed-2m"]
    assert len(w) == 1 and "2000000" in w[0]["message"]


# ---------------------------------------------------------------------------- known families
def test_embedding_family_max_input():
    assert embedding_max_input("@cf/baai/bge-base-en-v1.5") == 512
    assert embedding_max_input("workers-ai/@cf/baai/BGE-Small-EN-v1.5") == 512  # case-insensitive
    assert embedding_max_input("BAAI/bge-m3") == 8192
    assert embedding_max_input("intfloat/e5-large-v2") == 512
    assert embedding_max_input("intfloat/multilingual-e5-large-instruct") == 514
    assert embedding_max_input("sentence-transformers/all-MiniLM-L12-v2") == 512
    assert embedding_max_input("nomic-ai/nomic-embed-text-v1.5") == 8192
    assert embedding_max_input("@cf/qwen/qwen3-embedding-0.6b") == 40960
    # other models are no family's: the whole last path segment must match
    for other in ("BAAI/bge-m3-multi", "BAAI/bge-en-icl", "BAAI/bge-multilingual-gemma2", "bge-large-en",
                  "intfloat/e5-mistral-7b-instruct", "E5-Mistral-7B-Instruct", "nomic-embed-text-v2",
                  "Qwen/Qwen3-VL-Embedding-8B", "databricks-bge-large-en", "embed-v4.0", "voyage-context-3",
                  "@cf/pfnet/plamo-embedding-1b", "bge-m3/other", "", None):
        assert embedding_max_input(other) is None, other


def test_token_check_embedding_family():
    ctx = "context_window"
    assert token_check(128000, ctx, "embedding", model_id="@cf/baai/bge-base-en-v1.5") == "kind_token_range"
    assert token_check(512, ctx, "embedding", model_id="@cf/baai/bge-base-en-v1.5") is None
    assert token_check(128000, ctx, "embedding", model_id="@cf/baai/bge-m3") == "kind_token_range"
    assert token_check(8192, ctx, "embedding", model_id="@cf/baai/bge-m3") is None
    assert token_check(8193, ctx, "embedding", model_id="BAAI/bge-m3") == "kind_token_range"
    assert token_check(514, ctx, "embedding", model_id="intfloat/multilingual-e5-large-instruct") is None
    assert token_check(40960, ctx, "embedding", model_id="Qwen/Qwen3-Embedding-8B") is None
    assert token_check(128000, ctx, "embedding", model_id="@cf/qwen/qwen3-embedding-0.6b") == "kind_token_range"
    # no family: only the kind's range (Cohere embed-v4.0, voyage-context-3 read 128k / 120k)
    assert token_check(128000, ctx, "embedding", model_id="embed-v4.0") is None
    assert token_check(120000, ctx, "embedding", model_id="voyage-context-3") is None
    # the family limit is an embedding context's only: not another kind, not another field, not without an id
    assert token_check(128000, ctx, "chat", model_id="bge-m3") is None
    assert token_check(128000, "max_output", "embedding", model_id="bge-m3") is None
    assert token_check(128000, ctx, "embedding") is None
    assert "bge-m3" in SUSPECT_CHECKS["kind_token_range"]


@pytest.mark.parametrize("key, ctx, flagged", [
    ("cloudflare-workers-ai/@cf/baai/bge-base-en-v1.5", 128000, True),
    ("togetherai/BAAI/bge-base-en-v1.5", 512, False),
    ("cloudflare-workers-ai/@cf/baai/bge-m3", 128000, True),
    ("deepinfra/BAAI/bge-m3", 8192, False),
    ("azure-ai/embed-v-4-0", 128000, False),
    ("voyageai/voyage-context-3", 120000, False),
])
def test_embedding_context_above_family_is_suspect(fixture_catalog, key, ctx, flagged):
    m = _by_key(fixture_catalog)[key]
    assert m["kind"] == "embedding" and m["context_window"] == ctx  # kept either way
    assert (m["suspect"].get("context_window") == "kind_token_range") is flagged
    assert ("suspect" in m["flags"]) is flagged
    w = [w for w in fixture_catalog["warnings"] if w["code"] == "implausible" and str(ctx) in w["message"]
         and w["record"].endswith(m["id"])]
    assert len(w) == int(flagged)


# ---------------------------------------------------------------------------- the real dumps
@pytest.mark.shared
def test_shared_large_embedding_contexts_are_not_suspect(shared_catalog):
    cat = _by_key(shared_catalog)
    # from the dumps themselves: LiteLLM's cost map and Fireworks' model list
    for key, ctx in (("azure-ai/embed-v-4-0", 128000), ("voyageai/voyage-context-3", 120000),
                     ("fireworks/accounts/fireworks/models/qwen3-embedding-8b", 40960)):
        m = cat[key]
        assert m["kind"] == "embedding" and m["context_window"] == ctx, key
        assert "context_window" not in m["suspect"], key
    # from the packaged registries (genai-prices / models.dev), when they list it
    for key in ("cohere/embed-v4.0", "azure/cohere-embed-v-4-0", "azure-cognitive-services/cohere-embed-v-4-0"):
        if key in cat:
            assert cat[key]["context_window"] == 128000 and "context_window" not in cat[key]["suspect"], key
    for m in shared_catalog["models"]:
        if m["kind"] == "embedding":
            flagged = m["suspect"].get("context_window") == "kind_token_range"
            ctx, family = m["context_window"] or 0, embedding_max_input(m["id"])
            assert flagged == (ctx > 131072 or (family is not None and ctx > family)), m["key"]


@pytest.mark.shared
def test_shared_cloudflare_embedding_contexts_are_suspect(shared_catalog):
    """models.dev's 128,000 on Cloudflare's embeddings is not what they read: marked, kept."""
    cat = _by_key(shared_catalog)
    for name in ("baai/bge-base-en-v1.5", "baai/bge-large-en-v1.5", "baai/bge-small-en-v1.5", "baai/bge-m3",
                 "qwen/qwen3-embedding-0.6b"):
        m = cat[f"cloudflare-workers-ai/workers-ai/@cf/{name}"]
        assert m["kind"] == "embedding" and m["context_window"] == 128000, name
        assert m["suspect"].get("context_window") == "kind_token_range" and "suspect" in m["flags"], name
    # PLaMo-Embedding-1B: no documented limit (card, Cloudflare's page), so no family: not marked
    plamo = cat["cloudflare-workers-ai/workers-ai/@cf/pfnet/plamo-embedding-1b"]
    assert plamo["context_window"] == 128000 and "context_window" not in plamo["suspect"]
    # the same families at their real limits elsewhere stay unmarked
    for key, ctx in (("ovhcloud/bge-base-en-v1.5", 512), ("togetherai/BAAI/bge-base-en-v1.5", 512),
                     ("ovhcloud/bge-m3", 8192), ("nvidia/baai/bge-m3", 8192), ("digitalocean/bge-m3", 8192),
                     ("togetherai/intfloat/multilingual-e5-large-instruct", 514),
                     ("fireworks/nomic-ai/nomic-embed-text-v1.5", 8192), ("evroc/Qwen/Qwen3-Embedding-8B", 40960),
                     ("nearai/Qwen/Qwen3-Embedding-0.6B", 40960)):
        m = cat[key]
        assert m["context_window"] == ctx and "context_window" not in m["suspect"], key
