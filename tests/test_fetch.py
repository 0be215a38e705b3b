"""knollm fetch against a real HTTP server on 127.0.0.1 playing providers and their faults."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from knollm.cli import main
from knollm.errors import FetchError, KnollmError
from knollm.fetch import Redactor, RegistryError, fetch_all, load_registry, safe_url
from knollm.fetch.client import atomic_write, backoff_delay, parse_retry_after
from knollm.catalog.history import apply_history, load_history, update_history
from tests.support.fake_providers import FakeProviders, write_registry

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "model_catalog"
KEY = "sk-live-T0pS3cret+/=kq9ZxW"  # '+', '/' and '=' change under URL encoding
KEY_FORMS = {KEY, quote(KEY, safe=""), quote_plus(KEY)}
ENV = {"FAKE_KEY": KEY}


@pytest.fixture(scope="module")
def fp():
    with FakeProviders() as server:
        yield server


def prov(fp: FakeProviders, behaviour: str, name: str, **spec) -> dict:
    query = spec.pop("query", "")
    d = {"url": fp.url(f"/{behaviour}/{name}/v1/models") + (f"?{query}" if query else ""), "key_env": ["FAKE_KEY"]}
    d.update(spec)
    return d


def run(tmp_path: Path, providers: dict, env=ENV, settings=None, **kw):
    reg = load_registry(write_registry(tmp_path / "providers.toml", providers, settings))
    out = tmp_path / "dumps"
    out.mkdir(exist_ok=True)
    logs: list[str] = []
    report = fetch_all(reg, out, env=env, log=logs.append, seed=7, **kw)
    return report, out, logs


def one(report, pid):
    return next(r for r in report.results if r.id == pid)


OLD_DUMP = b'{"object": "list", "data": [{"id": "old-model-1"}, {"id": "old-model-2"}]}\n'


def seed_old(out: Path, pid: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / f"models_{pid}.json"
    p.write_bytes(OLD_DUMP)
    return p


def assert_no_temp_files(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


# -- the registry -------------------------------------------------------------------------------

def test_project_registry_is_valid_and_documented():
    reg = load_registry()
    p = reg.providers
    assert p["anthropic"].auth == "x-api-key" and p["anthropic"].headers["anthropic-version"] == "2023-06-01"
    assert p["anthropic"].pagination == "has_more" and p["anthropic"].cursor_param == "after_id"
    assert p["litellm"].auth == "none" and p["litellm"].shape == "keyed"
    assert p["litellm"].url.startswith("https://raw.githubusercontent.com/BerriAI/litellm/")
    assert p["togetherai"].shape == "array"
    assert p["openrouter"].auth == "none"
    assert p["cohere"].shape == "list-key" and p["cohere"].pagination == "page_token"
    for spec in p.values():
        assert spec.url.startswith(("https://", "http://localhost")), spec.id
        assert spec.auth == "none" or spec.key_env, spec.id
        assert "?" not in spec.url or spec.auth != "query", spec.id
    assert {"xai", "cohere"} <= set(p)


@pytest.mark.shared
def test_project_registry_covers_every_shared_dump():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    reg = load_registry()
    dumps = {f.name[len("models_"):-len(".json")] for f in SHARED.glob("models_*.json")}
    assert dumps - set(reg.providers) == set()
    from knollm.catalog.diagnostics import Diagnostics
    from knollm.catalog.readers import read_dump

    for pid in dumps:  # the declared shape is the shape of the real dump
        spec = reg.providers[pid]
        shape = read_dump(SHARED / f"models_{pid}.json", Diagnostics()).shape
        assert spec.shape == shape or spec.shape == "list-key", (pid, spec.shape, shape)


@pytest.mark.parametrize("text, needle", [
    ("[providers.x]\nlist.url = 'https://a/b'\napi.key_env = ['K']\nlist.bogus = 1\n", "bogus"),
    ("[providers.x]\napi.key_env = ['K']\nlist.shape = 'array'\n", "url"),
    ("[providers.x]\nlist.url = 'https://a/b'\n", "key_env"),
    ("[providers.x]\nlist.url = 'ftp://a/b'\nlist.auth = 'none'\n", "url"),
    ("[providers.x]\nlist.url = 'https://a'\nlist.auth = 'none'\nlist.shape = 'list-key'\n", "list_key"),
    ("[providers.x]\nlist.url = 'https://a'\napi.key_env = ['K']\nlist.headers = {Authorization = 'Bearer s'}\n",
     "credentials"),
    ("[providers.X]\nlist.url = 'https://a'\nlist.auth = 'none'\n", "lowercase"),
    ("[fetch]\nconcurrency = 0\n[providers.x]\nlist.url = 'https://a'\nlist.auth = 'none'\n", "concurrency"),
    ("[providers.x]\naliases = ['y']\n[providers.z]\naliases = ['y']\n", "already means"),
    ("this is = not toml [", "TOML"),
    ("[fetch]\n", "no [providers"),
])
def test_registry_errors_name_the_file(tmp_path, text, needle):
    f = tmp_path / "bad-registry.toml"
    f.write_text(text)
    with pytest.raises(RegistryError) as ei:
        load_registry(f)
    assert str(f) in str(ei.value) and needle in str(ei.value)
    assert isinstance(ei.value, KnollmError)


def test_missing_registry_file(tmp_path):
    # a usage error (2), like any other option naming a missing file
    assert main(["fetch", "--providers", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2


# -- happy paths --------------------------------------------------------------------------------

def test_openai_list_written_byte_for_byte(fp, tmp_path):
    report, out, _ = run(tmp_path, {"acme": prov(fp, "ok", "acme1", query="n=4")})
    r = one(report, "acme")
    assert (r.status, r.models_before, r.models_after, r.pages, r.retries) == ("ok", None, 4, 1, 0)
    data = (out / "models_acme.json").read_bytes()
    assert json.loads(data)["data"][0]["id"] == "acme1-m0"
    assert data.startswith(b'{"object": "list"')  # the server's bytes, not re-serialized
    seen = [q for q in fp.requests if q["path"] == "/ok/acme1/v1/models"][-1]
    assert seen["headers"]["Authorization"] == f"Bearer {KEY}"
    assert report.exit_code == 0
    assert_no_temp_files(out)


def test_anthropic_style_pagination(fp, tmp_path):
    spec = prov(fp, "anthropic", "anth1", auth="x-api-key", headers={"anthropic-version": "2023-06-01"},
                pagination="has_more", page_size=1000, params={"n": "5", "ps": "2"})
    report, out, logs = run(tmp_path, {"anthropic": spec})
    r = one(report, "anthropic")
    assert r.status == "ok" and r.pages == 3 and r.models_after == 5
    doc = json.loads((out / "models_anthropic.json").read_bytes())
    assert doc["object"] == "list" and [m["id"] for m in doc["data"]] == [f"anth1-m{i}" for i in range(5)]
    reqs = [q for q in fp.requests if q["path"].startswith("/anthropic/anth1")]
    assert [q["query"].get("after_id") for q in reqs] == [None, "anth1-m1", "anth1-m3"]
    assert all(q["headers"]["x-api-key"] == KEY and "Authorization" not in q["headers"] for q in reqs)
    assert all(q["query"]["limit"] == "1000" for q in reqs)


def test_page_token_with_key_in_query(fp, tmp_path):
    spec = prov(fp, "pagetoken", "gem1", auth="query", shape="list-key", list_key="models",
                pagination="page_token", params={"n": "5"})
    report, out, logs = run(tmp_path, {"gemini": spec})
    r = one(report, "gemini")
    assert r.status == "ok" and r.pages == 3 and r.models_after == 5
    reqs = [q for q in fp.requests if q["path"].startswith("/pagetoken/gem1")]
    assert [q["query"].get("pageToken") for q in reqs] == [None, "2", "4"]
    assert all(q["query"]["key"] == KEY for q in reqs)
    assert "?" not in (r.url or "") and not any(f in "\n".join(logs) for f in KEY_FORMS)
    doc = json.loads((out / "models_gemini.json").read_bytes())
    assert doc["object"] == "list" and len(doc["data"]) == 5


def test_array_and_keyed_shapes_without_auth(fp, tmp_path):
    report, out, _ = run(tmp_path, {
        "together": prov(fp, "array", "tog1", auth="none", shape="array"),
        "litellm": prov(fp, "keyed", "lite1", auth="none", shape="keyed"),
        "wrong": prov(fp, "array", "wrong1", auth="none"),  # expects openai-list, gets an array
    }, env={})
    assert one(report, "together").status == "ok" and one(report, "litellm").models_after == 3  # sample_spec skipped
    w = one(report, "wrong")
    assert w.status == "failed" and "expected openai-list" in w.reason
    assert not (out / "models_wrong.json").exists()


def test_unchanged_dump_is_not_rewritten(fp, tmp_path):
    providers = {"acme": prov(fp, "ok", "same1")}
    report, out, _ = run(tmp_path, providers)
    assert one(report, "acme").changed is True
    p = out / "models_acme.json"
    os.utime(p, (1_000_000_000, 1_000_000_000))
    report2, _, _ = run(tmp_path, providers)
    r = one(report2, "acme")
    assert r.status == "ok" and r.changed is False and r.models_before == 3
    assert p.stat().st_mtime == 1_000_000_000


# -- faults -------------------------------------------------------------------------------------

def test_401_fails_keeps_old_dump_and_hides_the_echoed_key(fp, tmp_path):
    out = tmp_path / "dumps"
    old = seed_old(out, "acme")
    report, _, logs = run(tmp_path, {"acme": prov(fp, "unauthorized", "u1")})
    r = one(report, "acme")
    assert r.status == "failed" and r.http_status == 401 and "401" in r.reason and "FAKE_KEY" in r.reason
    assert "previous dump kept" in r.reason and r.models_before == 2
    assert r.retries == 0 and fp.count("unauthorized", "u1") == 1  # 4xx is not retried
    assert old.read_bytes() == OLD_DUMP
    blob = json.dumps(report.to_dict()) + "\n".join(logs)
    assert "***" in r.reason and not any(f in blob for f in KEY_FORMS)


def test_429_honours_retry_after(fp, tmp_path):
    report, out, logs = run(tmp_path, {"acme": prov(fp, "ratelimit", "rl1", query="fails=1&ra=1")})
    r = one(report, "acme")
    assert r.status == "ok" and r.retries == 1 and r.attempts == 2
    assert r.duration >= 1.0  # waited the Retry-After second, not the 0.05 s backoff
    assert "Retry-After 1s" in r.events[0]


def test_429_honours_retry_after_ms(fp, tmp_path):
    """``retry-after-ms`` (OpenAI's, Azure's) before ``Retry-After``, as the client reads it."""
    report, _, _ = run(tmp_path, {"acme": prov(fp, "ratelimit", "rl4", query="fails=1&rams=1200")})
    r = one(report, "acme")
    assert r.status == "ok" and r.retries == 1 and r.duration >= 1.2


def test_429_retry_after_http_date(fp, tmp_path):
    report, _, _ = run(tmp_path, {"acme": prov(fp, "ratelimit", "rl2", query="fails=1&ra=0&radate=1")})
    r = one(report, "acme")
    assert r.status == "ok" and r.retries == 1 and "Retry-After" in r.events[0]


def test_429_with_too_long_retry_after_fails_fast(fp, tmp_path):
    t0 = time.monotonic()
    report, _, _ = run(tmp_path, {"acme": prov(fp, "ratelimit", "rl3", query="fails=9&ra=3600")})
    r = one(report, "acme")
    assert r.status == "failed" and "Retry-After 3600s exceeds" in r.reason
    assert time.monotonic() - t0 < 3


def test_500_then_success(fp, tmp_path):
    report, out, _ = run(tmp_path, {"acme": prov(fp, "flaky", "fl1", query="fails=2")})
    r = one(report, "acme")
    assert r.status == "ok" and r.retries == 2 and r.attempts == 3
    assert fp.count("flaky", "fl1") == 3 and (out / "models_acme.json").exists()


def test_503_forever_gives_up_after_retries(fp, tmp_path):
    out = tmp_path / "dumps"
    old = seed_old(out, "acme")
    report, _, _ = run(tmp_path, {"acme": prov(fp, "down", "dn1")})
    r = one(report, "acme")
    assert r.status == "failed" and "503" in r.reason and "3 attempts" in r.reason
    assert fp.count("down", "dn1") == 3 and old.read_bytes() == OLD_DUMP


def test_hanging_response_times_out(fp, tmp_path):
    out = tmp_path / "dumps"
    old = seed_old(out, "acme")
    t0 = time.monotonic()
    report, _, _ = run(tmp_path, {"acme": prov(fp, "hang", "hg1"), "stall": prov(fp, "stall", "st1")},
                       settings={"retries": 1})
    assert time.monotonic() - t0 < 6
    for pid in ("acme", "stall"):
        r = one(report, pid)
        assert r.status == "failed" and "timed out" in r.reason, r.reason
    assert old.read_bytes() == OLD_DUMP


def test_total_time_limit_per_provider(fp, tmp_path):
    report, _, _ = run(tmp_path, {"acme": prov(fp, "hang", "hg2")},
                       settings={"total_timeout": 0.3, "read_timeout": 5.0})
    r = one(report, "acme")
    assert r.status == "failed" and "time limit" in r.reason


@pytest.mark.parametrize("behaviour, needle", [
    ("html", "HTML"),
    ("truncated", "truncated JSON"),
    ("shortbody", "truncated body"),
    ("huge", "larger than"),
    ("errorobj", "error object"),
    ("empty", "no models"),
    ("echokey", "contains an API key"),
    ("notfound", "404"),
])
def test_bad_answers_fail_and_keep_the_old_dump(fp, tmp_path, behaviour, needle):
    out = tmp_path / "dumps"
    old = seed_old(out, "acme")
    report, _, logs = run(tmp_path, {"acme": prov(fp, behaviour, f"{behaviour}1")})
    r = one(report, "acme")
    assert r.status == "failed" and needle in r.reason, r.reason
    assert old.read_bytes() == OLD_DUMP
    assert_no_temp_files(out)
    assert not any(f in json.dumps(report.to_dict()) + "\n".join(logs) for f in KEY_FORMS)


def test_huge_body_stops_reading_early(fp, tmp_path):
    report, _, _ = run(tmp_path, {"acme": prov(fp, "huge", "hu2", query="size=50000000")},
                       settings={"max_bytes": 200_000})
    r = one(report, "acme")
    assert r.status == "failed" and "200,000-byte limit" in r.reason and r.duration < 5


def test_pagination_loop_is_detected(fp, tmp_path):
    report, _, _ = run(tmp_path, {"acme": prov(fp, "cursorloop", "cl1", pagination="has_more")})
    r = one(report, "acme")
    assert r.status == "failed" and "loops" in r.reason and r.pages == 2


def test_connection_refused(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    report, _, _ = run(tmp_path, {"acme": {"url": f"http://127.0.0.1:{port}/v1/models", "auth": "none"}},
                       settings={"retries": 1})
    r = one(report, "acme")
    assert r.status == "failed" and "cannot connect" in r.reason and r.retries == 1


def test_missing_key_is_skipped_not_an_error(fp, tmp_path):
    report, out, _ = run(tmp_path, {"acme": prov(fp, "ok", "nk1", key_env=["NOT_SET_ANYWHERE", "NOR_THIS"]),
                                    "open": prov(fp, "ok", "nk2", auth="none", query="open=1")}, env={})
    r = one(report, "acme")
    assert r.status == "skipped" and "NOT_SET_ANYWHERE or NOR_THIS" in r.reason
    assert fp.count("ok", "nk1") == 0 and one(report, "open").status == "ok"
    assert report.exit_code == 0


def test_failed_write_keeps_old_dump(fp, tmp_path, monkeypatch):
    out = tmp_path / "dumps"
    old = seed_old(out, "acme")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    report, _, _ = run(tmp_path, {"acme": prov(fp, "ok", "wr1")})
    r = one(report, "acme")
    assert r.status == "failed" and "No space left" in r.reason
    assert old.read_bytes() == OLD_DUMP
    assert_no_temp_files(out)


def test_concurrency_limit_is_respected(fp, tmp_path):
    # 4 providers that each hang ~0.4 s (read timeout), no retries, concurrency 2 -> two waves
    providers = {f"p{i}": prov(fp, "hang", f"cc{i}") for i in range(4)}
    t0 = time.monotonic()
    report, _, _ = run(tmp_path, providers, settings={"retries": 0, "read_timeout": 0.4, "concurrency": 2})
    elapsed = time.monotonic() - t0
    assert all(r.status == "failed" for r in report.results)
    assert elapsed >= 0.8, elapsed


# -- CLI, report, keys --------------------------------------------------------------------------

def test_cli_report_exit_codes_and_no_key_anywhere(fp, tmp_path, capsys, caplog, monkeypatch):
    providers = {
        "good": prov(fp, "ok", "cli1"),
        "pages": prov(fp, "anthropic", "cli2", auth="x-api-key", headers={"anthropic-version": "2023-06-01"},
                      pagination="has_more", params={"n": "3"}),
        "query": prov(fp, "pagetoken", "cli3", auth="query", shape="list-key", list_key="models",
                      pagination="page_token"),
        "denied": prov(fp, "unauthorized", "cli4"),
        "echo": prov(fp, "echokey", "cli5"),
        "limited": prov(fp, "ratelimit", "cli6", query="fails=1&ra=0"),
        "nokey": prov(fp, "ok", "cli7", key_env=["ABSENT_KEY_VAR"]),
        "html": prov(fp, "html", "cli8", auth="query"),
    }
    reg = write_registry(tmp_path / "providers.toml", providers)
    out = tmp_path / "dumps"
    report_file = tmp_path / "report.json"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("FAKE_KEY", KEY)
    monkeypatch.delenv("ABSENT_KEY_VAR", raising=False)
    caplog.set_level(logging.DEBUG)  # httpx2/httpcore2 debug logs included
    rc = main(["fetch", "--providers", str(reg), "--out", str(out), "--report", str(report_file),
               "--summary", str(summary), "--verbose"])
    cap = capsys.readouterr()
    assert rc == 1  # some providers failed
    doc = json.loads(report_file.read_text())
    status = {p["id"]: p["status"] for p in doc["providers"]}
    assert status == {"good": "ok", "pages": "ok", "query": "ok", "denied": "failed", "echo": "failed",
                      "limited": "ok", "nokey": "skipped", "html": "failed"}
    assert doc["counts"] == {"ok": 4, "skipped": 1, "failed": 3} and doc["retries"] == 1
    assert "Fetched 8 provider(s)" in cap.out and "retry in" in cap.err
    assert "| denied | failed |" in summary.read_text()
    history = load_history(out / "history.json")
    assert "good/cli1-m0" in history and not any(k.startswith("nokey/") for k in history)

    texts = {
        "stdout": cap.out, "stderr": cap.err, "report": report_file.read_text(), "summary": summary.read_text(),
        "logs": "\n".join(r.getMessage() for r in caplog.records) + caplog.text,
        "history": (out / "history.json").read_text(),
    }
    texts.update({p.name: p.read_text() for p in out.glob("models_*.json")})
    assert any("cli" in t for t in texts.values())
    for where, text in texts.items():
        for form in KEY_FORMS:
            assert form not in text, f"key leaked into {where}"
    # exceptions raised inside the run never carry the key either
    assert "***" in doc["providers"][3]["reason"]

    # --json prints the same report; only skipped -> exit 0
    rc = main(["fetch", "--providers", str(reg), "--out", str(out), "--only", "good,nokey", "--json"])
    cap = capsys.readouterr()
    assert rc == 0
    assert {p["id"]: p["status"] for p in json.loads(cap.out)["providers"]} == {"good": "ok", "nokey": "skipped"}
    assert not any(f in cap.out + cap.err for f in KEY_FORMS)


def test_cli_only_unknown_provider_suggests(fp, tmp_path, capsys):
    reg = write_registry(tmp_path / "providers.toml", {"acme": prov(fp, "ok", "o1")})
    assert main(["fetch", "--providers", str(reg), "--out", str(tmp_path), "--only", "acne"]) == 1
    assert "did you mean 'acme'" in capsys.readouterr().err


def test_cli_dry_run_makes_no_request(fp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    reg = write_registry(tmp_path / "providers.toml", {"acme": prov(fp, "ok", "dry1"),
                                                       "off": prov(fp, "ok", "dry2", enabled=False)})
    assert main(["fetch", "--providers", str(reg), "--out", str(tmp_path), "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["provider"] for r in rows] == ["acme"] and rows[0]["key"] == "set"
    assert fp.count("ok", "dry1") == 0


def test_disabled_and_manual_providers(fp, tmp_path):
    providers = {"off": prov(fp, "ok", "dis1", enabled=False), "hand": prov(fp, "ok", "man1", manual=True)}
    report, _, _ = run(tmp_path, providers)
    assert [r.id for r in report.results] == ["hand"] and report.results[0].status == "skipped"
    report, _, _ = run(tmp_path, providers, only=["off"])
    assert one(report, "off").status == "ok"


# -- units ----------------------------------------------------------------------------------------

def test_redactor_masks_keys_and_credential_patterns():
    r = Redactor([KEY])
    text = (f"GET https://h/v1/models?key={quote_plus(KEY)}&pageToken=2 Authorization: Bearer {KEY} "
            f"x-api-key: other-secret-value {quote(KEY, safe='')} api_key=zzz9")
    red = r(text)
    assert not any(f in red for f in KEY_FORMS)
    assert "other-secret-value" not in red and "zzz9" not in red and "pageToken=2" in red
    assert r.redact_obj({"a": [f"x {KEY}"]}) == {"a": ["x ***"]}
    assert safe_url(f"https://user:pw@h:8443/v1/models?key={KEY}#x") == "https://h:8443/v1/models"


def test_redacting_filter_on_http_loggers(caplog):
    from knollm.fetch.redact import RedactingFilter

    lg = logging.getLogger("httpx2")
    f = RedactingFilter(Redactor([KEY]))
    lg.addFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger="httpx2"):
            lg.info("HTTP Request: GET %s", f"https://h/m?key={KEY}")
    finally:
        lg.removeFilter(f)
    assert KEY not in caplog.text and "key=***" in caplog.text


def test_retry_after_and_backoff():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("  ") is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    future = time.time() + 30
    from email.utils import formatdate

    assert 25 < parse_retry_after(formatdate(future, usegmt=True)) <= 31
    import random

    rng = random.Random(1)
    for attempt, lo, hi in [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (10, 15.0, 30.0)]:
        for _ in range(20):
            d = backoff_delay(attempt, 1.0, 30.0, rng)
            assert lo <= d <= hi


def test_atomic_write(tmp_path):
    p = tmp_path / "sub" / "models_x.json"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two" and sorted(x.name for x in p.parent.iterdir()) == ["models_x.json"]


def test_history_first_and_last_seen(tmp_path):
    d = tmp_path / "dumps"
    d.mkdir()
    (d / "models_a.json").write_text('{"object":"list","data":[{"id":"m1"},{"id":"m2"}]}')
    (d / "models_b.json").write_text('[{"id":"z"}]')
    h = tmp_path / "history.json"
    assert update_history(h, d, "2026-11-01")["new"] == 3
    (d / "models_a.json").write_text('{"object":"list","data":[{"id":"m2"},{"id":"m3"}]}')
    stats = update_history(h, d, "2026-11-21", providers=["a"])
    assert stats == {"new": 1, "seen": 2, "total": 4}
    hist = load_history(h)
    assert hist["a/m1"] == {"first_seen": "2026-11-01", "last_seen": "2026-11-01"}
    assert hist["a/m2"] == {"first_seen": "2026-11-01", "last_seen": "2026-11-21"}
    assert hist["a/m3"]["first_seen"] == "2026-11-21" and hist["b/z"]["last_seen"] == "2026-11-01"
    cat = {"models": [{"key": "a/m2", "id": "m2"}, {"key": "other/z", "id": "z", "origin": ["models_b.json"]},
                      {"key": "c/q", "id": "q"}]}
    assert apply_history(cat, hist) == 2
    assert cat["models"][1]["first_seen"] == "2026-11-01" and "first_seen" not in cat["models"][2]


# -- page-number pagination (Featherless) and legacy hosts -------------------------------------

def test_page_number_pagination_like_featherless(fp, tmp_path):
    spec = prov(fp, "pagenumber", "fea1", auth="none", pagination="page_number", page_size=2, params={"n": "5"})
    report, out, logs = run(tmp_path, {"featherless": spec}, env={})
    r = one(report, "featherless")
    assert (r.status, r.pages, r.models_after) == ("ok", 3, 5)
    reqs = [q["query"] for q in fp.requests if q["path"].startswith("/pagenumber/fea1")]
    assert [(q["page"], q["per_page"]) for q in reqs] == [("1", "2"), ("2", "2"), ("3", "2")]
    doc = json.loads((out / "models_featherless.json").read_bytes())
    assert [m["id"] for m in doc["data"]] == [f"fea1-m{i}" for i in range(5)]
    assert any("page 2 (2 models), next page" in line for line in logs)


def test_page_number_names_are_configurable_and_a_short_page_ends_without_a_count(fp, tmp_path):
    # no total_pages in the answer: a page shorter than per_page is the last one
    spec = prov(fp, "pagenumber", "fea2", auth="none", pagination="page_number", page_size=2,
                page_param="page", page_size_param="per_page", total_pages_field="meta.pages",
                params={"n": "3", "nototal": "1"})
    report, _, _ = run(tmp_path, {"p": spec}, env={})
    r = one(report, "p")
    assert (r.status, r.pages, r.models_after) == ("ok", 2, 3)


def test_page_number_server_ignoring_page_is_a_loop(fp, tmp_path):
    out = tmp_path / "dumps"
    old = seed_old(out, "p")
    spec = prov(fp, "pagenumber", "fea3", auth="none", pagination="page_number", page_size=2,
                params={"n": "6", "ignorepage": "1"})
    report, _, _ = run(tmp_path, {"p": spec}, env={})
    r = one(report, "p")
    assert r.status == "failed" and "page 2 repeats page 1" in r.reason and "'page' ignored" in r.reason
    assert old.read_bytes() == OLD_DUMP


@pytest.mark.parametrize("current", ["notfound", "gone"])
def test_legacy_url_is_tried_on_404_410_and_reported(fp, tmp_path, current):
    spec = prov(fp, current, f"moved-{current}",
                legacy_urls=[fp.url(f"/notfound/old0-{current}/v1/models"), fp.url(f"/ok/old1-{current}/v1/models")])
    report, out, logs = run(tmp_path, {"novita": spec})
    r = one(report, "novita")
    status = 404 if current == "notfound" else 410
    assert r.status == "ok" and r.models_after == 3
    assert r.legacy_url == fp.url(f"/ok/old1-{current}/v1/models")
    assert r.fallback == f"legacy URL used: current one answered HTTP {status}"
    # the report says so, in JSON and in text
    doc = report.to_dict()
    assert doc["fallbacks"] == {"novita": r.legacy_url}
    assert doc["providers"][0]["fallback"] == r.fallback and doc["providers"][0]["legacy_url"] == r.legacy_url
    assert f"{r.fallback}; changed" in report.render_text()
    assert f"| {r.fallback}; changed |" in report.render_markdown()
    assert json.loads((out / "models_novita.json").read_bytes())["data"][0]["id"] == f"old1-{current}-m0"
    assert any("trying legacy URL" in line for line in logs)


def test_legacy_urls_gone_too_and_other_errors_do_not_fall_back(fp, tmp_path):
    report, _, _ = run(tmp_path, {
        "gone": prov(fp, "gone", "lg1", legacy_urls=[fp.url("/notfound/lg1old/v1/models")]),
        "denied": prov(fp, "unauthorized", "lg2", legacy_urls=[fp.url("/ok/lg2old/v1/models")]),
        "none": prov(fp, "notfound", "lg3"),
    })
    g = one(report, "gone")
    assert g.status == "failed" and "HTTP 410" in g.reason and "legacy URL(s) gone too" in g.reason
    assert one(report, "denied").status == "failed" and fp.count("ok", "lg2old") == 0  # 401 is not "moved"
    n = one(report, "none")
    assert n.status == "failed" and "HTTP 404" in n.reason and n.legacy_url is None


def test_registry_rejects_bad_legacy_and_page_settings(tmp_path):
    for text, needle in [
        ("[providers.x]\nlist.url = 'https://a/m'\nlist.auth = 'none'\nlist.legacy_urls = ['ftp://b']\n", "legacy"),
        ("[providers.x]\nlist.url = 'https://a/m'\nlist.auth = 'none'\nlist.legacy_urls = ['https://a/m']\n",
         "repeat"),
        ("[providers.x]\nlist.url = 'https://a/m'\nlist.auth = 'none'\nlist.page_param = 'p'\n", "page_number"),
        ("[providers.x]\nlist.url = 'https://a/m'\nlist.auth = 'none'\nlist.pagination = 'pages'\n", "pagination"),
    ]:
        f = tmp_path / "r.toml"
        f.write_text(text)
        with pytest.raises(RegistryError) as ei:
            load_registry(f)
        assert str(f) in str(ei.value) and needle in str(ei.value), text


# -- a keyless refresh of the packaged registry covers every public list --------------------------

_STAND_IN = {"array": "array", "keyed": "keyed"}
_PAGED = {"page_number": "pagenumber", "has_more": "anthropic", "page_token": "pagetoken"}


def test_keyless_fetch_of_the_packaged_plan_covers_every_public_list(fp, tmp_path):
    """The real fetch plan of knollm/data/providers.toml, every list URL (and legacy URL)
    rewritten to a loopback stand-in of its shape and pagination, no keys in the environment:
    every public list is fetched, every keyed one is skipped naming its variable."""
    plan = load_registry()
    specs = {}
    for pid, spec in plan.providers.items():
        behaviour = _STAND_IN.get(spec.shape) or _PAGED.get(spec.pagination, "ok")
        query = {"ok": "open=1&n=4", "pagenumber": "n=5&maxper=2"}.get(behaviour, "n=4")  # pages of 2, as capped
        specs[pid] = spec.model_copy(update={
            "url": fp.url(f"/{behaviour}/kl-{pid}/v1/models?{query}"),
            "legacy_urls": [fp.url(f"/ok/kl-legacy-{pid}/v1/models?open=1") for _ in spec.legacy_urls],
        })
    rewritten = plan.model_copy(update={"providers": specs})
    before = len(fp.requests)
    report = fetch_all(rewritten, tmp_path, env={}, seed=1)
    got = {r.id: r for r in report.results}
    public = {pid for pid, s in specs.items() if s.enabled and not s.manual and s.auth == "none"}
    keyed = {pid for pid, s in specs.items() if s.enabled and not s.manual and s.auth != "none"}
    # the public lists are public in the registry; the two unverified ones stay keyed
    assert {"chutes", "poe", "featherless", "openrouter", "vercel", "pollinations"} <= public
    assert {"friendli", "atlascloud", "openai", "anthropic"} <= keyed
    for pid in public:
        assert got[pid].status == "ok" and got[pid].models_after, (pid, got[pid].reason)
    for pid in keyed:
        r = got[pid]
        assert r.status == "skipped" and r.reason.startswith("no API key (set "), pid
        assert all(v in r.reason for v in specs[pid].key_env), pid
    assert (got["featherless"].pages, got["featherless"].models_after) == (3, 5)  # paged by page number
    assert got["featherless_best"].status == "skipped" and "hand-curated" in got["featherless_best"].reason
    assert "lmstudio" not in got  # a local server: only with --only
    assert report.exit_code == 0
    sent = fp.requests[before:]
    assert sent and not any("Authorization" in q["headers"] or "x-api-key" in q["headers"] for q in sent)
    assert not any("/kl-" + pid + "/" in q["path"] for q in sent for pid in keyed)


def test_cli_default_out_is_work_dir_not_knollm_dumps(fp, tmp_path, capsys, monkeypatch):
    """KNOLLM_DUMPS may name a shared read-only copy: fetch writes to work/model_catalog unless --out."""
    shared = tmp_path / "shared-readonly"
    shared.mkdir()
    monkeypatch.setenv("KNOLLM_DUMPS", str(shared))
    monkeypatch.setenv("FAKE_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    reg = write_registry(tmp_path / "providers.toml", {"acme": prov(fp, "ok", "out1"),
                                                       "denied": prov(fp, "unauthorized", "out2")})
    rc = main(["fetch", "--providers", str(reg), "--no-history"])
    out = capsys.readouterr().out
    assert rc == 1
    assert (tmp_path / "work" / "model_catalog" / "models_acme.json").is_file()
    assert not list(shared.iterdir())
    # the models column is the count now in the dump; a failure's reason is printed in full
    row = next(line for line in out.splitlines() if line.startswith("acme "))
    assert row.split()[1:3] == ["ok", "3"]
    import json as _json

    rc = main(["fetch", "--providers", str(reg), "--no-history", "--only", "denied", "--json"])
    reason = _json.loads(capsys.readouterr().out)["providers"][0]["reason"]
    rc = main(["fetch", "--providers", str(reg), "--no-history", "--only", "denied"])
    text = capsys.readouterr().out
    assert reason and reason in text.replace("\n  ", " ") or reason in text
