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
    # sort by input price: paid offers cheapest first, then the $0 ones
    pg.click('#kn-results th[data-col="in"] button')
    prices = pg.eval_on_selector_all("#kn-results tbody tr td:nth-child(3)", "tds => tds.map(t => t.getAttribute('data-v'))")
    known = [float(x) for x in prices if x is not None]
    paid = [x for x in known if x > 0]
    assert paid and known[: len(paid)] == sorted(paid)
    # the shared URL gives the same view
    pg.wait_for_function("() => location.search.includes('sort=in')")
    url = pg.url
    pg2 = _page(browser)
    pg2.goto(url)
    pg2.wait_for_selector("#kn-explorer[data-ready]")
    assert pg2.input_value("#kn-q") == "llama"
    assert pg2.is_checked('input[data-facet="cap"][value="tools"]')
    assert _rows(pg2) == _rows(pg)
    # the chart is folded below the results; opening it draws it
    assert not pg.is_visible("#kn-chart svg")
    pg.click("#kn-chart-toggle")
    pg.wait_for_selector("#kn-chart svg, #kn-chart p")
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
    # the calculator's defaults: chat models, paid offers
    expected = Catalog(cat).costs(w, providers=["openai", "groq", "deepinfra", "openrouter"], kinds=["chat"], paid=True)
    assert [k for k, _, _ in got] == [r["key"] for r in expected][: len(got)]
    assert all(by_key[k]["kind"] == "chat" and float(t) > 0 for k, t, _ in got)
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
    # the default view (its first rows are inline JSON in the page) and explorer rows
    pg.goto(base + "explorer/")
    pg.wait_for_selector("#kn-explorer[data-ready]")
    _assert_clean(pg)
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
    ({"maxp": 1e6, "dep": True}, {"max_input_price": 1e6, "include_deprecated": True}),
    ({"free": True}, {"free": True}),
    ({"ow": True}, {"open_weights": True}),
    ({"dep": True}, {"include_deprecated": True}),
    ({"kind": "embedding"}, {"kinds": ["embedding"]}),
    ({"paid": True}, {"paid": True}),
    ({"s": "llama, qwen"}, {"text": "llama, qwen"}),
    ({"s": "shared or alpha | zeta 7b"}, {"text": "shared or alpha | zeta 7b"}),
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
    # suspect values (a price in the wrong unit, a placeholder window) pass no bound, as unknown
    sus = make_catalog()
    for m in sus["models"]:
        if m["id"] == "beta-old":
            m["prices"]["input"], m["suspect"] = 5000.0, {"prices.input": "price_range"}
        elif m["id"] == "shared-7b":
            m["context_window"], m["suspect"] = 99_999_999, {"context_window": "placeholder"}
    yield "suspect", sus


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


# ------------------------------------------------------------------ what users hit first (issue 11)
def _page_at(browser, width, height, errors=None):
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    if errors is not None:
        pg.on("pageerror", lambda e: errors.append(str(e)))
    return pg


@pytest.mark.shared
def test_explorer_results_above_the_fold_and_paid_toggle(browser, full):
    base, cat = full
    errors: list = []
    pg = _page_at(browser, 1400, 900, errors)
    pg.goto(base + "explorer/")
    pg.wait_for_selector("#kn-explorer[data-ready]")
    top = pg.evaluate("document.querySelector('#kn-results tbody tr').getBoundingClientRect().bottom")
    assert top <= 900, f"first result row ends at {top}px, below the 900px fold"
    assert not pg.is_visible("#kn-chart")  # folded
    pg.check("#kn-paid")
    pg.wait_for_function("() => location.search.includes('paid=1')")
    keys = _rows(pg)
    by_key = {m["key"]: m for m in cat["models"]}
    from knollm.site.render import is_paid

    assert keys and all(is_paid(by_key[k]) for k in keys)
    from knollm.query.api import Catalog

    assert pg.evaluate("window.Knollm.lastCount") == len(Catalog(cat).search(paid=True))
    assert not errors


@pytest.mark.shared
def test_explorer_or_search_and_selection_tray(browser, full):
    from knollm.query.api import Catalog

    base, cat = full
    pg = _page_at(browser, 1400, 900)
    pg.goto(base + "explorer/")
    pg.wait_for_selector("#kn-explorer[data-ready]")
    pg.fill("#kn-q", "gpt-4o, claude")
    pg.wait_for_function("() => window.Knollm.lastCount > 0")
    assert pg.evaluate("window.Knollm.lastCount") == len(Catalog(cat).search("gpt-4o, claude"))
    # all words ANDed finds nothing: the explorer shows the models matching any word and says so
    pg.fill("#kn-q", "gpt-4o claude")
    pg.wait_for_function("() => window.Knollm.lastCount > 0")
    assert "match any of them" in pg.inner_text("#kn-status")
    rows = _rows(pg)
    assert any("gpt-4o" in k for k in rows) or any("claude" in k.lower() for k in rows)
    # pick two rows, compare them
    boxes = pg.locator("#kn-results tbody tr input.kn-sel")
    boxes.nth(0).check()
    boxes.nth(1).check()
    assert pg.is_visible("#kn-tray") and "2 selected" in pg.inner_text("#kn-tray")
    pg.click("#kn-compare-link")
    pg.wait_for_selector("#kn-compare[data-ready]")
    heads = pg.eval_on_selector_all("#kn-cmp thead th[data-key]", "ths => ths.map(t => t.getAttribute('data-key'))")
    assert heads == rows[:2]


