"""The one cost formula (the site's JS is checked against it in the browser test)."""

from __future__ import annotations

import pytest

from knollm.query.cost import Workload, cost_per_request, estimate, parse_count

P = {"input": 2.5, "output": 10.0, "cache_read": 1.25, "cache_write": None, "request": None, "image": None}


def test_plain_workload():
    # 1000 in * 2.5/M + 500 out * 10/M
    assert cost_per_request(P, Workload(1000, 500)) == pytest.approx(0.0075)


def test_cached_tokens_use_cache_price_else_input_price():
    w = Workload(1000, 0, cached_tokens=400)
    assert cost_per_request(P, w) == pytest.approx((600 * 2.5 + 400 * 1.25) / 1e6)
    assert cost_per_request({**P, "cache_read": None}, w) == pytest.approx(1000 * 2.5 / 1e6)


def test_unknown_needed_price_is_unknown_not_zero():
    assert cost_per_request({**P, "output": None}, Workload(1000, 1)) is None
    assert cost_per_request({**P, "output": None}, Workload(1000, 0)) == pytest.approx(0.0025)
    assert cost_per_request({"input": None, "output": None}, Workload(0, 0)) == 0


def test_request_fee_and_totals():
    m = {"key": "p/m", "prices": {**P, "request": 0.01}}
    e = estimate(m, Workload(1000, 500, requests=100))
    assert e["per_request"] == pytest.approx(0.0175)
    assert e["total"] == pytest.approx(1.75)


@pytest.mark.parametrize("text,n", [("1.5M", 1_500_000), ("200k", 200_000), ("1000", 1000), ("2B", 2_000_000_000),
                                    ("1_000", 1000), (42, 42)])
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("bad", ["abc", "-5", "1.5X", ""])
def test_parse_count_rejects(bad):
    with pytest.raises(ValueError):
        parse_count(bad)


def test_workload_validation():
    with pytest.raises(ValueError):
        Workload(100, 10, cached_tokens=200)
    with pytest.raises(ValueError):
        Workload(-1, 0)
