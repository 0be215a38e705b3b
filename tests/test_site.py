"""Site rendering functions and the MkDocs plugin, on small fixtures (fast, no network)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import orjson
import pytest

from knollm.site import data as D
from knollm.site import render as R
from tests.support.site_fixtures import XSS_DESC, XSS_ID, XSS_NAME, build_small_site, make_catalog


@pytest.fixture(scope="module")
def cat() -> dict:
    return make_catalog()


@pytest.fixture(scope="module")
def small_site(tmp_path_factory) -> Path:
    return build_small_site(tmp_path_factory.mktemp("small-site"))


# ------------------------------------------------------------------ escaping helpers
def test_esc_and_md_text():
    assert R.esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert "\n" not in R.esc("a\n\nb")
    assert R.md_text("*x* [y](z) # `c`") == r"\*x\* \[y\]\(z\) \# \`c\`"


@pytest.mark.parametrize("url,ok", [
    ("https://a.example/x?y=1", True), ("http://a.example", True), ("javascript:alert(1)", False),
    ("JaVaScRiPt:alert(1)", False), ("data:text/html,<x>", False), ("//evil.example", False),
    ("https://a.example/\"onmouseover=x", False), (None, False), ("ftp://a.example", False),
])
def test_safe_url(url, ok):
    assert (R.safe_url(url) is not None) is ok


def test_formatting():
    assert R.fmt_price(None) == "?" and R.fmt_price(0) == "free" and R.fmt_price(3) == "$3"
    assert R.fmt_price(0.15) == "$0.15" and R.fmt_price(0.0375) == "$0.0375" and R.fmt_price(150) == "$150"
    assert R.fmt_tokens(128000) == "128k" and R.fmt_tokens(1_048_576) == "1M" and R.fmt_tokens(None) == "?"


def test_links_relative():
    assert R.page_url("providers/x.md") == "providers/x/"
    assert R.page_url("providers/x.md", False) == "providers/x.html"
    assert R.page_url("index.md") == "" and R.page_url("providers/index.md") == "providers/"
    L = R.Links("providers/x.md")
    assert L.provider("y") == "../../providers/y/"
    assert L.model("a/b c") == "../../model/?m=a/b%20c"
    assert R.Links("providers/x.md", False).provider("y") == "../providers/y.html"


# ------------------------------------------------------------------ pages
def _no_raw_xss(html: str) -> None:
    assert "<script>window" not in html
    assert "<img src=x" not in html
    assert 'onerror="' not in html and "onerror=window" not in html.replace("onerror=window.__xss=4&gt;", "")
    assert 'href="javascript' not in html.lower()
    assert "<b onmouseover" not in html


def test_provider_page_escapes_data(cat):
    evil = next(p for p in cat["providers"] if p["id"] == "evil")
    models = [m for m in cat["models"] if m["provider"] == "evil"]
    md = R.render_provider_page(evil, models)
    _no_raw_xss(md)
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in md
    assert "javascript:window.__xss=5" in md  # shown as text, not linked
    assert "EVIL_KEY" not in md.split("## Minimal call")[1].split("## Models")[0] or "rm -rf" not in md


def test_provider_page_content(cat):
    alpha = next(p for p in cat["providers"] if p["id"] == "alpha")
    models = [m for m in cat["models"] if m["provider"] == "alpha"]
    md = R.render_provider_page(alpha, models, canon_slugs={"shared-7b": "shared-7b"})
    assert "https://api.alpha.example/v1" in md and "ALPHA_API_KEY" in md
    assert 'data-s="D"' in md and 'data-s="G"' in md  # source of each value
    assert "../../canonical/shared-7b/" in md and "../../model/?m=alpha/shared-7b" in md
    assert md.count("<tr>") >= 2 + 10


def _code(md: str) -> str:
    m = re.search(r"```+python\n(.*?)\n```+", md, re.S)
    assert m, md
    return m.group(1)


def test_call_examples_are_valid(cat):
    by = {p["id"]: p for p in cat["providers"]}
    lang, code, _ = R.call_example(by["alpha"], "shared-7b")
    compile(code, "<example>", "exec")
    assert 'OpenAI(base_url="https://api.alpha.example/v1", api_key=os.environ["ALPHA_API_KEY"])' in code
    assert 'model="shared-7b"' in code
    lang, code, _ = R.call_example(by["beta"], "beta-x")
    compile(code, "<example>", "exec")
    assert "anthropic.Anthropic(" in code and 'base_url="https://api.beta.example"' in code
    lang, code, _ = R.call_example({"id": "anthropic", "api_shape": "anthropic",
                                    "base_url": "https://api.anthropic.com/v1", "api_key_env": ["ANTHROPIC_API_KEY"]},
                                   "claude-x")
    assert "base_url" not in code
    lang, code, _ = R.call_example(by["evil"], XSS_ID)
    assert lang == "text" and "rm -rf" not in code  # unsafe env var and base URL dropped
    lang, code, _ = R.call_example({"id": "x", "base_url": "https://x.example/v1", "api_key_env": ["X_KEY"]}, "m")
    assert lang == "bash" and code.startswith("curl -sS 'https://x.example/v1/models'") and "$X_KEY" in code
    # a model id that tries to break out of the string literal stays a literal
    lang, code, _ = R.call_example(by["alpha"], 'x"); import os; os.system("id")#')
    tree = compile(code, "<example>", "exec")
    assert tree is not None and code.count("os.system") == 1 and '\\"' in code


def test_canonical_page_cheapest_first(cat):
    offers = [m for m in cat["models"] if m["canonical_id"] == "shared-7b"]
    pmap = {p["id"]: p for p in cat["providers"]}
    md = R.render_canonical_page("shared-7b", offers, pmap)
    rows = re.findall(r'<tr><td>(\d+)</td><td><a href="../../providers/([a-z]+)/"', md)
    assert [p for _, p in rows] == ["beta", "alpha", "evil"]  # 0.4 < 0.8 < unknown
    assert "$0.1 – $0.2 (2.0×)" in md  # input price spread
    assert "search:\n  exclude: true" in md and "template: knollm-compact.html" in md
    assert "+100%" in md


def test_capability_matrix_and_index(cat):
    md = R.render_capability_matrix(cat)
    assert "tool calling" in md and "../../providers/alpha/" in md
    idx = R.render_providers_index(cat)
    _no_raw_xss(idx)
    assert idx.count("<tr><td>") == 3


def test_headline_figures(cat):
    f = R.headline_figures(cat, libraries=4)
    assert f["providers"] == 3 and f["models"] == 6 and f["multi_provider_models"] == 1 and f["libraries"] == 4
    assert f["data_date"] == "2025-01-01"


# ------------------------------------------------------------------ data files
def test_explorer_index_matches_catalog(cat):
    ix = D.explorer_index(cat)
    cols = ix["m"]
    n = len(cat["models"])
    assert all(len(v) == n for v in cols.values())
    for r, m in enumerate(cat["models"]):
        assert ix["providers"][cols["p"][r]][0] + "/" + cols["i"][r] == m["key"]
        assert cols["pi"][r] == m["prices"]["input"] and cols["po"][r] == m["prices"]["output"]
        assert cols["cx"][r] == m.get("context_window")
        assert bool(cols["ct"][r] & 1) == (m["capabilities"]["tools"] is True)
        assert bool(cols["f"][r] & 4) == bool(m.get("deprecated"))
    slugs = dict(ix["canon"])
    assert slugs == {"shared-7b": "shared-7b"}
    assert isinstance(orjson.loads(D.explorer_index_bytes(ix)), dict)


def test_bucket_of_is_stable():
    # the JavaScript bucketOf() must give the same values (checked in the browser test)
    assert D.bucket_of("openai/gpt-4o") == D.bucket_of("openai/gpt-4o")
    assert {D.bucket_of(f"p/m{i}") for i in range(2000)} == set(range(D.BUCKETS))
    assert D.bucket_of("") == 0x811C9DC5 % 128


def test_slugs_unique():
    s = D.canonical_slugs(["a/b", "a--b", "A/B", "x y"])
    assert len(set(s.values())) == 4 and all(re.fullmatch(r"[a-z0-9._-]+", v) for v in s.values())


def test_csv(cat):
    rows = list(csv.DictReader(io.StringIO(D.catalog_csv(cat).decode())))
    assert len(rows) == len(cat["models"])
    assert rows[0]["key"] == cat["models"][0]["key"] and rows[0]["price_input"] == "0.2"
    assert rows[0]["price_image"] == ""  # unknown is empty, not 0
    evil = next(r for r in rows if r["provider"] == "evil" and r["name"].startswith("<script>"))
    assert evil["price_input"] == "0.0"
    assert D._csv_text("=cmd()") == "'=cmd()" and D._csv_text(-1.5) == "-1.5"


# ------------------------------------------------------------------ plugin
def test_plugin_build(small_site, cat):
    site = small_site
    for p in cat["providers"]:
        assert (site / "providers" / p["id"] / "index.html").is_file()
    assert (site / "canonical" / "shared-7b" / "index.html").is_file()
    assert (site / "matrix" / "capabilities" / "index.html").is_file()
    assert (site / "assets" / "knollm" / "knollm.js").is_file()
    ix = orjson.loads((site / "data" / "index.json").read_bytes())
    assert ix["count"] == len(cat["models"])
    assert orjson.loads((site / "catalog.json").read_bytes())["models"] == cat["models"]
    from knollm.catalog.schema import json_schema

    assert orjson.loads((site / "schema.json").read_bytes()) == json_schema()
    chunks = {}
    for f in (site / "data" / "models").glob("*.json"):
        for m in orjson.loads(f.read_bytes()):
            chunks[m["key"]] = int(f.stem)
    assert chunks == {m["key"]: D.bucket_of(m["key"]) for m in cat["models"]}
    home = (site / "index.html").read_text()
    assert ">3</b>" in home and ">6</b>" in home  # live figures through macros
    # cross-provider pages: out of the nav and the search index
    search = (site / "search" / "search_index.json").read_text()
    assert "canonical/shared-7b" not in search
    assert "canonical/shared-7b/" not in (site / "providers" / "alpha" / "index.html").read_text().split(
        'class="md-content"')[0]
    for html_file in site.rglob("*.html"):
        _no_raw_xss(html_file.read_text())
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in (site / "providers/evil/index.html").read_text()
    # nothing generated was written into the docs dir
    assert sorted(p.name for p in (site.parent / "docs").iterdir()) == sorted(
        ["index.md", "explorer.md", "calculator.md", "model.md", "api.md", "methodology.md"])


def test_plugin_error_names_path(tmp_path):
    from mkdocs.config import load_config
    from mkdocs.exceptions import PluginError

    missing = tmp_path / "nope.json"
    cfg_file = tmp_path / "mkdocs.yml"
    (tmp_path / "docs").mkdir()
    cfg_file.write_text(f"site_name: t\ndocs_dir: docs\nplugins:\n  - knollm:\n      catalog: {missing}\n")
    cfg = load_config(str(cfg_file))
    with pytest.raises(PluginError, match=re.escape(str(missing))):
        cfg.plugins.on_config(cfg)


def test_assets_are_package_data():
    from knollm.site import ASSETS_DIR
    from knollm.site.plugin import ASSET_FILES

    for name in ASSET_FILES:
        assert (ASSETS_DIR / name).stat().st_size > 1000
    js = (ASSETS_DIR / "knollm.js").read_text()
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js and "http://" not in js.replace("http://www.w3.org/2000/svg", "")


def test_knollm_build_default_dumps_quick(tmp_path, monkeypatch):
    """``knollm build`` with no dumps (registry-only catalog) builds via the CLI."""
    from knollm.site.config import preload

    small = make_catalog(xss=False)
    empty = tmp_path / "dumps"
    empty.mkdir()
    preload(empty, small)  # skip building the registries' catalog: the CLI path is what is tested
    from knollm.cli import main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    rc = main(["build", "--dumps", str(empty), "--site-dir", str(tmp_path / "site"), "--json"])
    assert rc == 0
    assert (tmp_path / "site" / "providers" / "alpha" / "index.html").is_file()
    assert (tmp_path / "site" / "python-api" / "index.html").is_file()
    assert "Catalog" in (tmp_path / "site" / "python-api" / "index.html").read_text()


def test_front_matter_survives_odd_titles(cat):
    import yaml

    offers = [dict(m, name='Dolphin 🐬 "8x7B" \\ {{ x }}: #1') for m in cat["models"] if m["canonical_id"] == "shared-7b"]
    md = R.render_canonical_page("shared-7b", offers, {p["id"]: p for p in cat["providers"]})
    fm = yaml.safe_load(md.split("---\n")[1])
    assert fm["search"] == {"exclude": True} and "🐬" in fm["title"]


def test_inline_json_cannot_end_its_script_element():
    import json

    from knollm.site.plugin import inline_json

    hostile = {"n": ["</script><script>window.__xss=1</script>", "<!-- x", "a<b"]}
    text = inline_json(hostile)
    assert "<" not in text and json.loads(text) == hostile


def test_explorer_head_is_the_first_rows_of_the_default_view():
    from knollm.site.data import explorer_head, explorer_index
    from tests.support.site_fixtures import make_catalog

    cat = make_catalog()
    idx = explorer_index(cat)
    head = explorer_head(idx, rows=3)
    assert head["head"] is True and head["count"] == len(cat["models"])
    live = sorted((m for m in cat["models"] if not m.get("deprecated")),
                  key=lambda m: ((m.get("name") or m["id"]).lower(), m["key"]))
    keys = [head["providers"][p][0] + "/" + i for p, i in zip(head["m"]["p"], head["m"]["i"])]
    assert keys == [m["key"] for m in live[:3]]
    assert set(head["m"]) == set(idx["m"]) and all(c == -1 for c in head["m"]["cn"])


def test_provider_page_default_order_and_example_rule():
    from knollm.site.render import default_order_key, pick_example_model

    def m(mid, **kw):
        base = {"key": f"p/{mid}", "provider": "p", "id": mid, "canonical_id": mid, "kind": "chat",
                "prices": {"input": 1.0, "output": 2.0}, "flags": []}
        base.update(kw)
        return base

    models = [m("999G/test", prices={"input": None, "output": None}), m("old", deprecated=True),
              m("whisper", kind="audio"), m("zeta-70b", canonical_id="popular"), m("alpha-7b"),
              m("free-one", free=True, prices={"input": 0.0, "output": 0.0})]
    order = [x["id"] for x in sorted(models, key=default_order_key)]
    assert order[:3] == ["alpha-7b", "free-one", "zeta-70b"] and order[-2:] == ["999G/test", "old"]
    # current, paid chat model; the most widely served canonical model wins
    assert pick_example_model(models, {"popular": 12, "alpha-7b": 2})["id"] == "zeta-70b"
    assert pick_example_model(models)["id"] == "alpha-7b"
