"""Per-source translators: the dispatch table, tolerance of bad fields, unusable records."""

from __future__ import annotations

import importlib
import pkgutil

import orjson
import pytest

import knollm.catalog.sources as sources
from knollm.catalog.build import build_catalog
from knollm.catalog.diagnostics import Diagnostics
from knollm.errors import RecordError, StrictModeError


def _dump(tmp_path, name, payload):
    (tmp_path / name).write_bytes(orjson.dumps(payload))
    return tmp_path


def test_every_source_module_is_dispatched():
    mods = {m.name for m in pkgutil.iter_modules(sources.__path__)} - sources.HELPERS
    assert mods == set(sources.TRANSLATORS)
    # the odd sources of the real dumps each have their own translator
    assert {"novita", "litellm", "huggingface", "chutes", "togetherai", "featherless"} <= mods
    assert sources.TRANSLATORS["litellm"].layer == "litellm" and sources.TRANSLATORS["novita"].layer == "dump"
    for name in mods:
        mod = importlib.import_module(f"knollm.catalog.sources.{name}")
        assert sources.TRANSLATORS[name].translate is mod.translate
        assert mod.Raw.__annotations__, f"{name}.Raw declares no raw shape"


def test_unknown_source_uses_the_generic_translator():
    [(pid, mid, f)] = sources.translate("somebody", "m1", {"pricing": {"prompt": "0.000001"},
                                                           "input_token_price_per_m": 500}, lambda *a: None)
    assert pid is None and mid == "m1"
    # generic reads the common field only; Novita's odd unit is not guessed for other sources
    assert f["prices"] == {"input": 1.0}


def test_odd_field_is_read_only_for_its_source():
    rec = {"type": "embedding", "features": ["function-calling"]}
    [(_, _, together)] = sources.translate("togetherai", "x", rec, lambda *a: None)
    [(_, _, other)] = sources.translate("openai", "x", rec, lambda *a: None)
    assert together["kind"] == "embedding" and other["kind"] == "chat"
    [(_, _, novita)] = sources.translate("novita", "x", {"features": ["function-calling"]}, lambda *a: None)
    assert novita["capabilities"] == {"tools": True, "structured_output": False, "reasoning": False,
                                      "vision": False}
    assert "capabilities" not in other


def test_bad_field_warns_with_file_and_record_and_keeps_the_record(tmp_path):
    _dump(tmp_path, "models_deepinfra.json", {"object": "list", "data": [
        {"id": "org/a", "metadata": {"pricing": {"input_tokens": "lots", "output_tokens": 0.4},
                                     "context_length": 8192}},
        {"id": "org/b", "metadata": {"pricing": {"input_tokens": 0.1, "output_tokens": 0.2}}},
    ]})
    d = Diagnostics()
    cat = build_catalog(tmp_path, diags=d, registries=False)
    models = {m["id"]: m for m in cat["models"]}
    assert models["org/a"]["prices"]["input"] is None and models["org/a"]["prices"]["output"] == 0.4
    assert models["org/a"]["context_window"] == 8192
    assert models["org/b"]["prices"]["input"] == 0.1
    [w] = d.warnings
    assert (w.code, w.file, w.record) == ("bad-value", "models_deepinfra.json", "org/a")
    assert "metadata.pricing.input_tokens" in w.message


def test_unusable_record_raises_record_error_and_becomes_one_warning(tmp_path):
    from knollm.catalog.sources import litellm

    with pytest.raises(RecordError) as e:
        litellm.translate("mystery-model", {"mode": "chat"}, lambda *a: None)
    assert e.value.record == "mystery-model" and "litellm_provider" in str(e.value)
    _dump(tmp_path, "models_litellm.json", {
        "mystery-model": {"mode": "chat", "input_cost_per_token": 1e-06},
        "groq/llama3-8b-8192": {"litellm_provider": "groq", "mode": "chat", "input_cost_per_token": 5e-08},
    })
    d = Diagnostics()
    cat = build_catalog(tmp_path, diags=d, registries=False)
    assert [m["key"] for m in cat["models"]] == ["groq/llama3-8b-8192"]
    [w] = d.warnings
    assert (w.code, w.file, w.record) == ("bad-record", "models_litellm.json", "mystery-model")
    with pytest.raises(StrictModeError, match="mystery-model"):
        build_catalog(tmp_path, strict=True, registries=False)


def _doc_order(row: str) -> tuple[str, ...]:
    """Layer kinds named, in order, by one row of the precedence table in methodology.md."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "src_docs" / "methodology.md").read_text(encoding="utf-8")
    [line] = [ln for ln in text.splitlines() if ln.startswith(f"| {row} |")]
    cell = line.split("|")[2].split(" – ")[0]
    names = {"`probe`": "probe", "`dump`": "dump", "`genai-prices` same provider": "gp", "`genai-prices`": "gp",
             "`models.dev` same provider": "md", "`models.dev`": "md", "`litellm`": "litellm",
             "`models.dev` canonical": "md~canonical", "family": "md~family"}
    out = []
    for part in cell.split(" > "):
        part = part.strip()
        if part.startswith("`inferred`"):
            break
        out.append(names[part])
    return tuple(out)


@pytest.mark.parametrize("row,table", [("prices", "_PRICE_ORDER"), ("context window, max output", "_LIMIT_ORDER"),
                                       ("capabilities", "_CAP_ORDER"), ("name, description", "_META_ORDER")])
def test_documented_precedence_is_the_code(row, table):
    from knollm.catalog import build

    assert _doc_order(row) == getattr(build, table)


def test_spec_adds_context_paths_after_the_common_ones():
    from knollm.catalog.sources.generic import Spec, translate

    spec = Spec(context_paths=(("limits", "ctx"),), max_output_paths=(("limits", "out"),))
    warnings = []
    f = translate("m", {"limits": {"ctx": "32768", "out": 4096}}, lambda *a: warnings.append(a), spec=spec)
    assert (f["context_window"], f["max_output"]) == (32768, 4096) and not warnings
    # a common spelling still wins; a bad value in the extra path warns and stays unknown
    assert translate("m", {"context_length": 8192, "limits": {"ctx": 1}}, print, spec=spec)["context_window"] == 8192
    f = translate("m", {"limits": {"ctx": "big"}}, lambda *a: warnings.append(a), spec=spec)
    assert "context_window" not in f and warnings[0][0] == "context_window"
    assert "context_window" not in translate("m", {"limits": {"ctx": 32768}}, print)  # generic does not read it
