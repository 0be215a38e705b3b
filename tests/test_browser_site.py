"""Headless-browser tests of the built site (Debian chromium + playwright; never downloads a browser).

* the explorer: type a search, apply a facet, read the rows, compare with Catalog.search
* the calculator: set a workload, compare the shown costs with knollm.query.cost
* window.Knollm.costPerRequest vs knollm.query.cost.cost_per_request on edge cases
* a shared URL gives the same view
* XSS: hostile names / descriptions / URLs are shown literally and nothing runs
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from tests.support.http_static import serve_static

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _page(browser, errors: list | None = None):
    pg = browser.new_page(viewport={"width": 1300, "height": 900})
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    if errors is not None:
        pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.dialogs = dialogs
    return pg


def _rows(pg, table="#kn-results"):
    return pg.eval_on_selector_all(f"{table} tbody tr", "trs => trs.map(t => t.getAttribute('data-key'))")


# ------------------------------------------------------------------ full catalog
@pytest.fixture(scope="module")
def full(tmp_path_factory, shared_dumps):
    from tests.support.site_build import full_site

    site, cat, _ = full_site(tmp_path_factory.mktemp("full-site-b"), shared_dumps)
    with serve_static(site) as base:
        yield base, cat


@pytest.mark.shared
def test_explorer_search_and_facet(browser, full):
    from knollm.query.api import Catalog

    base, cat = full
    errors: list = []
    pg = _page(browser, errors)
    pg.goto(base + "explorer/")
    pg.wait_for_selector("#kn-explorer[data-ready]")
    pg.fill("#kn-q", "llama")
    pg.click("#kn-f-caps .kn-facet-btn")
    pg.check('input[data-facet="cap"][value="tools"]')
    pg.wait_for_function("() => window.Knollm.lastCount !== undefined")
    expected = Catalog(cat).search("llama", capabilities=["tools"])
    count = pg.evaluate("window.Knollm.lastCount")
    assert count == len(expected) > 0
    rows = _rows(pg)
    assert rows == [m["key"] for m in expected][: len(rows)]  # same order (name) and the same models
    assert str(len(expected)) in pg.inner_text("#kn-status").replace(",", "")
    pg.wait_for_function("() => location.search.includes('cap=tools')")
    assert "s=llama" in pg.url and "cap=tools" in pg.url
    # sort by input price
    pg.click('#kn-results th[data-col="in"] button')
    prices = pg.eval_on_selector_all("#kn-results tbody tr td:nth-child(3)", "tds => tds.map(t => t.getAttribute('data-v'))")
    known = [float(x) for x in prices if x is not None]
    assert known == sorted(known)
    # the shared URL gives the same view
    pg.wait_for_function("() => location.search.includes('sort=in')")
    url = pg.url
    pg2 = _page(browser)
    pg2.goto(url)
    pg2.wait_for_selector("#kn-explorer[data-ready]")
    assert pg2.input_value("#kn-q") == "llama"
    assert pg2.is_checked('input[data-facet="cap"][value="tools"]')
    assert _rows(pg2) == _rows(pg)
    assert pg.locator("#kn-chart svg circle").count() > 0 or "No filtered model" in pg.inner_text("#kn-chart")
    assert not errors
    pg.close()
    pg2.close()


@pytest.mark.shared
def test_calculator_matches_knollm_cost(browser, full):
    from knollm.query.api import Catalog
    from knollm.query.cost import Workload, estimate

    base, cat = full
    pg = _page(browser)
    pg.goto(base + "calculator/?p=openai,groq,deepinfra,openrouter")
    pg.wait_for_selector("#kn-calculator[data-ready]")
    for sel, val in (("#kn-w-in", "12k"), ("#kn-w-cache", "3000"), ("#kn-w-out", "1.5k"), ("#kn-w-req", "20000")):
        pg.fill(sel, val)
    w = Workload(12_000, 1_500, cached_tokens=3_000, requests=20_000)
    got = pg.eval_on_selector_all(
        "#kn-costs tbody tr",
        "trs => trs.map(t => [t.getAttribute('data-key'), t.querySelector('.kn-total').getAttribute('data-v'),"
        " t.querySelector('.kn-per').getAttribute('data-v')])")
    assert got
    by_key = {m["key"]: m for m in cat["models"]}
    for key, total, per in got:
        e = estimate(by_key[key], w)
        assert math.isclose(float(total), e["total"], rel_tol=1e-12, abs_tol=1e-15), key
        assert math.isclose(float(per), e["per_request"], rel_tol=1e-12, abs_tol=1e-15), key
    expected = Catalog(cat).costs(w, providers=["openai", "groq", "deepinfra", "openrouter"])
    assert [k for k, _, _ in got] == [r["key"] for r in expected][: len(got)]
    pg.wait_for_function("() => location.search.includes('req=20000')")
    assert "in=12k" in pg.url and "req=20000" in pg.url
    # the shared URL reproduces the workload
    pg2 = _page(browser)
    pg2.goto(pg.url)
    pg2.wait_for_selector("#kn-calculator[data-ready]")
    assert pg2.input_value("#kn-w-in") == "12k"
    assert pg2.eval_on_selector_all("#kn-costs tbody tr", "trs => trs.map(t => t.getAttribute('data-key'))") == \
        [k for k, _, _ in got]
    pg.close()
    pg2.close()


@pytest.mark.shared
def test_js_cost_function_matches_python(browser, full):
    from knollm.query.cost import Workload, cost_per_request
    from knollm.site.data import bucket_of

    base, _ = full
    pg = _page(browser)
    pg.goto(base + "calculator/")
    pg.wait_for_function("() => !!(window.Knollm && window.Knollm.costPerRequest)")
    price_sets = [
        {"input": 3.0, "output": 15.0, "cache_read": 0.3},
        {"input": 0.1, "output": 0.3},
        {"input": None, "output": 1.0},
        {"input": 1.0, "output": None},
        {"input": 0.0, "output": 0.0},
        {"input": 2.5, "output": 10.0, "cache_read": None, "request": 0.005},
        {"input": None, "output": None, "cache_read": 0.1},
        {"input": 0.0375, "output": 0.15, "cache_read": 0.01875, "request": 0.0},
        {},
    ]
    workloads = [Workload(1000, 500), Workload(2000, 0, cached_tokens=2000), Workload(0, 0),
                 Workload(123_457, 9_876, cached_tokens=54_321, requests=7), Workload(1, 1, cached_tokens=1)]
    for prices in price_sets:
        for w in workloads:
            js = pg.evaluate("([p, w]) => window.Knollm.costPerRequest(p, w)",
                             [prices, {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                                       "cached_tokens": w.cached_tokens, "requests": w.requests}])
            py = cost_per_request(prices, w)
            assert js == py, (prices, w, js, py)  # the same arithmetic: bit-identical
    # tiers (Model.price_tiers): below, at and above a threshold
    tiers = [{"start": 128000.0, "input": 2.5, "output": 10.0}, {"start": 200000.0, "input": 5.0, "cache_read": 0.5}]
    for prices in price_sets[:3]:
        for w in workloads + [Workload(128_000, 10), Workload(128_001, 10, cached_tokens=1), Workload(250_000, 5)]:
            js = pg.evaluate("([p, w, t]) => window.Knollm.costPerRequest(p, w, t)",
                             [prices, {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                                       "cached_tokens": w.cached_tokens, "requests": w.requests}, tiers])
            assert js == cost_per_request(prices, w, tiers), (prices, w)
    for key in ("openai/gpt-4o", "featherless/Qwen/Qwen2.5-7B", "x/ünïcødé-模型", ""):
        assert pg.evaluate("k => window.Knollm.bucketOf(k, 128)", key) == bucket_of(key)
    assert pg.evaluate("window.Knollm.parseCount('1.5M')") == 1_500_000
    pg.close()


@pytest.mark.shared
def test_model_detail_and_provider_page(browser, full):
    base, cat = full
    m = next(x for x in cat["models"] if x["provider"] == "groq" and x.get("name"))
    pg = _page(browser)
    pg.goto(base + "model/?m=" + m["key"])
    pg.wait_for_selector("#kn-model[data-ready]")
    assert pg.inner_text("article h1") == m["name"]
    assert m["key"] in pg.inner_text("#kn-model")
    pg.goto(base + "providers/groq/")
    assert "GROQ_API_KEY" in pg.inner_text("article")
    assert pg.locator("table.kn-models tbody tr").count() == sum(1 for x in cat["models"] if x["provider"] == "groq")
    pg.close()


# ------------------------------------------------------------------ XSS
@pytest.fixture(scope="module")
def xss_site(tmp_path_factory):
    from tests.support.site_fixtures import build_small_site

    site = build_small_site(tmp_path_factory.mktemp("xss-site"))
    with serve_static(site) as base:
        yield base


def _assert_clean(pg):
    assert pg.evaluate("typeof window.__xss") == "undefined"
    assert pg.dialogs == []
    assert pg.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror], [onmouseover]').length") == 0


def test_xss_is_shown_literally(browser, xss_site):
    from tests.support.site_fixtures import XSS_DESC, XSS_ID, XSS_NAME

    base = xss_site
    pg = _page(browser)
    # provider page + providers index + cross-provider page
    for path in ("providers/evil/", "providers/", "canonical/shared-7b/", "matrix/capabilities/", ""):
        pg.goto(base + path)
        pg.wait_for_timeout(100)
        pg.hover("article")
        _assert_clean(pg)
    pg.goto(base + "providers/evil/")
    text = pg.inner_text("article")
    assert "<script>window.__xss=1</script>" in text and "javascript:window.__xss=5" in text
    assert pg.evaluate("document.querySelectorAll('a[href^=\"javascript\"]').length") == 0
    assert pg.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    # explorer rows
    pg.goto(base + "explorer/?s=evil")
    pg.wait_for_selector("#kn-explorer[data-ready]")
    rows = pg.inner_text("#kn-results")
    assert XSS_NAME in rows and XSS_ID in rows
    pg.fill("#kn-q", "script")
    pg.wait_for_timeout(300)
    _assert_clean(pg)
    assert pg.evaluate("document.querySelectorAll('#kn-explorer img, #kn-explorer script').length") == 0
    # model detail (description rendered)
    from urllib.parse import quote

    pg.goto(base + "model/?m=" + quote("evil/" + XSS_ID))
    pg.wait_for_selector("#kn-model[data-ready]")
    body = pg.inner_text("#kn-model")
    assert XSS_DESC in body
    _assert_clean(pg)
    # calculator
    pg.goto(base + "calculator/?s=evil")
    pg.wait_for_selector("#kn-calculator[data-ready]")
    pg.wait_for_timeout(200)
    _assert_clean(pg)
    pg.close()


# ------------------------------------------------------------------ filter: JS vs Python
# One case per facet the explorer has, alone and combined; each is the explorer's URL
# state (knollm.js ``readState``) and the same filter as a knollm.query.filters.Filters.
FILTER_CASES = [
    ({}, {}),
    ({"s": "llama"}, {"text": "llama"}),
    ({"s": "meta-llama/ instruct"}, {"text": "meta-llama/ instruct"}),
    ({"cap": ["tools"]}, {"capabilities": ["tools"]}),
    ({"cap": ["tools", "vision"]}, {"capabilities": ["tools", "vision"]}),
    ({"mod": ["image"]}, {"modalities": ["image"]}),
    ({"ctx": 128000}, {"min_context": 128000}),
    ({"maxp": 0.5}, {"max_input_price": 0.5}),
    ({"maxp": 0}, {"max_input_price": 0}),
    ({"free": True}, {"free": True}),
    ({"ow": True}, {"open_weights": True}),
    ({"dep": True}, {"include_deprecated": True}),
    ({"kind": "embedding"}, {"kinds": ["embedding"]}),
    ({"s": "qwen", "cap": ["tools"], "ctx": 32000, "maxp": 1}, {"text": "qwen", "capabilities": ["tools"],
                                                               "min_context": 32000, "max_input_price": 1}),
]


def _provider_cases(cat: dict) -> list[tuple[dict, dict]]:
    counts: dict[str, int] = {}
    for m in cat["models"]:
        counts[m["provider"]] = counts.get(m["provider"], 0) + 1
    two = sorted(counts, key=lambda p: -counts[p])[:2]
    return [({"p": two[:1]}, {"providers": two[:1]}), ({"p": two, "s": "a"}, {"providers": two, "text": "a"})]


def _filter_catalogs(tmp_path_factory, fixture_dumps):
    from knollm.catalog.build import build_catalog
    from tests.support.site_fixtures import make_catalog

    yield "small", make_catalog()
    yield "fixture-dumps", build_catalog(fixture_dumps)


def test_js_filter_matches_python_filters(browser, tmp_path_factory, fixture_dumps):
    from knollm.query.api import Catalog
    from knollm.query.filters import Filters
    from tests.support.site_fixtures import build_small_site

    for label, cat in _filter_catalogs(tmp_path_factory, fixture_dumps):
        site = build_small_site(tmp_path_factory.mktemp(f"filter-{label}"), cat)
        py_cat = Catalog(cat)
        with serve_static(site) as base:
            pg = _page(browser)
            pg.goto(base + "explorer/")
            pg.wait_for_selector("#kn-explorer[data-ready]")
            nonempty = 0
            for st, kw in FILTER_CASES + _provider_cases(cat):
                js = pg.evaluate(
                    """(st) => window.Knollm.loadIndex().then(ix => {
                         const s = Object.assign({s: "", p: [], cap: [], mod: [], ctx: 0, maxp: null, free: false,
                                                  ow: false, dep: false, kind: ""}, st);
                         return window.Knollm.filterRows(ix, s).map(r => ix.keys[r]);
                       })""", st)
                py = [m["key"] for m in py_cat.search(Filters(**kw))]
                assert js == py, (label, st, len(js), len(py), sorted(set(js) ^ set(py))[:5])
                nonempty += bool(py)
            # the cases must exercise real matches, not agree on empty lists
            assert nonempty >= len(FILTER_CASES) // 2, (label, nonempty)
            pg.close()
