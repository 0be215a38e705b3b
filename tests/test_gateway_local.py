"""A gateway without keys answers only this machine's programs: a web page on another
site (a cross-site POST the page cannot even read the answer of) or a DNS-rebinding page
(a site whose name resolves to 127.0.0.1) must not spend the user's provider keys
through it. Raw requests with forged ``Host``/``Origin`` headers, and a real Debian
chromium loading an attacking page."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from tests.support.gateway_proc import GatewayProcess
from tests.support.http_static import serve_static
from tests.test_gateway import GROQ, gateway_env
from tests.test_gateway_keys import cli, new_key, servers  # noqa: F401 - (the module's upstreams fixture)

MSG = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": GROQ, "messages": MSG, "max_tokens": 10})


def raw(port: int, method: str, path: str, headers: dict[str, str], body: str | None = None) -> tuple[int, dict]:
    """One request with exactly these headers (``Host`` included: http.client adds none)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    data = body.encode() if body is not None else None
    if data is not None:
        conn.putheader("content-length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    text = r.read()
    conn.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, {"text": text.decode(errors="replace")}


def test_a_keyless_gateway_refuses_other_hosts_and_web_origins(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    groq = servers["groq"]
    with GatewayProcess(env) as gw:
        p = gw.port
        ok = [{"host": f"127.0.0.1:{p}"}, {"host": f"localhost:{p}"}, {"host": f"[::1]:{p}"}, {"host": f"0.0.0.0:{p}"},
              {"host": f"127.0.0.1:{p}", "origin": "http://localhost:3000"},  # a local web app
              {"host": f"127.0.0.1:{p}", "origin": "vscode-webview://4f2a"}]  # an editor's panel
        refused = [{"host": f"evil.example:{p}"},  # DNS rebinding: the page's own name
                   {"host": f"127.0.0.1.nip.io:{p}"}, {"host": f"localhost.evil.example:{p}"},
                   {"host": f"127.0.0.1:{p}", "origin": "https://evil.example"},  # a cross-site POST
                   {"host": f"127.0.0.1:{p}", "origin": "null"}]  # a sandboxed iframe, a file
        for h in ok:
            before = len(groq.requests)
            status, body = raw(p, "POST", "/v1/chat/completions", {**h, "content-type": "application/json"}, BODY)
            assert status == 200 and body["choices"], (h, body)
            assert len(groq.requests) == before + 1
        before = len(groq.requests)
        for h in refused:
            for method, path, body in (("POST", "/v1/chat/completions", BODY), ("POST", "/v1/messages", BODY),
                                       ("POST", "/v1/embeddings", json.dumps({"model": GROQ, "input": "x"})),
                                       ("GET", "/v1/models", None), ("GET", "/metrics", None)):
                status, got = raw(p, method, path, {**h, "content-type": "text/plain"}, body)
                assert status == 403, (h, path, got)
                err = got["error"]
                assert err["type"] == "permission_error" and err.get("code", "not_local") == "not_local", got
                assert "knollm serve keys create" in err["message"]
        assert len(groq.requests) == before  # nothing reached the provider
        status, got = raw(p, "GET", "/health", {"host": f"evil.example:{p}"})  # says nothing worth hiding
        assert status == 200 and got["keys_required"] is False
    ledger = cli(env, "usage", "--json")
    assert ledger.returncode == 0 and sum(r["calls"] for r in json.loads(ledger.stdout)) == len(ok)


def test_with_a_gateway_key_any_host_and_origin_may_call(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    key = new_key(env, "web")
    with GatewayProcess(env) as gw:
        status, body = raw(gw.port, "POST", "/v1/chat/completions",
                           {"host": "gateway.example.com", "origin": "https://app.example.com",
                            "authorization": "Bearer " + key, "content-type": "application/json"}, BODY)
        assert status == 200 and body["choices"]
        status, body = raw(gw.port, "POST", "/v1/chat/completions",
                           {"host": "gateway.example.com", "content-type": "application/json"}, BODY)
        assert status == 401  # the key, not the host, is what is checked


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_a_web_page_in_chromium_cannot_spend_through_a_keyless_gateway(servers, tmp_path):
    """A page on ``evil.test`` (mapped to 127.0.0.1 in chromium, as a DNS-rebinding attacker's
    name resolves) POSTs to the gateway with ``mode: "no-cors"`` and ``text/plain``: a
    request the browser sends without a preflight. The gateway refuses it and calls no
    provider. The same page served from 127.0.0.1 gets through: the page's origin, not the
    request, is what differs."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    env = gateway_env(tmp_path, servers)
    site = tmp_path / "site"
    site.mkdir()
    (site / "attack.html").write_text(
        "<!doctype html><title>waiting</title><script>\n"
        "const gw = new URLSearchParams(location.search).get('gw');\n"
        f"fetch(gw + '/v1/chat/completions', {{method: 'POST', mode: 'no-cors', "
        f"headers: {{'content-type': 'text/plain'}}, body: {json.dumps(BODY)}}})\n"
        "  .then(() => { document.title = 'sent'; }, (e) => { document.title = 'failed ' + e; });\n"
        "</script>")
    groq = servers["groq"]
    with GatewayProcess(env) as gw, serve_static(site) as base, sync_api.sync_playwright() as pw:
        port = base.rsplit(":", 1)[1].strip("/")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--host-resolver-rules=MAP evil.test 127.0.0.1"])
        try:
            results = {}
            for origin in (f"http://evil.test:{port}", f"http://127.0.0.1:{port}"):
                before = len(groq.requests)
                page = browser.new_page()
                page.goto(f"{origin}/attack.html?gw=http://127.0.0.1:{gw.port}")
                page.wait_for_function("document.title !== 'waiting'", timeout=20_000)
                assert page.title() == "sent"  # (an opaque answer either way: the page reads nothing)
                page.close()
                deadline = time.monotonic() + 5
                while len(groq.requests) == before and time.monotonic() < deadline and "127.0.0.1" in origin:
                    time.sleep(0.05)
                results[origin.split(":")[1].strip("/")] = len(groq.requests) - before
        finally:
            browser.close()
        metrics = raw(gw.port, "GET", "/metrics", {"host": f"127.0.0.1:{gw.port}"})[1]["text"]
    assert results == {"evil.test": 0, "127.0.0.1": 1}
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="403"} 1' in metrics


def test_the_loopback_answer_is_remembered_for_at_most_256_hosts():
    """Each request of a keyless gateway asks whether its ``Host`` is a loopback name; the
    answers are remembered, but a caller sending endless distinct names grows nothing past
    256 entries, and every answer stays right."""
    from knollm.gateway import app

    app._LOOPBACK_SEEN.clear()
    for i in range(1000):
        assert app._loopback_name(f"evil{i}.example") is False
    assert len(app._LOOPBACK_SEEN) == 256
    for host in ("127.0.0.1", "localhost", "api.localhost", "::1", "[::1]", "0.0.0.0", "127.9.9.9"):
        assert app._loopback_name(host) is True, host
    for host in ("evil5.example", "evil999.example", "127.0.0.1.nip.io", "localhost.evil.example", "10.0.0.1"):
        assert app._loopback_name(host) is False, host
    assert len(app._LOOPBACK_SEEN) == 256


def test_the_chat_handlers_header_view_keeps_the_first_value_and_decodes_on_read():
    """The chat routes read headers through ``_Headers``: a repeated header's first value (the
    loopback check reads the first ``Host``, as before), latin-1 values, absent ones None."""
    from knollm.gateway.app import _Headers

    h = _Headers([(b"host", b"evil.example"), (b"x-note", b"caf\xe9"), (b"host", b"127.0.0.1:4000"),
                  (b"content-length", b"12")])
    assert h.get("host") == "evil.example"
    assert h.get("x-note") == "café"
    assert h.get("content-length") == "12"
    assert h.get("origin") is None and h.get("origin", "") == ""
    assert "host" in h and "origin" not in h and 5 not in h


def test_a_first_host_header_that_is_not_local_is_refused(servers, tmp_path):
    """Two ``Host`` lines, a foreign one first: refused (403) like a single foreign one."""
    env = gateway_env(tmp_path, servers)
    before = len(servers["groq"].requests)
    with GatewayProcess(env) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        conn.putrequest("POST", "/v1/chat/completions", skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", "evil.example")
        conn.putheader("host", f"127.0.0.1:{gw.port}")
        conn.putheader("content-type", "application/json")
        conn.putheader("content-length", str(len(BODY)))
        conn.endheaders(BODY.encode())
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        assert r.status == 403 and body["error"]["code"] == "not_local", body
        assert len(servers["groq"].requests) == before
