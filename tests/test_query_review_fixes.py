"""Query review fixes, through the real CLI (``main(argv)``) on small hand-written dumps:

1. ``lock analyze`` / ``optimize`` price a month as requests of a typical size (no long-context
   tier on the month's aggregate; a per-request fee per request);
2. ``recommend`` never ranks a suspect price estimate;
3. tiered costs show the prices applied and ``tier_start`` (``cost`` table/CSV/JSON, ``compare``);
4. the query cache key covers the package's code and data (knollm/catalog, vocab.py, data/*.toml);
5. counts: ``1,5M`` / ``2.5`` / ``0.4`` are errors; ``cost -r 0`` does not call every model free;
6. ``--max-input-price nan`` is an error;
7. ``cost --free`` lists the free models.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from knollm.cli import main

# LiteLLM-shaped rows: a Gemini-like >200k tier, a tier that alone has a cache-read price, a
# per-request fee (USD per token / per request, as LiteLLM writes them)
LITELLM = {
    "knolltest/tiered-pro": {
        "max_input_tokens": 1048576, "max_output_tokens": 65535,
        "input_cost_per_token": 1.25e-06, "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "output_cost_per_token": 1e-05, "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "cache_read_input_token_cost": 3.125e-07, "cache_read_input_token_cost_above_200k_tokens": 6.25e-07,
        "litellm_provider": "knolltest", "mode": "chat", "supports_function_calling": True},
    "knolltest/tiered-nocache": {
        "max_input_tokens": 1048576, "max_output_tokens": 65535,
        "input_cost_per_token": 1e-06, "input_cost_per_token_above_200k_tokens": 2e-06,
        "output_cost_per_token": 4e-06, "cache_read_input_token_cost_above_200k_tokens": 5e-07,
        "litellm_provider": "knolltest", "mode": "chat"},
    "knolltest/fee-mini": {
        "max_input_tokens": 131072, "max_output_tokens": 8192,
        "input_cost_per_token": 1e-07, "output_cost_per_token": 4e-07, "input_cost_per_request": 0.01,
        "litellm_provider": "knolltest", "mode": "chat", "supports_function_calling": True},
}
# a price in the wrong unit (USD/1M read as USD/token): kept, marked suspect 'price_range'
SAMBANOVA = {"object": "list", "data": [
    {"id": "Meta-Llama-3.3-70B-Instruct", "object": "model", "owned_by": "SambaNova", "context_length": 131072,
     "max_completion_tokens": 3072, "pricing": {"prompt": "0.00000060", "completion": "0.00000120"}},
    {"id": "DeepSeek-V3-0324", "object": "model", "owned_by": "SambaNova", "context_length": 32768,
     "max_completion_tokens": 8192, "pricing": {"prompt": "0.15", "completion": "3.0"}},
]}
OPENROUTER = {"data": [
    {"id": "knolltest/gratis-7b:free", "name": "Gratis 7B (free)", "context_length": 32768,
     "pricing": {"prompt": "0", "completion": "0"}},
    {"id": "knolltest/paid-7b", "name": "Paid 7B", "context_length": 32768,
     "pricing": {"prompt": "0.0000002", "completion": "0.0000006"}},
]}
TIERED, NOCACHE, FEE = "knolltest/tiered-pro", "knolltest/tiered-nocache", "knolltest/fee-mini"
LLAMA, SUSPECT = "sambanova/Meta-Llama-3.3-70B-Instruct", "sambanova/DeepSeek-V3-0324"
GRATIS = "openrouter/knolltest/gratis-7b:free"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("qfix") / "dumps"
    d.mkdir()
    (d / "models_litellm.json").write_text(json.dumps(LITELLM))
    (d / "models_sambanova.json").write_text(json.dumps(SAMBANOVA))
    (d / "models_openrouter.json").write_text(json.dumps(OPENROUTER))
    return str(d)


@pytest.fixture()
def lockenv(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KNOLLM_LOCK", raising=False)
    monkeypatch.delenv("KNOLLM_PROFILE", raising=False)
    return tmp_path


from tests.test_cli import run, run_json  # noqa: E402 - the CLI runner the CLI tests use


# ---------------------------------------------------------------------------- 1. monthly projections
LOCK = """version = 1
default_profile = "default"

[[profiles.default.bindings]]
alias = "deep"
models = ["knolltest/tiered-pro"]

