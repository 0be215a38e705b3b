"""Data truth (issue 10): plausibility, every price dimension, limits, documentation entries,
conflicting duplicates, tolerant decoding, identity leaks, registry zeros, stale flags,
disagreements (``knollm audit``) and freshness.

Each class has a small fixture shaped like the real case (tests/fixtures/dumps/truth/);
plausibility and disagreement are also checked on the real dumps in ../shared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from knollm.catalog.build import build_catalog
from knollm.catalog.diagnostics import Diagnostics
from knollm.catalog.readers import read_dump
from knollm.query.cost import Workload, cost_per_request, cost_rows, estimate

TRUTH = Path(__file__).parent / "fixtures" / "dumps" / "truth"


def _build(name: str, **kw) -> dict:
    return build_catalog(TRUTH / name, registries=False, **kw)


def _model(cat: dict, key: str) -> dict:
    return next(m for m in cat["models"] if m["key"] == key)


def _codes(cat: dict, level: str | None = None) -> list[str]:
    return [w["code"] for w in cat["warnings"] if level is None or w["level"] == level]


@pytest.fixture(scope="module")
def litellm_cat() -> dict:
    return _build("litellm")


@pytest.fixture(scope="module")
def registry_cat() -> dict:
    """The packaged registries alone (no dumps): genai-prices + models.dev."""
    return build_catalog(None)


# ---------------------------------------------------------------------------- 1. plausibility and units
def test_price_in_the_wrong_unit_is_kept_flagged_and_reported():
    cat = _build("units")
    m = _model(cat, "sambanova/DeepSeek-V3-0324")
    assert m["prices"]["input"] == 150_000.0 and m["prices"]["output"] == 3_000_000.0  # kept, not dropped
    assert m["suspect"] == {"prices.input": "price_range", "prices.output": "price_range"}
    assert "suspect" in m["flags"]
    w = next(w for w in cat["warnings"] if w["code"] == "implausible" and w["record"] == "DeepSeek-V3-0324"
             and "prices.input" in w["message"])
    # the warning names file, record, raw value and the check
    assert w["file"] == "models_sambanova.json" and "pricing.prompt='0.15'" in w["message"]
    assert "price_range" in w["message"] and w["level"] == "data"
    ok = _model(cat, "sambanova/Meta-Llama-3.3-70B-Instruct")
    assert ok["suspect"] == {} and ok["prices"]["input"] == 0.6


def test_placeholder_context_is_suspect():
    cat = _build("units")
    m = _model(cat, "sambanova/Whisper-Large-v3")
    assert m["context_window"] == 99_999_999 and m["suspect"] == {"context_window": "placeholder"}


def test_undeclared_price_unit_is_said_and_marked():
    cat = _build("units")
    m = _model(cat, "acmeinfer/acme/llama-3.1-8b-instruct")
    assert m["suspect"] == {"prices.input": "unit_unknown", "prices.output": "unit_unknown"}
    w = next(w for w in cat["warnings"] if w["code"] == "unit-unknown")
    assert w["file"] == "models_acmeinfer.json" and "dump.price_unit" in w["message"]


def test_declared_units_in_the_registry():
    from knollm.providers import provider_registry

    reg = provider_registry()
    assert reg.get("chutes").dump.multiplier == 1.0  # USD / 1M
    assert reg.get("openrouter").dump.multiplier == 1_000_000.0  # USD / token
    assert reg.get("novita").dump.price_unit == "per-field"
    assert reg.get("groq").dump.price_unit is None  # not declared = unknown


def test_suspect_prices_never_rank_cheapest(litellm_cat):
    from knollm.query.api import Catalog

    w = Workload(1000, 100)
    jais = _model(litellm_cat, "azure-ai/jais-30b-chat")
    assert estimate(jais, w)["suspect"] == ["input", "output"]
    ranked = [r["key"] for r in cost_rows(litellm_cat["models"], w)]
    assert ranked and "azure-ai/jais-30b-chat" not in ranked
    cat = Catalog(litellm_cat)
    by_price = [m["key"] for m in cat.search(sort="price", include_deprecated=True)]
    known = [k for k in by_price if (_model(litellm_cat, k)["prices"]["input"] is not None
                                     and _model(litellm_cat, k)["prices"]["output"] is not None)]
    assert known[-1] == "azure-ai/jais-30b-chat"  # sorted with the unknown prices, after every real price


# ---------------------------------------------------------------------------- 2. price dimensions and tiers
def test_every_litellm_price_dimension_is_read(litellm_cat):
    vertex = _model(litellm_cat, "google-vertex/gemini-1.5-pro")
    p = vertex["prices"]
    assert p["image_input"] == 0.00032875 and p["audio_second_input"] == 3.125e-05
    assert p["character_input"] == pytest.approx(0.3125) and p["video_second_input"] == 0.00032875
    assert vertex["price_tiers"] == [{"start": 128000.0, "input": 2.5, "output": 10.0, "character_input": 0.625,
                                      "image_input": 0.0006575, "audio_second_input": 6.25e-05}]
    img = _model(litellm_cat, "openai/gpt-image-1")["prices"]
    assert img["image_token_input"] == 10.0 and img["image_token_output"] == 40.0
    assert img["pixel_input"] == 4.0054321e-08 and img["pixel_output"] is None  # 0 = not charged separately
    assert _model(litellm_cat, "openai/dall-e-3")["prices"]["image"] == 0.04
    assert _model(litellm_cat, "openai/whisper-1")["prices"]["second_input"] == 0.0001
    o3 = _model(litellm_cat, "openai/o3")["prices"]
    assert (o3["reasoning_output"], o3["audio_input"], o3["audio_output"]) == (8.0, 40.0, 80.0)
    claude = _model(litellm_cat, "anthropic/claude-sonnet-4-5")
    assert claude["prices"]["cache_write"] == 3.75 and claude["prices"]["cache_write_1h"] == 6.0
    assert claude["price_tiers"] == [{"start": 200000.0, "input": 6.0, "output": 22.5}]
    assert claude["sources"]["price_tiers"] == "litellm"
    # tiered_pricing ranges (DashScope)
    assert _model(litellm_cat, "alibaba/qwen-plus")["price_tiers"] == [
        {"start": 128000.0, "input": 1.2, "output": 3.6}]


def test_cost_uses_tiers_where_the_workload_crosses_them(litellm_cat):
    m = _model(litellm_cat, "gemini/gemini-2.5-pro")
    small, big = Workload(100_000, 1_000), Workload(300_000, 1_000, cached_tokens=100_000)
    assert estimate(m, small)["per_request"] == pytest.approx((100_000 * 1.25 + 1_000 * 10.0) / 1e6)
    e = estimate(m, big)
    assert e["tier_start"] == 200_000.0
    assert e["per_request"] == pytest.approx((200_000 * 2.5 + 100_000 * 0.625 + 1_000 * 15.0) / 1e6)
    # exactly at the threshold the base price still applies (the tier is "above")
    assert cost_per_request(m["prices"], Workload(200_000, 0), m["price_tiers"]) == pytest.approx(0.25)


def test_models_dev_tiers_and_dimensions(registry_cat):
    tiered = [m for m in registry_cat["models"] if m["sources"].get("price_tiers") == "models.dev"]
    assert tiered, "models.dev context_over_200k is read as a tier"
    assert all(t["start"] == 200_000.0 for m in tiered for t in m["price_tiers"])


# ---------------------------------------------------------------------------- 3. limits and modalities
def test_max_output_spellings_and_modalities_input():
    cat = _build("limits")
    assert _model(cat, "atlascloud/zai-org/GLM-4.5V")["max_output"] == 16384  # max_output_length
    assert _model(cat, "atlascloud/zai-org/GLM-4.5V")["input_modalities"] == ["image", "text"]  # modalities.input
    assert _model(cat, "atlascloud/zai-org/GLM-4.5V")["capabilities"]["vision"] is True
    assert _model(cat, "atlascloud/moonshotai/Kimi-K2-Instruct")["max_output"] == 16384  # limits.completion
    assert _model(cat, "atlascloud/openai/gpt-oss-120b")["max_output"] == 32768  # top_provider.*
    assert _model(cat, "togetherai/Qwen/Qwen3-235B-A22B-Instruct-2507-tput")["max_output"] == 32768  # config.*


def test_borrowed_max_output_above_context_is_not_published(tmp_path):
    cat = _build("limits")
    bge = _model(cat, "togetherai/BAAI/bge-base-en-v1.5")
    assert bge["context_window"] == 512 and bge["max_output"] is None
    assert bge["alternatives"]["max_output"] == {"litellm": 16384}
    # (an embedding has no max output at all since review 2: the rule is shown on a chat model)
    (tmp_path / "models_togetherai.json").write_text(json.dumps([
        {"id": "acme/chat-4k", "object": "model", "type": "chat", "context_length": 4096,
         "pricing": {"input": 0.1, "output": 0.2}}]))
    (tmp_path / "models_litellm.json").write_text(json.dumps({
        "together_ai/acme/chat-4k": {"max_input_tokens": 4096, "max_output_tokens": 16384,
                                     "litellm_provider": "together_ai", "mode": "chat"}}))
    cat = build_catalog(tmp_path, registries=False)
    m = _model(cat, "togetherai/acme/chat-4k")
    assert m["context_window"] == 4096 and m["max_output"] is None
    assert m["alternatives"]["max_output"] == {"litellm": 16384}
    w = next(w for w in cat["warnings"] if w["code"] == "borrowed-max-output")
    assert "16384" in w["message"] and w["file"] == "models_litellm.json"


def test_provider_own_max_output_above_context_is_kept_and_flagged():
    cat = _build("limits")
    m = _model(cat, "atlascloud/deepseek-ai/DeepSeek-V3.1")
    assert (m["context_window"], m["max_output"]) == (4096, 8192)
    assert "max_output_gt_context" in m["flags"] and m["suspect"]["max_output"] == "max_output_gt_context"


# ---------------------------------------------------------------------------- 4. documentation entries
def test_documentation_entries_found_by_shape(litellm_cat):
    docs = [w["record"] for w in litellm_cat["warnings"] if w["code"] == "documentation-entry"]
    assert sorted(docs) == ["sample_spec", "search_tool_spec"]
    assert not any(m["id"] in docs for m in litellm_cat["models"])
    assert "bad-record" not in _codes(litellm_cat)


# ---------------------------------------------------------------------------- 5. conflicting duplicates
def test_conflicting_duplicates_resolved_by_rule(litellm_cat):
    assert _model(litellm_cat, "mistral/codestral-2405")["prices"]["input"] == 1.0  # non-zero over zero
    assert _model(litellm_cat, "groq/llama-3.1-8b-instant")["prices"]["input"] == 0.05  # prefixed key wins
    msgs = [w["message"] for w in litellm_cat["warnings"] if w["code"] == "conflicting-duplicate"]
    codestral = next(x for x in msgs if "codestral" in x)
    assert "0.0" in codestral and "1.0" in codestral and "non-zero" in codestral  # both values shown
    groq = next(x for x in msgs if "llama-3.1-8b-instant" in x)
    assert "0.09" in groq and "0.05" in groq and "names the provider" in groq


# ---------------------------------------------------------------------------- 6. encodings
_DUMP = {"object": "list", "data": [{"id": "m-1", "context_length": 8192, "pricing": {"prompt": "0.000001",
                                                                                    "completion": "0.000002"}},
                                    {"id": "m-2", "context_length": 4096}]}


@pytest.mark.parametrize("encode", [
    lambda t: b"\xef\xbb\xbf" + t.encode(),
    lambda t: t.encode("utf-16"),
    lambda t: t.encode("utf-16-le"),
    lambda t: t.encode("utf-16-be"),
], ids=["utf8-bom", "utf16-bom", "utf16le", "utf16be"])
def test_recoverable_encodings_keep_the_file(tmp_path, encode):
    p = tmp_path / "models_openrouter.json"
    p.write_bytes(encode(json.dumps(_DUMP)))
    diags = Diagnostics()
    df = read_dump(p, diags)
    assert [r for r, _ in df.records] == ["m-1", "m-2"]
    assert [d.code for d in diags] == ["encoding"] and diags.warnings == []


def test_nan_and_infinity_parse_tolerantly_with_a_warning_per_record(tmp_path):
    text = json.dumps(_DUMP).replace('"context_length": 8192', '"context_length": NaN')
    text = text.replace('"context_length": 4096', '"context_length": 4096, "max_tokens": Infinity')
    (tmp_path / "models_openrouter.json").write_text(text)
    cat = build_catalog(tmp_path, registries=False)
    assert {m["id"] for m in cat["models"]} == {"m-1", "m-2"}
    ws = [w for w in cat["warnings"] if w["code"] == "non-standard-json"]
    assert [(w["record"], w["level"]) for w in ws] == [("m-1", "warning"), ("m-2", "warning")]
    assert "context_length = NaN" in ws[0]["message"]
    assert _model(cat, "openrouter/m-1")["context_window"] is None  # the NaN became unknown


def test_integer_id_is_coerced_with_a_warning(tmp_path):
    (tmp_path / "models_groq.json").write_text(json.dumps({"object": "list", "data": [{"id": 42}, {"id": "a"}]}))
    cat = build_catalog(tmp_path, registries=False)
    assert {m["id"] for m in cat["models"]} == {"42", "a"}
    assert [w["record"] for w in cat["warnings"] if w["code"] == "integer-id"] == ["42"]


# ---------------------------------------------------------------------------- 7. identity leaks
def test_own_name_prefix_and_subset_files():
    cat = _build("identity")
    assert _model(cat, "cerebras/cerebras-gpt-oss-120b")["canonical_id"] == "gpt-oss-120b"
    # models_novita_manual.json folds into novita, read by novita's translator (its price unit)
    novita = [m for m in cat["models"] if m["provider"] == "novita"]
    assert {m["id"] for m in novita} == {"meta-llama/llama-3.1-8b-instruct", "qwen/qwen2.5-7b-instruct"}
    q = _model(cat, "novita/qwen/qwen2.5-7b-instruct")
    assert q["prices"]["input"] == pytest.approx(0.07) and q["origin"] == ["models_novita_manual.json"]
    prov = next(p for p in cat["providers"] if p["id"] == "novita")
    assert prov["dump_file"] == "models_novita.json, models_novita_manual.json"


def test_family_named_providers_keep_their_prefix():
    from knollm.catalog.identity import canonical_id

    assert canonical_id("mistral-large-latest", "mistral") == "mistral-large"
    assert canonical_id("gemini-2.0-flash", "gemini").startswith("gemini-2.0-flash")


def test_subset_dump_resolution():
    from knollm.providers import provider_registry

    reg = provider_registry()
    assert reg.dump_provider("featherless_best") == "featherless"
    assert reg.dump_provider("groq_manual") == "groq"
    assert reg.dump_provider("litellm") == "litellm"
    assert reg.dump_provider("no_such_thing") == "no_such_thing"


# ---------------------------------------------------------------------------- 8. registry zeros
def test_registry_zero_is_not_free(registry_cat):
    cortecs = _model(registry_cat, "cortecs/llama-3.1-405b-instruct")
    assert cortecs["free"] is False and cortecs["prices"]["input"] is None
    assert "zero_price_unconfirmed" in cortecs["flags"]
    assert cortecs["alternatives"]["prices.input"] == {"models.dev": 0.0}
    explicit = [m for m in registry_cat["models"] if m["free"]]
    assert explicit and all(":free" in m["id"] or "free" in (m["id"] + (m["name"] or "")).lower()
                            or m["sources"].get("prices.input") not in ("models.dev", "genai-prices")
                            for m in explicit)


def test_registry_zero_contradicted_is_unknown_with_disagreement(tmp_path):
    (tmp_path / "models_litellm.json").write_text(json.dumps({
        "vercel_ai_gateway/meta/llama-3.3-70b": {"input_cost_per_token": 7.2e-07, "output_cost_per_token": 7.2e-07,
                                                 "litellm_provider": "vercel_ai_gateway"}}))
    cat = build_catalog(tmp_path)
    m = _model(cat, "vercel/meta/llama-3.3-70b")
    assert m["free"] is False and m["prices"]["input"] is None and "zero_price_disputed" in m["flags"]
    assert m["alternatives"]["prices.input"] == {"models.dev": 0.0, "litellm": 0.72}
    from knollm.query.audit import disagreements

    rows = [r for r in disagreements(cat) if r["key"] == "vercel/meta/llama-3.3-70b" and r["field"] == "prices.input"]
    assert rows and "contradicted" in rows[0]["why"] and rows[0]["values"] == {"models.dev": 0.0, "litellm": 0.72}


# ---------------------------------------------------------------------------- 9. stale flags
def test_openai_legacy_completion_models_are_retired(registry_cat):
    for mid in ("ada", "babbage", "curie", "davinci", "text-davinci-003"):
        m = next((x for x in registry_cat["models"] if x["key"] == f"openai/{mid}"), None)
        if m is None:
            continue
        assert m["deprecated"] is True and m["sources"]["deprecated"] == "knollm", mid
        assert "retired_2024-01-04" in m["flags"]
    live = [x for x in registry_cat["models"] if x["key"] in ("openai/davinci-002", "openai/babbage-002")]
    assert all("retired_2024-01-04" not in m["flags"] for m in live)


def test_image_models_take_no_chat_facts_from_other_providers(tmp_path):
    # the real OpenAI list: dall-e-3 with no fields; models.dev knows it only on another provider
    (tmp_path / "models_openai.json").write_text(json.dumps({"object": "list", "data": [
        {"id": "dall-e-3", "object": "model", "created": 1698785189, "owned_by": "system"}]}))
    cat = build_catalog(tmp_path)
    dalle = _model(cat, "openai/dall-e-3")
    assert dalle["kind"] == "image"
    assert dalle["capabilities"]["tools"] is not True and dalle["context_window"] is None


# ---------------------------------------------------------------------------- disagreements: audit
def test_audit_command_json_and_markdown(tmp_path, capsys):
    from knollm.cli import main

    d = str(TRUTH / "limits")
    assert main(["audit", "--dumps", d, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {(r["key"], r["field"]): r for r in data["rows"]}
    bge = rows[("togetherai/BAAI/bge-base-en-v1.5", "max_output")]
    assert bge["shown"] is None and bge["values"] == {"litellm": 16384} and "context window" in bge["why"]
    assert data["summary"]["max_output"] >= 1
    assert main(["audit", "--dumps", d, "--markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith(f"{data['count']} disagreements") and "| togetherai/BAAI/bge-base-en-v1.5 |" in md


def test_catalog_keeps_other_sources_values(litellm_cat):
    m = _model(litellm_cat, "groq/llama-3.1-8b-instant")
    # one source (litellm) only; nothing else to keep
    assert m["alternatives"] == {}
    from knollm.catalog.schema import CatalogDocument

    CatalogDocument.model_validate(litellm_cat)


# ---------------------------------------------------------------------------- freshness
def test_data_date_from_fetch_report_history_or_file(tmp_path):
    for p in ("groq", "cerebras", "openai"):
        (tmp_path / f"models_{p}.json").write_text(json.dumps({"object": "list", "data": [{"id": f"{p}-m"}]}))
    (tmp_path / "fetch-report.json").write_text(json.dumps({
        "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:01:00Z",
        "results": [{"id": "groq", "status": "ok", "dump": "models_groq.json"},
                    {"id": "openai", "status": "failed"}]}))
    (tmp_path / "history.json").write_text(json.dumps({"history_version": 1, "models": {
        "cerebras/cerebras-m": {"first_seen": "2026-01-01", "last_seen": "2026-02-02"}}}))
    old = 1_700_000_000  # 2023-11-14
    os.utime(tmp_path / "models_openai.json", (old, old))
    cat = build_catalog(tmp_path, registries=False)
    got = {p["id"]: (p["data_date"], p["data_date_source"]) for p in cat["providers"]}
    assert got == {"groq": ("2026-03-01", "fetch report"), "cerebras": ("2026-02-02", "history"),
                   "openai": ("2023-11-14", "file")}
    assert cat["data_date"] == "2026-03-01"  # the newest fetch, not a model's created date


def test_site_shows_freshness_and_audit(litellm_cat):
    from knollm.site import render as R

    p = next(p for p in litellm_cat["providers"] if p["id"] == "openai")
    page = R.render_provider_page(p, [m for m in litellm_cat["models"] if m["provider"] == "openai"],
                                  registries=[{"name": "models.dev", "kind": "registry", "version": "1.0",
                                               "data_date": "2026-05-21"}])
    assert "Data date" in page and "models.dev 1.0 (data 2026-05-21)" in page
    azure = next(p for p in litellm_cat["providers"] if p["id"] == "azure-ai")
    rows = R.render_provider_page(azure, [_model(litellm_cat, "azure-ai/jais-30b-chat")])
    assert "kn-suspect" in rows and "⚠" in rows
    audit = R.render_audit_page(litellm_cat)
    assert "jais-30b-chat" in audit and "Suspect values (2)" in audit
    figs = R.headline_figures(litellm_cat)
    assert figs["suspect_models"] == 1 and "registries" in figs and "dump_dates" in figs


# ---------------------------------------------------------------------------- the real dumps
@pytest.mark.shared
def test_shared_no_implausible_price_unflagged(shared_catalog):
    from knollm.catalog.plausible import price_check

    bad = [(m["key"], k, v) for m in shared_catalog["models"] for k, v in m["prices"].items()
           if price_check(k, v, m["kind"]) and f"prices.{k}" not in m["suspect"]]
    assert bad == []
    jais = _model(shared_catalog, "azure-ai/jais-30b-chat")
    assert set(jais["suspect"]) == {"prices.input", "prices.output"}
    # no model has max_output > context unless its own dump says both (then it is flagged)
    over = [m for m in shared_catalog["models"] if m["max_output"] and m["context_window"]
            and m["max_output"] > m["context_window"]]
    assert over and all(m["sources"]["max_output"] == m["sources"]["context_window"] == "dump"
                        and m["suspect"].get("max_output") == "max_output_gt_context" for m in over)


@pytest.mark.shared
def test_shared_every_litellm_tier_and_image_price_is_read(shared_dumps, shared_catalog):
    from knollm.catalog.sources.litellm import PRICE_KEYS, _TIER_RE, litellm_model_id, litellm_provider_id

    raw = json.loads((shared_dumps / "models_litellm.json").read_bytes())
    by_key = {m["key"]: m for m in shared_catalog["models"]}
    missing = []
    for k, rec in raw.items():
        if not isinstance(rec.get("litellm_provider"), str) or " " in rec["litellm_provider"]:
            continue
        key = f"{litellm_provider_id(rec['litellm_provider'])}/{litellm_model_id(k, rec['litellm_provider'])}"
        m = by_key.get(key)
        if m is None:
            missing.append((k, "offer"))
            continue
        for f, v in rec.items():
            t = _TIER_RE.match(f)
            if t and t["key"] in PRICE_KEYS and v:
                if not m["price_tiers"]:
                    missing.append((k, f))
            elif ("image" in f or "pixel" in f) and f in PRICE_KEYS and v:
                field = PRICE_KEYS[f][0]
                if m["prices"][field] is None and f"prices.{field}" not in m["alternatives"]:
                    missing.append((k, f))
    assert missing == []


@pytest.mark.shared
def test_shared_strict_passes_on_the_litellm_map(shared_dumps, tmp_path):
    (tmp_path / "models_litellm.json").symlink_to(shared_dumps / "models_litellm.json")
    cat = build_catalog(tmp_path, registries=False, strict=True)
    assert "documentation-entry" in _codes(cat, "info")
    assert len(cat["models"]) > 1000


@pytest.mark.shared
def test_shared_audit_lists_registry_zero_cases(shared_catalog):
    from knollm.query.audit import disagreements, summary

    rows = disagreements(shared_catalog)
    s = summary(rows)
    assert s["registry_zero"] > 0 and s["price"] > 0 and s["capability"] > 0
    keys = {r["key"] for r in rows if "registry's zero" in r["why"]}
    assert {"vercel/meta/llama-3.3-70b", "cortecs/llama-3.1-405b-instruct"} <= keys
    v = next(r for r in rows if r["key"] == "vercel/meta/llama-3.3-70b" and r["field"] == "prices.input")
    assert v["values"]["litellm"] == 0.72 and v["values"]["models.dev"] == 0.0 and v["shown"] is None
    assert not _model(shared_catalog, "vercel/meta/llama-3.3-70b")["free"]
