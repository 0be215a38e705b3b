"""Fixes from the lockfile review: a binding's requires at run time (the same rule as
`knollm roles explain`), Ollama's context from a scan, num_ctx for non-Latin prompts, and
lockfile edits (inline arrays, cache/note kept, errors naming the file and record).

Real components: loopback servers answering like Ollama and OpenAI-compatible providers
(their public API shapes), lockfiles in tmp_path, the CLI as `python -m knollm`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from knollm import Client
from knollm.errors import AllAttemptsFailed, LockError, NoCandidates
from knollm.lock import load_lock
from knollm.lock.ops import explain, make_chooser
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model, reset_servers, start_servers

PROVIDERS = ("groq", "ollama")
GROQ = "groq/llama-3.3-70b-versatile"
LOCAL = "ollama/llama3.3"
MSG = [{"role": "user", "content": "secret data"}]
FIXTURE_DUMPS = Path(__file__).parent / "fixtures" / "dumps"


@pytest.fixture(scope="module")
def servers():
    s = start_servers(*PROVIDERS)
    yield s
    for x in s.values():
        x.stop()


@pytest.fixture
def srv(servers):
    return reset_servers(servers)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for k in ("KNOLLM_LOCK", "KNOLLM_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GROQ_API_KEY", "gsk_test")  # (explain looks for the key by name)


def _cat(*extra: dict) -> Catalog:
    return Catalog(catalog(model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
                           model("ollama", "llama3.3", "llama3.3", input=None, output=None), *extra))


def _lock(tmp_path: Path, monkeypatch: Any, text: str) -> Path:
    p = tmp_path / "knollm.lock"
    p.write_text("version = 1\n" + text)
    monkeypatch.setenv("KNOLLM_LOCK", str(p))
    return p


def _client(srv: dict, cat: Catalog, **kw: Any) -> Client:
    return Client(catalog=cat, env=env_for(srv, {"GROQ_API_KEY": "gsk_test"}), store=False, retries=0,
                  backoff_base=0.01, **kw)


def _excluded(c: Client, target: Any) -> dict[str, str]:
    plan = c.plan(target, MSG, {})
    return {x["deployment"]: x["reason"] for x in plan.candidates if x["status"] == "excluded"}


def _explained(p: Path, cat: Catalog, alias: str) -> dict[str, dict]:
    res = explain(load_lock(p), make_chooser(cat), alias, "default")
    return {s["model"]: s for s in res["steps"]}


# ---------------------------------------------------------------------------- 1. requires at run time
PRIVATE = f"""
[[profiles.default.bindings]]
alias = "private"
models = ["{LOCAL}", "{GROQ}"]
requires = {{ local_only = true }}
prefer = "local"
"""


def test_local_only_binding_never_sends_the_prompt_to_the_cloud(srv, tmp_path, monkeypatch):
    p = _lock(tmp_path, monkeypatch, PRIVATE)
    cat = _cat()
    c = _client(srv, cat)
    srv["ollama"].default = "500"  # the local server fails
    with pytest.raises(AllAttemptsFailed) as ei:
        c.chat("private", MSG)
    assert [a["provider"] for a in ei.value.attempts] == ["ollama"]
    assert srv["groq"].requests == []  # the secret never left the machine
    # the run time and `knollm roles explain` give the same reason, from the same rule
    why = _excluded(c, "private")[GROQ]
    step = _explained(p, cat, "private")[GROQ]
    assert step["status"] == "skipped" and step["reason"] == "cloud model, but cloud_fallback = false"
    assert why == f"binding 'private': {step['reason']}"


def test_cloud_fallback_true_lets_a_local_role_fall_back(srv, tmp_path, monkeypatch):
    p = _lock(tmp_path, monkeypatch, PRIVATE + "cloud_fallback = true\n")
    cat = _cat()
    srv["ollama"].default = "500"
    r = _client(srv, cat).chat("private", MSG)
    assert [(a["provider"], a["status"]) for a in r.attempts] == [("ollama", 500), ("groq", 200)]
    assert _explained(p, cat, "private")[GROQ]["status"] == "fallback"


def test_prefer_local_orders_local_first_whatever_the_strategy(srv, tmp_path, monkeypatch):
    _lock(tmp_path, monkeypatch, f"""
[[profiles.default.bindings]]
alias = "mostly-local"
models = ["{GROQ}", "{LOCAL}"]
strategy = "cheapest"
prefer = "local"
cloud_fallback = true
""")
    c = _client(srv, _cat())
    r = c.chat("mostly-local", MSG)  # cheapest alone would put groq (priced) before ollama (unknown)
    assert r.provider == "ollama" and srv["groq"].requests == []
    assert r.why.startswith("local first (prefer = local)")


def test_price_caps_max_output_and_open_weights_at_run_time(srv, tmp_path, monkeypatch):
    p = _lock(tmp_path, monkeypatch, f"""
[[profiles.default.bindings]]
alias = "cheap"
models = ["{GROQ}"]
requires = {{ max_output_price = 1.0, max_input_price = 0.5 }}