[[profiles.default.bindings]]
alias = "metered"
models = ["knolltest/fee-mini"]
"""


def test_monthly_is_priced_per_typical_request_not_as_one_huge_request(dumps, lockenv, capsys):
    lock = lockenv / "knollm.lock"
    lock.write_text(LOCK)
    res = run_json(capsys, "lock", "analyze", "--lock", str(lock), "--volume", "10M:2M", "--dumps", dumps)
    a = {x["alias"]: x for x in res["aliases"]}
    # deep (4,000 in / 4,000 out per request): 2,500 requests of 4,000 tokens - below the 200k tier
    assert a["deep"]["monthly_usd"] == pytest.approx(10 * 1.25 + 2 * 10.0)  # $32.50, not the tier's $55
    assert a["deep"]["requests"] == 2500 and a["deep"]["request_input_tokens"] == 4000
    # a per-request fee is charged per request (2,500 of them), not once a month
    assert a["metered"]["monthly_usd"] == pytest.approx(10 * 0.1 + 2 * 0.4 + 0.01 * 2500)
    assert res["total_monthly_usd"] == pytest.approx(32.5 + 26.8)
    assert "typical size" in res["note"] and "base prices (no tier)" in res["note"]
    rc, out, _ = run(capsys, "lock", "analyze", "--lock", str(lock), "--volume", "10M:2M", "--dumps", dumps)
    assert rc == 0 and "$32.50" in out and "$55.00" not in out
    # optimize uses the same projection
    opt = run_json(capsys, "lock", "optimize", "--lock", str(lock), "--volume", "10M:2M", "--dumps", dumps)
    deep = next(r for r in opt["aliases"] if r["alias"] == "deep")
    assert deep["monthly_now"] == pytest.approx(32.5) and deep["volume"]["requests"] == 2500


def test_monthly_without_a_request_size_uses_base_prices_and_no_fee_guess():
    from knollm.lock.ops import _monthly, _month_requests

    m = {"prices": {"input": 1.25, "output": 10.0}, "price_tiers": [{"start": 200_000.0, "input": 2.5, "output": 15.0}]}
    assert _monthly(m, (10_000_000, 2_000_000)) == pytest.approx(32.5)  # never the tier on an aggregate
    fee = {"prices": {"input": 0.1, "output": 0.4, "request": 0.01}}
    assert _monthly(fee, (10_000_000, 2_000_000)) is None  # fee x unknown requests: unknown, not one fee
    # a volume with its own request count: that size picks the tier (here 250k tokens per request)
    per = _month_requests((10_000_000, 2_000_000, 40), (4_000, 800))
    assert per["requests"] == 40 and per["input_tokens"] == 250_000
    assert _monthly(m, (10_000_000, 2_000_000, 40), per) == pytest.approx(10 * 2.5 + 2 * 15.0)
    assert _monthly(fee, (10_000_000, 2_000_000, 40), per) == pytest.approx(1.8 + 0.4)


# ---------------------------------------------------------------------------- 2. recommend: suspect never ranks
def test_recommend_skips_suspect_estimates(dumps, capsys):
    res = run_json(capsys, "recommend", "-u", "chat", "-p", "sambanova,knolltest", "--all-offers", "--dumps", dumps)
    keys = [r["key"] for r in res["results"]]
    assert SUSPECT not in keys and LLAMA in keys and TIERED in keys
    assert res["excluded_suspect"] == [SUSPECT]
    # the suspect $150,000/1M price no longer stretches the log price scale: the dearest ranked
    # candidate gets 0 price points, the cheapest all 40
    pts = {r["key"]: r["components"]["price"]["points"] for r in res["results"]}
    dearest = max(res["results"], key=lambda r: r["cost_per_request"])["key"]
    assert pts[dearest] == 0 and pts[LLAMA] == 40


# ---------------------------------------------------------------------------- 3. tiered costs
def test_cost_shows_the_tier_prices_it_applied(dumps, capsys):
    argv = ["cost", "-i", "300k", "-o", "1k", "--cached", "100k", TIERED, NOCACHE, LLAMA, "--dumps", dumps]
    data = run_json(capsys, *argv)
    r = {x["key"]: x for x in data["results"]}
    assert r[TIERED]["tier_start"] == 200_000 and r[LLAMA]["tier_start"] is None
    assert r[TIERED]["prices_applied"] == {"input": 2.5, "output": 15.0, "cache_read": 0.625, "request": None}
    assert r[TIERED]["per_request"] == pytest.approx((200_000 * 2.5 + 100_000 * 0.625 + 1_000 * 15.0) / 1e6)
    # the tier alone names a cache-read price: it was used
    assert r[NOCACHE]["cache_price_used"] is True and r[NOCACHE]["prices_applied"]["cache_read"] == 0.5
    rc, out, err = run(capsys, *argv)
    row = next(ln for ln in out.splitlines() if ln.startswith(TIERED)).split()
    assert rc == 0 and row[3:7] == ["2.5", "15", "0.625", ">200,000"]  # not the base 1.25 / 10 / 0.3125
    assert "tier" in out.splitlines()[0]
    rc, out, _ = run(capsys, *argv, "--csv")
    rows = {x["key"]: x for x in csv.DictReader(io.StringIO(out))}
    assert rows[TIERED]["input"] == "2.5" and rows[TIERED]["tier_start"] == "200000"
    assert rows[LLAMA]["tier_start"] == ""


def test_compare_shows_the_applied_tier(dumps, capsys):
    data = run_json(capsys, "compare", TIERED, LLAMA, "-i", "300k", "-o", "1k", "--dumps", dumps)
    assert set(data) == {"fields", "models", "cost_per_request"}
    t, ll = data["models"]
    assert t["cost"]["tier_start"] == 200_000 and t["cost"]["prices_applied"]["input"] == 2.5
    assert ll["cost"]["tier_start"] is None and data["cost_per_request"][0] == t["cost"]["per_request"]
    rc, out, _ = run(capsys, "compare", TIERED, LLAMA, "-i", "300k", "-o", "1k", "--dumps", dumps)
    applied = next(ln for ln in out.splitlines() if "input price applied" in ln).split()
    assert rc == 0 and applied[-2:] == ["2.5", "0.6"] and ">200,000 in" in out


# ---------------------------------------------------------------------------- 4. cache key covers the package
def test_cache_rebuilds_when_the_build_code_or_config_changes(dumps, capsys, tmp_path, monkeypatch):
    """A copy of the package's code and data stands in for the package root (the cache module
    finds the root from its own ``__file__``); editing its catalog code, vocab.py or
    data/providers.toml must rebuild, a second query with nothing changed must not."""
    from knollm.query import cache

    real = Path(cache.__file__).resolve().parents[1]
    pkg = tmp_path / "knollm"
    shutil.copytree(real, pkg, ignore=shutil.ignore_patterns("__pycache__", "site", "browse", "client*", "gateway",
                                                              "mcp", "lock", "libraries", "fetch", "probe", "diff"))
    monkeypatch.setattr(cache, "__file__", str(pkg / "query" / "cache.py"))
    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    argv = ("models", "search", "paid", "--dumps", dumps)

    def rebuilt() -> bool:
        rc, _, err = run(capsys, *argv)
        assert rc == 0, err
        return "building the catalog" in err

    assert rebuilt() and not rebuilt()
    for f in ("data/providers.toml", "vocab.py", "catalog/build.py", "catalog/sources/generic.py"):
        p = pkg / f
        p.write_text(p.read_text() + "\n# edited\n")
        assert rebuilt(), f
        assert not rebuilt(), f
    names = {s.split(":")[0] for s in cache._code_stats()}
    assert {"data/providers.toml", "/vocab.py", "catalog/build.py", "query/index.py"} <= names


# ---------------------------------------------------------------------------- 5. counts
@pytest.mark.parametrize("bad", ["1,5M", "2.5", "0.4", "1.0005k", "1,0000"])
def test_counts_reject_misplaced_commas_and_fractions(dumps, capsys, bad):
    rc, _, err = run(capsys, "cost", "-i", bad, LLAMA, "--dumps", dumps)
    assert rc == 2 and ("not a token count" in err or "not a whole count" in err)


@pytest.mark.parametrize("text,n", [("1,000", 1000), ("12,345,678", 12_345_678), ("1.5M", 1_500_000),
                                    ("1.5k", 1500), ("2", 2), ("1_000", 1000)])
def test_counts_accept_thousands_groups_and_whole_fractions(dumps, capsys, text, n):
    assert run_json(capsys, "cost", "-i", text, LLAMA, "--dumps", dumps)["workload"]["input_tokens"] == n


def test_cost_zero_requests_does_not_make_every_model_free(dumps, capsys):
    data = run_json(capsys, "cost", "-i", "1000", "-o", "100", "-r", "0", "-p", "sambanova,knolltest",
                    "--dumps", dumps)
    keys = [r["key"] for r in data["results"]]
    assert data["hidden_free"] == 0 and LLAMA in keys and FEE in keys
    assert all(r["total"] == 0 and r["per_request"] > 0 for r in data["results"])
    per = [r["per_request"] for r in data["results"]]
    assert per == sorted(per)  # still cheapest first


# ---------------------------------------------------------------------------- 6. nan price bound
@pytest.mark.parametrize("bad", ["nan", "inf", "$nan", "-inf"])
def test_price_bound_must_be_finite(dumps, capsys, bad):
    for cmd in (["models", "search", "x"], ["cost", "-i", "1k"]):
        rc, _, err = run(capsys, *cmd, "--max-input-price", bad, "--dumps", dumps)
        assert rc == 2 and "--max-input-price" in err, (cmd, bad)


@pytest.mark.parametrize("bad", ["nan", "inf", "-1"])
def test_lock_budget_and_durations_must_be_finite(dumps, lockenv, capsys, bad):
    """``lock init --budget nan`` bound every alias with no price cap at all (nan compares
    false), as ``probe --max-cost nan`` ran uncapped; durations, gateway key budgets and the
    audit's tolerance take finite numbers too. Nothing is written."""
    lock = lockenv / "knollm.lock"
    rc, _, err = run(capsys, "lock", "init", "--budget", bad, "--lock", str(lock), "--dumps", dumps)
    assert rc == 2 and "--budget" in err and not lock.exists()
    rc, _, err = run(capsys, "local", "scan", "--timeout", bad, "--no-save")
    assert rc == 2 and "--timeout" in err
    prompts = lockenv / "prompts.txt"
    prompts.write_text("hello\n")
    rc, _, err = run(capsys, "cache", "warm", str(prompts), "--ttl", bad, "-t", "groq/x", "--dumps", dumps)
    assert rc == 2 and "--ttl" in err
    # money caps: a nan --max-cost let a probe run uncapped (nothing compares above nan)
    rc, _, err = run(capsys, "probe", "groq/x", "--max-cost", bad, "--dumps", dumps)
    assert rc == 2 and "--max-cost" in err
    rc, _, err = run(capsys, "probe", "groq/x", "--timeout", bad, "--dumps", dumps)
    assert rc == 2 and "--timeout" in err
    rc, _, err = run(capsys, "serve", "keys", "create", "k", "--budget", bad)
    assert rc == 2 and "--budget" in err
    rc, _, err = run(capsys, "audit", "--tolerance", bad, "--dumps", dumps)
    assert rc == 2 and "--tolerance" in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_money_caps_in_python_and_files_must_be_finite(dumps, lockenv, bad):
    """nan passed every ``< 0`` check and then capped nothing: a client ``Budget``, a
    lockfile requirement (TOML has ``nan`` and ``inf``), the user config's budget, an MCP
    recommendation budget and a gateway key's budget are refused with a clear error."""
    from knollm.client import Budget
    from knollm.errors import GatewayError, LockError
    from knollm.gateway.keys import KeyStore
    from knollm.lock import load_lock
    from knollm.lock.lockfile import user_config
    from knollm.mcp.tools import KnollmTools, ToolArgumentError

    with pytest.raises(ValueError, match="finite"):
        Budget(bad, "day")
    toml = repr(bad)  # nan, inf, -1.0: TOML spells them the same
    lock = lockenv / "bad.lock"
    lock.write_text('version = 1\n[[profiles.default.bindings]]\nalias = "fast"\nmodels = ["groq/x"]\n'
                    f"requires = {{max_output_price = {toml}}}\n")
    with pytest.raises(LockError, match="max_output_price") as e:
        load_lock(lock)
    assert str(lock) in str(e.value) and "alias=fast" in str(e.value)
    cfg = lockenv / "config.toml"
    cfg.write_text(f"[budget]\noutput = {toml}\n")
    with pytest.raises(LockError, match="budget output") as e:
        user_config(cfg)
    assert str(cfg) in str(e.value)
    with pytest.raises(ToolArgumentError, match="finite"):
        KnollmTools(dumps=dumps).recommend_for_use_case("chat", budget=bad)
    with pytest.raises(GatewayError, match="finite"):
        KeyStore(f"sqlite:///{lockenv / 'keys.db'}").create("k", budget_usd=bad)


# ---------------------------------------------------------------------------- 7. cost --free
def test_cost_free_lists_the_free_models(dumps, capsys):
    data = run_json(capsys, "cost", "-i", "1000", "-o", "100", "--free", "-p", "openrouter", "-n", "0",
                    "--dumps", dumps)
    keys = [r["key"] for r in data["results"]]
    assert GRATIS in keys and all(r["total"] == 0 for r in data["results"]) and data["hidden_free"] == 0
