"""Probes, benchmarks, health and ``ask`` against loopback providers with known capabilities.

Every server is a real HTTP server on 127.0.0.1 (tests/support/capability_servers.py);
the calls go through knollm.client like real ones. Each server's capabilities are the
injected truth the verdicts and figures are checked against.
"""

from __future__ import annotations

import json

import pytest

from knollm.errors import ProbeError
from knollm.probe.bench import benchmark, load_prompt_set
from knollm.probe.common import read_results, resolve_targets
from knollm.probe.health import figures, health
from knollm.probe.probes import PROBES, probe_target
from knollm.query.api import Catalog
from tests.support.capability_servers import CapabilityServer
from tests.support.client_fixtures import catalog, model

SECRET = "sk-test-SECRET-4f1d9c"

#: server name -> (server kwargs, expected verdict per probe)
ALL_YES = dict.fromkeys(PROBES, "yes")
SERVERS = {
    "noimages": ({"vision": False}, {**ALL_YES, "vision": "no"}),
    "notools": ({"tools": False}, {**ALL_YES, "tools": "no"}),
    "lazyjson": ({"response_format": False}, {**ALL_YES, "json_mode": "no", "structured_output": "no"}),
    "nousage": ({"stream_usage": False}, {**ALL_YES, "stream_usage": "no"}),
    "nosystem": ({"system": False}, {**ALL_YES, "system_prompt": "no"}),
    "slow": ({"ttft": 0.25, "token_delay": 0.02, "answer_words": 10}, ALL_YES),
    "flaky": ({"fail_pattern": (2, 5, 8)}, ALL_YES),  # probes retry once: the verdicts survive
}


@pytest.fixture(scope="module")
def servers():
    started = {name: CapabilityServer(name, **kw).start() for name, (kw, _) in SERVERS.items()}
    yield started
    for s in started.values():
        s.stop()


def _catalog(names, **over):
    ms = [model(n, f"{n}-model", canonical=f"canon-{n}", vision=True, structured=True, **over) for n in names]
    return Catalog({"models": ms, "providers": [{"id": n, "name": n} for n in names]})


def _providers(servers):
    return {n: {"base_url": s.base_url, "shape": "openai", "api_key": SECRET} for n, s in servers.items()}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_probe_verdicts_match_the_injected_capabilities(servers, name, tmp_path):
    [t] = resolve_targets(_catalog([name]), [f"{name}/{name}-model"])
    announced = []
    doc = probe_target(t, providers=_providers(servers), out_dir=tmp_path,
                       on_announce=lambda key, cost: announced.append((key, cost, len(servers[name].requests))))
    got = {r["probe"]: r["verdict"] for r in doc["results"]}
    assert got == SERVERS[name][1]
    # announced before the first request, and no probe spent more than it announced
    assert announced[0][0] == t.key and announced[0][1] == doc["announced_usd"] > 0
    for r in doc["results"]:
        assert r["cost_usd"] is not None and r["cost_usd"] <= r["announced_usd"], r
    assert doc["cost_usd"] <= doc["announced_usd"] == pytest.approx(sum(r["announced_usd"] for r in doc["results"]))
    # the result file: date, cost, raw evidence, never the key
    [saved] = read_results(tmp_path, "probe")
    text = (tmp_path / saved["_file"]).read_text()
    assert SECRET not in text
    assert saved["date"] and saved["cost_usd"] == doc["cost_usd"] and saved["environment"]["python"]
    tools = next(r for r in saved["results"] if r["probe"] == "tools")
    assert tools["evidence"]["request"]["params"]["tools"][0]["function"]["name"] == "get_weather"
    assert ("response" in tools["evidence"]) == (got["tools"] == "yes")


def test_disagreements_name_the_field_and_both_values(servers):
    [t] = resolve_targets(_catalog(["noimages"]), ["noimages/noimages-model"])
    doc = probe_target(t, providers=_providers(servers), out_dir=None, names=["vision", "tools"])
    assert doc["disagreements"] == [{"field": "capabilities.vision", "catalog": True, "probe": False,
                                     "detail": doc["results"][0]["detail"]}]


