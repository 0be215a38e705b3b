"""Bad input gets a clear error and loses nothing (review of the catalog, fetch and diff paths).

Each case: one warning naming file and record, the rest still builds, ``--strict`` fails;
``knollm fetch`` never replaces a good dump with an error body or a drastically smaller
answer (without ``--force``); ``knollm diff`` never reports unread dumps as removals.
Fixtures are small hand-written dumps shaped like the real ones; the real dumps in
``../shared`` are used when present (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from knollm.catalog.diagnostics import Diagnostics
from knollm.catalog.normalize import PER_TOKEN, BadValue, to_int, to_price
from knollm.catalog.readers import records_from_payload
from tests.support.fake_providers import write_registry

# -- fixtures shaped like the real dumps --------------------------------------------------------

SAMPLE_SPEC = {  # LiteLLM's own documentation entry: prose where models hold numbers
    "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
    "max_input_tokens": "max input tokens, if the provider specifies it.",
    "input_cost_per_token": 0.0,
    "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
    "mode": "one of: chat, embedding, completion, image_generation, audio_transcription",
}


def groq_model(mid: str, **kw) -> dict:
    return {"id": mid, "object": "model", "created": 1693721698, "owned_by": "Meta", "active": True,
            "context_window": 131072, "public_apps": None, **kw}


def groq_dump(*models: dict) -> dict:
    return {"object": "list", "data": list(models)}


GROQ = groq_dump(groq_model("llama-3.1-8b-instant"), groq_model("llama-3.3-70b-versatile", context_window=131072),
                 groq_model("allam-2-7b", owned_by="SDAIA", context_window=4096))


def lite_entry(provider: str = "openai", **kw) -> dict:
    return {"max_tokens": 16384, "max_input_tokens": 128000, "max_output_tokens": 16384,
            "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "litellm_provider": provider,
            "mode": "chat", "supports_function_calling": True, **kw}


def lite_map(n: int = 3, **extra) -> dict:
    d: dict = {"sample_spec": dict(SAMPLE_SPEC)}
    for i in range(n):
        d[f"gpt-test-{i}"] = lite_entry()
    d.update(extra)
    return d


def write(d: Path, name: str, doc) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return p


def dumps_dir(tmp_path: Path, files: dict | None = None) -> Path:
    """A dump directory: the good groq list and LiteLLM map, overridden / extended by ``files``."""
    d = tmp_path / "dumps"
    base = {"models_groq.json": GROQ, "models_litellm.json": lite_map()}
    base.update(files or {})
    for name, doc in base.items():
        if doc is not None:
            write(d, name, doc)
    return d


# -- the real CLI, as a subprocess (cwd: tmp_path, never the repository root) -------------------

def knollm(cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "knollm", *argv], capture_output=True, text=True, cwd=str(cwd),
                          env=dict(os.environ), timeout=timeout)


def build(d: Path, tmp_path: Path) -> dict:
    """``knollm catalog --no-registries --json``: exit 0, returns the catalog written."""
    out = tmp_path / "catalog.json"
    p = knollm(tmp_path, "catalog", "--dumps", str(d), "--out", str(out), "--no-registries", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    return json.loads(out.read_text())


def warnings_of(cat: dict) -> list[dict]:
    return [w for w in cat["warnings"] if w["level"] == "warning"]


def assert_strict_fails(d: Path, tmp_path: Path, file: str) -> None:
    out = tmp_path / "strict.json"
    p = knollm(tmp_path, "catalog", "--dumps", str(d), "--out", str(out), "--no-registries", "--strict", "-q")
    assert p.returncode == 1, (p.stdout, p.stderr[-2000:])
    assert "--strict" in p.stderr and file in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()


def one_warning(d: Path, tmp_path: Path, file: str, record: str | None, needle: str, code: str | None = None) -> dict:
    """The build gives exactly one warning, naming ``file`` and ``record``; --strict fails."""
    cat = build(d, tmp_path)
    ws = warnings_of(cat)
    assert len(ws) == 1, ws
    w = ws[0]
    assert w["file"] == file and w["record"] == record, w
    assert needle in w["message"], w
    if code:
        assert w["code"] == code, w
    assert_strict_fails(d, tmp_path, file)
    return cat


def keys(cat: dict) -> set[str]:
    return {m["key"] for m in cat["models"]}


GOOD_KEYS = {"groq/llama-3.1-8b-instant", "groq/llama-3.3-70b-versatile", "groq/allam-2-7b",
             "openai/gpt-test-0", "openai/gpt-test-1", "openai/gpt-test-2"}


# -- 1. a count beyond 2^53 ---------------------------------------------------------------------

def test_to_int_rejects_counts_beyond_2_53():
    assert to_int(2**53) == 2**53
    for v in (2**53 + 2, 10**20, 1e20, 10**400):
        with pytest.raises(BadValue):
            to_int(v)
    with pytest.raises(BadValue):  # a per-token price that overflows per million is no price
        to_price(1e305, PER_TOKEN)


def test_context_window_of_1e20_is_warned_not_a_crash(tmp_path):
    d = dumps_dir(tmp_path, {"models_groq.json": groq_dump(groq_model("llama-3.1-8b-instant"),
                                                         groq_model("huge-ctx", context_window=10**20))})
    cat = one_warning(d, tmp_path, "models_groq.json", "huge-ctx", "out of range")
    m = {x["key"]: x for x in cat["models"]}
    assert m["groq/huge-ctx"]["context_window"] is None  # unknown, never a made-up number
    assert {"groq/llama-3.1-8b-instant", "openai/gpt-test-0"} <= set(m)


def test_context_window_of_1e12_stays_flagged_token_range(tmp_path):
    d = dumps_dir(tmp_path, {"models_groq.json": groq_dump(groq_model("big-ctx", context_window=10**12))})
    cat = build(d, tmp_path)
    assert warnings_of(cat) == []
    m = next(x for x in cat["models"] if x["key"] == "groq/big-ctx")
    assert m["context_window"] == 10**12 and m["suspect"].get("context_window") == "token_range"


# -- 2. one bad entry in a keyed dump -----------------------------------------------------------

@pytest.mark.parametrize("bad, kind", [([1, 2], "array"), ("oops", "string"), (None, "null")])
def test_keyed_dump_with_one_non_object_entry_keeps_the_others(tmp_path, bad, kind):
    d = dumps_dir(tmp_path, {"models_litellm.json": lite_map(3, **{"gpt-broken": bad})})
    cat = one_warning(d, tmp_path, "models_litellm.json", "gpt-broken", kind, code="bad-record")
    assert GOOD_KEYS <= keys(cat)


def test_keyed_dump_of_only_non_objects_is_a_shape_error(tmp_path):
    d = dumps_dir(tmp_path, {"models_litellm.json": {"a": [1], "b": [2], "c": "x"}})
    cat = one_warning(d, tmp_path, "models_litellm.json", None, "unknown dump shape")
    assert {k for k in GOOD_KEYS if k.startswith("groq/")} <= keys(cat)


# -- 3. an error answer saved as a dump ---------------------------------------------------------

ERROR_BODIES = [
    {"error": {"message": "Invalid API key", "type": "invalid_request_error", "code": "invalid_api_key"}},
    {"error": "rate limited"},
    {"detail": {"msg": "Not Found"}},
    {"detail": "Not Found"},
    {"message": "Forbidden"},
    {"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"},
    {"errors": [{"message": "bad token", "code": 16}]},
]


@pytest.mark.parametrize("body", ERROR_BODIES)
def test_error_answer_saved_as_a_dump_is_named_not_a_model(tmp_path, body):
    d = dumps_dir(tmp_path, {"models_groq.json": body})
    cat = one_warning(d, tmp_path, "models_groq.json", None, "error answer")
    assert not [k for k in keys(cat) if k.startswith("groq/")]  # no model called "error" / "detail"
    assert {"openai/gpt-test-0", "openai/gpt-test-2"} <= keys(cat)


def test_error_envelope_is_not_fooled_by_model_lists():
    from knollm.catalog.readers import error_envelope

    assert error_envelope(lite_map(2)) is None
    assert error_envelope(GROQ) is None
    assert error_envelope({"error": {"message": "Invalid API key"}}) == "Invalid API key"
    assert error_envelope({"detail": {"msg": "Not Found"}}) == "Not Found"


# -- 4. fetch never replaces a good dump with an error body or a drastically smaller answer -----

class _Routes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, tuple[int, bytes]] = {}

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        status, body = self.routes.get(self.path.split("?", 1)[0], (404, b'{"detail": "Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    routes: dict[str, tuple[int, bytes]] = {}
    handler = type("H", (_Routes,), {"routes": routes})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield routes, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def fetch(tmp_path: Path, server, answers: dict[str, object], *extra: str) -> tuple[int, dict, str]:
    """``knollm fetch`` of the providers in ``answers`` (id -> body), all served with 200.

    ``litellm`` is keyed (the cost map), anything else an OpenAI list."""
    routes, base = server
    providers = {}
    for pid, body in answers.items():
        path = f"/{tmp_path.name}/{pid}"
        routes[path] = (200, body if isinstance(body, bytes) else json.dumps(body).encode())
        providers[pid] = {"url": base + path, "auth": "none",
                          **({"shape": "keyed"} if pid == "litellm" else {})}
    reg = write_registry(tmp_path / "providers.toml", providers)
    report = tmp_path / "report.json"
    p = knollm(tmp_path, "fetch", "--providers", str(reg), "--out", str(tmp_path / "dumps"), "--report",
               str(report), "--no-history", "--no-scores", "--only", ",".join(answers), *extra)
    assert "Traceback" not in p.stderr, p.stderr
    doc = json.loads(report.read_text())
    return p.returncode, {r["id"]: r for r in doc["providers"]}, p.stdout + p.stderr


BIG_MAP = lite_map(40)


@pytest.mark.parametrize("answer, needle", [
    ({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}, "error"),
    ({"detail": {"msg": "Not Found"}}, "error"),
    ({"detail": {"msg": "Not Found"}, "status": {"code": 404}}, "error"),  # not keyed by a model's fields
    ({"alpha": {"name": "x", "url": "y"}, "beta": {"name": "z", "url": "w"}}, "model fields"),
    (lite_map(3), "fewer than half"),
])
def test_fetch_keeps_a_good_keyed_dump_against_a_bad_answer(tmp_path, server, answer, needle):
    old = write(tmp_path / "dumps", "models_litellm.json", BIG_MAP).read_bytes()
    rc, res, text = fetch(tmp_path, server, {"litellm": answer})
    assert rc == 1
    r = res["litellm"]
    assert r["status"] == "failed" and needle in r["reason"] and "previous dump kept" in r["reason"], r
    assert r["models_before"] == 40
    assert (tmp_path / "dumps" / "models_litellm.json").read_bytes() == old


def test_fetch_force_accepts_a_smaller_answer_and_a_good_map_is_accepted(tmp_path, server):
    write(tmp_path / "dumps", "models_litellm.json", BIG_MAP)
    small = lite_map(3)
    rc, res, _ = fetch(tmp_path, server, {"litellm": small}, "--force")
    assert rc == 0 and res["litellm"]["status"] == "ok" and res["litellm"]["models_after"] == 3
    assert json.loads((tmp_path / "dumps" / "models_litellm.json").read_text()) == small
    # growing back (or any answer with at least half the models) needs no --force
    rc, res, _ = fetch(tmp_path, server, {"litellm": BIG_MAP})
    assert rc == 0 and res["litellm"]["models_after"] == 40


def test_fetch_openai_list_error_object_is_still_refused(tmp_path, server):
    old = write(tmp_path / "dumps", "models_groq.json", GROQ).read_bytes()
    rc, res, _ = fetch(tmp_path, server, {"groq": {"detail": {"msg": "Not Found"}}})
    assert rc == 1 and "error object: Not Found" in res["groq"]["reason"]
    assert (tmp_path / "dumps" / "models_groq.json").read_bytes() == old


# -- 5. diff: unreadable dumps are not removals -------------------------------------------------

def test_diff_with_an_unreadable_dump_is_incomplete_not_saved_exit_3(tmp_path):
    old = dumps_dir(tmp_path / "o", {"models_litellm.json": lite_map(5)})
    new = dumps_dir(tmp_path / "n", {"models_litellm.json": {"error": {"message": "Invalid API key"}}})
    changes = tmp_path / "changes"
    p = knollm(tmp_path, "diff", str(old), str(new), "--save", str(changes), "--date", "2026-11-21")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "models_litellm.json" in p.stderr and "incomplete" in p.stderr and "not saved" in p.stderr
    assert "INCOMPLETE" in p.stdout
    assert not changes.exists() or not list(changes.iterdir())
    p = knollm(tmp_path, "diff", str(old), str(new), "--json")
    assert p.returncode == 3
    d = json.loads(p.stdout)
    assert d["incomplete"] is True and d["warnings"][0]["side"] == "new"
    assert d["warnings"][0]["file"] == "models_litellm.json"
    # a complete diff still saves and exits 0
    fine = dumps_dir(tmp_path / "f", {"models_litellm.json": lite_map(4)})
    p = knollm(tmp_path, "diff", str(old), str(fine), "--save", str(changes), "--date", "2026-11-21")
    assert p.returncode == 0, p.stderr
    assert (changes / "2026-11-21.json").exists()


# -- 6. a dump named for no registered provider --------------------------------------------------

@pytest.mark.parametrize("name, provider", [("models_grqo.json", "grqo"), ("models_.json", "models_")])
def test_unknown_provider_file_is_warned_and_its_records_kept(tmp_path, name, provider):
    d = dumps_dir(tmp_path, {name: GROQ})
    cat = one_warning(d, tmp_path, name, None, "not a provider", code="unknown-provider")
    assert f"{provider}/allam-2-7b" in keys(cat)  # nothing lost: the records build under the file's name
    assert GOOD_KEYS <= keys(cat)


def test_unknown_provider_suggests_the_close_name(tmp_path):
    d = dumps_dir(tmp_path, {"models_grqo.json": GROQ})
    w = warnings_of(build(d, tmp_path))[0]
    assert "models_groq.json" in w["message"]


# -- 7. silent drops ----------------------------------------------------------------------------

def test_duplicate_key_in_a_keyed_dump_is_warned(tmp_path):
    text = json.dumps(lite_map(3))[:-1] + ', "gpt-test-1": ' + json.dumps(lite_entry(max_input_tokens=64000)) + "}"
    d = dumps_dir(tmp_path, {"models_litellm.json": text.encode()})
    cat = one_warning(d, tmp_path, "models_litellm.json", "gpt-test-1", "2 times", code="duplicate-key")
    assert GOOD_KEYS <= keys(cat)


@pytest.mark.parametrize("value, needle", [("lots", "'lots'"), (-5, "negative"), ({"n": 1}, "nested")])
def test_litellm_bad_max_tokens_is_warned(tmp_path, value, needle):
    entry = lite_entry(max_tokens=value)
    del entry["max_output_tokens"]
    d = dumps_dir(tmp_path, {"models_litellm.json": lite_map(3, **{"gpt-odd": entry})})
    cat = one_warning(d, tmp_path, "models_litellm.json", "gpt-odd", needle)
    m = next(x for x in cat["models"] if x["key"] == "openai/gpt-odd")
    assert m["max_output"] is None  # unknown, the entry itself kept
    assert GOOD_KEYS <= keys(cat)


@pytest.mark.parametrize("rid", ["  ", "", "\t"])
def test_blank_id_is_a_missing_id(tmp_path, rid):
    d = dumps_dir(tmp_path, {"models_groq.json": groq_dump(groq_model(rid), *GROQ["data"])})
    cat = one_warning(d, tmp_path, "models_groq.json", "0", "'id'", code="missing-id")
    assert not [k for k in keys(cat) if not k.split("/", 1)[1].strip()]
    assert GOOD_KEYS <= keys(cat)


@pytest.mark.parametrize("rid, kind", [(1.5, "a number (1.5)"), (["a"], 'an array (["a"])'),
                                       ({"x": 1}, "an object"), (True, "a boolean (true)")])
def test_wrong_type_id_names_its_type(rid, kind):
    diags = Diagnostics()
    _, recs = records_from_payload(groq_dump(groq_model("ok"), groq_model(rid)), "models_groq.json", diags)
    assert [r for r, _ in recs] == ["ok"]
    (w,) = diags.warnings
    assert w.record == "1" and kind in w.message and "has no 'id'" not in w.message


# -- the real dumps -----------------------------------------------------------------------------

@pytest.mark.shared
def test_real_dumps_still_build_without_warnings(shared_dumps):
    from knollm.catalog.build import build_catalog

    diags = Diagnostics()
    build_catalog(shared_dumps, registries=False, diags=diags)
    assert [str(w) for w in diags.warnings] == []


@pytest.mark.shared
def test_fetch_accepts_the_real_litellm_map_and_keeps_it_against_an_error(tmp_path, server, shared_dumps):
    real = (shared_dumps / "models_litellm.json").read_bytes()
    rc, res, _ = fetch(tmp_path, server, {"litellm": real})
    assert rc == 0 and res["litellm"]["models_after"] > 1000
    for bad in ({"error": {"message": "Invalid API key"}}, {"detail": {"msg": "Not Found"}}):
        rc, res, _ = fetch(tmp_path, server, {"litellm": bad})
        assert rc == 1 and res["litellm"]["status"] == "failed"
        assert (tmp_path / "dumps" / "models_litellm.json").read_bytes() == real
    shutil.rmtree(tmp_path / "dumps")
