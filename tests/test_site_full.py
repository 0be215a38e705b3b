"""A full ``knollm build`` on ../shared/model_catalog: every provider page and the JSON index
exist and agree with the catalog. Skipped without the real dumps."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from tests.support.site_build import full_site

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_dumps):
    return full_site(tmp_path_factory.mktemp("full-site"), shared_dumps)


def test_every_provider_page(built):
    site, cat, res = built
    for p in cat["providers"]:
        page = site / "providers" / p["id"] / "index.html"
        assert page.is_file(), p["id"]
    # a small provider lists every one of its models; the largest one its first rows (the rest client side)
    from collections import Counter

    from knollm.site.render import LARGE_PROVIDER, STATIC_ROWS

    counts = Counter(m["provider"] for m in cat["models"])
    pid, n = counts.most_common(1)[0]
    html = (site / "providers" / pid / "index.html").read_text()
    assert n > LARGE_PROVIDER and html.count('href="../../model/?m=') == STATIC_ROWS
    assert f'data-provider="{pid}"' in html
    small = next(p for p, c in counts.items() if 20 < c <= LARGE_PROVIDER)
    html = (site / "providers" / small / "index.html").read_text()
    assert html.count('href="../../model/?m=') >= counts[small]


def test_index_agrees_with_catalog(built):
    site, cat, _ = built
    ix = orjson.loads((site / "data" / "index.json").read_bytes())
    m = ix["m"]
    assert ix["count"] == len(cat["models"]) == len(m["i"])
    keys = [ix["providers"][p][0] + "/" + i for p, i in zip(m["p"], m["i"])]
    assert keys == [x["key"] for x in cat["models"]]
    for r, model in enumerate(cat["models"]):
        pr = model["prices"]
        assert (m["pi"][r], m["po"][r], m["pc"][r], m["pr"][r]) == (
            pr["input"], pr["output"], pr["cache_read"], pr["request"]), model["key"]
        assert m["cx"][r] == model.get("context_window")
    full = orjson.loads((site / "catalog.json").read_bytes())
    assert len(full["models"]) == len(cat["models"])
    rows = list(csv.reader(io.StringIO((site / "models.csv").read_text())))
    assert len(rows) == len(cat["models"]) + 1


def test_cross_provider_pages(built):
    site, cat, _ = built
    from knollm.site.data import canonical_multi, canonical_slugs

    groups = canonical_multi(cat["models"])
    slugs = canonical_slugs(groups)
    assert len(groups) > 500
    for c in groups:
        assert (site / "canonical" / slugs[c] / "index.html").is_file()
    docs = orjson.loads((site / "search" / "search_index.json").read_bytes())["docs"]
    locs = {d["location"].split("#")[0] for d in docs}
    assert "canonical/" in locs  # the index page is searchable
    assert not [x for x in locs if x.startswith("canonical/") and x != "canonical/"]  # the 1,000 pages are not
    assert len(docs) < 5000


def test_size_and_pages(built):
    site, cat, res = built
    assert res["pages"] > len(cat["providers"]) + 500
    ix = (site / "data" / "index.json").read_bytes()
    import gzip

    assert len(gzip.compress(ix, 6)) < 1_500_000


def test_every_page_at_most_300kb_and_light_nav(built):
    site, cat, _ = built
    sizes = {str(f.relative_to(site)): f.stat().st_size for f in site.rglob("*.html")}
    big = {k: v for k, v in sizes.items() if v > 300_000}
    assert not big, big
    # the provider list is on the providers index only, not in every page's sidebar
    html = (site / "explorer" / "index.html").read_text()
    assert html.count('href="../providers/') < 5
    index = (site / "providers" / "index.html").read_text()
    assert all(f'providers/{p["id"]}/"' in index for p in cat["providers"])


def test_canonical_pages_show_cheapest_paid_apart_from_free(built):
    import re

    from knollm.site.data import canonical_multi, canonical_slugs
    from knollm.site.render import cheapest_paid, is_paid

    site, cat, _ = built
    groups = canonical_multi(cat["models"])
    slugs = canonical_slugs(groups)
    checked = 0
    for canon in ("gpt-oss-120b", "llama-3.3-70b-instruct", "kimi-k2.5"):
        offers = groups[canon]
        assert any(not is_paid(o) and o["prices"]["input"] is not None for o in offers), canon  # has $0 offers
        best = cheapest_paid(offers)
        html = (site / "canonical" / slugs[canon] / "index.html").read_text()
        row = re.search(r"<th>Cheapest paid</th><td>(.*?)</td></tr>", html).group(1)
        assert best["key"].replace("/", "/") in row.replace("%2F", "/") or best["provider"] in row, (canon, row)
        assert "<th>Free ($0) offers</th>" in html
        first = re.search(r"<tbody>\s*<tr><td>1</td>.*?</tr>", html, re.S).group(0)
        assert "free tier" not in first and "cheapest paid" in first  # the first row is the cheapest paid offer
        checked += 1
    index = (site / "canonical" / "index.html").read_text()
    assert "Cheapest paid input" in index and "Free offers" in index
    assert checked == 3


def test_example_model_rule_and_changes_page(built):
    import html as H
    import re

    from knollm.site.render import is_paid

    site, cat, _ = built
    by_key = {m["key"]: m for m in cat["models"]}
    for pid in ("groq", "featherless", "openai"):
        page = (site / "providers" / pid / "index.html").read_text()
        code = H.unescape(re.sub(r"<[^>]+>", "", page.split("Minimal call", 1)[1].split("</code></pre>", 1)[0]))
        mid = re.search(r'model(?:Id)?="([^"]+)"', code).group(1)
        m = by_key[f"{pid}/{mid}"]
        mine = [x for x in cat["models"] if x["provider"] == pid and x["kind"] == "chat" and not x.get("deprecated")
                and "registry_only" not in (x.get("flags") or [])]
        assert m in mine, (pid, mid)  # a current chat model the provider lists itself
        if any(is_paid(x) and x["prices"]["output"] is not None for x in mine):
            assert is_paid(m), (pid, mid)  # paid when the provider has a paid one
        # a well-known model: its canonical model is among the most widely served of the provider's
        popularity = {}
        for x in cat["models"]:
            popularity.setdefault(x["canonical_id"], set()).add(x["provider"])
        assert len(popularity[m["canonical_id"]]) >= 2, (pid, mid)
    changes = (site / "changes" / "index.html")
    if changes.is_file():
        text = changes.read_text()
        assert "No refresh has been recorded yet" not in text or "What will appear here" in text