def test_context_limit_comes_from_the_providers_error(tmp_path):
    with CapabilityServer("ctx", context=4096) as s:
        [t] = resolve_targets(_catalog(["ctx"], context=8192), ["ctx/ctx-model"])
        doc = probe_target(t, providers={"ctx": {"base_url": s.base_url, "shape": "openai", "api_key": "k"}},
                           out_dir=None, names=[], context=True)
    [r] = doc["results"]
    assert (r["probe"], r["verdict"], r["context_window"]) == ("context_limit", "yes", 4096)
    assert doc["disagreements"][0] == {"field": "context_window", "catalog": 8192, "probe": 4096,
                                       "detail": "provider's error gives 4096 tokens"}
    assert r["cost_usd"] == 0.0 <= r["announced_usd"]  # a refused request costs nothing


def test_a_run_above_max_cost_or_unpriced_never_starts(servers):
    [t] = resolve_targets(_catalog(["noimages"]), ["noimages/noimages-model"])
    before = len(servers["noimages"].requests)
    with pytest.raises(ProbeError, match="above --max-cost"):
        probe_target(t, providers=_providers(servers), out_dir=None, max_cost=1e-7)
    [u] = resolve_targets(_catalog(["noimages"], input=None), ["noimages/noimages-model"])
    with pytest.raises(ProbeError, match="no known price"):
        probe_target(u, providers=_providers(servers), out_dir=None)
    assert len(servers["noimages"].requests) == before


def test_an_overbilling_provider_is_stopped_by_the_cap():
    # the server ignores max_tokens and bills 2000 output tokens: the first answer eats the
    # budget; the client's budget refuses every later probe instead of spending more
    with CapabilityServer("greedy", bill_output=2000) as s:
        [t] = resolve_targets(_catalog(["greedy"], output=50.0), ["greedy/greedy-model"])
        doc = probe_target(t, providers={"greedy": {"base_url": s.base_url, "shape": "openai", "api_key": "k"}},
                           out_dir=None, names=["system_prompt", "json_mode", "stream_usage"])
    verdicts = [r["verdict"] for r in doc["results"]]
    assert verdicts[0] == "yes" and verdicts[1:] == ["skipped", "skipped"]
    assert len(s.requests) == 1


