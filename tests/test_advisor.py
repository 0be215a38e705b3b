"""``knollm advisor``: a scripted advisor model on a loopback OpenAI-compatible server issuing
real tool calls; the guided fallback; the terminal flow through a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knollm.lock import load_lock
from knollm.mcp.advisor import Advisor, Answers, ScriptedIO, run_advisor
from knollm.mcp.tools import TOOL_NAMES, KnollmTools
from tests.support.scripted_model import ScriptedModel, tool_results

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "dumps"
ADVISOR_LOCK = """\
version = 1
default_profile = "default"

[[profiles.default.bindings]]
alias = "advisor"
models = ["groq/scripted-advisor"]
"""
ANSWERS = {"use_cases": ["coding"], "requests_per_month": "20k", "budget_usd_month": 200, "needs": ["tools"],
           "providers": [], "privacy": "any", "changes": [], "confirm": True}


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.endswith("_API_KEY") or k.startswith("KNOLLM_") and k.endswith("_BASE_URL"):
            monkeypatch.delenv(k)
    for k in ("KNOLLM_LOCK", "KNOLLM_PROFILE", "KNOLLM_ADVISOR_LOCK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def tools():
    return KnollmTools(dumps=FIXTURES)


def _advisor_env(monkeypatch, tmp_path, srv) -> Path:
    p = tmp_path / "advisor.lock"
    p.write_text(ADVISOR_LOCK)
    monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", srv.base_url)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-SECRET-0000")
    return p


def good_script(body, turn):
    """A model that works only from tool results: recommend -> where_is -> proposal.
    On its first turn it also calls an unknown tool and a tool with bad arguments."""
    got = tool_results(body)
    if "recommend_for_use_case" not in got:
        return {"tool_calls": [("recommend_for_use_case", {"use_case": "coding", "needs": ["tools"], "limit": 3}),
                               ("get_weather", {"city": "Paris"}),
                               ("get_model", {"key": "no-such-provider/no-such-model"}),
                               ("search_models", "{not json"),
                               ("search_models", {"limit": "many", "min_context": [1]})]}
    if "where_is" not in got:
        top = got["recommend_for_use_case"][0]["results"][0]["model"]
        return {"tool_calls": [("where_is", {"model": top["canonical_id"]})]}
    offers = got["where_is"][0]["offers"]
    paid = [o["key"] for o in offers if (o["prices"].get("input") or 0) > 0][:2]
    return {"content": json.dumps({"aliases": [{"alias": "coding", "models": paid + ["madeup/not-from-a-tool"],
                                                "reason": "cheapest paid offers of the top recommendation"}],
                                   "message": "Here is my proposal."})}


def test_scripted_model_works_through_tools_and_writes_lockfile(tools, monkeypatch, tmp_path):
    with ScriptedModel(good_script) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        lock = tmp_path / "knollm.lock"
        out: list[str] = []
        no_tools = next(m["key"] for m in tools.catalog.models
                        if m["kind"] == "chat" and (m["capabilities"] or {}).get("tools") is False)
        answers = {**ANSWERS, "changes": [f"set coding {no_tools}", "set coding nope/nothing", "drop nothing"]}
        rc = run_advisor(dumps=FIXTURES, lock=lock, advisor_lock=adv_lock, io=ScriptedIO(answers, out.append))
    text = "\n".join(out)
    assert rc == 0, text
    # changes that cannot apply are refused with the reason, and the proposal stays
    assert f"dropped {no_tools}: no tools" in text and "not set: the requirements of coding" in text
    assert "unknown model: 'nope/nothing'" in text and "use: set ALIAS" in text
    # every request offered exactly the tools, by name
    assert {t["function"]["name"] for t in srv.requests[0]["tools"]} == set(TOOL_NAMES)
    assert srv.requests[0]["model"] == "scripted-advisor"
    # tool errors went back to the model as tool results, not crashes
    first_results = tool_results(srv.requests[1])
    assert "unknown tool 'get_weather'" in first_results["get_weather"][0]["error"]
    assert "unknown model" in first_results["get_model"][0]["error"]
    assert "not a JSON object" in first_results["search_models"][0]["error"]
    assert "valid integer" in first_results["search_models"][1]["error"]
    # the binding = exactly the keys of the where_is result the model saw (the made-up one dropped)
    where = tool_results(srv.requests[-1])["where_is"][0]["offers"]
    expected = [o["key"] for o in where if (o["prices"].get("input") or 0) > 0][:2]
    b = load_lock(lock).bindings("default")["coding"]
    assert b.models == expected and len(expected) == 2
    assert b.requires == {"tools": True, "min_context": 64000}
    assert "dropped madeup/not-from-a-tool: not in any tool result" in text
    assert "Proposal (advisor model)" in text and "advisor: Here is my proposal." in text
    # monthly cost shown = the cost formula on the use case's mix
    from knollm.query.cost import Workload, estimate
    from knollm.query.recommend import USE_CASES

    uc = USE_CASES["coding"]
    total = estimate(tools.catalog.model(expected[0]), Workload(uc.input_tokens, uc.output_tokens,
                                                                uc.cached_tokens, 20_000))["total"]
    assert f"${total:,.2f}/month" in text
    # the key never reaches the transcript or the lockfile
    assert "SECRET" not in text and "SECRET" not in lock.read_text()


def test_looping_model_falls_back_to_guided(tools, monkeypatch, tmp_path):
    def loop(body, turn):
        return {"tool_calls": [("search_models", {"text": "llama", "limit": 1})]}

    with ScriptedModel(loop) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        lock = tmp_path / "knollm.lock"
        out: list[str] = []
        rc = run_advisor(dumps=FIXTURES, lock=lock, advisor_lock=adv_lock, io=ScriptedIO(ANSWERS, out.append))
    text = "\n".join(out)
    assert rc == 0 and "looping" in text and "Proposal (guided flow)" in text
    assert len(srv.requests) == 3  # stopped at the third identical call
    guided = Advisor(tools, ScriptedIO({}, lambda s: None), lock=tmp_path / "x.lock")._guided(
        "coding", Answers(["coding"], 20_000, 200.0, ["tools"]))
    assert load_lock(lock).bindings("default")["coding"].models == guided.models


def test_model_that_never_answers_json_and_a_failing_server(tools, monkeypatch, tmp_path):
    with ScriptedModel(lambda body, turn: {"content": "I think you should pick something nice."}) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        out: list[str] = []
        rc = run_advisor(dumps=FIXTURES, lock=tmp_path / "a.lock", advisor_lock=adv_lock,
                         io=ScriptedIO(ANSWERS, out.append))
        assert rc == 0 and "did not answer with the JSON proposal" in "\n".join(out)
        assert len(srv.requests) == 2  # one nudge, then the guided flow
        srv.status = 500
        out.clear()
        rc = run_advisor(dumps=FIXTURES, lock=tmp_path / "b.lock", advisor_lock=adv_lock,
                         io=ScriptedIO(ANSWERS, out.append))
    assert rc == 0 and "advisor model unavailable" in "\n".join(out)
    assert load_lock(tmp_path / "b.lock").bindings("default")["coding"].models


def test_no_key_guided_flow_answers_file_and_no_confirm(tmp_path, monkeypatch):
    ans = tmp_path / "answers.json"
    ans.write_text(json.dumps({**ANSWERS, "use_cases": ["coding", "classification"],
                               "changes": ["drop classification"], "confirm": False}))
    lock = tmp_path / "knollm.lock"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "knollm", "advisor", "--lock", str(lock), "--dumps", str(FIXTURES),
                        "--answers", str(ans)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "No usable advisor model (no provider key set and no local model found)" in r.stdout
    assert "Not written." in r.stdout and not lock.exists()
    assert "+alias = \"coding\"" in r.stdout and "+alias = \"classification\"" not in r.stdout
    ans.write_text(json.dumps({**ANSWERS, "budget_usd_month": "lots"}))
    r = subprocess.run([sys.executable, "-m", "knollm", "advisor", "--lock", str(lock), "--dumps", str(FIXTURES),
                        "--answers", str(ans)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0 and "budget_usd_month" in r.stderr and "Traceback" not in r.stderr


def _read_until(fd: int, needle: str, buf: list[str], timeout: float = 90.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needle in "".join(buf):
            text = "".join(buf)
            buf.clear()
            buf.append(text[text.index(needle) + len(needle):])
            return text
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                buf.append(os.read(fd, 65536).decode("utf-8", "replace"))
            except OSError:
                break
    raise AssertionError(f"no {needle!r} in {''.join(buf)[-2000:]!r}")


def test_terminal_flow_in_a_pty_with_the_scripted_model(tools, tmp_path, monkeypatch):
    """Typed answers, a change (`set coding KEY`), the diff, confirmation; the lockfile checked."""
    with ScriptedModel(good_script) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        lock = tmp_path / "knollm.lock"
        other = tools.recommend_for_use_case("coding", needs=["tools"], limit=3)["results"][1]["model"]["key"]
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "knollm", "advisor", "--lock", str(lock), "--dumps",
                                 str(FIXTURES), "--advisor-lock", str(adv_lock)],
                                stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                close_fds=True)
        os.close(slave)
        buf: list[str] = []
        seen: list[str] = []
        try:
            for needle, typed in [("Which use cases?", "coding"), ("requests per month", "20k"),
                                  ("Monthly budget", "nonsense"), ("Monthly budget", "200"),
                                  ("Capabilities every model", "tools"), ("Only these providers", ""),
                                  ("Privacy", "any"), ("Change something?", f"set coding {other}"),
                                  ("Change something?", ""), ("Write ", "y")]:
                seen.append(_read_until(master, needle, buf))
                os.write(master, (typed + "\n").encode())
            seen.append(_read_until(master, "Wrote ", buf))
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
    assert proc.returncode == 0
    text = "".join(seen)
    assert "! could not convert string to float: 'nonsense'" in text
    assert "Proposal (advisor model)" in text and f"coding: {other}" in text
    assert load_lock(lock).bindings("default")["coding"].models == [other]
    assert f'+models = ["{other}"]' in text


def test_long_tool_results_are_shortened_to_valid_json():
    from knollm.mcp.advisor import _fit

    res = {"data_date": "2025-09-08", "offers": [{"key": f"p{i}/m", "note": "x" * 500} for i in range(200)]}
    text = _fit(res, limit=10_000)
    back = json.loads(text)
    assert len(text) <= 10_000 and back["truncated"] == {"offers": 200} and 1 <= len(back["offers"]) < 200
    assert json.loads(_fit({"a": [1, 2]})) == {"a": [1, 2]}


@pytest.mark.shared
def test_scripted_model_on_the_real_catalog(shared_dumps, monkeypatch, tmp_path):
    """Done-when: the scripted advisor writes a valid lockfile whose bindings came from tool results."""
    from knollm.lock.ops import validate

    with ScriptedModel(good_script) as srv:
        adv_lock = _advisor_env(monkeypatch, tmp_path, srv)
        lock = tmp_path / "knollm.lock"
        out: list[str] = []
        rc = run_advisor(dumps=shared_dumps, lock=lock, advisor_lock=adv_lock, io=ScriptedIO(ANSWERS, out.append))
    assert rc == 0, "\n".join(out)
    seen = {o["key"] for o in tool_results(srv.requests[-1])["where_is"][0]["offers"]}
    b = load_lock(lock).bindings("default")["coding"]
    assert b.models and set(b.models) <= seen
    t = KnollmTools(dumps=shared_dumps, lock=lock)
    assert not [i for i in validate(load_lock(lock), t.chooser()) if i["level"] == "error"]


def test_lock_init_interactive_runs_the_advisor(tmp_path):
    """`knollm lock init --interactive --answers FILE` is the advisor writing the lockfile."""
    from knollm.cli import main

    ans = tmp_path / "answers.json"
    ans.write_text(json.dumps(ANSWERS))
    lock = tmp_path / "knollm.lock"
    assert main(["lock", "init", "--interactive", "--answers", str(ans), "--lock", str(lock),
                 "--dumps", str(FIXTURES)]) == 0
    bound = load_lock(lock).bindings("default")["coding"]
    assert bound.models and bound.requires.get("tools") is True
