"""``knollm benchmark`` keeps opening a connection out of TTFT: against a real loopback
HTTPS server that makes every NEW connection wait before its TLS handshake (as a far
provider's TCP + TLS setup does) while requests on a kept-alive connection are answered
at once, the reported TTFT (every run's, so p50 and p95) excludes that wait, the wait is
reported apart (``connect_ms``, ``cold``, ``connect_p50_ms``, ``cold_runs``), and no
extra call is made: every call is in the ledger and in the reported cost, and the
announced cost (the ``--max-cost`` cap) is what it was.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from knollm.probe.bench import benchmark, table_rows
from knollm.probe.common import read_results, resolve_targets
from knollm.query.api import Catalog
from tests.support.chunked_sse import ChunkedSSEServer
from tests.support.client_fixtures import catalog, model

HANDSHAKE_S = 0.6   # each new connection waits this long before its TLS handshake (a starved run: ~0.2 s seen under CI)
TTFT_S = 0.02       # every answer's first token, on any connection
USAGE = (5, 10)     # (input, output) tokens reported: at $1 / $2 per 1M (below the announced worst case)
CALL_USD = (USAGE[0] * 1.0 + USAGE[1] * 2.0) / 1e6


@pytest.fixture
def slow_tls(tmp_path, monkeypatch):
    from tests.support.tls import self_signed

    cert, key = self_signed(tmp_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts the loopback certificate
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = ChunkedSSEServer(tls=ctx, handshake_s=HANDSHAKE_S, ttft_s=TTFT_S, usage=USAGE,
                           words=("Hello ", "from ", "a ", "kept-alive ", "connection."))
    yield srv
    srv.stop()


def _setup(srv: ChunkedSSEServer) -> tuple[list, dict]:
    cat = Catalog(catalog(model("slowtls", "m1")))
    return resolve_targets(cat, ["slowtls/m1"]), {"slowtls": {"base_url": srv.base_url, "shape": "openai",
                                                              "api_key": "k"}}


def _cold_or_warm(connect_ms: list[float], srv: ChunkedSSEServer) -> None:
    """Each call opened a connection (and then waited out its handshake) or reused one (0.0),
    and the calls that say they opened one are as many as the server's handshakes."""
    assert all(ms == 0.0 or ms >= HANDSHAKE_S * 1000 for ms in connect_ms), connect_ms
    assert sum(ms > 0 for ms in connect_ms) == srv.connections


def test_client_reports_connect_time_apart(slow_tls):
    """The client itself (``ChatResult.connect_ms``): the first call, on a new connection,
    says what opening it took (the server's handshake wait); a whole answer on the
    kept-alive connection says 0.0; ``ttft_ms`` / ``duration_ms`` stay wall times."""
    from knollm.client import Client

    ts, providers = _setup(slow_tls)
    cat = Catalog(catalog(model("slowtls", "m1")))
    msgs = [{"role": "user", "content": "hi"}]
    with Client(catalog=cat, providers=providers, store=False, retries=0, resolver=False) as c:
        whole = [c.chat("slowtls/m1", msgs, stream=False) for _ in range(2)]
        streamed = [[x for x in c.stream("slowtls/m1", msgs) if not isinstance(x, str)][0] for _ in range(3)]
    assert whole[0].connect_ms >= HANDSHAKE_S * 1000 and whole[0].duration_ms >= whole[0].connect_ms
    assert whole[1].connect_ms == 0.0
    for r in streamed:
        assert r.ttft_ms >= r.connect_ms and (r.ttft_ms - r.connect_ms) < HANDSHAKE_S * 1000 * 0.5, r
    _cold_or_warm([r.connect_ms for r in whole + streamed], slow_tls)
    assert len(slow_tls.requests) == 5


