"""Review fixes: unknown / suspect context and ``--min-context 0``, the site's parseCount,
``lock analyze``'s pricing note in table output, ``recommend --budget nan``, estimated
tokens/s on the Measured page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from knollm.cli import main

OPENROUTER = {"data": [
    {"id": "knolltest/good-8b", "name": "Good 8B", "context_length": 32768,
     "pricing": {"prompt": "0.0000002", "completion": "0.0000006"}},
    {"id": "knolltest/placeholder-1", "name": "Placeholder 1", "context_length": 99999999,
     "pricing": {"prompt": "0.0000003", "completion": "0.0000009"}},
    {"id": "knolltest/nocontext-2", "name": "No Context 2",
     "pricing": {"prompt": "0.0000001", "completion": "0.0000002"}},
]}
GOOD, PLACEHOLDER, NOCTX = (f"openrouter/knolltest/{x}" for x in ("good-8b", "placeholder-1", "nocontext-2"))


@pytest.fixture()
def env(tmp_path, monkeypatch):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "models_openrouter.json").write_text(json.dumps(OPENROUTER))
    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    for k in ("KNOLLM_DUMPS", "KNOLLM_LOCK", "KNOLLM_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    return {"dumps": str(dumps), "tmp": tmp_path}


def _keys(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert main(list(argv) + ["--json"]) == 0, argv
    out = json.loads(capsys.readouterr().out)
    rows = out["models"]
    return [r["key"] for r in rows]


# ---------------------------------------------------------------------------- 1. context
def test_min_context_excludes_unknown_and_suspect_context(env, capsys):
    d = ["--dumps", env["dumps"]]
    from knollm.query.api import Catalog

    sus = {m["key"]: m.get("suspect") or {} for m in Catalog.load(dumps=env["dumps"]).search(include_deprecated=True)}
    assert "context_window" in sus[PLACEHOLDER]  # the fixture really is a suspect placeholder
    assert set(_keys(capsys, "models", "search", "knolltest", "--min-context", "0", *d)) == {GOOD}
    assert set(_keys(capsys, "models", "search", "knolltest", "--min-context", "1000", *d)) == {GOOD}
    # sort by context: the placeholder does not sort first; unknown / suspect last
    order = _keys(capsys, "models", "search", "knolltest", "--sort", "context", *d)
    assert order[0] == GOOD and set(order[1:]) == {PLACEHOLDER, NOCTX}


# ---------------------------------------------------------------------------- 3. lock analyze note
def test_lock_analyze_table_prints_the_pricing_note(env, capsys):
    lock = env["tmp"] / "knollm.lock"
    lock.write_text(f'version = 1\n[[profiles.default.bindings]]\nalias = "x"\nmodels = ["{GOOD}"]\n')
    args = ["lock", "analyze", "--lock", str(lock), "--volume", "1M:1M", "--dumps", env["dumps"]]
    capsys.readouterr()
    assert main(args + ["--json"]) == 0
    note = json.loads(capsys.readouterr().out)["note"]
    assert note
    assert main(args) == 0
    out = capsys.readouterr().out
    assert note in " ".join(out.split()) or note in out


# ---------------------------------------------------------------------------- 4. recommend --budget
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_recommend_rejects_non_finite_budget(env, capsys, bad):
    capsys.readouterr()
    assert main(["recommend", "--use-case", "coding", "--budget", bad, "--dumps", env["dumps"]]) == 2
    assert "finite" in capsys.readouterr().err


def test_recommend_api_rejects_nan_budget(env):
    from knollm.errors import FilterError
    from knollm.query.api import Catalog
    from knollm.query.recommend import recommend

    with pytest.raises(FilterError):
        recommend(Catalog.load(dumps=env["dumps"]), "coding", budget=float("nan"))


# ---------------------------------------------------------------------------- 2. the site's parseCount
PARSE_CASES = ["1.5M", "200k", "1000", "1,000", "12,345,678", "1,5M", "1,00", "10,0000", "2.5", "0.4",
               "1.0005k", "1.0005M", "1.5", "0.5k", "1_000", " 7 ", "abc", "", "-5", "1e3", "3B", "1,000.5k"]


def test_js_parse_count_matches_python(tmp_path_factory):
    from knollm.query.cost import parse_count

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.support.http_static import serve_static
    from tests.support.site_fixtures import build_small_site

    site = build_small_site(tmp_path_factory.mktemp("parsecount-site"))
    want = {}
    for t in PARSE_CASES:
        try:
            want[t] = parse_count(t)
        except ValueError:
            want[t] = None
    assert want["1,5M"] is None and want["2.5"] is None and want["1.5M"] == 1_500_000
    with serve_static(site) as base, sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            pg = b.new_page()
            pg.goto(base + "calculator/")
            pg.wait_for_function("() => !!(window.Knollm && window.Knollm.parseCount)")
            got = pg.evaluate("cs => cs.map(t => { const v = window.Knollm.parseCount(t); "
                              "return Number.isNaN(v) ? null : v; })", PARSE_CASES)
        finally:
            b.close()
    assert dict(zip(PARSE_CASES, got)) == want


# ---------------------------------------------------------------------------- 5. Measured page
def test_measured_page_marks_estimated_tokens_per_s(tmp_path):
    from tests.support.site_fixtures import DOCS, MKDOCS_TEMPLATE, PAGES, make_catalog

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in PAGES:
        (docs / name).write_text((DOCS / name).read_text(encoding="utf-8"), encoding="utf-8")
    cat_path = tmp_path / "catalog.json"
    cat_path.write_bytes(orjson.dumps(make_catalog(xss=False)))
    (tmp_path / "dumps").mkdir()
    probes = tmp_path / "probes"
    probes.mkdir()
    row = {"runs": 3, "success_rate": 1.0, "ttft_p50_ms": 100.0, "latency_p50_ms": 500.0, "latency_p95_ms": 700.0,
           "cost_per_run_usd": 0.0001, "skipped": 0}
    doc = {"kind": "benchmark", "date": "2025-01-02T03:04:05Z", "runs_per_target": 3, "results": [
        {**row, "key": "alpha/shared-7b", "tokens_per_s_p50": 123.0, "tokens_per_s_estimated": True},
        {**row, "key": "beta/shared-7b-instruct", "tokens_per_s_p50": 77.0, "tokens_per_s_estimated": False}]}
    (probes / "benchmark-20250102.json").write_bytes(orjson.dumps(doc))
    site = tmp_path / "site"
    cfg = tmp_path / "mkdocs.yml"
    text = MKDOCS_TEMPLATE.format(docs=docs, site=site, catalog=cat_path)
    text = text.replace(f"      catalog: {cat_path}", f"      catalog: {cat_path}\n      dumps: {tmp_path / 'dumps'}")
    cfg.write_text(text, encoding="utf-8")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(cfg)))
    html = (site / "measured" / "index.html").read_text(encoding="utf-8")
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    est_row = next(r for r in body.split("<tr>") if "alpha/shared-7b" in r)
    ok_row = next(r for r in body.split("<tr>") if "beta/shared-7b-instruct" in r)
    assert "≈123" in est_row and "kn-estimated" in est_row
    assert "≈" not in ok_row and ">77<" in ok_row
    assert "tokens/s estimated" in html
