"""Second lockfile review: privacy through nested aliases and Ollama cloud models,
``create_lockfile_binding`` keeping what a binding had and writing only lockfiles,
parallel edits, and edits through a symbolic link.

Real components: loopback servers answering like Ollama and OpenAI-compatible providers
and recording what they received (``tests.support``), the real CLI (``python -m knollm``),
the gateway as a subprocess, and the MCP SDK's client against ``python -m knollm mcp``."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from knollm import Client
from knollm.errors import AllAttemptsFailed, LockError, NoCandidates
from knollm.lock import load_lock
from knollm.lock.ops import explain, make_chooser
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "dumps"
GROQ = "groq/llama-3.3-70b-versatile"
LOCAL = "ollama/llama3.3"
MSG = [{"role": "user", "content": "SECRET patient record"}]


# the lockfile review's loopback groq + Ollama servers and its isolation (no user config, lock or key)
from tests.test_lock_review_fixes import _isolated, servers, srv  # noqa: E402,F401 - fixtures


def _cat() -> Catalog:
    return Catalog(catalog(model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
                           model("ollama", "llama3.3", "llama3.3", input=None, output=None)))


def _client(srv: dict, cat: Catalog) -> Client:
    return Client(catalog=cat, env=env_for(srv, {"GROQ_API_KEY": "gsk_test"}), store=False, retries=0,
                  backoff_base=0.01)


def _cli(args: list[str], cwd: Path, env: dict | None = None, **kw: Any) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "knollm", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=300, **kw)


def _excluded(c: Client, target: str) -> dict[str, str]:
    try:
        rows = [x for x in c.plan(target, MSG, {}).candidates if x["status"] == "excluded"]
    except NoCandidates as e:  # nothing left
        rows = e.excluded
    return {x["deployment"]: x["reason"] for x in rows}


# ---------------------------------------------------------------------------- 1. nested aliases
NESTED = f"""version = 1
[[profiles.default.bindings]]
alias = "team/private"            # PRIVATE: must never leave this machine
models = ["{LOCAL}", "{GROQ}"]
requires = {{ local_only = true }}
prefer = "local"