@pytest.mark.shared
def test_compare_page_agrees_with_cli(browser, full, capsys):
    import json

    from knollm.cli import main

    base, cat = full
    refs = ["gpt-4o", "claude-sonnet-4", "groq/llama-3.3-70b-versatile"]
    rc = main(["compare", *refs, "-i", "2000", "-o", "500", "--json", "--dumps", str(_shared())])
    cli = json.loads(capsys.readouterr().out)
    assert rc == 0
    pg = _page_at(browser, 1400, 900)
    pg.goto(base + "compare/?m=" + ",".join(refs) + "&in=2000&out=500")
    pg.wait_for_selector("#kn-compare[data-ready]")
    keys = pg.eval_on_selector_all("#kn-cmp thead th[data-key]", "ths => ths.map(t => t.getAttribute('data-key'))")
    assert keys == [m["key"] for m in cli["models"]]
    assert "gpt-4o → openai/gpt-4o" in pg.inner_text("#kn-cmp-notes")
    cells = pg.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#kn-cmp tbody tr')].map(
        tr => [tr.getAttribute('data-field'), [...tr.querySelectorAll('td')].map(td => JSON.parse(td.getAttribute('data-v')))]))""")
    assert [f for f in cells if not f.startswith("cost.")] == cli["fields"]
    for f in cli["fields"]:
        want = []
        for m in cli["models"]:
            v = m
            for part in f.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            want.append(v)
        assert cells[f] == want, f
    assert cells["cost.per_request"] == pytest.approx(cli["cost_per_request"], rel=1e-12)
    # sources shown and linked to the methodology
    assert pg.locator("#kn-cmp a.kn-src-label[href*='methodology']").count() > 0
    # the shared URL reproduces the page
    pg.wait_for_function("() => location.search.includes('m=')")
    pg2 = _page_at(browser, 1400, 900)
    pg2.goto(pg.url)
    pg2.wait_for_selector("#kn-compare[data-ready]")
    assert pg2.eval_on_selector_all("#kn-cmp thead th[data-key]", "ths => ths.map(t => t.getAttribute('data-key'))") == keys


def _shared():
    from tests.conftest import SHARED_DUMPS

    return SHARED_DUMPS


@pytest.mark.shared
def test_explorer_first_rows_from_the_head_file(browser, full):
    """The default view renders from data/index-head.json before the full index arrives, and
    the full index shows the same first rows."""
    base, _ = full
    pg = _page_at(browser, 1400, 900)
    held = []
    pg.route("**/data/index.json", lambda route: held.append(route))  # held until released below
    pg.goto(base + "explorer/")
    pg.wait_for_selector("#kn-explorer[data-head] #kn-results tbody tr")
    head_rows = _rows(pg)
    assert len(head_rows) == 60 and "loading the full index" in pg.inner_text("#kn-status")
    pg.wait_for_timeout(300)
    assert len(held) == 1 and not pg.evaluate("!!document.querySelector('#kn-explorer[data-ready]')")
    held[0].continue_()
    pg.wait_for_selector("#kn-explorer[data-ready]", timeout=60_000)
    assert _rows(pg)[:60] == head_rows


# pages with wide tables; each measured at a desktop and a phone size
TABLE_PAGES = ["providers/", "matrix/capabilities/", "libraries/matrix/", "providers/groq/", "canonical/",
               "canonical/gpt-oss-120b/", "explorer/", "compare/?m=gpt-4o,claude-sonnet-4,llama-3.3-70b-instruct"]


@pytest.mark.shared
@pytest.mark.parametrize("size", [(1400, 900), (390, 844)], ids=["desktop", "phone"])
def test_tables_readable_no_clipping_no_mid_word_breaks(browser, full, size, tmp_path):
    base, _ = full
    pg = _page_at(browser, *size)
    for path in TABLE_PAGES:
        pg.goto(base + path)
        if path.startswith(("explorer/", "compare/")):
            pg.wait_for_selector(".kn-app[data-ready]")
        pg.screenshot(path=str(tmp_path / (path.replace("/", "_") + f"{size[0]}.png")))
        res = pg.evaluate("""() => {
          const out = {page: document.documentElement.scrollWidth, vw: window.innerWidth, tables: []};
          for (const t of document.querySelectorAll('article table.kn-table, article table:not([class])')) {
            const wrap = t.closest('.kn-table-wrap, .kn-ptable, .md-typeset__scrollwrap');
            const w = wrap.getBoundingClientRect(), r = t.getBoundingClientRect();
            const cs = getComputedStyle(wrap);
            const first = t.querySelector('tbody tr > :first-child');
            // every name (model, provider: links and code) on one line (an inline box that wraps has 2+ rects)
            const names = [...t.querySelectorAll('tbody tr:nth-child(-n+40) td :is(a, code, .kn-mname)')];
            const broken = names.filter(e => e.getClientRects().length > 1).map(e => e.textContent);
            out.tables.push({fits: r.width <= w.width + 1, scrolls: ['auto', 'scroll'].includes(cs.overflowX) &&
                             wrap.scrollWidth > wrap.clientWidth, wrapRight: w.right,
                             sticky: first ? getComputedStyle(first).position : null, broken: broken.slice(0, 5)});
          }
          return out;
        }""")
        assert res["page"] <= res["vw"] + 1, (path, size, "the page itself scrolls sideways", res["page"])
        assert res["tables"], path
        for t in res["tables"]:
            # either the table fits its box, or the box scrolls sideways with the first column kept in view
            assert t["fits"] or (t["scrolls"] and t["sticky"] == "sticky"), (path, size, t)
            assert t["wrapRight"] <= res["vw"] + 1, (path, size, t)
            assert not t["broken"], (path, size, t["broken"])
    pg.close()


@pytest.mark.shared
def test_large_provider_paged_filterable_table(browser, full):
    from collections import Counter

    from knollm.site.render import LARGE_PROVIDER, default_order_key

    base, cat = full
    pid, n = Counter(m["provider"] for m in cat["models"]).most_common(1)[0]
    assert n > LARGE_PROVIDER
    pg = _page_at(browser, 1400, 900)
    pg.goto(base + f"providers/{pid}/")
    pg.wait_for_selector(".kn-ptable[data-ready]")
    models = sorted((m for m in cat["models"] if m["provider"] == pid), key=default_order_key)
    first = _rows(pg, ".kn-ptable table")
    assert first == [m["key"] for m in models[:100]]  # current chat models first, deprecated / unpriced last
    assert f"page 1 of {-(-n // 100)}" in pg.inner_text(".kn-page-info")
    pg.click(".kn-next")
    assert _rows(pg, ".kn-ptable table") == [m["key"] for m in models[100:200]]
    pg.fill(".kn-ptable-q", "qwen")
    want = [m["key"] for m in models if "qwen" in f"{m['key']} {m.get('name') or ''} {m['canonical_id']}".lower()]
    assert pg.inner_text(".kn-page-info").startswith(f"{len(want):,} models")
    assert _rows(pg, ".kn-ptable table") == want[:100]


@pytest.mark.shared
def test_header_search_finds_models(browser, full):
    base, _ = full
    pg = _page_at(browser, 1400, 900)
    pg.goto(base)
    pg.click("label.md-search__icon, .md-search__input", force=True)
    pg.fill("input.md-search__input", "gpt-4o")
    pg.wait_for_selector("#kn-search-models a")
    hrefs = pg.eval_on_selector_all("#kn-search-models a", "as => as.map(a => a.getAttribute('href'))")
    assert any("openai%2Fgpt-4o" in h and h.endswith("gpt-4o") for h in hrefs), hrefs
    pg.fill("input.md-search__input", "GPT-4o mini")  # by name
    pg.wait_for_function("() => [...document.querySelectorAll('#kn-search-models a')].some(a => /mini/i.test(a.textContent))")


def _contrast(fg: str, bg: str) -> float:
    import re

    def rgba(c):
        v = [float(x) for x in re.findall(r"[\d.]+", c)]
        return v[:3], (v[3] if len(v) > 3 else 1.0)

    (f, a), (b, _) = rgba(fg), rgba(bg)
    mix = [a * x + (1 - a) * y for x, y in zip(f, b)]

    def lum(c):
        c = [x / 255 for x in c]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    l1, l2 = sorted([lum(mix), lum(b)], reverse=True)
    return (l1 + 0.05) / (l2 + 0.05)


@pytest.mark.shared
def test_model_detail_names_links_and_nav(browser, full):
    base, cat = full
    m = next(x for x in cat["models"] if x["key"] == "openai/gpt-4o")
    assert m.get("owned_by") == "system"  # a placeholder in the real data
    pg = _page_at(browser, 1400, 900)
    pg.goto(base + "model/?m=openai/gpt-4o")
    pg.wait_for_selector("#kn-model[data-ready]")
    text = pg.inner_text("#kn-model")
    pname = next(p["name"] for p in cat["providers"] if p["id"] == "openai")
    assert pg.inner_text("#kn-provider-link") == pname
    assert "system" not in text.lower().split("owned by")[1].split("\n")[0]
    srcs = pg.locator("#kn-model a.kn-src-label")
    assert srcs.count() > 5 and "methodology" in srcs.first.get_attribute("href")
    fg = srcs.first.evaluate("e => getComputedStyle(e).color")
    bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _contrast(fg, bg) >= 4.5, (fg, bg)
    raw = pg.get_attribute("#kn-raw-record", "href")
    assert pg.evaluate("u => fetch(u).then(r => r.json()).then(l => l.some(x => x.key === 'openai/gpt-4o'))", raw)
    assert "Explore" in pg.inner_text(".md-tabs__item--active")
    pg.goto(base + "providers/groq/")
    assert "Providers" in pg.inner_text(".md-tabs__item--active")
