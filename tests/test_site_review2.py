"""Site review 2: the compare page's cost (price tiers, suspect prices) and suspect marks, the
model page's tier units, the Atom feed's self link, the explorer's sort of suspect values, the
calculator's order with 0 requests, the canonical page's price spread.

Each test builds a small catalog into a real MkDocs site, drives it with headless chromium where
the page is JavaScript, and compares the page's figures with the CLI's for the same inputs (the
CLI reads the same catalog: ``build_catalog`` is patched to return it, in a private cache).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from knollm.cli import main
from tests.support.site_fixtures import DOCS, MKDOCS_TEMPLATE, PAGES, _model, make_catalog

CHROMIUM = "/usr/bin/chromium"
SITE_URL = "https://example.test/knollm/"

TIERED = "alpha/tiered-opus"  # a price tier above 200k input tokens (as claude-opus at 302ai)
SUSPECT = "beta/suspect-219"  # an implausible $219 input price, kept and marked suspect
MEDIA = "alpha/media-flash"  # a tier with per-image / per-second / per-1M-character prices
EMBEDS = ("gamma/embed-big", "gamma/embed-small", "gamma/embed-mid")  # embed-big: a suspect 128k context
JAIS = ("gamma/jais-30b", "gamma/jais-13b", "gamma/jais-7b")  # jais-30b: a suspect $3,200 output price
SPREAD_SUS = "delta/shared-7b-sus"  # a paid offer of shared-7b with a suspect input price


def review_catalog() -> dict:
    from knollm.catalog.schema import Provider

    cat = make_catalog(xss=False)
    cat["providers"] += [
        orjson.loads(orjson.dumps(Provider(id=p, name=p.title(), sources=["dump"], model_count=n).model_dump()))
        for p, n in (("gamma", 6), ("delta", 1))]
    chat = {"input_modalities": ["text"], "output_modalities": ["text"]}
    extra = [
        _model("alpha", "tiered-opus", "tiered-opus", name="Tiered Opus", context_window=1_000_000,
               prices={"input": 5.0, "output": 25.0, "cache_read": 0.5},
               price_tiers=[{"start": 200_000.0, "input": 10.0, "output": 37.5, "cache_read": 1.0}],
               sources={"prices.input": "dump", "price_tiers": "genai-prices"}, **chat),
        _model("beta", "suspect-219", "suspect-219", name="Suspect 219", context_window=32768,
               prices={"input": 219.0, "output": 10.0}, suspect={"prices.input": "price_range"},
               sources={"prices.input": "dump", "prices.output": "dump"}, **chat),
        _model("alpha", "media-flash", "media-flash", name="Media Flash", context_window=1_000_000,
               prices={"input": 0.075, "output": 0.3, "image_input": 0.0001, "second_input": 0.00002,
                       "character_input": 0.01875},
               price_tiers=[{"start": 128_000.0, "input": 0.15, "output": 0.6, "image_input": 0.0002,
                             "second_input": 0.00004, "character_input": 0.0375}], **chat),
        _model("gamma", "embed-big", "embed-big", name="Embed Big", kind="embedding", context_window=128_000,
               prices={"input": 0.02}, suspect={"context_window": "kind_token_range"}),
        _model("gamma", "embed-small", "embed-small", name="Embed Small", kind="embedding", context_window=8192,
               prices={"input": 0.01}),
        _model("gamma", "embed-mid", "embed-mid", name="Embed Mid", kind="embedding", context_window=32768,
               prices={"input": 0.05}),
        _model("gamma", "jais-30b", "jais-30b", name="Jais 30B", context_window=8192,
               prices={"input": 1.0, "output": 3200.0}, suspect={"prices.output": "price_range"}, **chat),
        _model("gamma", "jais-13b", "jais-13b", name="Jais 13B", context_window=8192,
               prices={"input": 0.5, "output": 2.0}, **chat),
        _model("gamma", "jais-7b", "jais-7b", name="Jais 7B", context_window=8192,
               prices={"input": 0.2, "output": 1.0}, **chat),
        _model("delta", "shared-7b-sus", "shared-7b", name="Shared 7B", context_window=32768,
               prices={"input": 219.0, "output": 0.5}, suspect={"prices.input": "price_range"}, **chat),
    ]
    cat["models"] += [orjson.loads(orjson.dumps(m)) for m in extra]
    return cat


def _build(tmp: Path, cat: dict, *, use_directory_urls: bool = True) -> Path:
    """A real MkDocs build of ``cat`` (site_url set, a ``dumps`` dir with one saved diff for the feed)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    from knollm.diff.compare import diff_catalogs, save_diff

    tmp.mkdir(parents=True, exist_ok=True)
    docs = tmp / "docs"
    docs.mkdir(exist_ok=True)
    for name in PAGES + ("compare.md",):
        (docs / name).write_text((DOCS / name).read_text(encoding="utf-8"), encoding="utf-8")
    cat_path = tmp / "catalog.json"
    cat_path.write_bytes(orjson.dumps(cat))
    dumps = tmp / "dumps"
    (dumps / "changes").mkdir(parents=True, exist_ok=True)
    old = {**cat, "models": [m for m in cat["models"] if m["key"] != TIERED]}
    save_diff(diff_catalogs(old, cat, date="2025-01-02"), dumps / "changes")
    site = tmp / "site"
    text = MKDOCS_TEMPLATE.format(docs=docs, site=site, catalog=cat_path)
    text = text.replace(f"      catalog: {cat_path}", f"      catalog: {cat_path}\n      dumps: {dumps}")
    text = f"site_url: {SITE_URL}\nuse_directory_urls: {str(use_directory_urls).lower()}\n" + text
    cfg = tmp / "mkdocs.yml"
    cfg.write_text(text, encoding="utf-8")
    build(load_config(str(cfg)))
    return site


