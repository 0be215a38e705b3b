"""The catalog pipeline end to end: fixture dumps, bad input, --strict, and the real dumps."""

from __future__ import annotations

import shutil

import orjson
import pytest

from knollm.catalog import readers
from knollm.catalog.build import build_catalog
from knollm.cli import main
from knollm.catalog.diagnostics import Diagnostics
from knollm.errors import StrictModeError
from knollm.catalog.schema import CatalogDocument, json_schema


@pytest.fixture(scope="module")
def fixture_catalog(fixture_dumps):
    return build_catalog(fixture_dumps)


def by_key(cat):
    return {m["key"]: m for m in cat["models"]}


def test_fixture_catalog_validates_and_is_sourced(fixture_catalog):
    CatalogDocument.model_validate(fixture_catalog)
    m = by_key(fixture_catalog)["openrouter/acme/widget-70b-instruct"]
    assert m["prices"]["input"] == 2.5 and m["prices"]["output"] == 10.0 and m["prices"]["cache_read"] == 1.25
    assert m["sources"]["prices.input"] == "dump"
    assert m["context_window"] == 131072 and m["max_output"] == 16384
    assert m["capabilities"]["tools"] is True and m["capabilities"]["vision"] is True
    assert m["sources"]["capabilities.tools"] == "dump"
    # every known price / limit / capability names its source
    for mm in fixture_catalog["models"]:
        for f, v in mm["prices"].items():
            if v is not None:
                assert f"prices.{f}" in mm["sources"], (mm["key"], f)
        for f, v in mm["capabilities"].items():
            if v is not None:
                assert f"capabilities.{f}" in mm["sources"], (mm["key"], f)
        for f in ("context_window", "max_output"):
            if mm.get(f) is not None:
                assert f in mm["sources"], (mm["key"], f)


def test_units_across_providers(fixture_catalog):
    k = by_key(fixture_catalog)
    assert k["novita/acme/widget-70b-instruct"]["prices"]["input"] == 0.05
    assert k["novita/acme/widget-70b-instruct"]["prices"]["output"] == 0.28
    assert k["togetherai/acme/Widget-70B-Instruct-Turbo"]["prices"]["input"] == 0.88
    assert k["chutes/acme/widget-reasoner"]["prices"]["input"] == 0.0518308
    assert k["groq/widget-9b"]["prices"] == {**k["groq/widget-9b"]["prices"], "input": 0.2, "output": 0.2}
    assert k["groq/widget-9b"]["sources"]["prices.input"] == "litellm"


def test_unknowns_are_none_never_zero(fixture_catalog):
    k = by_key(fixture_catalog)
    auto = k["openrouter/openrouter/auto"]
    assert auto["prices"]["input"] is None and auto["variable_pricing"] is True and auto["free"] is False
    pix = k["openrouter/acme/pixel-gen"]
    assert pix["kind"] == "image" and pix["prices"]["input"] is None and pix["free"] is False
    free = k["openrouter/acme/widget-8b:free"]
    assert free["free"] is True and free["prices"]["input"] == 0
    assert k["chutes/acme/widget-reasoner"]["context_window"] is None  # max_model_len 0


def test_flags_duplicates_and_hf_expansion(fixture_catalog):
    k = by_key(fixture_catalog)
    assert "max_output_gt_context" not in k["openrouter/acme/widget-70b-instruct"]["flags"]
    w = k["novita/acme/widget-70b-instruct"]
    assert "duplicate_in_dump" in w["flags"]
    dups = [x for x in fixture_catalog["warnings"] if x["code"] == "duplicate-id"]
    assert len(dups) == 1 and dups[0]["file"] == "models_novita.json" and dups[0]["level"] == "info"
    hf = [m for m in fixture_catalog["models"] if m["provider"] == "huggingface" and m["id"].startswith("acme/")]
    assert sorted(m["id"] for m in hf) == ["acme/Widget-70B-Instruct:novita", "acme/Widget-70B-Instruct:together"]
    assert by_key(fixture_catalog)["huggingface/acme/Widget-70B-Instruct:together"]["deprecated"] is True


def test_canonical_identity_across_providers(fixture_catalog):
    k = by_key(fixture_catalog)
    ids = {k[x]["canonical_id"] for x in ("openrouter/acme/widget-70b-instruct", "novita/acme/widget-70b-instruct",
                                           "togetherai/acme/Widget-70B-Instruct-Turbo")}
    assert len(ids) == 1
    assert k["openrouter/acme/widget-8b:free"]["canonical_id"] != k["openrouter/acme/widget-70b-instruct"]["canonical_id"]


