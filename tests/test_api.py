"""The public Python API: knollm.__all__, Catalog queries, errors with suggestions."""

from __future__ import annotations

import pytest

import knollm
from knollm import Catalog, NotFoundError, Workload


@pytest.fixture(scope="module")
def cat(fixture_dumps):
    return Catalog.build(fixture_dumps)


def test_public_api_names_resolve():
    for name in knollm.__all__:
        assert getattr(knollm, name) is not None
    assert issubclass(knollm.NotFoundError, knollm.KnollmError)
    assert issubclass(knollm.ShapeError, knollm.DumpError)


def test_search_filters(cat):
    rows = cat.search("widget", capabilities=["tools"], max_input_price=1)
    keys = {m["key"] for m in rows}
    assert "novita/acme/widget-70b-instruct" in keys
    assert "openrouter/acme/widget-70b-instruct" not in keys  # 2.5 > 1
    assert all(m["capabilities"]["tools"] is True and m["prices"]["input"] <= 1 for m in rows)
    assert [m["key"] for m in cat.search("widget", free=True)] == ["openrouter/acme/widget-8b:free"]
    by_price = cat.search("widget", providers=["openrouter", "novita"], sort="price")
    known = [m["prices"]["input"] + m["prices"]["output"] for m in by_price if m["prices"]["input"] is not None]
    assert known == sorted(known)


def test_where_is_cheapest_first(cat):
    offers = cat.where("openrouter/acme/widget-70b-instruct")
    assert len({m["provider"] for m in offers}) >= 3
    priced = [m for m in offers if m["prices"]["input"] is not None and m["prices"]["output"] is not None]
    totals = [m["prices"]["input"] + m["prices"]["output"] for m in priced]
    assert totals == sorted(totals) and offers[: len(priced)] == priced


def test_costs_match_formula(cat):
    w = Workload(2000, 500, cached_tokens=0, requests=1000)
    rows = cat.costs(w, providers=["novita"])
    m = cat.model("novita/acme/widget-70b-instruct")
    row = next(r for r in rows if r["key"] == m["key"])
    assert row["total"] == pytest.approx((2000 * 0.05 + 500 * 0.28) / 1e6 * 1000)
    assert all(r["total"] is not None for r in rows)


def test_not_found_suggests(cat):
    with pytest.raises(NotFoundError) as e:
        cat.provider("openruter")
    assert "openrouter" in e.value.suggestions and "did you mean" in str(e.value)
    with pytest.raises(NotFoundError):
        cat.model("nope/nothing")
    with pytest.raises(ValueError):
        cat.search(capabilities=["telepathy"])
