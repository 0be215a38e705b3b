"""Second review of `knollm fetch`, `knollm diff` and the refresh workflow: each test plays a
reproduced bug against loopback servers (tests.support.fake_providers, tests.support.http_static,
and a small route server here for redirects and scripted pages) through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from knollm.cli import main
from tests.support.fake_providers import FakeProviders, write_registry
from tests.support.http_static import serve_static

REPO = Path(__file__).resolve().parents[1]
REFRESH = REPO / ".github" / "workflows" / "refresh.yml"
KEY = "sk-live-R3v13w+/=kq9ZxW"  # '/' is what a JSON serializer may escape as '\/'

Handler = Callable[[dict, dict], tuple[int, dict, bytes]]


@contextlib.contextmanager
def routes(table: dict[str, Handler]) -> Iterator[tuple[str, list[dict]]]:
    """A loopback server answering ``table[path](query, headers) -> (status, headers, body)``;
    yields its base URL and the requests it received."""
    seen: list[dict] = []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            u = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(u.query).items()}
            seen.append({"path": u.path, "query": q, "headers": dict(self.headers.items())})
            fn = table.get(u.path)
            status, hdrs, body = fn(q, dict(self.headers.items())) if fn else (404, {}, b'{"error": "nope"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _models(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}-m{i}", "object": "model", "owned_by": prefix} for i in range(n)]


@pytest.fixture(scope="module")
def fp():
    with FakeProviders() as server:
        yield server


def fetch(tmp_path: Path, providers: dict, *extra: str, out: Path | None = None) -> tuple[int, dict, Path]:
    """``knollm fetch --json`` with a test registry; returns (exit code, report, dump dir)."""
    reg = write_registry(tmp_path / "providers.toml", providers)
    out = out or tmp_path / "dumps"
    out.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report.json"
    args = ["fetch", "--providers", str(reg), "--out", str(out), "--no-scores", "--report", str(report), *extra]
    if "--history" not in extra:
        args.append("--no-history")
    rc = main(args)
    doc = json.loads(report.read_text()) if report.exists() else {}
    return rc, doc, out


def result(doc: dict, pid: str) -> dict:
    return next(p for p in doc["providers"] if p["id"] == pid)


# -- 1. redirects: credentials only within the list URL's origin ------------------------------------------

def test_cross_origin_redirect_never_carries_the_key(fp, tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_KEY", KEY)
    other = fp.url("/ok/moved/v1/models")

    def redirect_away(q, h):  # keeps the query string, as many servers do (?key=… with it)
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        return 302, {"Location": other + (f"?{qs}" if qs else "")}, b""

    def same_origin_list(q, h):
        ok = h.get("x-api-key") == KEY
        return (200, {}, _json({"object": "list", "data": _models("same", 3)})) if ok else (401, {}, b"{}")

    table = {"/hdr": redirect_away, "/bearer": redirect_away, "/query": redirect_away,
             "/public": lambda q, h: (302, {"Location": fp.url("/ok/pub/v1/models?open=1")}, b""),
             "/same": lambda q, h: (307, {"Location": "/list"}, b""), "/list": same_origin_list,
             "/sameq": lambda q, h: (302, {"Location": "/listq?v=1"}, b""),
             "/listq": lambda q, h: ((200, {}, _json({"object": "list", "data": _models("q", 2)}))
                                     if q.get("key") == KEY and q.get("v") == "1" else (401, {}, b"{}"))}
    with routes(table) as (base, seen):
        before = len(fp.requests)
        rc, doc, out = fetch(tmp_path, {
            "hdrprov": {"url": f"{base}/hdr", "auth": "x-api-key", "key_env": ["REVIEW_KEY"]},
            "bearerprov": {"url": f"{base}/bearer", "key_env": ["REVIEW_KEY"]},
            "queryprov": {"url": f"{base}/query", "auth": "query", "key_env": ["REVIEW_KEY"]},
            "pubprov": {"url": f"{base}/public", "auth": "none"},
            "sameprov": {"url": f"{base}/same", "auth": "x-api-key", "key_env": ["REVIEW_KEY"]},
            "sameqprov": {"url": f"{base}/sameq", "auth": "query", "key_env": ["REVIEW_KEY"]},
        })
    assert rc == 1
    # the other origin (FakeProviders) never saw the key, in no header and no query parameter
    for req in fp.requests[before:]:
        assert KEY not in json.dumps(req), req
        assert not {k.lower() for k in req["headers"]} & {"authorization", "x-api-key"}
    for pid in ("hdrprov", "bearerprov", "queryprov"):
        r = result(doc, pid)
        assert r["status"] == "failed" and "another origin" in r["reason"], r
        assert not (out / f"models_{pid}.json").exists()
    # a public list may move to another host (nothing secret to leak); same-origin keeps the key
    assert result(doc, "pubprov")["status"] == "ok" and result(doc, "pubprov")["models_after"] == 3
    assert result(doc, "sameprov")["status"] == "ok" and result(doc, "sameprov")["models_after"] == 3
    assert result(doc, "sameqprov")["status"] == "ok" and result(doc, "sameqprov")["models_after"] == 2
    assert KEY not in json.dumps(doc)


# -- 2. a key echoed JSON-escaped ----------------------------------------------------------------------

def test_json_escaped_key_echo_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_KEY", KEY)
    site = tmp_path / "site"
    site.mkdir()
    escaped = KEY.replace("/", "\\/")
    (site / "echo.json").write_text('{"object":"list","data":[{"id":"m1","description":"requested with key '
                                    + escaped + '"}]}')
    with serve_static(site) as base:
        rc, doc, out = fetch(tmp_path, {"echo": {"url": base + "echo.json", "key_env": ["REVIEW_KEY"]}})
    assert rc == 1
    r = result(doc, "echo")
    assert r["status"] == "failed" and "API key" in r["reason"]
    assert not (out / "models_echo.json").exists()


# -- 3. page-number pagination with a server-capped page size ------------------------------------------

def test_page_number_uses_the_answers_per_page_when_the_server_caps_it(fp, tmp_path):
    url = fp.url("/pagenumber/feather/v1/models?n=100&maxper=25&nototal=1")
    rc, doc, out = fetch(tmp_path, {"feather": {"url": url, "auth": "none", "pagination": "page_number",
                                                "page_size": 1000}})
    assert rc == 0
    assert result(doc, "feather")["models_after"] == 100
    assert len(json.loads((out / "models_feather.json").read_text())["data"]) == 100


def test_page_number_without_total_or_per_page_reads_until_an_empty_page(tmp_path):
    def page(q, h):
        p = int(q.get("page", 1))
        return 200, {}, _json({"data": [{"id": f"f{(p - 1) * 25 + i}"} for i in range(25)] if p <= 3 else []})

    with routes({"/feather": page}) as (base, seen):
        rc, doc, out = fetch(tmp_path, {"feather": {"url": f"{base}/feather", "auth": "none",
                                                    "pagination": "page_number", "page_size": 1000}})
    assert rc == 0 and result(doc, "feather")["models_after"] == 75
    assert [r["query"]["page"] for r in seen] == ["1", "2", "3", "4"]


# -- 4. quality scores never replaced by an empty / junk / much smaller answer --------------------------

def test_scores_bad_answer_keeps_the_good_file(tmp_path):
    from knollm.errors import FetchError
    from knollm.fetch.scores import KEY_ENV, SCORES_FILE, fetch_scores, load_scores

    good = {"source": "Artificial Analysis",
            "models": [{"id": f"a{i}", "name": f"A{i}", "evaluations": {"index": 50 + i}} for i in range(300)]}
    small = {"data": [{"id": f"a{i}", "name": f"A{i}"} for i in range(10)]}
    table = {"/aa_empty": lambda q, h: (200, {}, _json({"status": 200, "data": []})),
             "/aa_junk": lambda q, h: (200, {}, _json({"data": [{"model_id": "x", "title": "X"}]})),
             "/aa_small": lambda q, h: (200, {}, _json(small))}
    env = {KEY_ENV: "aa-key-123456"}
    with routes(table) as (base, _seen):
        for case in ("aa_empty", "aa_junk", "aa_small"):
            (tmp_path / SCORES_FILE).write_text(json.dumps(good))
            with pytest.raises(FetchError):
                fetch_scores(tmp_path, env=env, url=f"{base}/{case}")
            assert len(load_scores(tmp_path)["models"]) == 300, case
        assert fetch_scores(tmp_path, env=env, url=f"{base}/aa_small", force=True) == tmp_path / SCORES_FILE
        assert len(load_scores(tmp_path)["models"]) == 10


# -- 5. per-record warnings in the report; the workflow commits when the diff is incomplete --------------

def test_record_warnings_are_in_the_fetch_report(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    data = _models("oa", 50) + [{"object": "model", "owned_by": "oa"}]
    (site / "openai.json").write_text(json.dumps({"object": "list", "data": data}))
    with serve_static(site) as base:
        rc, doc, out = fetch(tmp_path, {"openai": {"url": base + "openai.json", "auth": "none"}})
    assert rc == 0
    r = result(doc, "openai")
    assert r["status"] == "ok" and r["models_after"] == 50
    assert len(r["warnings"]) == 1 and "models_openai.json [50]" in r["warnings"][0] and "'id'" in r["warnings"][0]
    assert doc["warnings"] == {"openai": 1}


def _steps() -> dict[str, str]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the workflow")
    doc = yaml.safe_load(REFRESH.read_text())
    return {s.get("name", ""): s.get("run", "") for s in doc["jobs"]["refresh"]["steps"]}


def _step(fragment: str) -> str:
    return next(run for name, run in _steps().items() if fragment in name)


def run_step(script: str, cwd: Path, registry: Path | None = None, fake_fetch: str | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a workflow step's script as GitHub does (bash -e) with a ``knollm`` on PATH that runs
    the real CLI for fetch (with a test registry, no scores) and diff, and nothing else."""
    bindir = cwd / "bin"
    bindir.mkdir(exist_ok=True)
    real = f'"{sys.executable}" -m knollm'
    fetch_line = fake_fetch or f'shift; exec {real} fetch --providers "$SHIM_REGISTRY" --no-scores "$@"'
    (bindir / "knollm").write_text(f"#!/bin/bash\ncase \"$1\" in\n  fetch) {fetch_line} ;;\n"
                                   f"  diff) exec {real} \"$@\" ;;\n  *) exit 0 ;;\nesac\n")
    (bindir / "knollm").chmod(0o755)
    tmp = cwd / "runner_temp"
    tmp.mkdir(exist_ok=True)
    e = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "RUNNER_TEMP": str(tmp),
         "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"), "SHIM_REGISTRY": str(registry or ""),
         "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)