def test_bad_values_warn_with_file_and_record(fixture_catalog):
    bad = [w for w in fixture_catalog["warnings"] if w["code"] == "bad-value"]
    assert {(w["file"], w["record"]) for w in bad} == {("models_novita.json", "acme/tiny")}
    assert len(bad) == 3
    tiny = by_key(fixture_catalog)["novita/acme/tiny"]  # the record itself still loads
    assert tiny["prices"]["input"] is None and tiny["context_window"] is None and tiny["max_output"] == 1024


def test_registry_only_build_is_a_full_catalog():
    cat = build_catalog(None)
    CatalogDocument.model_validate(cat)
    assert cat["stats"]["providers"] >= 120
    assert cat["stats"]["models"] >= 3000
    gpt = by_key(cat)["openai/gpt-4o"]
    assert gpt["prices"]["input"] is not None and gpt["sources"]["prices.input"] in ("genai-prices", "models.dev")
    assert "registry_only" in gpt["flags"]


# ----------------------------------------------------------------------------- bad input

BAD_FILES = {
    "models_malformed.json": b'{"object": "list", "data": [{"id": "a",}]}',
    "models_truncated.json": b'{"object": "list", "data": [{"id": "a"}, {"id": "b", "con',
    "models_htmlpage.json": b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
    "models_empty.json": b"",
    "models_shape.json": b'{"object": "model", "id": "not-a-list"}',
    "models_scalar.json": b'"hello"',
    "models_notdict.json": b'{"object": "list", "data": [42, {"id": "ok-model"}, {"name": null}]}',
}


@pytest.fixture()
def bad_dir(tmp_path, fixture_dumps):
    for f in fixture_dumps.glob("models_*.json"):
        shutil.copy(f, tmp_path / f.name)
    for name, data in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_each_bad_file_gives_one_warning_and_the_rest_builds(bad_dir, fixture_catalog):
    d = Diagnostics()
    cat = build_catalog(bad_dir, diags=d)
    per_file = {}
    for w in d.warnings:
        per_file.setdefault(w.file, []).append(w)
    for name in ("models_malformed.json", "models_truncated.json", "models_htmlpage.json", "models_empty.json",
                 "models_shape.json", "models_scalar.json"):
        assert len(per_file.get(name, [])) == 1, (name, per_file.get(name))
    assert "truncated" in str(per_file["models_truncated.json"][0])
    assert "HTML" in str(per_file["models_htmlpage.json"][0])
    assert "empty" in str(per_file["models_empty.json"][0])
    assert "unknown dump shape" in str(per_file["models_shape.json"][0])
    # bad records are named by index; the good record of the same file loads
    nd = per_file["models_notdict.json"]
    assert [(w.code, w.record) for w in nd] == [("bad-record", "0"), ("missing-id", "2"), ("unknown-provider", None)]
    assert "notdict/ok-model" in by_key(cat)
    # nothing from the good files was lost
    good = {m["key"] for m in fixture_catalog["models"]}
    assert good <= set(by_key(cat))


def test_huge_file_is_skipped_with_a_warning(tmp_path, monkeypatch):
    (tmp_path / "models_big.json").write_bytes(b'{"object":"list","data":[' + b'{"id":"x"},' * 2000 + b'{"id":"y"}]}')
    (tmp_path / "models_small.json").write_bytes(b'[{"id": "fine"}]')
    monkeypatch.setattr(readers, "MAX_DUMP_BYTES", 10_000)
    d = Diagnostics()
    dumps = readers.read_dumps(tmp_path, d)
    assert [x.source for x in dumps] == ["small"]
    assert len(d.warnings) == 1 and d.warnings[0].file == "models_big.json" and "limit" in d.warnings[0].message