[[profiles.default.bindings]]
alias = "assistant"               # an app-level alias that points at the private one
models = ["team/private"]
"""


def test_an_alias_naming_a_local_only_alias_keeps_the_prompt_on_the_machine(srv, tmp_path, monkeypatch):
    p = tmp_path / "knollm.lock"
    p.write_text(NESTED)
    monkeypatch.setenv("KNOLLM_LOCK", str(p))
    cat = _cat()
    c = _client(srv, cat)
    srv["ollama"].default = "500"  # the local server fails
    for target in ("team/private", "assistant"):
        with pytest.raises(AllAttemptsFailed) as ei:
            c.chat(target, MSG)
        assert [a["provider"] for a in ei.value.attempts] == ["ollama"], target
    assert srv["groq"].requests == []  # the secret never reached the cloud server
    # `knollm roles explain` expands the nested alias the same way and gives the same reason
    why = _excluded(c, "assistant")[GROQ]
    res = explain(load_lock(p), make_chooser(cat), "assistant", "default")
    steps = {s["model"]: s for s in res["steps"]}
    assert [s["model"] for s in res["steps"]] == [LOCAL, GROQ]
    assert steps[GROQ]["status"] == "skipped" and steps[GROQ]["via"] == ["team/private"]
    assert steps[GROQ]["reason"] == "binding 'team/private': cloud model, but cloud_fallback = false"
    assert why == "binding 'team/private' (via 'assistant'): cloud model, but cloud_fallback = false"
    assert res["resolves_to"] == LOCAL and res["nested"]["team/private"]["requires"] == {"local_only": True}


@pytest.mark.parametrize("inner, outer, groq_reason", [
    # the stricter requirement wins, from either level
    ('requires = { tools = true }', 'requires = { max_input_price = 0.5 }',
     "binding 'team/outer': requirements: input price $1 > $0.5"),
    ('requires = { max_input_price = 0.5 }', 'requires = { tools = true }',
     "binding 'team/inner' (via 'team/outer'): requirements: input price $1 > $0.5"),
    # cloud_fallback only when every level asking for local models allows it
    ('requires = { local_only = true }\ncloud_fallback = true', 'requires = { local_only = true }',
     "binding 'team/outer': cloud model, but cloud_fallback = false"),
    ('requires = { local_only = true }', 'requires = { local_only = true }\ncloud_fallback = true',
     "binding 'team/inner' (via 'team/outer'): cloud model, but cloud_fallback = false"),
    ('requires = { local_only = true }\ncloud_fallback = true', '', None),  # the inner allows it: used
])
def test_every_level_of_a_nested_alias_is_honoured(srv, tmp_path, monkeypatch, inner, outer, groq_reason):
    p = tmp_path / "knollm.lock"
    p.write_text(f'version = 1\n[[profiles.default.bindings]]\nalias = "team/inner"\nmodels = ["{GROQ}"]\n{inner}\n\n'
                 f'[[profiles.default.bindings]]\nalias = "team/outer"\nmodels = ["team/inner"]\n{outer}\n\n'
                 # a cycle brings nothing and does not recurse for ever
                 f'[[profiles.default.bindings]]\nalias = "team/loop"\nmodels = ["team/loop2", "{GROQ}"]\n\n'
                 f'[[profiles.default.bindings]]\nalias = "team/loop2"\nmodels = ["team/loop"]\n')
    monkeypatch.setenv("KNOLLM_LOCK", str(p))
    cat = _cat()
    c = _client(srv, cat)
    assert _excluded(c, "team/outer").get(GROQ) == groq_reason
    step = {s["model"]: s for s in explain(load_lock(p), make_chooser(cat), "team/outer", "default")["steps"]}[GROQ]
    assert (step["status"] == "skipped") == (groq_reason is not None)
    if groq_reason:
        assert groq_reason.replace(" (via 'team/outer')", "").endswith(step["reason"])
        with pytest.raises(NoCandidates):  # nothing left
            c.chat("team/outer", MSG)
        assert srv["groq"].requests == []
    assert c.chat("team/loop", MSG).provider == "groq"


def test_the_gateway_honours_the_inner_binding_too(tmp_path):
    openai = pytest.importorskip("openai")
    from tests.support.gateway_proc import GatewayProcess
    from tests.support.provider_servers import ProviderServer
    from tests.test_gateway import gateway_env

    lock = tmp_path / "knollm.lock"
    lock.write_text(NESTED.replace(f'"{LOCAL}", ', ""))  # the private alias: only a cloud model, local_only
    groq = ProviderServer("groq").start()
    try:
        with GatewayProcess(gateway_env(tmp_path, {"groq": groq}), args=["--lock", str(lock)]) as g:
            client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
            for alias in ("team/private", "assistant"):
                with pytest.raises(openai.APIStatusError):
                    client.chat.completions.create(model=alias, messages=MSG)
            r = client.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "hi"}])
            assert r.choices  # (the cloud server works: only the binding kept the prompt away)
        assert [q["json"]["messages"] for q in groq.requests] == [[{"role": "user", "content": "hi"}]]
    finally:
        groq.stop()


# ---------------------------------------------------------------------------- 2. Ollama cloud models
CLOUD_TAG = {"name": "gpt-oss:120b-cloud", "model": "gpt-oss:120b-cloud", "size": 384,
             "remote_model": "gpt-oss:120b", "remote_host": "https://ollama.com:443",
             "details": {"format": "", "family": "gptoss", "parameter_size": "116.8B", "quantization_level": "MXFP4"}}
NAMED_CLOUD_TAG = {"name": "glm-4.6:cloud", "model": "glm-4.6:cloud", "size": 390,
                   "details": {"family": "glm", "parameter_size": "355B"}}


def test_ollama_cloud_models_are_not_local(srv, tmp_path, monkeypatch):
    from tests.support.local_servers import OLLAMA_TAGS, LocalServer

    home = tmp_path / "home"
    with LocalServer("ollama") as ls:  # Ollama >= 0.12 lists its cloud models in /api/tags
        ls.httpd.RequestHandlerClass.routes = {
            ("GET", "/api/tags"): {"models": [OLLAMA_TAGS["models"][0], CLOUD_TAG, NAMED_CLOUD_TAG]},
            ("GET", "/api/ps"): {"models": []}}
        r = _cli(["local", "scan", "--host", ls.url, "--json"], tmp_path, {"KNOLLM_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    by = {m["key"]: m for m in json.loads(r.stdout)["models"]}
    for key in ("ollama/gpt-oss:120b-cloud", "ollama/glm-4.6:cloud"):
        assert by[key]["local"] is False and by[key]["memory_estimate"] is None, by[key]
    assert by["ollama/gpt-oss:120b-cloud"]["remote_host"] == "https://ollama.com:443"
    assert by["ollama/tiny-chat:3b"]["local"] is True

    lock = tmp_path / "knollm.lock"
    lock.write_text('version = 1\n[[profiles.default.bindings]]\nalias = "private"\n'
                    'models = ["ollama/gpt-oss:120b-cloud", "ollama/glm-4.6:cloud", "ollama/tiny-chat:3b"]\n'
                    'requires = { local_only = true }\n')
    r = _cli(["roles", "explain", "private", "--lock", str(lock), "--dumps", str(FIXTURES), "--json"], tmp_path,
             {"KNOLLM_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    steps = {s["model"]: s for s in res["steps"]}
    assert res["resolves_to"] == "ollama/tiny-chat:3b"
    for key in ("ollama/gpt-oss:120b-cloud", "ollama/glm-4.6:cloud"):
        assert steps[key]["status"] == "skipped" and "cloud model" in steps[key]["reason"], steps[key]

    # the client: the chat goes to the local model only (the Ollama server records it)
    monkeypatch.setenv("KNOLLM_LOCK", str(lock))
    c = _client(srv, Catalog(catalog(model("ollama", "llama3.3", "llama3.3", input=None, output=None))))
    res = c.chat("private", MSG)
    assert res.model == "tiny-chat:3b"
    assert [q["json"]["model"] for q in srv["ollama"].requests] == ["tiny-chat:3b"]
    assert c._router.is_local("ollama", "ollama/gpt-oss:120b-cloud") is False
    assert c._router.is_local("ollama", "ollama/qwen3-coder:480b-cloud") is False  # by its name, even unscanned
    assert c._router.is_local("ollama", "ollama/tiny-chat:3b") is True
    # and the lock's chooser never picks one for a local role
    from knollm.lock.local import load_scan
    from knollm.lock.roles import ALIASES

    scan = load_scan(home / "local_models.json")["models"]
    ch = make_chooser(Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), local=scan)
    picked = ch.choose(ALIASES["local"])["models"]
    assert picked and all(not k.endswith("cloud") for k in picked), picked


# ---------------------------------------------------------------------------- 3. MCP create_lockfile_binding
PRIVATE_LOCK = f"""version = 1
default_profile = "default"

