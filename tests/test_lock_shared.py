"""knollm lock / roles on the real dumps (../shared/model_catalog) + the registries, via the CLI."""

from __future__ import annotations

import json

import pytest

from knollm.cli import main
from knollm.lock import load_lock
from knollm.query.api import Catalog
from knollm.query.cost import Workload, estimate

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def real(shared_dumps):
    return Catalog.load(dumps=shared_dumps)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KNOLLM_LOCK", raising=False)
    monkeypatch.delenv("KNOLLM_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _json(capsys, argv, code=0):
    capsys.readouterr()
    assert main(argv) == code, argv
    return json.loads(capsys.readouterr().out)


def test_init_analyze_optimize_explain_on_real_data(env, capsys, shared_dumps, real, monkeypatch):
    d = ["--dumps", str(shared_dumps)]
    res = _json(capsys, ["lock", "init", "--use-case", "coding", "--json", *d])
    lf = load_lock(env / "knollm.lock")
    bs = lf.bindings()
    assert {"fast", "balanced", "deep", "vision", "long_context", "cheap", "coding"} <= set(bs)
    for b in bs.values():
        assert len(b.models) == 3 and len({k.split("/")[0] for k in b.models}) == 3, b
        for k in b.models:
            m = real.model(k)
            assert not m.get("deprecated") and m["prices"]["input"] > 0 and m["prices"]["output"] > 0
            assert lf.pins[k]["prices"]["output"] == m["prices"]["output"]
            assert lf.pins[k]["sources"]["prices.output"] == m["sources"]["prices.output"]
        for c in ("tools", "vision", "reasoning", "structured_output"):
            if b.requires.get(c):
                assert all(real.model(k)["capabilities"][c] is True for k in b.models)
    assert all(r["candidates"] > 10 for r in res["aliases"])

    an = _json(capsys, ["lock", "analyze", "--volume", "5M:1M", "--json", *d])
    want = sum(estimate(real.model(bs[a["alias"]].models[0]), Workload(5_000_000, 1_000_000))["total"]
               for a in an["aliases"])
    assert an["total_monthly_usd"] == pytest.approx(want) and an["total_monthly_usd"] > 0
    assert all(m["source"] for a in an["aliases"] for m in a["members"])

    opt = _json(capsys, ["lock", "optimize", "--json", *d])
    for r in opt["aliases"]:  # a fresh lock is what the ranking picks: nothing to replace
        assert r["change"] is None
        for a in r["cheaper"]:
            assert a["saving"] > 0

    deep = bs["deep"]
    from knollm.lock._providers import provider_facts

    for k in deep.models:
        for var in provider_facts(k.split("/")[0], real)["key_env"]:
            monkeypatch.delenv(var, raising=False)
    capsys.readouterr()
    assert main(["roles", "explain", "deep", *d]) == 1
    second = deep.models[1].split("/")[0]
    var = provider_facts(second, real)["key_env"][0]
    monkeypatch.setenv(var, "sk-not-a-real-key")
    ex = _json(capsys, ["roles", "explain", "deep", "--json", *d])
    assert ex["resolves_to"] == deep.models[1]
    assert [s["status"] for s in ex["steps"]] == ["skipped", "taken", "skipped"]
    assert "sk-not-a-real-key" not in json.dumps(ex)


def test_validate_deprecated_missing_drifted_real(env, capsys, shared_dumps, real):
    d = ["--dumps", str(shared_dumps)]
    dep = next(m for m in real.search(include_deprecated=True, kinds=["chat"], sort="price")
               if m.get("deprecated") and m["prices"]["output"])
    ok = next(m for m in real.search(capabilities=["tools"], kinds=["chat"], sort="price")
              if (m["prices"]["output"] or 0) > 0.5)
    lock = env / "knollm.lock"
    lock.write_text(f'''version = 1
[[profiles.default.bindings]]
alias = "planner"
models = ["{dep['key']}", "nobody-provider/no-such-model", "{ok['key']}"]

[pins."{ok['key']}"]
prices = {{ input = {ok['prices']['input'] / 2}, output = {ok['prices']['output'] / 2} }}
context_window = {ok['context_window']}
''')
    res = _json(capsys, ["lock", "validate", "--json", *d], code=2)
    errs = {(i["code"], i["model"]) for i in res["issues"] if i["level"] == "error"}
    assert ("deprecated", dep["key"]) in errs
    assert ("missing", "nobody-provider/no-such-model") in errs
    assert ("drift", ok["key"]) in errs
    capsys.readouterr()
    assert main(["lock", "validate", *d]) == 2
    out = capsys.readouterr().out
    for name in (dep["key"], "nobody-provider/no-such-model", ok["key"]):
        assert name in out


def test_diff_after_bind_and_unbind(env, capsys, shared_dumps, real):
    d = ["--dumps", str(shared_dumps)]
    assert main(["lock", "init", *d]) == 0
    old = env / "old.lock"
    old.write_bytes((env / "knollm.lock").read_bytes())
    a, b = [m["key"] for m in real.search(capabilities=["tools"], kinds=["chat"], sort="price")
            if (m["prices"]["input"] or 0) > 0][:2]
    assert main(["lock", "bind", "planner", a, b, *d]) == 0
    assert main(["lock", "unbind", "cheap"]) == 0
    rows = _json(capsys, ["lock", "diff", str(old), str(env / "knollm.lock"), "--json"], code=1)
    changes = {(r["alias"], r["change"]) for r in rows}
    assert ("planner", "added") in changes and ("cheap", "removed") in changes
    assert load_lock(env / "knollm.lock").pins[a]["prices"]["input"] == real.model(a)["prices"]["input"]
