"""Review fixes of ``knollm mcp`` and ``knollm advisor``.

The MCP checks use the SDK's own client over stdio against the real ``python -m knollm mcp``
process (as ``tests/test_mcp.py``); the advisor checks use Knollm's own client against a
scripted model on a loopback server (as ``tests/test_advisor.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP SDK (extra knollm[mcp]) is not installed")

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from knollm.lock import load_lock  # noqa: E402
from knollm.mcp.advisor import ScriptedIO, make_client, run_advisor  # noqa: E402
from knollm.mcp.tools import KnollmTools  # noqa: E402
from tests.support.scripted_model import ScriptedModel, tool_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from tests.test_advisor import ADVISOR_LOCK, FIXTURES, _env, tools  # noqa: E402,F401 - the same setup
GROQ = "groq/llama-3.3-70b-versatile"   # pdf_input false in the fixtures


# ---------------------------------------------------------------------------- helpers
def _server(tmp_path: Path, dumps: Path = FIXTURES) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PYTHONPATH=str(ROOT), KNOLLM_CONFIG=str(tmp_path / "no-config.toml"), KNOLLM_HOME=str(tmp_path / "home"))
    env.pop("KNOLLM_LOCK", None)
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "knollm", "mcp", "--dumps", str(dumps), "--lock",
                                       str(tmp_path / "knollm.lock")],
                                 env=env, cwd=str(tmp_path))


def _session(tmp_path: Path, body, dumps: Path = FIXTURES):
    """Run ``await body(call, client)`` in one stdio session; ``call`` returns (is_error, text)."""
    async def main():
        async with Client(_server(tmp_path, dumps), read_timeout_seconds=300) as c:
            async def call(name, args):
                r = await c.call_tool(name, args)
                return r.is_error, (r.content[0].text if r.content else "")
            await body(call, c)
            err, _ = await call("get_model", {"key": GROQ})   # the server still answers
            assert not err
    asyncio.run(main())


async def _error(call, name, args, needle):
    err, text = await call(name, args)
    assert err, (name, text[:300])
    assert needle in text, (name, text)
    assert text.strip() != f"Error executing tool {name}", "an error without a message"




# ---------------------------------------------------------------------------- 3. no price is not $0
def test_workload_needs_input_tokens_and_unknown_prices_stay_unknown(tmp_path, tools):
    unk = next(m["key"] for m in tools.catalog.models if all(v is None for v in (m.get("prices") or {}).values()))

    async def body(call, c):
        for name, args in [("get_cost_analysis", {"models": [unk, GROQ], "usage": {}}),
                           ("get_cost_analysis", {"models": [unk, GROQ], "usage": {"requests": 10_000}}),
                           ("get_cost_analysis", {"models": [unk], "usage": {"output_tokens": 500}}),
                           ("compare_models", {"models": [unk], "workload": {}})]:
            await _error(call, name, args, "input_tokens (per request) is required")
        await _error(call, "get_cost_analysis", {"models": [unk], "usage": {"input_tokens": 0, "requests": 5}},
                     "no tokens")
        err, text = await call("get_cost_analysis", {"models": [unk, GROQ], "usage": {"input_tokens": 1000}})
        d = json.loads(text)
        assert not err and [r["key"] for r in d["costs"]] == [GROQ] and d["costs"][0]["total"] > 0
        assert [(u["key"], u["suspect"]) for u in d["unknown"]] == [(unk, False)]
        assert "unknown: input" in d["unknown"][0]["reason"]
        err, text = await call("compare_models", {"models": [unk], "workload": {"input_tokens": 10}})
        cost = json.loads(text)["models"][0]["cost"]
        assert cost["total"] is None and "unknown: input" in cost["reason"]

    _session(tmp_path, body)


# ---------------------------------------------------------------------------- 4. negative limits
def test_negative_limit_is_refused(tmp_path):
    async def body(call, c):
        await _error(call, "get_provider_models", {"provider": "groq", "limit": -1}, "limit must be >= 0, not -1")
        await _error(call, "recommend_for_use_case", {"use_case": "chat", "limit": -2}, "limit must be >= 0, not -2")
        err, text = await call("get_provider_models", {"provider": "groq", "limit": 0})   # 0 = all, as before
        d = json.loads(text)
        assert not err and len(d["models"]) == d["count"] > 1

    _session(tmp_path, body)


# ---------------------------------------------------------------------------- 5. messages, not bare errors
def test_overflowing_counts_and_mistyped_requires_are_tool_errors_with_a_message(tmp_path):
    async def body(call, c):
        for big in ("9" * 400, 10 ** 400):
            await _error(call, "get_cost_analysis", {"models": [GROQ], "usage": {"input_tokens": big}},
                         "usage: count too large")
            await _error(call, "compare_models", {"models": [GROQ], "workload": {"input_tokens": 1, "requests": big}},
                         "workload: count too large")
        for req, needle in [({"min_context": "64k"}, "requires.min_context must be an integer, not '64k'"),
                            ({"max_input_price": "cheap"}, "requires.max_input_price must be an integer or a number"),
                            ({"tools": "yes"}, "requires.tools must be true or false"),
                            ({"min_context": True}, "requires.min_context must be an integer"),
                            ({"pdf_input": True}, "unknown requirement 'pdf_input'")]:
            await _error(call, "create_lockfile_binding", {"alias": "x", "models": [GROQ], "requires": req}, needle)
        assert not (tmp_path / "knollm.lock").exists()

    _session(tmp_path, body)


def test_parse_count_overflow_is_a_value_error():
    from knollm.query.cost import parse_count

    for big in ("9" * 400, float("inf"), 10 ** 400, "1" * 310 + "k"):
        with pytest.raises(ValueError, match="count too large"):
            parse_count(big)
    assert parse_count("1.5M") == 1_500_000 and parse_count(2.6) == 2 and parse_count(10 ** 20) == 10 ** 20


# ---------------------------------------------------------------------------- 6. suspect, not unknown
def test_suspect_price_is_reported_as_suspect(tmp_path):
    dumps = tmp_path / "dumps"
    shutil.copytree(FIXTURES, dumps)
    nov = dumps / "models_novita.json"
    nov.write_text(nov.read_text().replace('"input_token_price_per_m": 500', '"input_token_price_per_m": 5000000000'))
    key = "novita/acme/widget-70b-instruct"

    async def body(call, c):
        err, text = await call("get_model", {"key": key})
        assert not err and json.loads(text)["model"]["suspect"] == {"prices.input": "price_range"}
        err, text = await call("get_cost_analysis", {"models": [key], "usage": {"input_tokens": 1000,
                                                                                  "output_tokens": 100}})
        d = json.loads(text)
        assert not err and d["costs"] == [] and len(d["unknown"]) == 1
        u = d["unknown"][0]
        assert u["suspect"] is True and u["suspect_prices"] == ["input"]
        assert "suspect" in u["reason"] and "plausible range" in u["reason"] and "unknown" not in u["reason"]
        err, text = await call("compare_models", {"models": [key], "workload": {"input_tokens": 1000}})
        cost = json.loads(text)["models"][0]["cost"]
        assert cost["suspect"] == ["input"] and "suspect" in cost["reason"]

    _session(tmp_path, body, dumps)


# ---------------------------------------------------------------------------- 7. price units
def test_instructions_and_views_state_each_price_unit(tmp_path):
    from knollm.vocab import PRICE_TABLE

    async def body(call, c):
        text = c.instructions
        assert "Prices are USD per 1M tokens" not in text
        for p in PRICE_TABLE:       # every field is named in the group of its own unit
            assert re.search(rf"per {re.escape(p.unit)}: [^;]*\b{p.key}\b(?=[,;.])", text), (p.key, p.unit, text)
        err, text = await call("get_model", {"key": "perplexity/sonar"})
        d = json.loads(text)
        assert d["price_units"] == {"input": "1M tokens", "output": "1M tokens", "request": "request"}
        err, text = await call("compare_models", {"models": ["openai/acme-tts", "perplexity/sonar"]})
        tts, sonar = json.loads(text)["models"]
        assert tts["price_units"] == {"character_input": "1M characters"}
        assert sonar["price_units"]["request"] == "request"

    _session(tmp_path, body)


# ---------------------------------------------------------------------------- advisor
def _advisor_env(monkeypatch, tmp_path, srv) -> Path:
    p = tmp_path / "advisor.lock"
    p.write_text(ADVISOR_LOCK)
    monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", srv.base_url)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-0000")
    return p


ANSWERS = {"use_cases": ["chat"], "requests_per_month": "10k", "budget_usd_month": None, "needs": ["pdf_input"],
           "providers": [], "privacy": "any", "changes": [], "confirm": True}


def test_advisor_checks_needs_that_are_not_lock_requirements(tools, monkeypatch, tmp_path):
    """1. A need such as pdf_input must be known true for every model the advisor writes."""
    unknown_pdf = next(m["key"] for m in tools.catalog.models
                       if m["kind"] == "chat" and (m["capabilities"] or {}).get("pdf_input") is None)

    def script(body, turn):
        got = tool_results(body)
        if "recommend_for_use_case" not in got:
            return {"tool_calls": [("recommend_for_use_case", {"use_case": "chat", "needs": ["pdf_input"], "limit": 3}),
                                   ("get_model", {"key": GROQ}), ("get_model", {"key": unknown_pdf})]}
        good = got["recommend_for_use_case"][0]["results"][0]["model"]["key"]
        return {"content": json.dumps({"aliases": [{"alias": "chat", "models": [GROQ, unknown_pdf, good],
                                                    "reason": "x"}]})}

    with ScriptedModel(script) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        lock = tmp_path / "knollm.lock"
        out: list[str] = []
        answers = {**ANSWERS, "changes": [f"set chat {GROQ}"]}
        rc = run_advisor(dumps=FIXTURES, lock=lock, advisor_lock=adv_lock, io=ScriptedIO(answers, out.append))
    text = "\n".join(out)
    assert rc == 0, text
    assert f"dropped {GROQ}: no pdf_input" in text and f"dropped {unknown_pdf}: pdf_input unknown" in text
    assert "not set: the requirements of chat" in text and "needs pdf_input known true" in text
    assert "knollm.lock cannot record this as a requirement" in text
    models = load_lock(lock).bindings("default")["chat"].models
    assert models and GROQ not in models and unknown_pdf not in models
    assert all(tools.catalog.model(k)["capabilities"]["pdf_input"] is True for k in models)

    # the guided flow (where_is fallbacks included) keeps to the need too
    out.clear()
    rc = run_advisor(dumps=FIXTURES, lock=tmp_path / "g.lock", use_model=False,
                     io=ScriptedIO({**ANSWERS, "needs": ["pdf_input", "web_search"],
                                    "changes": [f"set chat {GROQ}"]}, out.append))
    g = load_lock(tmp_path / "g.lock").bindings("default").get("chat") if (tmp_path / "g.lock").exists() else None
    for k in g.models if g else []:
        caps = tools.catalog.model(k)["capabilities"]
        assert caps["pdf_input"] is True and caps["web_search"] is True, k
    assert "not set" in "\n".join(out)


def test_advisor_bootstraps_into_the_cache_never_the_users_lockfile(monkeypatch, tmp_path):
    """2. --advisor-lock = the project lock without an advisor alias: nothing written to it
    before (or without) the user's yes; the bootstrap lock goes to <cache>/advisor.lock."""
    from knollm.query.api import Catalog

    cat = Catalog.load(dumps=FIXTURES)               # loaded from the session cache first
    cache = tmp_path / "cache"
    monkeypatch.setenv("KNOLLM_CACHE_DIR", str(cache))
    proj = tmp_path / "proj.lock"
    original = 'version = 1\n\n[[profiles.default.bindings]]\nalias = "keepme"\nmodels = ["groq/llama-3.3-70b-versatile"]\n'
    proj.write_text(original)
    with ScriptedModel(lambda body, turn: {"content": "no"}) as srv:
        srv.status = 500
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", srv.base_url)
        monkeypatch.setenv("GROQ_API_KEY", "gsk-test-0000")
        client, note = make_client(KnollmTools(cat, lock=proj), proj)
        assert client is not None
        client.close()
        assert proj.read_text() == original
        assert note.startswith(f"bootstrap lockfile {cache / 'advisor.lock'}")
        assert "advisor" in load_lock(cache / "advisor.lock").bindings("default")
        out: list[str] = []
        rc = run_advisor(dumps=FIXTURES, lock=proj, advisor_lock=proj,
                         io=ScriptedIO({**ANSWERS, "needs": [], "confirm": False}, out.append))
    assert rc == 1 and "Not written." in "\n".join(out)
    assert proj.read_text() == original


