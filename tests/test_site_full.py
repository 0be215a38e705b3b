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
    # the largest provider lists every one of its models
    from collections import Counter

    pid, n = Counter(m["provider"] for m in cat["models"]).most_common(1)[0]
    html = (site / "providers" / pid / "index.html").read_text()
    assert html.count('href="../../model/?m=') >= n


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