[[profiles.default.bindings]]
# PRIVATE: health records, must never leave this machine
alias = "private"
models = ["{LOCAL}"]
requires = {{ local_only = true }}
prefer = "local"
strategy = "fallback"
cache = 600
note = "health records"

[[profiles.default.bindings]]
alias = "tooly"
models = ["{GROQ}"]
requires = {{ tools = true }}
prefer = "cheapest"
cache = 3600
note = "keep me"
"""


def _mcp(tmp_path: Path, body) -> None:
    pytest.importorskip("mcp", reason="the MCP SDK (extra knollm[mcp]) is not installed")
    from tests.test_mcp_review_fixes import _session

    _session(tmp_path, body)


def test_mcp_rebind_keeps_the_binding_and_needs_an_explicit_argument_to_loosen_local_only(tmp_path):
    lock = tmp_path / "knollm.lock"
    lock.write_text(PRIVATE_LOCK)

    async def body(call, c):
        err, text = await call("create_lockfile_binding", {"alias": "private", "models": [GROQ], "confirm": True})
        assert err and "local_only" in text, text
        assert lock.read_text() == PRIVATE_LOCK  # nothing written
        err, text = await call("create_lockfile_binding", {"alias": "tooly", "models": [GROQ, "groq/openai/gpt-oss-120b"],
                                                           "confirm": True})
        assert not err, text
        b = load_lock(lock).binding("tooly")
        assert (b.requires, b.prefer, b.cache, b.note) == ({"tools": True}, "cheapest", 3600, "keep me")
        # prefer = "local" stays: a cloud model also needs cloud_fallback, itself a loosening
        err, text = await call("create_lockfile_binding", {"alias": "private", "models": [GROQ], "requires": {},
                                                           "cloud_fallback": True, "confirm": True})
        assert err and "loosen_local_only" in text, text
        err, text = await call("create_lockfile_binding", {"alias": "private", "models": [GROQ], "requires": {},
                                                           "cloud_fallback": True, "loosen_local_only": True,
                                                           "confirm": True})
        assert not err, text
        warned = " | ".join(w["message"] for w in json.loads(text)["warnings"])
        assert "local_only removed" in warned and "cloud_fallback = true" in warned, warned
        b = load_lock(lock).binding("private")
        assert b.requires == {} and b.cloud_fallback is True
        assert (b.prefer, b.strategy, b.cache, b.note) == ("local", "fallback", 600, "health records")

    _mcp(tmp_path, body)
    assert "# PRIVATE: health records" in lock.read_text()


def test_mcp_binding_writes_only_knollm_lockfiles(tmp_path):
    lock = tmp_path / "knollm.lock"
    lock.write_text(PRIVATE_LOCK)
    uv_text = ('version = 1\nrequires-python = ">=3.11"\n\n[[package]]\nname = "httpx"\nversion = "0.28.1"\n'
               'source = { registry = "https://pypi.org/simple" }\n')
    inside = tmp_path / "proj" / "uv.lock"       # under the server's working directory
    outside = tmp_path.parent / f"{tmp_path.name}-other" / "uv.lock"
    for p in (inside, outside):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(uv_text)

    async def body(call, c):
        err, text = await call("create_lockfile_binding", {"alias": "fast", "models": [GROQ], "path": str(inside),
                                                           "confirm": True})
        assert err and f"{inside}: not a knollm lockfile" in text, text
        err, text = await call("create_lockfile_binding", {"alias": "fast", "models": [GROQ], "path": str(outside),
                                                           "confirm": True})
        assert err and "path must be a lockfile" in text and "working directory" in text, text
        err, text = await call("create_lockfile_binding", {"alias": "fast", "models": [GROQ],
                                                           "path": str(tmp_path / "proj" / "team.lock"),
                                                           "confirm": True})
        assert not err, text  # a new *.lock under the working directory is fine

    _mcp(tmp_path, body)
    assert inside.read_text() == uv_text and outside.read_text() == uv_text
    assert load_lock(tmp_path / "proj" / "team.lock").binding("fast").models == [GROQ]
    with pytest.raises(LockError) as ei:  # the one reader refuses it too, naming the file
        load_lock(inside)
    assert ei.value.path == str(inside) and "not a knollm lockfile" in str(ei.value)


# ---------------------------------------------------------------------------- 4. parallel edits
HEAD = "# team lockfile: keep this comment\nversion = 1\n"


def test_parallel_cli_binds_keep_every_alias_and_the_comments(tmp_path):
    lock = tmp_path / "knollm.lock"
    lock.write_text(HEAD)
    r = _cli(["lock", "bind", "--lock", str(lock), "--dumps", str(FIXTURES), "base", GROQ], tmp_path)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "knollm", "lock", "bind", "--lock", str(lock), "--dumps",
                               str(FIXTURES), f"a{i}", GROQ], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(1, 7)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    text = lock.read_text()
    assert set(load_lock(lock).bindings("default")) == {"base", "a1", "a2", "a3", "a4", "a5", "a6"}
    assert text.startswith("# team lockfile: keep this comment\n")


def test_the_mcp_tool_waits_for_the_edit_lock(tmp_path):
    """While another editor holds the lock (as `knollm lock bind` does from read to write), the
    tool neither reads nor writes; it then edits the file as that editor left it."""
    fcntl = pytest.importorskip("fcntl")
    lock = tmp_path / "knollm.lock"
    lock.write_text(PRIVATE_LOCK)
    held, release = threading.Event(), threading.Event()

    def other_editor() -> None:  # the documented protocol: flock on the sidecar <lock>.lck
        with open(str(lock) + ".lck", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            held.set()
            release.wait(120)
            lock.write_text(lock.read_text() + f'\n[[profiles.default.bindings]]\nalias = "other"\n'
                            f'models = ["{GROQ}"]\n')
            fcntl.flock(f, fcntl.LOCK_UN)

    t = threading.Thread(target=other_editor)
    t.start()
    assert held.wait(30)

    async def body(call, c):
        task = asyncio.ensure_future(call("create_lockfile_binding", {"alias": "fast", "models": [GROQ],
                                                                      "confirm": True}))
        await asyncio.sleep(3)
        assert not task.done() and "fast" not in lock.read_text()  # waiting for the lock
        release.set()
        err, text = await task
        assert not err, text

    try:
        _mcp(tmp_path, body)
    finally:
        release.set()
        t.join()
    assert {"private", "tooly", "other", "fast"} <= set(load_lock(lock).bindings("default"))


# ---------------------------------------------------------------------------- 5. links and modes
def test_a_symlinked_lockfile_is_written_through_and_keeps_its_mode(tmp_path):
    shared = tmp_path / "shared" / "team.lock"
    shared.parent.mkdir()
    shared.write_text("version = 1\n# team lockfile\n")
    shared.chmod(0o600)
    link = tmp_path / "proj" / "knollm.lock"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "shared" / "team.lock")
    r = _cli(["lock", "bind", "fast", GROQ, "--dumps", str(FIXTURES)], link.parent)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and link.resolve() == shared.resolve()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600
    assert load_lock(shared).binding("fast").models == [GROQ] and "# team lockfile" in shared.read_text()
    # the shared writer keeps its other callers working: a new file is 0644 as before
    from knollm.fsutil import atomic_write

    new = tmp_path / "new.json"
    atomic_write(new, b"{}")
    assert new.read_bytes() == b"{}" and stat.S_IMODE(new.stat().st_mode) == 0o644