def test_advisor_tool_failures_go_back_to_the_model(monkeypatch, tmp_path):
    """5. Overflowing counts and a tool failing with a non-Knollm error are tool errors for the
    model; the run goes on."""
    from knollm.mcp import tools as tools_mod

    def where_is(self, model: str, include_deprecated: bool = False) -> dict:
        raise RuntimeError("index broken")

    monkeypatch.setattr(tools_mod.KnollmTools, "where_is", where_is)

    def script(body, turn):
        got = tool_results(body)
        if "get_cost_analysis" not in got:
            return {"tool_calls": [("get_cost_analysis", {"models": [GROQ], "usage": {"input_tokens": "9" * 400}}),
                                   ("where_is", {"model": "llama-3.3-70b-instruct"}),
                                   ("get_model", {"key": GROQ})]}
        return {"content": json.dumps({"aliases": [{"alias": "chat", "models": [GROQ], "reason": "seen"}]})}

    with ScriptedModel(script) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        out: list[str] = []
        rc = run_advisor(dumps=FIXTURES, lock=tmp_path / "k.lock", advisor_lock=adv_lock,
                         io=ScriptedIO({**ANSWERS, "needs": []}, out.append))
    assert rc == 0, "\n".join(out)
    res = tool_results(srv.requests[1])
    assert "count too large" in res["get_cost_analysis"][0]["error"]
    assert "RuntimeError: index broken" in res["where_is"][0]["error"]
    assert load_lock(tmp_path / "k.lock").bindings("default")["chat"].models == [GROQ]