def test_workflow_diff_step_commits_dumps_when_the_diff_is_incomplete(tmp_path):
    old = tmp_path / "runner_temp" / "old"
    cat = tmp_path / "work" / "model_catalog"
    old.mkdir(parents=True)
    cat.mkdir(parents=True)
    (old / "models_openai.json").write_text(json.dumps({"object": "list", "data": _models("oa", 5)}))
    (cat / "models_openai.json").write_text(json.dumps(
        {"object": "list", "data": _models("oa", 6) + [{"object": "model"}]}))
    proc = run_step(_step("Diff"), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "::warning::" in proc.stdout and "incomplete" in proc.stdout
    assert not (cat / "changes").exists()  # no diff saved
    assert "INCOMPLETE" in (tmp_path / "runner_temp" / "diff.txt").read_text()  # the commit message body


# -- 6. run-level errors: own exit code, report first, workflow fails ---------------------------------------

def test_unreadable_history_is_a_run_error_after_report_and_summary(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "good.json").write_text(json.dumps({"object": "list", "data": _models("g", 2)}))
    out = tmp_path / "dumps"
    out.mkdir()
    (out / "history.json").write_text('{"models": {')  # truncated (a bad merge)
    summary = tmp_path / "no" / "such" / "dir" / "summary.md"
    with serve_static(site) as base:
        rc, doc, out = fetch(tmp_path, {"good": {"url": base + "good.json", "auth": "none"}},
                             "--history", str(out / "history.json"), "--summary", str(summary), out=out)
    assert rc == 3  # a run-level error: not 1 (a provider failed), which the workflow lets pass
    from knollm.fetch.cli import RUN_ERROR

    assert RUN_ERROR == 3
    assert result(doc, "good")["status"] == "ok" and (out / "models_good.json").exists()
    assert doc["errors"] and "history" in doc["errors"][0]
    text = summary.read_text()
    assert "## Fetch report" in text and "Run errors" in text


def test_summary_directory_is_created_and_missing_registry_is_a_usage_error(tmp_path):
    summary = tmp_path / "nodir" / "s.md"
    rc = main(["fetch", "--providers", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"), "--no-scores"])
    assert rc == 2
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.json").write_text(json.dumps({"object": "list", "data": _models("a", 2)}))
    with serve_static(site) as base:
        reg = write_registry(tmp_path / "p.toml", {"good": {"url": base + "ok.json", "auth": "none"}})
        rc = main(["fetch", "--providers", str(reg), "--out", str(tmp_path / "o"), "--no-scores", "--no-history",
                   "--summary", str(summary)])
    assert rc == 0 and "## Fetch report" in summary.read_text()


def test_workflow_fetch_step_fails_on_run_errors_and_a_missing_report(fp, tmp_path):
    cat = tmp_path / "work" / "model_catalog"
    cat.mkdir(parents=True)
    reg = write_registry(tmp_path / "reg.toml", {
        "good": {"url": fp.url("/ok/wf/v1/models?open=1"), "auth": "none"},
        "bad": {"url": fp.url("/notfound/wf/v1/models"), "auth": "none"}})
    script = _step("Fetch")
    # a provider failed (exit 1): a warning, the step goes on
    proc = run_step(script, tmp_path, reg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "::warning::" in proc.stdout
    assert (tmp_path / "runner_temp" / "fetch-report.json").exists()
    # an unreadable history.json after the dumps were written: the step fails
    (cat / "history.json").write_text('{"models": {')
    proc = run_step(script, tmp_path, reg)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert (tmp_path / "runner_temp" / "fetch-report.json").exists()
    # exit 1 but no report (a crash before writing it): the step fails
    (cat / "history.json").unlink()
    proc = run_step(script, tmp_path, reg, fake_fetch="exit 1")
    assert proc.returncode != 0 and "no report" in proc.stdout


# -- 7-9. knollm diff: renames, their changes, same-day saves ------------------------------------------------

def _or_model(i: str, name: str, p: str | None, c: str | None = None) -> dict:
    d = {"id": i, "name": name, "context_length": 131072}
    if p is not None:
        d["pricing"] = {"prompt": p, "completion": c if c is not None else p}
    return d


def _dumps(d: Path, models: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "models_openrouter.json").write_text(json.dumps({"data": models}))
    return d


def test_variant_swap_is_not_a_rename(tmp_path, capsys):
    base = "meta-llama/llama-3.1-8b-instruct"
    old = _dumps(tmp_path / "old", [_or_model(base, "Meta: Llama 3.1 8B Instruct", "0.00000002"),
                                    _or_model(base + ":free", "Meta: Llama 3.1 8B Instruct (free)", "0")])
    new = _dumps(tmp_path / "new", [_or_model(base, "Meta: Llama 3.1 8B Instruct", "0.00000002"),
                                    _or_model(base + ":nitro", "Meta: Llama 3.1 8B Instruct (nitro)", "0.0000002")])
    capsys.readouterr()
    assert main(["diff", str(old), str(new), "--date", "2025-01-01", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["renamed"] == []
    assert [m["id"] for m in d["added"]] == [base + ":nitro"] and [m["id"] for m in d["removed"]] == [base + ":free"]


def test_renamed_models_price_change_is_in_every_output(tmp_path, capsys):
    from knollm.diff.compare import diff_paths, render_atom

    old = _dumps(tmp_path / "old", [_or_model("acme/x", "Acme X", "0.000001"),
                                    _or_model("acme/c-old", "Acme C", "0.000001")])
    new = _dumps(tmp_path / "new", [_or_model("acme/x", "Acme X", "0.000001"),
                                    _or_model("acme/c-new", "Acme C", "0.000005")])
    capsys.readouterr()
    assert main(["diff", str(old), str(new), "--date", "2025-01-01", "--markdown"]) == 0
    md = capsys.readouterr().out
    renamed = md[md.index("### Renamed"):]
    assert "prices.input" in renamed and "$5" in renamed
    assert main(["diff", str(old), str(new), "--date", "2025-01-01", "--csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert any(line.startswith("renamed,openrouter/acme/c-new,prices.input,1.0,5.0,400.0") for line in csv), csv
    d = diff_paths(old, new, date="2025-01-01")
    assert d["summary"]["renamed"] == 1
    atom = render_atom([d], "https://example.org/")
    assert "prices.input" in atom and "+400.0%" in atom


def test_same_day_save_keeps_both_diffs(tmp_path, capsys):
    from knollm.diff.compare import load_diffs, render_atom

    a = _dumps(tmp_path / "a", [_or_model("acme/x", "acme/x", "0.000001")])
    b = _dumps(tmp_path / "b", [_or_model("acme/x", "acme/x", "0.000001"), _or_model("acme/n", "acme/n", "0.000002")])
    c = _dumps(tmp_path / "c", [_or_model("acme/x", "acme/x", "0.000009"), _or_model("acme/n", "acme/n", "0.000002")])
    changes = tmp_path / "changes"
    assert main(["diff", str(a), str(b), "--save", str(changes), "--date", "2025-03-01"]) == 0
    assert main(["diff", str(b), str(c), "--save", str(changes), "--date", "2025-03-01"]) == 0
    assert sorted(p.name for p in changes.iterdir()) == ["2025-03-01-2.json", "2025-03-01.json"]
    diffs = load_diffs(changes)
    assert [(d["summary"]["added"], d["summary"]["repriced"]) for d in diffs] == [(0, 1), (1, 0)]  # newest first
    atom = render_atom(diffs, "https://example.org/")
    assert atom.count("<entry>") == 2 and "#2025-03-01-2</id>" in atom and "#2025-03-01</id>" in atom


# -- 10. the shrink check counts distinct ids -----------------------------------------------------------

def test_repeated_id_does_not_replace_a_larger_dump(tmp_path):
    out = tmp_path / "dumps"
    out.mkdir()
    good = json.dumps({"object": "list", "data": _models("x", 10)})
    (out / "models_dup.json").write_text(good)
    (out / "models_some.json").write_text(good)
    site = tmp_path / "site"
    site.mkdir()
    (site / "dup.json").write_text(json.dumps({"object": "list", "data": [{"id": "x-m0"}] * 6}))
    (site / "some.json").write_text(json.dumps({"object": "list", "data": _models("x", 10) + [{"id": "x-m1"}]}))
    with serve_static(site) as base:
        rc, doc, out = fetch(tmp_path, {"dup": {"url": base + "dup.json", "auth": "none"},
                                        "some": {"url": base + "some.json", "auth": "none"}}, out=out)
    assert rc == 1
    r = result(doc, "dup")
    assert r["status"] == "failed" and "fewer than half" in r["reason"]
    assert (out / "models_dup.json").read_text() == good
    s = result(doc, "some")
    assert s["status"] == "ok" and s["models_after"] == 10
    assert any("duplicate" in w and "'x-m1'" in w for w in s["warnings"])


# -- 11. derived secrets are masked in the workflow log ----------------------------------------------------

def test_workflow_masks_every_derived_secret():
    import re

    text = REFRESH.read_text()
    derived = re.findall(r"^\s*(\w+)=\$\(.*(?:GH_TOKEN|secrets\.|base64).*\)\s*$", text, re.M)
    assert derived, "the test expects the push step's base64 credential"
    for var in derived:
        assert re.search(rf'echo "::add-mask::\${var}"', text), var