def test_strict_turns_warnings_into_failure(bad_dir, tmp_path, capsys):
    with pytest.raises(StrictModeError):
        build_catalog(bad_dir, strict=True, registries=False)
    out = tmp_path / "cat.json"
    assert main(["catalog", "--dumps", str(bad_dir), "--out", str(out), "--strict", "--no-registries"]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "models_htmlpage.json" in err and "strict" in err
    # without --strict the same input builds, exit 0
    assert main(["catalog", "--dumps", str(bad_dir), "--out", str(out), "--no-registries", "-q"]) == 0
    data = orjson.loads(out.read_bytes())
    assert data["schema_version"] == 1 and data["warnings"]


def test_catalog_command_writes_schema_valid_json(fixture_dumps, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["catalog", "--dumps", str(fixture_dumps), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("providers", "models", "canonical models", "2+ providers", "coverage"):
        assert word in text
    data = orjson.loads(out.read_bytes())
    CatalogDocument.model_validate(data)
    assert {"schema_version", "generated_at", "sources", "providers", "models", "warnings"} <= set(data)
    assert {s["name"] for s in data["sources"]} == {"dumps", "genai-prices", "models.dev"}
    assert all(s.get("version") for s in data["sources"] if s["kind"] == "registry")


def test_json_schema_validates_a_catalog(fixture_catalog):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(orjson.loads(orjson.dumps(fixture_catalog)), json_schema())
    broken = orjson.loads(orjson.dumps(fixture_catalog))
    broken["models"][0]["prices"]["input"] = "cheap"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json_schema())


# ----------------------------------------------------------------------------- real dumps

def test_real_dumps_all_load(shared_dumps):
    d = Diagnostics()
    files = readers.read_dumps(shared_dumps, d)
    assert len(files) == 33
    assert sum(len(f.records) for f in files) >= 9500
    assert not d.warnings, [str(x) for x in d.warnings]
    assert {f.shape for f in files} == {"openai-list", "array", "keyed"}


def test_real_catalog_figures(shared_catalog):
    s = shared_catalog["stats"]
    assert s["providers"] >= 120
    assert s["providers_with_dump"] == 31  # 33 files: featherless_best is featherless, litellm spans providers
    assert s["dump_models"] >= 9500
    assert s["canonical_models_multi_provider"] >= 500
    assert s["warnings"] == 0, shared_catalog["warnings"][:5]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_real_openai_anthropic_price_coverage(shared_catalog, provider):
    ms = [m for m in shared_catalog["models"] if m["provider"] == provider and f"models_{provider}.json" in m["origin"]
          # (billed per image, per second or character, or free: no token prices to cover; a
          # moderation model's only "price" is LiteLLM's lone 0/0, which the catalog keeps unknown)
          and m.get("kind") not in ("image", "audio", "moderation")]
    assert len(ms) >= 5
    priced = [m for m in ms if m["prices"]["input"] is not None and m["prices"]["output"] is not None]
    assert len(priced) / len(ms) >= 0.95, sorted(m["id"] for m in ms if m not in priced)


def test_real_enrichment_precedence(shared_catalog):
    k = by_key(shared_catalog)
    # the provider's own value wins over every registry
    tg = k["togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo"]
    assert tg["sources"]["prices.input"] == "dump" and tg["prices"]["input"] == 0.88
    # a dump without prices is priced by the same provider's registry entry
    assert k["openai/gpt-4o"]["sources"]["prices.input"] == "genai-prices"
    # cross-provider and family joins never give prices
    for m in shared_catalog["models"]:
        if m["joins"].get("models.dev") in ("canonical", "family") and "genai-prices" not in m["joins"]:
            for f, v in m["prices"].items():
                if v is not None:
                    assert m["sources"][f"prices.{f}"] in ("dump", "litellm"), (m["key"], f)
    # family joins never override a dump value
    fam = [m for m in shared_catalog["models"] if m["joins"].get("models.dev") == "family"]
    assert fam
    for m in fam:
        for f in ("context_window", "max_output"):
            assert m["sources"].get(f) != "models.dev", (m["key"], f)


def test_real_canonical_examples(shared_catalog):
    k = by_key(shared_catalog)
    trio = {k[x]["canonical_id"] for x in (
        "fireworks/accounts/fireworks/models/llama-v3p3-70b-instruct",
        "togetherai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "groq/llama-3.3-70b-versatile",
    )}
    assert len(trio) == 1


def test_history_dates_applied(tmp_path, fixture_dumps):
    import json

    for f in fixture_dumps.glob("models_*.json"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "history.json").write_text(json.dumps(
        {"models": {"togetherai/acme/embed-small": {"first_seen": "2025-01-02", "last_seen": "2025-09-08"}}}))
    cat = build_catalog(tmp_path, registries=False)
    m = by_key(cat)["togetherai/acme/embed-small"]
    assert (m["first_seen"], m["last_seen"]) == ("2025-01-02", "2025-09-08")
    assert by_key(cat)["chutes/acme/widget-reasoner"]["first_seen"] is None


def test_bad_history_is_one_warning(tmp_path, fixture_dumps):
    shutil.copy(fixture_dumps / "models_chutes.json", tmp_path)
    (tmp_path / "history.json").write_text("[1, 2")
    d = Diagnostics()
    cat = build_catalog(tmp_path, registries=False, diags=d)
    assert [w.file for w in d.warnings] == ["history.json"]
    assert by_key(cat)["chutes/acme/widget-reasoner"]["prices"]["input"] == 0.0518308