def test_a_capped_run_leaves_no_private_ledger_behind(monkeypatch, tmp_path):
    """The cap's private ledger (a SQLite file in a temporary directory) is removed when the
    run ends, as it ends or fails: runs do not pile up directories in /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with CapabilityServer("greedy", bill_output=2000) as s:
        [t] = resolve_targets(_catalog(["greedy"], output=50.0), ["greedy/greedy-model"])
        providers = {"greedy": {"base_url": s.base_url, "shape": "openai", "api_key": "k"}}
        doc = probe_target(t, providers=providers, out_dir=None, names=["system_prompt", "json_mode"])
        assert [r["verdict"] for r in doc["results"]] == ["yes", "skipped"]  # the cap held
        with pytest.raises(ProbeError, match="above --max-cost"):
            probe_target(t, providers=providers, out_dir=None, max_cost=1e-9)
    assert not list(tmp_path.glob("knollm-probe-*"))


def test_benchmark_figures_follow_the_injected_delays(servers, tmp_path):
    ts = resolve_targets(_catalog(["slow", "flaky"]), ["slow/slow-model", "flaky/flaky-model"])
    servers["flaky"].count = 0  # the failure pattern counts requests from here
    doc = benchmark(ts, runs=10, concurrency=2, providers=_providers(servers), out_dir=tmp_path, max_tokens=64)
    slow, flaky = doc["results"]
    # slow: 0.25 s before the first byte, then 13 gaps of 0.02 s between its 14 words
    assert slow["success_rate"] == 1.0
    assert 250 <= slow["ttft_p50_ms"] <= 250 + 250  # never below the injected wait; slack for a loaded machine
    assert 250 + 260 <= slow["latency_p50_ms"] <= 250 + 260 + 400
    assert slow["latency_p95_ms"] >= slow["latency_p50_ms"]
    assert 14 / 0.26 * 0.4 <= slow["tokens_per_s_p50"] <= 14 / 0.26 * 1.15
    # flaky: requests 2, 5 and 8 of every 10 fail -> exactly 70 %
    assert (flaky["runs"], flaky["ok"], flaky["success_rate"]) == (10, 7, 0.7)
    assert flaky["latency_p50_ms"] < 200
    # cost: the server's usage at $1/$2 per 1M, never above what was announced
    run = next(r for r in slow["run_details"] if r["ok"])
    assert run["cost_usd"] == pytest.approx((run["input_tokens"] * 1.0 + run["output_tokens"] * 2.0) / 1e6)
    assert doc["cost_usd"] <= doc["announced_usd"]
    saved = read_results(tmp_path, "benchmark")[0]
    assert saved["environment"]["python"] and saved["results"][1]["success_rate"] == 0.7

    # health from that benchmark (no ledger): the same figures per provider
    f = figures("flaky", probes_dir=tmp_path, store=False)
    assert (f.n, f.success_rate, f.sources) == (10, 0.7, ("benchmark",))
    s = figures("slow", "slow-model", probes_dir=tmp_path, store=False)
    assert s.success_rate == 1.0 and s.ttft_p50_ms == pytest.approx(slow["ttft_p50_ms"], abs=0.1)
    # outside the window nothing counts
    assert health(1, probes_dir=tmp_path, store=False, now=10**10) == []


def test_health_joins_probes_and_the_ledger(servers, tmp_path):
    from knollm.client import Client, SQLiteStore

    servers["flaky"].count = 0
    [t] = resolve_targets(_catalog(["flaky"]), ["flaky/flaky-model"])
    probe_target(t, providers=_providers(servers), out_dir=tmp_path, names=["system_prompt", "json_mode"])
    store = SQLiteStore(tmp_path / "ledger.db")
    with Client(catalog=_catalog(["flaky"]), store=store, providers=_providers(servers), retries=0,
                resolver=False) as c:
        ok = 0
        for _ in range(3):
            try:
                c.chat("flaky/flaky-model", [{"role": "user", "content": "hi"}], max_tokens=8)
                ok += 1
            except Exception:  # noqa: BLE001 - request 2 of the pattern fails
                pass
    [f] = health(3600, probes_dir=tmp_path, store=store)
    assert f.sources == ("ledger", "probe") and f.n == 2 + ok and f.success_rate == 1.0
    assert f.latency_p50_ms is not None and f.last
    # a stream cut mid-way (perhaps by its caller) is charged in the ledger but is no health figure
    import time

    store.settle(None, {"request_id": "cut", "ts": time.time(), "provider": "flaky", "model": "flaky-model",
                        "stream": 1, "duration_ms": 99999.0, "outcome": "interrupted"})
    [g] = health(3600, probes_dir=tmp_path, store=store)
    assert (g.n, g.latency_p50_ms) == (f.n, f.latency_p50_ms)


def test_prompt_sets_and_their_errors(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"messages": [{"role": "user", "content": "b"}]}\n')
    assert [m[-1]["content"] for m in load_prompt_set(tmp_path / "p.jsonl")] == ["a", "b"]
    (tmp_path / "p.txt").write_text("one\n\ntwo\n")
    assert len(load_prompt_set(tmp_path / "p.txt")) == 2
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"x": 1}\n')
    with pytest.raises(ProbeError, match=r"bad.jsonl: line 2"):
        load_prompt_set(tmp_path / "bad.jsonl")


def test_ask_side_by_side_with_a_labelled_judge(servers):
    from knollm.probe.ask import ask

    cat = _catalog(["noimages", "lazyjson", "nousage"])
    ts = resolve_targets(cat, ["noimages/noimages-model", "lazyjson/lazyjson-model"])
    [judge] = resolve_targets(cat, ["nousage/nousage-model"])
    res = ask(ts, "Explain WAL.", judge=judge, providers=_providers(servers), max_tokens=64)
    assert [a["key"] for a in res["answers"]] == ["noimages/noimages-model", "lazyjson/lazyjson-model"]
    assert all(a["ok"] and a["content"].startswith(f"This is {a['key'].split('/')[0]}") for a in res["answers"])
    assert all(a["output_tokens"] > 0 and a["duration_ms"] > 0 and a["cost_usd"] > 0 for a in res["answers"])
    j = res["judge"]
    assert j["opinion_of"] == "nousage/nousage-model" and "opinion" in j["label"]
    assert j["labels"] == {"A": "noimages/noimages-model", "B": "lazyjson/lazyjson-model"}
    judge_prompt = servers["nousage"].requests[-1]["messages"][0]["content"]
    assert "Answer A (noimages/noimages-model)" in judge_prompt and "This is lazyjson" in judge_prompt
    assert res["cost_usd"] <= res["announced_usd"]


def test_cli_probe_benchmark_ask_health(tmp_path, monkeypatch, capsys):
    """The commands end to end on a registry provider id pointed at a loopback server."""
    from knollm.cli import main

    m = model("groq", "llama-3.1-8b-instant", canonical="llama-3.1-8b-instruct", vision=False)
    (tmp_path / "cat.json").write_text(json.dumps(catalog(m)))
    with CapabilityServer("groq", vision=False) as s:
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", s.base_url)
        monkeypatch.setenv("GROQ_API_KEY", SECRET)
        monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
        out = str(tmp_path / "probes")
        common = ["--catalog", str(tmp_path / "cat.json"), "--out", out]
        assert main(["probe", "llama-3.1-8b-instruct", "--provider", "groq", *common, "--json"]) == 0
        cap = capsys.readouterr()
        [doc] = json.loads(cap.out)
        assert {r["probe"]: r["verdict"] for r in doc["results"]}["vision"] == "no"
        assert "probe groq/llama-3.1-8b-instant: at most $" in cap.err and SECRET not in cap.out + cap.err
        assert main(["benchmark", "groq/llama-3.1-8b-instant", "--runs", "3", *common]) == 0
        cap = capsys.readouterr()
        assert "groq/llama-3.1-8b-instant" in cap.out and "ttft p50" in cap.out and "at most $" in cap.err
        assert main(["ask", "groq/llama-3.1-8b-instant", "Hello?", "--catalog", str(tmp_path / "cat.json"),
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answers"][0]["ok"]
        assert main(["probe", "groq/llama-3.1-8b-instant", *common, "--max-cost", "0.0000001"]) == 1
        assert "above --max-cost" in capsys.readouterr().err
    assert main(["providers", "health", "--probes", out, "--no-ledger", "--json"]) == 0
    [f] = json.loads(capsys.readouterr().out)
    assert f["provider"] == "groq" and f["n"] == 6 + 3 and f["sources"] == ["benchmark", "probe"]


def test_chart_svg_escapes_labels_and_skips_unknown_prices():
    from knollm.probe.chart import benchmark_charts

    rows = [{"key": "a/<script>x</script>", "price_input": 1.0, "price_output": 3.0, "latency_p50_ms": 400.0,
             "tokens_per_s_p50": 80.0},
            {"key": "b/m", "price_input": 0.2, "price_output": 0.6, "latency_p50_ms": 150.0, "tokens_per_s_p50": 300.0},
            {"key": "c/unpriced", "price_input": None, "price_output": None, "latency_p50_ms": 90.0,
             "tokens_per_s_p50": 500.0}]
    charts = benchmark_charts(rows)
    svg = charts["latency"]
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "<script>" not in svg
    assert "&lt;script&gt;" in svg and "1 without a price or figure not shown" in svg
    assert "Throughput vs price" in charts["throughput"]
    import xml.etree.ElementTree as ET

    for svg in charts.values():
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"  # well-formed SVG


def test_site_shows_measurements_with_dates_and_hides_health_without_them(servers, tmp_path):
    from knollm.site import render as R
    from knollm.site.measured import health_text, load_measured, render_measured_page

    dumps, probes = tmp_path / "model_catalog", tmp_path / "probes"
    dumps.mkdir()
    assert not load_measured(dumps)  # nothing measured: falsy, the page says how to measure
    assert "No measurements yet" in render_measured_page(load_measured(dumps))
    cat = _catalog(["noimages", "slow"])
    ts = resolve_targets(cat, ["noimages/noimages-model", "slow/slow-model"])
    probe_target(ts[0], providers=_providers(servers), out_dir=probes, names=["vision", "tools"])
    benchmark(ts, runs=3, providers=_providers(servers), out_dir=probes, max_tokens=32)
    meas = load_measured(dumps)
    page = render_measured_page(meas)
    today = read_results(probes, "probe")[0]["date"][:10]
    assert "<svg" in page and "Latency p50 vs price" in page and "Throughput vs price" in page
    assert "<code>slow/slow-model</code>" in page and today in page
    assert "capabilities.vision: catalog True, probe False" in page  # the disagreement, with the probe's date
    h = meas.by_provider["noimages"]
    assert h["n"] == 2 + 3 and h["success_rate"] == 1.0
    # provider page: a health row only when measured
    prov = {"id": "noimages", "name": "noimages"}
    with_h = R.render_provider_page(prov, [], health=health_text(h))
    assert "Health (measured)" in with_h and "100.0% ok" in with_h
    assert "Health (measured)" not in R.render_provider_page(prov, [])
    # canonical page: a health column per offer only when measured
    offers = [m for m in cat.models]
    col = R.render_canonical_page("canon-x", offers, {}, health={"slow/slow-model": health_text(
        meas.by_model[("slow", "slow-model")])})
    assert "<th>Health (measured)</th>" in col and "n=3" in col
    assert "Health (measured)" not in R.render_canonical_page("canon-x", offers, {})
    # a probed model's row carries the probe date
    row = R._model_row({**offers[0], "probe": {"date": "2026-11-20T10:00:00Z", "verdicts": {"vision": "no"}}},
                       R.Links("x.md"))
    assert "probed 2026-11-20" in row and 'title="vision: no"' in row


def test_configured_targets_pick_the_cheapest_priced_chat_model_per_keyed_provider():
    from knollm.probe.common import configured_targets

    cat = Catalog({"models": [model("groq", "big", input=0.6, output=0.8), model("groq", "small", input=0.05, output=0.08),
                              model("groq", "free", input=0.0, output=0.0, free=True),
                              model("cerebras", "c1", input=0.1, output=0.1), model("openai", "nokey")],
                   "providers": [{"id": p} for p in ("groq", "cerebras", "openai")]})
    got = [t.key for t in configured_targets(cat, env={"GROQ_API_KEY": "x", "CEREBRAS_API_KEY": "y"})]
    assert got == ["cerebras/c1", "groq/small"]
    assert configured_targets(cat, env={}) == []


def test_the_refresh_workflow_probes_with_a_cost_cap_and_publishes():
    text = (__import__("pathlib").Path(__file__).parents[1] / ".github/workflows/refresh.yml").read_text()
    assert 'knollm probe --configured --max-cost "$KNOLLM_PROBE_MAX_COST"' in text
    assert "knollm benchmark --configured" in text and '--max-cost "$KNOLLM_BENCH_MAX_COST"' in text
    assert "git add -- work/model_catalog work/probes" in text


def test_probe_a_real_catalog_model_on_a_loopback_groq(shared_catalog, monkeypatch):
    """Real record (real prices and claims from the dumps + registries), loopback endpoint."""
    cat = Catalog(shared_catalog)
    ts = resolve_targets(cat, ["llama-3.3-70b-instruct"], provider="groq")
    assert "groq/llama-3.3-70b-versatile" in [x.key for x in ts] and all(x.provider == "groq" for x in ts)
    [t] = resolve_targets(cat, ["groq/llama-3.3-70b-versatile"])
    assert t.record["prices"]["input"] > 0
    claimed_tools = t.record["capabilities"]["tools"]
    with CapabilityServer("groq", tools=False) as s:
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", s.base_url)
        monkeypatch.setenv("GROQ_API_KEY", SECRET)
        doc = probe_target(t, out_dir=None, names=["tools", "json_mode"])
    assert [r["verdict"] for r in doc["results"]] == ["no", "yes"]
    assert 0 < doc["cost_usd"] <= doc["announced_usd"] < 0.01
    assert s.requests[0]["model"] == "llama-3.3-70b-versatile"
    if claimed_tools:  # the registries say it calls tools; this endpoint refused: a disagreement
        assert {"field": "capabilities.tools", "catalog": True, "probe": False} == \
            {k: doc["disagreements"][0][k] for k in ("field", "catalog", "probe")}