[[profiles.default.bindings]]
alias = "long"
models = ["{GROQ}"]
requires = {{ max_output = 16000 }}

[[profiles.default.bindings]]
alias = "open"
models = ["groq/closed-model", "groq/unknown-weights", "groq/unpriced"]
requires = {{ open_weights = true, max_input_price = 5 }}
""")
    closed = dict(model("groq", "closed-model", "closed"), open_weights=False)
    unknown = dict(model("groq", "unknown-weights", "uw"), open_weights=None)
    unpriced = model("groq", "unpriced", "unpriced", input=None, output=None)
    cat = _cat(closed, unknown, unpriced)
    c = _client(srv, cat)
    for alias, want in (("cheap", "input price $1 > $0.5; output price $2 > $1"),
                        ("long", "max_output 8,192 < 16,000")):
        with pytest.raises(NoCandidates) as ei:
            c.chat(alias, MSG)
        assert f"binding '{alias}': requirements: {want}" in str(ei.value)
        assert _explained(p, cat, alias)[GROQ]["reason"] == f"requirements: {want}"
    with pytest.raises(NoCandidates) as ei:
        c.chat("open", MSG)
    reasons = {e["deployment"]: e["reason"] for e in ei.value.excluded}
    steps = _explained(p, cat, "open")
    assert reasons == {k: f"binding 'open': {steps[k]['reason']}" for k in steps}
    # an unknown value never counts as meeting a requirement
    assert "open weights unknown" in reasons["groq/unknown-weights"]
    assert "input price unknown" in reasons["groq/unpriced"]
    assert "not open weights" in reasons["groq/closed-model"]
    assert srv["groq"].requests == []


def test_plain_targets_are_unaffected_by_the_lockfile(srv, tmp_path, monkeypatch):
    _lock(tmp_path, monkeypatch, PRIVATE)
    c = _client(srv, _cat())
    assert c.chat(GROQ, MSG).provider == "groq"
    srv["ollama"].default = "500"
    r = c.chat([LOCAL, GROQ], MSG)  # an explicit chain: no binding, no requirement
    assert [(a["provider"], a["status"]) for a in r.attempts] == [("ollama", 500), ("groq", 200)]


def test_local_model_facts_come_from_the_scan_as_for_explain(srv, tmp_path, monkeypatch):
    from knollm.lock.local import join, save_scan

    p = _lock(tmp_path, monkeypatch, """
[[profiles.default.bindings]]
alias = "local"
models = ["ollama/qwen3:8b"]
requires = { local_only = true, min_context = 8000 }
""")
    cat = _cat()
    c = _client(srv, cat)
    with pytest.raises(NoCandidates, match="context_window unknown"):  # not in the catalog, no scan
        c.chat("local", MSG)
    scanned = {"key": "ollama/qwen3:8b", "provider": "ollama", "id": "qwen3:8b", "kind": "chat", "local": True,
               "context_window": 40960, "capabilities": {}, "prices": {"input": 0.0, "output": 0.0}}
    save_scan({"models": [scanned]})  # what `knollm local scan` stores
    assert c.chat("local", MSG).provider == "ollama"
    res = explain(load_lock(p), make_chooser(join(cat, [scanned]), local=[scanned]), "local", "default")
    assert res["resolves_to"] == "ollama/qwen3:8b"


# ---------------------------------------------------------------------------- 2. Ollama context from the scan
class _Ollama(BaseHTTPRequestHandler):
    """Ollama's /api/tags, /api/show, /api/ps (public API shapes): one model loaded with the
    4096 tokens the last request asked for, its Modelfile without num_ctx, native 40960; one
    with num_ctx 16384 in its Modelfile."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def _json(self, obj: Any, code: int = 200) -> None:
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/api/tags":
            self._json({"models": [
                {"name": n, "model": n, "size": 5_200_000_000,
                 "details": {"family": "qwen3", "parameter_size": "8.2B", "quantization_level": "Q4_K_M"}}
                for n in ("qwen3:8b", "qwen3-16k:8b")]})
        elif self.path == "/api/ps":
            self._json({"models": [{"name": n, "model": n, "size": 6_000_000_000, "context_length": 4096}
                                   for n in ("qwen3:8b", "qwen3-16k:8b")]})
        else:
            self._json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        params = "num_ctx 16384\ntemperature 0.6" if body["model"] == "qwen3-16k:8b" else "temperature 0.6"
        self._json({"parameters": params, "details": {"family": "qwen3", "parameter_size": "8.2B"},
                    "model_info": {"general.architecture": "qwen3", "general.parameter_count": 8190735360,
                                   "qwen3.context_length": 40960},
                    "capabilities": ["completion", "tools", "thinking"]})


def _cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "knollm", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=180)