@pytest.fixture(scope="module")
def cat() -> dict:
    return review_catalog()


@pytest.fixture(scope="module")
def site(tmp_path_factory, cat) -> Path:
    return _build(tmp_path_factory.mktemp("review2-site"), cat)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def base(site):
    from tests.support.http_static import serve_static

    with serve_static(site) as url:
        yield url


@pytest.fixture()
def cli(cat, tmp_path, monkeypatch, capsys):
    """``cli(*argv)`` -> (rc, stdout, stderr) of the real CLI on the same catalog as the site."""
    import knollm.catalog.build as B

    dumps = tmp_path / "cli-dumps"
    dumps.mkdir()
    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    for k in ("KNOLLM_DUMPS", "KNOLLM_LOCK", "KNOLLM_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(B, "build_catalog", lambda *a, **k: orjson.loads(orjson.dumps(cat)))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([*argv, "--dumps", str(dumps)])
        o = capsys.readouterr()
        return rc, o.out, o.err

    return run


def _page(browser):
    ctx = browser.new_context()
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    return pg


def _compare_cells(pg) -> dict:
    return pg.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#kn-cmp tbody tr')].map(
        tr => [tr.getAttribute('data-field'), [...tr.querySelectorAll('td')].map(td => ({
            v: JSON.parse(td.getAttribute('data-v')), text: td.innerText, suspect: td.getAttribute('data-suspect')}))]))""")


# ---------------------------------------------------------------------------- 1. compare page: tiers
def test_compare_page_cost_uses_price_tiers(browser, base, cli):
    from knollm.query.cost import Workload, cost_per_request

    keys = [TIERED, "alpha/shared-7b"]
    rc, out, _ = cli("compare", *keys, "-i", "300k", "-o", "1000", "--json")
    assert rc == 0
    data = json.loads(out)
    per = data["cost_per_request"]
    tiered = data["models"][0]
    # the fixture really exercises a tier: the base prices give another figure
    assert tiered["cost"]["tier_start"] == 200_000
    assert per[0] != pytest.approx(cost_per_request(tiered["prices"], Workload(300_000, 1000)))
    req = 10
    pg = _page(browser)
    pg.goto(base + "compare/?m=" + quote(",".join(keys), safe="/,") + f"&in=300k&out=1000&req={req}")
    pg.wait_for_selector("#kn-compare[data-ready]")
    cells = _compare_cells(pg)
    assert [c["v"] for c in cells["cost.per_request"]] == pytest.approx(per, rel=1e-12)  # the tier's prices
    assert [c["v"] for c in cells["cost.total"]] == pytest.approx([x * req for x in per], rel=1e-12)
    assert "200,000" in cells["cost.per_request"][0]["text"]  # the tier that applied is named
    # below the tier's start: the base prices, as the CLI
    rc, out, _ = cli("compare", *keys, "-i", "150k", "-o", "1000", "--json")
    per_low = json.loads(out)["cost_per_request"]
    pg.goto(base + "compare/?m=" + quote(",".join(keys), safe="/,") + f"&in=150k&out=1000&req={req}")
    pg.wait_for_selector("#kn-compare[data-ready]")
    assert [c["v"] for c in _compare_cells(pg)["cost.per_request"]] == pytest.approx(per_low, rel=1e-12)
    assert not pg.errors


# ---------------------------------------------------------------------------- 2. compare: suspect values
def test_compare_marks_suspect_values_and_their_cost_is_unknown(browser, base, cli):
    keys = [SUSPECT, "alpha/shared-7b"]
    rc, out, _ = cli("compare", *keys, "-i", "300k", "-o", "1000", "--json")
    assert rc == 0
    data = json.loads(out)
    per = data["cost_per_request"]
    # CLI: a suspect price makes the cost unknown (as `knollm cost`), and names the field
    assert per[0] is None and data["models"][0]["cost"]["suspect"] == ["input"] and per[1] is not None
    rc, text, err = cli("compare", *keys, "-i", "300k", "-o", "1000")
    assert rc == 0
    lines = text.splitlines()
    assert "⚠suspect" in next(ln for ln in lines if ln.startswith("prices.input"))
    assert "⚠suspect" not in next(ln for ln in lines if ln.startswith("prices.output"))
    assert "unknown (suspect price)" in next(ln for ln in lines if ln.startswith("cost/request"))
    assert f"{SUSPECT}: cost unknown" in err
    rc, _, err = cli("cost", "-i", "300k", "-o", "1000", SUSPECT)
    assert f"{SUSPECT}: cost unknown" in err  # what `knollm cost` says of it

    pg = _page(browser)
    pg.goto(base + "compare/?m=" + quote(",".join(keys), safe="/,") + "&in=300k&out=1000&req=10")
    pg.wait_for_selector("#kn-compare[data-ready]")
    cells = _compare_cells(pg)
    # the suspect input price: marked, and the cost unknown (not a figure from a $219 price)
    pin = cells["prices.input"]
    assert pin[0]["suspect"] == "price_range" and "suspect" in pin[0]["text"]
    assert pin[1]["suspect"] is None and "suspect" not in pin[1]["text"]
    assert cells["prices.output"][0]["suspect"] is None
    got = [c["v"] for c in cells["cost.per_request"]]
    assert got[0] is None and got[1] == pytest.approx(per[1], rel=1e-12)
    assert cells["cost.total"][0]["v"] is None
    assert "unknown (suspect price)" in cells["cost.per_request"][0]["text"]
    assert "suspect" in cells["cost.total"][0]["text"]
    # a workload that does not use the suspect price (no input tokens) has a cost
    pg.goto(base + "compare/?m=" + quote(",".join(keys), safe="/,") + "&in=0&out=1000&req=10")
    pg.wait_for_selector("#kn-compare[data-ready]")
    rc, out, _ = cli("compare", *keys, "-i", "0", "-o", "1000", "--json")
    assert [c["v"] for c in _compare_cells(pg)["cost.per_request"]] == pytest.approx(
        json.loads(out)["cost_per_request"], rel=1e-12)
    assert not pg.errors


# ---------------------------------------------------------------------------- 3. model page tiers
def test_model_page_formats_tier_fields_by_unit(browser, base, cat):
    pg = _page(browser)
    pg.goto(base + "model/?m=" + quote(MEDIA, safe=""))
    pg.wait_for_selector("#kn-model[data-ready]")
    rows = pg.evaluate("""() => [...document.querySelector('#kn-model table.kn-facts').querySelectorAll('tr')].map(
        tr => [tr.querySelector('th').innerText, tr.querySelector('td').innerText])""")
    rows = dict(rows)
    tier = next(v for k, v in rows.items() if k.startswith("Above 128,000"))
    m = next(x for x in cat["models"] if x["key"] == MEDIA)
    t = m["price_tiers"][0]
    from knollm.vocab import PRICE_TABLE

    unit = {p.key: (p.label, p.unit) for p in PRICE_TABLE}
    for f in ("image_input", "second_input", "character_input"):
        label, u = unit[f]
        # the base row's text for this field: label with its unit, the value by fmtUSD
        base_label = next(k for k in rows if k.startswith(label))
        assert f"($/{u})" in base_label
        want = pg.evaluate("v => Knollm.fmtUSD(v)", t[f])
        assert f"{base_label} {want}" in tier, (f, tier)
        assert want != "$0"
    assert not re.search(r"\$0(?![.\d])", tier), tier  # no per-second price rounded to "$0"
    assert not pg.errors


# ---------------------------------------------------------------------------- 4. Atom feed
def _feed_links(site: Path) -> dict:
    root = ET.fromstring((site / "feed.xml").read_bytes())
    ns = {"a": "http://www.w3.org/2005/Atom"}
    out = {ln.get("rel"): ln.get("href") for ln in root.findall("a:link", ns)}
    out["entries"] = [ln.get("href") for ln in root.findall("a:entry/a:link", ns)]
    return out


def _local(site: Path, url: str) -> Path:
    assert url.startswith(SITE_URL), url
    rel = url[len(SITE_URL):].split("#")[0]
    p = site / rel
    return p / "index.html" if rel.endswith("/") or rel == "" else p


@pytest.mark.parametrize("dir_urls", [True, False])
def test_feed_self_link_is_where_the_file_is(site, tmp_path_factory, cat, dir_urls):
    s = site if dir_urls else _build(tmp_path_factory.mktemp("review2-flat"), cat, use_directory_urls=False)
    links = _feed_links(s)
    assert links["self"] == SITE_URL + "feed.xml" and _local(s, links["self"]).is_file()
    page = _local(s, links["alternate"])
    assert page.is_file() and page.relative_to(s).as_posix() == ("changes/index.html" if dir_urls else "changes.html")
    assert links["entries"] and all(_local(s, u).is_file() for u in links["entries"])
    # the changes page's own link to the feed resolves to the same file
    html = page.read_text(encoding="utf-8")
    href = html.split("Atom feed", 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    assert (page.parent / href).resolve() == (s / "feed.xml").resolve()


# ---------------------------------------------------------------------------- 5. explorer sort
def _explorer_keys(pg, base, qs: str) -> list[str]:
    pg.goto(base + "explorer/?" + qs)
    pg.wait_for_selector("#kn-explorer[data-ready]")
    pg.wait_for_function("() => Knollm.explorer && Knollm.explorer.rows")
    return pg.evaluate("() => Knollm.loadIndex().then(ix => Knollm.explorer.rows().map(r => ix.keys[r]))")


def test_explorer_sort_treats_suspect_as_unknown(browser, base, cli):
    def cli_keys(*argv):
        rc, out, _ = cli("models", "search", *argv, "-n", "0", "--json")
        assert rc == 0
        return [r["key"] for r in json.loads(out)["models"]]

    pg = _page(browser)
    by_ctx = cli_keys("embed", "--sort", "context")
    assert set(by_ctx) == set(EMBEDS) and by_ctx[-1] == "gamma/embed-big"  # the CLI: suspect context last
    assert _explorer_keys(pg, base, "s=embed&sort=ctx&dir=desc") == by_ctx
    asc = _explorer_keys(pg, base, "s=embed&sort=ctx&dir=asc")
    assert asc[-1] == "gamma/embed-big" and asc[:-1] == by_ctx[:-1][::-1]
    by_out = cli_keys("jais", "--sort", "output_price")
    assert set(by_out) == set(JAIS) and by_out[-1] == "gamma/jais-30b"
    assert _explorer_keys(pg, base, "s=jais&sort=out&dir=asc") == by_out
    desc = _explorer_keys(pg, base, "s=jais&sort=out&dir=desc")
    assert desc[-1] == "gamma/jais-30b" and desc[:-1] == by_out[:-1][::-1]  # not first: $3,200 is suspect
    assert not pg.errors


# ---------------------------------------------------------------------------- 6. calculator, 0 requests
def test_calculator_zero_requests_cheapest_per_request_first(browser, base, cli):
    rc, out, _ = cli("cost", "-i", "2000", "-o", "500", "-r", "0", "--kind", "chat", "--limit", "0", "--json")
    assert rc == 0
    res = json.loads(out)["results"]
    want = [r["key"] for r in res]
    assert len(want) >= 4 and all(r["total"] == 0 for r in res)
    assert want != sorted(want)  # the fixture: key order is not the cost order
    pg = _page(browser)
    pg.goto(base + "calculator/?req=0")
    pg.wait_for_selector("#kn-calculator[data-ready]")
    got = pg.eval_on_selector_all("#kn-costs tbody tr", "trs => trs.map(t => t.getAttribute('data-key'))")
    assert got == want
    per = pg.eval_on_selector_all("#kn-costs tbody tr td.kn-per", "tds => tds.map(t => Number(t.getAttribute('data-v')))")
    assert per == pytest.approx([r["per_request"] for r in res], rel=1e-12)
    assert not pg.errors


# ---------------------------------------------------------------------------- 7. canonical spread
def test_canonical_spread_leaves_out_suspect_prices(site, cat):
    from knollm.site.render import fmt_price, is_paid, provider_summary

    html = (site / "canonical" / "shared-7b" / "index.html").read_text(encoding="utf-8")
    row = html.split("Paid input price spread</th><td>", 1)[1].split("</td>", 1)[0]
    offers = [m for m in cat["models"] if m["canonical_id"] == "shared-7b"]
    assert any(m["key"] == SPREAD_SUS and is_paid(m) for m in offers)
    # the values provider_summary would quote: known, not suspect
    ok = [m["prices"]["input"] for m in offers if is_paid(m) and m["prices"].get("input") is not None
          and "prices.input" not in (m.get("suspect") or {})]
    assert provider_summary({}, [m for m in offers if m["key"] == SPREAD_SUS])["cheapest_input"] is None
    assert row.startswith(f"{fmt_price(min(ok))} – {fmt_price(max(ok))}"), row
    assert fmt_price(219.0) not in row
    # the index's spread column too
    idx = (site / "canonical" / "index.html").read_text(encoding="utf-8")
    line = next(ln for ln in idx.split("<tr>") if ">shared-7b</a>" in ln)
    assert fmt_price(219.0) not in line and f"{fmt_price(min(ok))} – {fmt_price(max(ok))}" in line


def test_cheapest_paid_never_picks_a_suspect_price():
    """The canonical page's "Cheapest paid" skipped no suspect price (a $0.001 placeholder
    would be quoted as the cheapest offer)."""
    from knollm.site.render import cheapest_paid

    ok = {"key": "a/m", "prices": {"input": 1.0, "output": 2.0}}
    odd = {"key": "b/m", "prices": {"input": 0.001, "output": 2.0}, "suspect": {"prices.input": "price_range"}}
    assert cheapest_paid([ok, odd]) is ok
    assert cheapest_paid([odd]) is None
