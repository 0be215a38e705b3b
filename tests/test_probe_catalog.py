"""The catalog reads ``knollm probe`` results as source ``probe`` (precedence, disagreements, dates)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from knollm.catalog.build import build_catalog
from knollm.catalog.diagnostics import Diagnostics

FIXTURE = Path(__file__).parent / "fixtures" / "dumps" / "models_openrouter.json"
KEY = "openrouter/acme/widget-70b-instruct"  # the dump says tools: true, vision: true, context 131072


def _probe(date: str, vision: str, ctx: int | None = None) -> dict:
    results = [{"probe": "vision", "capability": "vision", "verdict": vision, "detail": "…", "evidence": {}},
               {"probe": "tools", "capability": "tools", "verdict": "yes", "detail": "…", "evidence": {}},
               {"probe": "json_mode", "capability": "json_mode", "verdict": "error", "detail": "HTTP 503",
                "evidence": {}}]
    if ctx:
        results.append({"probe": "context_limit", "capability": "context_window", "verdict": "yes",
                        "context_window": ctx, "detail": "…", "evidence": {}})
    return {"kind": "probe", "format": 1, "date": date, "provider": "openrouter", "model": "acme/widget-70b-instruct",
            "key": KEY, "cost_usd": 0.0001, "results": results}


@pytest.fixture
def work(tmp_path):
    dumps = tmp_path / "model_catalog"
    dumps.mkdir()
    shutil.copy(FIXTURE, dumps)
    (tmp_path / "probes").mkdir()
    return tmp_path


def _model(cat: dict, key: str = KEY) -> dict:
    return next(m for m in cat["models"] if m["key"] == key)


def test_probe_wins_and_the_overridden_claims_are_kept(work):
    (work / "probes" / "probe-old.json").write_text(json.dumps(_probe("2026-11-01T10:00:00Z", "yes")))
    (work / "probes" / "probe-new.json").write_text(json.dumps(_probe("2026-11-20T10:00:00Z", "no", ctx=65536)))
    m = _model(build_catalog(work / "model_catalog", registries=False))
    # the newest file wins; its no/yes verdicts decide, an error verdict says nothing
    assert m["capabilities"]["vision"] is False and m["sources"]["capabilities.vision"] == "probe"
    assert m["capabilities"]["tools"] is True and m["sources"]["capabilities.tools"] == "probe"
    assert m["sources"].get("capabilities.json_mode") != "probe"
    assert m["context_window"] == 65536 and m["sources"]["context_window"] == "probe"
    # disagreements: the dump's claims stay visible; an agreeing value is not a disagreement
    assert m["alternatives"] == {"capabilities.vision": {"dump": True}, "context_window": {"dump": 131072}}
    assert m["probe"]["date"] == "2026-11-20T10:00:00Z" and m["probe"]["file"] == "probe-new.json"
    assert m["probe"]["verdicts"] == {"vision": "no", "tools": "yes", "json_mode": "error", "context_limit": "yes"}
    # other models are untouched
    other = _model(build_catalog(work / "model_catalog", registries=False, probes=None))
    assert other["capabilities"]["vision"] is True and "probe" not in other


def test_a_later_run_of_some_probes_keeps_the_earlier_verdicts_on_the_others(work):
    """``knollm probe --only tools`` after a full run: the earlier vision ``no`` and context
    window still stand; a newer ``error`` on a probe leaves an older verdict standing; a
    newer yes/no replaces it. Each verdict names its file."""
    (work / "probes" / "probe-full.json").write_text(json.dumps(_probe("2026-11-01T10:00:00Z", "no", ctx=65536)))
    only_tools = _probe("2026-11-20T10:00:00Z", "no")
    only_tools["results"] = [{"probe": "tools", "capability": "tools", "verdict": "no", "detail": "…", "evidence": {}},
                             {"probe": "context_limit", "capability": "context_window", "verdict": "error",
                              "detail": "HTTP 503", "evidence": {}}]
    (work / "probes" / "probe-tools.json").write_text(json.dumps(only_tools))
    m = _model(build_catalog(work / "model_catalog", registries=False))
    assert m["capabilities"]["vision"] is False and m["sources"]["capabilities.vision"] == "probe"
    assert m["capabilities"]["tools"] is False and m["sources"]["capabilities.tools"] == "probe"
    assert m["context_window"] == 65536 and m["sources"]["context_window"] == "probe"
    assert m["alternatives"] == {"capabilities.vision": {"dump": True}, "capabilities.tools": {"dump": True},
                                 "context_window": {"dump": 131072}}
    assert m["probe"]["verdicts"] == {"vision": "no", "tools": "no", "json_mode": "error", "context_limit": "yes"}
    assert m["probe"]["measured"]["vision"]["file"] == "probe-full.json"
    assert m["probe"]["measured"]["tools"]["file"] == "probe-tools.json"
    assert m["probe"]["measured"]["context_limit"]["file"] == "probe-full.json"
    assert m["probe"]["file"] == "probe-tools.json" and m["probe"]["files"] == 2
    assert m["probe"]["cost_usd"] == pytest.approx(0.0002)


def test_a_probe_never_invents_a_model_and_bad_files_are_named(work):
    doc = _probe("2026-11-20T10:00:00Z", "no")
    doc["model"] = "acme/not-listed"
    (work / "probes" / "probe-unlisted.json").write_text(json.dumps(doc))
    (work / "probes" / "probe-broken.json").write_text("{nope")
    (work / "probes" / "probe-other.json").write_text(json.dumps({"kind": "benchmark"}))
    diags = Diagnostics()
    cat = build_catalog(work / "model_catalog", registries=False, diags=diags)
    assert not any(m["id"] == "acme/not-listed" for m in cat["models"])
    bad = sorted(Path(d.file).name for d in diags.warnings if d.code == "bad-probe-file")
    assert bad == ["probe-broken.json", "probe-other.json"]
    with pytest.raises(Exception, match="probe"):
        build_catalog(work / "model_catalog", registries=False, strict=True)


def test_the_catalog_cache_sees_new_probe_files(work, monkeypatch, tmp_path):
    from knollm.query import cache

    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    k1 = cache.fast_cache_key(work / "model_catalog")
    (work / "probes" / "probe-new.json").write_text(json.dumps(_probe("2026-11-20T10:00:00Z", "no")))
    k2 = cache.fast_cache_key(work / "model_catalog")
    assert k1 != k2 == cache.cache_key(work / "model_catalog")