def test_scan_context_is_the_modelfile_or_native_not_the_loaded_one(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ollama)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        r = _cli(["local", "scan", "--host", f"http://127.0.0.1:{httpd.server_address[1]}", "--json"], tmp_path)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.returncode == 0, r.stderr
    by = {m["key"]: m for m in json.loads(r.stdout)["models"]}
    m = by["ollama/qwen3:8b"]
    assert m["context_window"] == 40960 and m["native_context"] == 40960  # not /api/ps's 4096
    assert m["loaded_context"] == 4096 and m["effective_context"] is None
    assert by["ollama/qwen3-16k:8b"]["context_window"] == 16384  # the Modelfile's num_ctx
    from knollm.lock.facts import check_requires
    from knollm.lock.roles import ALIASES

    assert check_requires(m, ALIASES["local"].requires, local=True) == ([], [])


# ---------------------------------------------------------------------------- 3. num_ctx for CJK prompts
def test_ollama_num_ctx_fits_a_long_cjk_prompt(srv):
    from knollm.client.accounting import estimate_tokens, prompt_tokens

    cjk = "这是一个很长的中文文档内容用于测试上下文长度" * 300  # 6,600 characters: ~1 token each
    c = _client(srv, _cat())
    c.chat("ollama/qwen3:8b", [{"role": "user", "content": cjk}], max_tokens=100)
    assert srv["ollama"].requests[-1]["json"]["options"]["num_ctx"] >= len(cjk) + 100
    ascii_text = "word " * 1320  # the same length in ASCII: still ~4 characters a token
    c.chat("ollama/qwen3:8b", [{"role": "user", "content": ascii_text}], max_tokens=100)
    assert srv["ollama"].requests[-1]["json"]["options"]["num_ctx"] == 4096
    assert estimate_tokens(ascii_text) == len(ascii_text) // 4
    # budgets reserve from the same estimate: never under the text's likely token count
    assert prompt_tokens([{"role": "user", "content": cjk}]) >= len(cjk)
    assert estimate_tokens("😀" * 30) >= 30 and estimate_tokens("a\ud800b") >= 2  # (a lone surrogate: no error)


# ---------------------------------------------------------------------------- 4-6. edits
INLINE = 'version = 1\n[profiles.default]\nbindings = [ { alias = "fast", models = ["ollama/a:1b"] } ]\n'


def test_bind_a_new_alias_into_an_inline_bindings_array(tmp_path):
    p = tmp_path / "inline.lock"
    p.write_text(INLINE)
    r = _cli(["lock", "bind", "--lock", str(p), "--dumps", str(FIXTURE_DUMPS), "new", "ollama/b:1b"], tmp_path)
    assert r.returncode == 0, r.stderr
    lf = load_lock(p)
    assert lf.binding("new").models == ["ollama/b:1b"] and lf.binding("fast").models == ["ollama/a:1b"]
    # the other inline spellings, through the editor the commands use
    from knollm.lock.edit import LockDoc
    from knollm.lock.lockfile import Binding

    for text in ('version = 1\nprofiles = { default = { bindings = [ { alias = "fast", models = ["ollama/a:1b"] } ] } }\n',
                 'version = 1\nprofiles.default.bindings = [ { alias = "fast", models = ["ollama/a:1b"] } ]\n'):
        p.write_text(text)
        d = LockDoc(p)
        d.set_binding(Binding("new", ["ollama/c:1b", "ollama/d:1b"]), "default")
        d.save()
        assert load_lock(p).binding("new").models == ["ollama/c:1b", "ollama/d:1b"]
        LockDoc(p)  # and the next edit reads it


def test_optimize_apply_on_an_inherited_alias_keeps_cache_and_note(tmp_path):
    p = tmp_path / "opt.lock"
    p.write_text("""version = 1
default_profile = "dev"

[profiles.prod]
[[profiles.prod.bindings]]
alias = "fast"
models = ["inference/meta/llama-3.1-8b-instruct"]
requires = { tools = true }
prefer = "cheapest"
cache = 3600
note = "keep"

[profiles.dev]
extends = "prod"
""")
    r = _cli(["lock", "optimize", "--lock", str(p), "-p", "dev", "--apply", "--dumps", str(FIXTURE_DUMPS)], tmp_path)
    assert r.returncode == 0, r.stderr
    lf = load_lock(p)
    b = lf.profiles["dev"]["bindings"]["fast"]  # written into dev itself
    assert b.models != ["inference/meta/llama-3.1-8b-instruct"]
    assert b.cache == 3600 and b.note == "keep" and b.requires == {"tools": True} and b.prefer == "cheapest"


def test_edit_errors_name_the_file_and_record(tmp_path):
    bad = tmp_path / "e.lock"
    bad.write_text('version = 1\n[profiles.default]\nbindings = [ "x" ]\n')
    r = _cli(["lock", "unbind", "--lock", str(bad), "-p", "default", "fast"], tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{bad} [profiles.default.bindings[0]]: a binding must be a table" in r.stderr
    latin = tmp_path / "c.lock"
    latin.write_bytes(b"version = 1\n# caf\xe9\n")
    r = _cli(["lock", "unbind", "--lock", str(latin), "-p", "default", "fast"], tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{latin}: cannot read" in r.stderr and "utf-8" in r.stderr
    from knollm.lock.edit import LockDoc

    with pytest.raises(LockError) as ei:
        LockDoc(latin)
    assert ei.value.path == str(latin)
