"""knollm.query.filters.Filters: one value for the API, the CLI's index, the CLI options and recommend."""

from __future__ import annotations

import dataclasses
import json

import pytest

from knollm import Catalog, FilterError, KnollmError, Workload
from knollm.cli import main
from knollm.query.filters import SORT_KEYS, Filters


@pytest.fixture(scope="module")
def cat(fixture_dumps):
    return Catalog.build(fixture_dumps)


def test_filters_is_frozen_and_normalises_sequences():
    f = Filters(providers=["groq"], capabilities="tools", modalities=["IMAGE"], limit=0)
    assert f.providers == ("groq",) and f.capabilities == ("tools",) and f.modalities == ("image",)
    assert f.limit is None  # 0 means all, as on the CLI
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.text = "x"  # type: ignore[misc]
    assert hash(f) == hash(Filters(providers=("groq",), capabilities=("tools",), modalities=("image",)))


@pytest.mark.parametrize("kw, word", [
    ({"sort": "cheapness"}, "sort"), ({"limit": -1}, "limit"), ({"max_input_price": -0.5}, "max_input_price"),
    ({"min_context": -1}, "min_context"), ({"colour": "red"}, "colour"),
])
def test_bad_filters_raise_filter_error(kw, word):
    with pytest.raises(FilterError, match=word) as e:
        Filters.of(**kw)
    assert isinstance(e.value, KnollmError) and isinstance(e.value, ValueError)


def test_catalog_search_keywords_and_filters_agree(cat):
    cases = [
        {"text": "widget"},
        {"text": "widget", "capabilities": ["tools"], "max_input_price": 1},
        {"providers": ["openrouter", "novita"], "sort": "price"},
        {"kinds": ["chat"], "min_context": 100_000, "sort": "context", "limit": 3},
        {"free": True, "include_deprecated": True},
    ]
    for kw in cases:
        by_kw = cat.search(**kw)
        by_value = cat.search(Filters(**kw))
        assert [m["key"] for m in by_kw] == [m["key"] for m in by_value], kw
        # the CLI's index gives the same rows
        assert [r[0] for r in cat.index.search(Filters(**kw))] == [m["key"] for m in by_value], kw
    assert cat.search(Filters(text="widget"))  # the cases match something
    # a positional text still works, and keywords refine a Filters value
    assert cat.search("widget", free=True) == cat.search(Filters(text="widget"), free=True)


def test_unknown_capability_and_sort_from_search(cat):
    with pytest.raises(FilterError, match="telepathy"):
        cat.search(capabilities=["telepathy"])
    with pytest.raises(FilterError, match="sort"):
        cat.search(sort="vibes")
    assert set(SORT_KEYS) == {"price", "context", "name", "provider", "output_price", "relevance"}


def test_catalog_and_index_costs_agree(cat):
    w = Workload(2000, 500, cached_tokens=500, requests=100)
    f = Filters(providers=["novita", "openrouter"])
    api = cat.costs(w, filters=f)
    idx = cat.index.costs(w, filters=f)
    assert api and [(r["key"], r["total"]) for r in api] == [(r["key"], r["total"]) for r in idx]
    assert [r["total"] for r in api] == sorted(r["total"] for r in api)


def test_cli_filters_are_the_same_value(fixture_dumps, capsys):
    rc = main(["models", "search", "widget", "-c", "tools", "--max-input-price", "1", "--sort", "price",
               "--dumps", str(fixture_dumps), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    q = data["query"]
    f = Filters.of(q)  # the JSON query is exactly a Filters' fields
    assert f == Filters(text="widget", capabilities=["tools"], max_input_price=1.0, sort="price", limit=25)
    cat = Catalog.build(fixture_dumps)
    assert [m["key"] for m in data["models"]] == [m["key"] for m in cat.search(f)]


def test_cli_export_filters_shape(fixture_dumps, capsys):
    rc = main(["export", "--json", "-p", "novita", "--dumps", str(fixture_dumps)])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["filters"]["providers"] == ["novita"]
    assert Filters.of(data["filters"]).providers == ("novita",)
    assert data["count"] == len(data["models"]) > 0 and {m["provider"] for m in data["models"]} == {"novita"}