def test_benchmark_ttft_excludes_connection_setup(slow_tls, tmp_path, monkeypatch):
    import knollm.client

    rows: list[dict] = []

    class Ledger(knollm.client.SQLiteStore):  # the benchmark's private ledger: every row it settles
        def settle(self, rid: Any, row: dict) -> Any:
            rows.append(row)
            return super().settle(rid, row)

        def settle_many(self, items: list) -> Any:
            rows.extend(r for _, r in items)
            return super().settle_many(items)

    monkeypatch.setattr(knollm.client, "SQLiteStore", Ledger)
    ts, providers = _setup(slow_tls)
    doc = benchmark(ts, runs=4, providers=providers, out_dir=tmp_path, max_tokens=32)
    [r] = doc["results"]
    runs = r["run_details"]
    assert r["ok"] == r["runs"] == 4
    # TTFT and latency, every run's and so p50 / p95, are a warm connection's: never the
    # handshake wait the first run (at least) sat through
    assert TTFT_S * 1000 <= r["ttft_p50_ms"] < HANDSHAKE_S * 1000 * 0.5
    assert r["ttft_p95_ms"] < HANDSHAKE_S * 1000 * 0.5 and r["latency_p95_ms"] < HANDSHAKE_S * 1000 * 0.5
    for x in runs:
        assert TTFT_S * 1000 <= x["ttft_ms"] < HANDSHAKE_S * 1000 * 0.5, x
        assert x["latency_ms"] < HANDSHAKE_S * 1000 * 0.5, x
    # the wait is reported apart: the first run opened a connection (each later one opened
    # one or reused one), ``cold`` says which, ``connect_ms`` what it took
    assert runs[0]["cold"] is True and runs[0]["connect_ms"] >= HANDSHAKE_S * 1000
    _cold_or_warm([x["connect_ms"] for x in runs], slow_tls)
    assert all(x["cold"] == (x["connect_ms"] > 0) for x in runs)
    assert r["cold_runs"] == slow_tls.connections >= 1
    assert r["connect_p50_ms"] >= HANDSHAKE_S * 1000
    # money: no warm-up call; every call sent is in the ledger and in the cost
    assert len(slow_tls.requests) == 4 and len(rows) == 4
    assert doc["cost_usd"] == r["cost_usd"] == pytest.approx(4 * CALL_USD) == pytest.approx(
        sum(x["cost_usd"] for x in rows))
    assert doc["cost_usd"] <= doc["announced_usd"]
    # the table and the saved file carry it
    [row] = table_rows(doc)
    assert row["connect"] == f"{r['connect_p50_ms']:.0f}" and float(row["ttft p95"]) < HANDSHAKE_S * 1000
    [saved] = read_results(tmp_path, "benchmark")
    assert saved["results"][0]["run_details"][0]["cold"] is True


def test_every_concurrent_connection_is_timed(slow_tls, tmp_path):
    """Two runs at a time open two connections: both runs are cold, both waits reported
    apart, and TTFT stays a warm connection's."""
    ts, providers = _setup(slow_tls)
    doc = benchmark(ts, runs=6, concurrency=2, providers=providers, out_dir=None, max_tokens=32)
    [r] = doc["results"]
    assert r["ok"] == 6 and r["ttft_p95_ms"] < HANDSHAKE_S * 1000 * 0.5
    assert r["cold_runs"] == slow_tls.connections >= 2
    assert [x["cold"] for x in r["run_details"][:2]] == [True, True]
    _cold_or_warm([x["connect_ms"] for x in r["run_details"]], slow_tls)
    assert len(slow_tls.requests) == 6 and doc["cost_usd"] == pytest.approx(6 * CALL_USD)


def test_max_cost_cap_is_unchanged(slow_tls):
    """No hidden call: the announced worst case covers the runs asked for, and a cap below
    it still refuses before anything is sent."""
    from knollm.errors import ProbeError

    ts, providers = _setup(slow_tls)
    doc = benchmark(ts, runs=2, providers=providers, out_dir=None, max_tokens=32)
    assert len(slow_tls.requests) == 2
    with pytest.raises(ProbeError, match="above --max-cost"):
        benchmark(ts, runs=2, providers=providers, out_dir=None, max_tokens=32, max_cost=doc["announced_usd"] * 0.99)
    assert len(slow_tls.requests) == 2
