"""Gateway keys end to end (``knollm serve keys`` + a running ``knollm serve``): the
loopback rule, auth, allowed models, RPM, budgets, revocation, body limits; and two
gateway replicas sharing one PostgreSQL store without overspending a budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.gateway_proc import ROOT, GatewayProcess, free_port
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import COST, GROQ, TOGETHER, gateway_env, leave_mid_stream

MSG = [{"role": "user", "content": "hi"}]


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "knollm", *args], env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def new_key(env: dict, name: str, *opts: str) -> str:
    r = cli(env, "serve", "keys", "create", name, *opts, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["key"]


def call(base_url: str, key: str | None, model: str = GROQ, **extra) -> tuple[int, dict, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = "Bearer " + key
    req = urllib.request.Request(base_url + "/chat/completions", method="POST", headers=headers,
                                 data=json.dumps({"model": model, "messages": MSG, **extra}).encode())
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def count(base_url: str, key: str, model: str) -> tuple[int, dict]:
    """``POST /v1/messages/count_tokens`` as Claude Code sends it (the key in ``x-api-key``)."""
    req = urllib.request.Request(base_url + "/messages/count_tokens?beta=true", method="POST",
                                 headers={"content-type": "application/json", "x-api-key": key,
                                          "anthropic-version": "2023-06-01"},
                                 data=json.dumps({"model": model, "messages": MSG}).encode())
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def servers():
    srvs = {"groq": ProviderServer("groq").start(), "togetherai": ProviderServer("together").start()}
    yield srvs
    for s in srvs.values():
        s.stop()


def test_non_loopback_bind_needs_a_key(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    r = subprocess.run([sys.executable, "-m", "knollm", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                       env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "refusing to listen on '0.0.0.0' without gateway keys" in r.stderr
    lan = new_key(env, "lan")
    with GatewayProcess(env, host="0.0.0.0") as gw:  # now it starts, and every request needs the key
        status, _, body = call(gw.base_url, None)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert call(gw.base_url, lan)[0] == 200
        # revoking the last key locks a gateway open to the network; it does not open it
        assert cli(env, "serve", "keys", "revoke", "lan").returncode == 0
        deadline = time.time() + 15
        while call(gw.base_url, lan)[0] == 200 and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(5.5)  # past the gateway's key cache: it has asked the store again
        assert [call(gw.base_url, k)[0] for k in (lan, None)] == [401, 401]
        with urllib.request.urlopen(gw.url + "/health") as r:
            assert json.loads(r.read())["keys_required"] is True


def test_keys_auth_allowed_models_rpm_revoke_and_listing(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    team = new_key(env, "team", "--allow", "groq/*", "--rpm", "3")
    other = new_key(env, "other")
    db = (tmp_path / "knollm.db").read_bytes()
    assert team.encode() not in db and other.encode() not in db  # stored hashed
    with GatewayProcess(env) as gw:
        assert call(gw.base_url, None)[0] == 401
        status, _, body = call(gw.base_url, "kn-not-a-key")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, _, body = call(gw.base_url, team, TOGETHER)
        assert status == 403 and body["error"]["type"] == "permission_error"
        status, _, body = call(gw.base_url, team, f"{GROQ},{TOGETHER}")  # every link of a chain is checked
        assert status == 403
        status, body = count(gw.base_url, team, TOGETHER)  # token counts: the key's models, and free
        assert status == 403 and body["error"]["type"] == "permission_error"
        if time.time() % 60 > 50:  # keep the 4 calls in one RPM window
            time.sleep(61 - time.time() % 60)
        assert [count(gw.base_url, team, GROQ)[0] for _ in range(5)] == [200] * 5
        # the 403s and the token counts above counted nothing; 1 + 2 more calls fill the window of 3
        results = [call(gw.base_url, team) for _ in range(4)]
        assert [r[0] for r in results] == [200, 200, 200, 429]
        assert results[0][1]["x-knollm-provider"] == "groq"
        assert results[3][2]["error"]["type"] == "rate_limit_error" and int(results[3][1]["retry-after"]) >= 1
        # a key's allowed models filter /v1/models
        req = urllib.request.Request(gw.base_url + "/models", headers={"authorization": "Bearer " + team})
        with urllib.request.urlopen(req) as r:
            ids = {m["id"] for m in json.loads(r.read())["data"]}
        assert GROQ in ids and TOGETHER not in ids
        for mid, status in ((GROQ, 200), (TOGETHER, 404), (GROQ, 401)):  # and GET /v1/models/{id}, the same
            req = urllib.request.Request(gw.base_url + "/models/" + urllib.parse.quote(mid, safe=""),
                                         headers={"authorization": "Bearer " + (team if status != 401 else "kn-no")})
            try:
                with urllib.request.urlopen(req) as r:
                    got = (r.status, json.loads(r.read())["id"])
            except urllib.error.HTTPError as e:
                got = (e.code, json.loads(e.read())["error"]["type"])
            assert got == (status, {200: mid, 404: "not_found_error", 401: "authentication_error"}[status])
        assert call(gw.base_url, other, TOGETHER)[0] == 200
        assert cli(env, "serve", "keys", "revoke", "other").returncode == 0
        deadline = time.time() + 15
        while call(gw.base_url, other, TOGETHER)[0] == 200 and time.time() < deadline:
            time.sleep(0.5)
        assert call(gw.base_url, other, TOGETHER)[0] == 401
    listing = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)
    assert {k["name"]: k["status"] for k in listing} == {"team": "active", "other": "revoked"}
    assert all("key" not in k and "hash" not in k for k in listing)
    assert team[:10] in {k["prefix"] for k in listing}


def test_key_budget_and_body_limit(servers, tmp_path):
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_MAX_BODY_BYTES="4096")
    key = new_key(env, "capped", "--budget", "0.001")
    with GatewayProcess(env) as gw:
        statuses = []
        for _ in range(12):
            status, headers, body = call(gw.base_url, key, max_tokens=100)
            statuses.append(status)
            if status != 200:
                assert status == 429 and body["error"]["type"] == "insufficient_quota"
                assert headers["x-should-retry"] == "false" and "renews" not in body["error"]["message"]
                break
        ok = statuses.count(200)
        assert ok >= 1 and statuses[-1] == 429
        # chunked body (no Content-Length) over the limit
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        big = json.dumps({"model": GROQ, "messages": [{"role": "user", "content": "x" * 8000}]}).encode()
        conn.request("POST", "/v1/chat/completions", body=iter([big[:3000], big[3000:]]),
                     headers={"authorization": "Bearer " + key, "content-type": "application/json"},
                     encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["spent_usd"] == pytest.approx(ok * COST["groq"]) and k["spent_usd"] <= 0.001
    assert k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


def test_a_daily_key_budget_refusal_says_when_it_renews_and_the_sdk_does_not_retry_it(servers, tmp_path):
    """A key whose day's budget is spent gets 429 naming when the budget renews (the next
    UTC midnight), with ``x-should-retry: false``: the openai SDK (which retries a 429
    twice by default) sends one request, not three. ``keys update`` raises the budget of
    the same key, and the next call goes through."""
    import openai

    env = gateway_env(tmp_path, servers)
    token = new_key(env, "daily", "--budget", "0.0005", "--budget-period", "day")
    day = int(time.time() // 86400)
    with GatewayProcess(env) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=token)  # default retries
        served = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(5):
                client.chat.completions.create(model=GROQ, messages=MSG, max_tokens=100)
                served += 1
        assert served == 2  # 2 x $0.00018 spent; a third call's worst case (~$0.0002) does not fit
        err = refused.value
        assert err.code == "insufficient_quota" and err.response.headers["x-should-retry"] == "false"
        renews = time.strftime("%Y-%m-%dT00:00Z", time.gmtime((day + 1) * 86400))
        assert f"budget $0.0005/day, spent $0.00036; it renews at {renews}" in err.message
        scrape = urllib.request.Request(gw.base_url[:-3] + "/metrics", headers={"authorization": "Bearer " + token})
        metrics = urllib.request.urlopen(scrape, timeout=10).read().decode()  # a key spent out may still scrape
        assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="429"} 1' in metrics
        r = cli(env, "serve", "keys", "update", "daily", "--budget", "1")
        assert r.returncode == 0, r.stderr
        assert "budget $1/day" in r.stderr
        client.chat.completions.create(model=GROQ, messages=MSG, max_tokens=100)  # the same key, more room
    (k,) = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)
    assert (k["budget_usd"], k["budget_period"]) == (1.0, "day")
    assert k["spent_usd"] == pytest.approx(3 * COST["groq"])
    if int(time.time() // 86400) == day:  # (unless the test ran across UTC midnight)
        assert k["spent_period_usd"] == k["spent_day_usd"] == pytest.approx(k["spent_usd"])


def test_an_expired_key_is_told_so_and_an_extended_one_works_again(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    short = new_key(env, "short", "--expires", "12s")  # (room for a loaded machine to start the gateway)
    new_key(env, "other")  # (keys stay required once "short" expires)
    with GatewayProcess(env) as gw:
        assert call(gw.base_url, short)[0] == 200
        time.sleep(max(0.0, json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]["expires_at"]
                       - time.time()) + 0.1)
        status, _, body = call(gw.base_url, short)
        assert status == 401 and body["error"]["code"] == "expired_api_key"
        assert body["error"]["message"].startswith("gateway key 'short' expired at 20")
        assert short not in json.dumps(body)
        listing = {k["name"]: k["status"] for k in json.loads(cli(env, "serve", "keys", "list", "--json").stdout)}
        assert listing == {"short": "expired", "other": "active"}
        assert cli(env, "serve", "keys", "update", "short", "--expires", "1h").returncode == 0
        assert call(gw.base_url, short)[0] == 200  # at once: a key cached as expired is looked up again


def test_a_tokens_per_minute_limit_refuses_once_the_minute_is_used_up(servers, tmp_path):
    """Every upstream answer here uses 150 tokens (120 in, 30 out). A key with 200 tokens
    per minute: the first call, the second (150 used, under 200), then 429 with
    ``retry-after`` up to the next minute. Tokens count when a call ends, from the usage
    the provider reported, in the store the replicas share."""
    env = gateway_env(tmp_path, servers)
    key = new_key(env, "tpm", "--tpm", "200")
    with GatewayProcess(env) as gw:
        if time.time() % 60 > 50:  # keep the calls in one minute
            time.sleep(61 - time.time() % 60)
        results = [call(gw.base_url, key) for _ in range(3)]
        assert [r[0] for r in results] == [200, 200, 429]
        status, headers, body = results[2]
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "tokens_per_minute_exceeded"
        assert "used 300 of its 200 tokens per minute" in body["error"]["message"]
        assert 1 <= int(headers["retry-after"]) <= 60
        assert call(gw.base_url, new_key(env, "free"))[0] == 200  # other keys are not limited by it
    from knollm.gateway.keys import KeyStore

    store = KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}")  # the gateway's store
    assert store.tokens_used(store.get("tpm").id) in (300, 0)  # (0 if the minute has turned since)


def test_request_time_limit(servers, tmp_path):
    """Past the gateway's time limit: 504 ``timeout`` with ``x-should-retry: false``. The
    call may have run at the provider (and be billed), so the openai SDK, which retries a
    5xx twice by default, sends it once: the provider sees one request, not three."""
    import openai

    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_TIMEOUT_S="1")
    servers["groq"].default = "hang"
    servers["groq"].hang_s = 3.0
    try:
        with GatewayProcess(env) as gw:
            t = time.monotonic()
            status, headers, body = call(gw.base_url, None)
            assert status == 504 and body["error"]["type"] == "timeout"
            assert headers["x-should-retry"] == "false"
            assert time.monotonic() - t < 2.5
            sent = len(servers["groq"].requests)
            sdk = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=2)
            with pytest.raises(openai.InternalServerError) as e:
                sdk.chat.completions.create(model=GROQ, messages=MSG)
            assert e.value.status_code == 504 and len(servers["groq"].requests) == sent + 1
            status, _, body = call(gw.base_url, None, TOGETHER)  # the gateway still serves
            assert status == 200
    finally:
        servers["groq"].default = "ok"


def _raw(port: int, pieces: list[bytes], gap: float = 0.0, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``pieces`` on one connection (``gap`` seconds apart), then read until the gateway
    closes it: what it sent, and how long after the last piece it closed."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        for i, p in enumerate(pieces):
            if i and gap:
                time.sleep(gap)
            sock.sendall(p)
        t, got = time.monotonic(), b""
        while True:
            data = sock.recv(65536)
            if not data:
                return got, time.monotonic() - t
            got += data


def test_a_request_sent_too_slowly_is_refused_and_its_connection_closed(servers, tmp_path):
    """``KNOLLM_GATEWAY_READ_TIMEOUT_S=1``: a request whose head or body is not wholly sent
    within a second (at most two late) gets 408 ``request_timeout`` and its connection is closed; a connection
    that sends nothing is closed. uvicorn alone keeps each for ever (a byte at a time holds
    a connection and, once the head is in, a task). Nothing is called upstream; a request
    sent in pieces within the limit, and an answer that takes longer than it, are served."""
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_READ_TIMEOUT_S="1")
    body = json.dumps({"model": GROQ, "messages": MSG}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    with GatewayProcess(env) as gw:
        before = len(servers["groq"].requests)
        for pieces in ([head + body[:10]], [head[:30]]):  # the body cut short; the head cut short
            got, after = _raw(gw.port, pieces)
            assert got.startswith(b"HTTP/1.1 408 ") and after < 4, got[:200]  # (1 s, at most 2 s late)
            error = json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]
            assert error["code"] == "request_timeout" and "within 1 s" in error["message"]
        assert _raw(gw.port, []) [0] == b""  # nothing sent: closed, nothing answered
        assert len(servers["groq"].requests) == before
        closing = head.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")  # (read to the close: no keep-alive wait)
        got, _ = _raw(gw.port, [closing[:40], closing[40:], body[:20], body[20:]], gap=0.15)  # slow, within the limit
        assert got.startswith(b"HTTP/1.1 200 ") and b"Hello from groq" in got
        servers["groq"].latency = 1.5  # an answer slower than the read limit is not cut by it
        try:
            status, _, answer = call(gw.base_url, None, GROQ, stream=False)
            assert status == 200 and answer["choices"][0]["message"]["content"].startswith("Hello from groq")
        finally:
            servers["groq"].latency = 0.0
        with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="408"} 1' in text


def test_the_read_limit_never_cuts_an_answer_being_made(servers, tmp_path):
    """A client sends a whole request and the start of a next one (pipelined) in one write;
    the provider takes 2.5 s, past the 1 s read limit: the first answer arrives whole (the
    limit waits for it), then the unfinished second request gets its 408."""
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_READ_TIMEOUT_S="1")
    body = json.dumps({"model": GROQ, "messages": MSG}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    servers["groq"].latency = 2.5
    try:
        with GatewayProcess(env) as gw:
            got, _ = _raw(gw.port, [head + body + head[:40]], wait=15)
    finally:
        servers["groq"].latency = 0.0
    first, _, rest = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and b"Hello from groq" in rest, got[:300]
    assert b"HTTP/1.1 408 " in rest and rest.rstrip().endswith(b"}")


def test_a_request_head_over_the_limit_is_refused_before_it_takes_the_memory(servers, tmp_path):
    """``KNOLLM_GATEWAY_MAX_HEAD_BYTES=2048``: a head of 4 KiB (one long header, unfinished)
    gets 431 ``headers_too_large`` and a closed connection; one of 1.5 KiB is served. With
    the default limit (64 KiB), a client sending 40 MB of one header is cut off without
    the gateway's memory growing: httptools buffers a head however long it is, and before
    this limit the gateway's RSS grew by the header's size (50 MB for 50 MB)."""
    import socket

    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_MAX_HEAD_BYTES="2048")
    with GatewayProcess(env) as gw:
        got, _ = _raw(gw.port, [b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-long: " + b"a" * 4096])
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        error = json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "headers_too_large" and "over 2048 bytes" in error["message"]
        got, _ = _raw(gw.port, [b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nx-long: "
                                + b"a" * 1536 + b"\r\n\r\n"])
        assert got.startswith(b"HTTP/1.1 200 "), got[:200]
    with GatewayProcess(gateway_env(tmp_path, servers)) as gw:
        before = gw.rss_kb()
        sent = 0
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-long: ")
                while sent < 40_000_000:
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:  # (closed by the gateway: reset, as the client was still sending)
                pass
        assert sent < 40_000_000 and gw.rss_kb() - before < 10_000
        assert call(gw.base_url, None)[0] == 200


def test_connections_past_the_limit_are_refused_with_503_until_one_closes(servers, tmp_path):
    """``KNOLLM_GATEWAY_MAX_CONNECTIONS=3``: three connections held open (one idle, one
    mid-head, one after a keep-alive answer), a fourth gets an OpenAI-shaped 503
    ``too_many_connections`` with ``retry-after`` and is closed before anything is read
    (its provider is never called); once one of the three closes, a new connection is
    served, and ``/metrics`` counts the refusal. uvicorn alone accepts connections until
    the worker runs out of files (then every new caller fails, with no answer at all)."""
    import socket

    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_MAX_CONNECTIONS="3")
    body = json.dumps({"model": GROQ, "messages": MSG}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with GatewayProcess(env) as gw:
        before = len(servers["groq"].requests)
        held = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(3)]
        try:
            held[1].sendall(request[:30])  # a head on its way
            held[2].sendall(request)  # answered, kept alive
            answer = held[2].recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            got, _ = _raw(gw.port, [request])
            assert got.startswith(b"HTTP/1.1 503 "), got[:200]
            head, _, rest = got.partition(b"\r\n\r\n")
            assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
            error = json.loads(rest)["error"]
            assert error["code"] == "too_many_connections" and error["type"] == "server_error"
            assert "3 connections" in error["message"] and "KNOLLM_GATEWAY_MAX_CONNECTIONS" in error["message"]
            assert len(servers["groq"].requests) == before + 1  # (held[2]'s only)
        finally:
            held[0].close()
        deadline = time.monotonic() + 10
        while True:  # (the worker sees the close on its next loop turn)
            got, _ = _raw(gw.port, [request.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)])
            if got.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got.startswith(b"HTTP/1.1 200 ") and b"Hello from groq" in got, got[:200]
        for sock in held[1:]:
            sock.close()
        time.sleep(0.2)
        with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert "knollm_gateway_refused_connections_total 1" in text.splitlines()


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_time(servers, tmp_path):
    """``KNOLLM_GATEWAY_KEEP_ALIVE_S=1``: a connection answered and left idle is closed
    about a second later (the connection's once-a-second look closes it: no timer is made
    for every answer, as uvicorn's own keep-alive makes one); used again within it, it
    serves the next request, and a connection busy with a slow answer is not cut."""
    import socket

    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_KEEP_ALIVE_S="1")
    body = json.dumps({"model": GROQ, "messages": MSG}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def answer(sock: socket.socket) -> bytes:
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            assert data, got
            got += data
        return got

    with GatewayProcess(env) as gw:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(request)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.4)
            sock.sendall(request)  # within the keep-alive time: the same connection serves it
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            servers["groq"].latency = 2.5  # an answer slower than the keep-alive time is not cut
            try:
                sock.sendall(request)
                assert answer(sock).startswith(b"HTTP/1.1 200 ")
            finally:
                servers["groq"].latency = 0.0
            t = time.monotonic()
            assert sock.recv(65536) == b""  # idle: closed by the gateway
            assert 0.8 < time.monotonic() - t < 3.5


@pytest.mark.parametrize("name, value, message", [
    ("KNOLLM_GATEWAY_READ_TIMEOUT_S", "soon", "KNOLLM_GATEWAY_READ_TIMEOUT_S must be a positive number of seconds"),
    ("KNOLLM_GATEWAY_MAX_HEAD_BYTES", "64k", "KNOLLM_GATEWAY_MAX_HEAD_BYTES must be a number of bytes"),
    ("KNOLLM_GATEWAY_KEEP_ALIVE_S", "-1", "KNOLLM_GATEWAY_KEEP_ALIVE_S must be a positive number of seconds"),
    ("KNOLLM_GATEWAY_MAX_CONNECTIONS", "many", "KNOLLM_GATEWAY_MAX_CONNECTIONS must be a whole number"),
    ("KNOLLM_GATEWAY_SHUTDOWN_S", "0", "KNOLLM_GATEWAY_SHUTDOWN_S must be a positive number of seconds"),
    ("KNOLLM_GATEWAY_STREAM_KEEPALIVE_S", "-5", "KNOLLM_GATEWAY_STREAM_KEEPALIVE_S must be a number of seconds"),
])
def test_a_bad_connection_setting_is_refused_at_startup(tmp_path, name, value, message):
    r = cli({"KNOLLM_HOME": str(tmp_path), name: value, "PATH": "/usr/bin:/bin"}, "serve", "--port", str(free_port()))
    assert r.returncode != 0 and message in r.stderr


@pytest.mark.parametrize("httptools", [True, False])
def test_serve_bounds_connections_with_either_http_protocol(tmp_path, monkeypatch, httptools):
    """``knollm serve`` hands uvicorn its settings: the keep-alive time, and a bound on
    connections either way: ``GatewayHTTP``'s own (httptools installed), else uvicorn's
    ``limit_concurrency`` for its h11 protocol (a plain-text 503 past it). The shutdown
    time likewise: ``GatewayHTTP`` cuts what is left at ``KNOLLM_GATEWAY_SHUTDOWN_S``
    itself, uvicorn's cancellation two seconds later being the backstop; under h11 uvicorn's
    cancellation is the cut."""
    import uvicorn

    from knollm.gateway import server

    got = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: got.update(kw, app=app))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))
    monkeypatch.setenv("KNOLLM_GATEWAY_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("KNOLLM_GATEWAY_KEEP_ALIVE_S", "75")
    monkeypatch.setenv("KNOLLM_GATEWAY_SHUTDOWN_S", "40")
    if not httptools:
        monkeypatch.setitem(sys.modules, "httptools", None)  # (import httptools raises ImportError)
    server.serve("127.0.0.1", free_port())
    assert got["app"] == "knollm.gateway.server:app_factory" and got["timeout_keep_alive"] == 75
    if httptools:
        assert got["http"] == "knollm.gateway.server:GatewayHTTP" and "limit_concurrency" not in got
        assert got["timeout_graceful_shutdown"] == 42
    else:
        assert got["http"] == "h11" and got["limit_concurrency"] == 7 and got["timeout_graceful_shutdown"] == 40


def test_request_time_limit_ends_a_stream_that_stalls_after_its_first_token(servers, tmp_path):
    """The limit covers the whole request, stream included: a stream whose upstream goes
    silent after the first token ends, within the limit, with a ``timeout`` error event
    (the client's own stall timeout is longer here); the gateway keeps serving."""
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_TIMEOUT_S="1")
    opts = json.loads(env["KNOLLM_GATEWAY_CLIENT_OPTIONS"])
    env["KNOLLM_GATEWAY_CLIENT_OPTIONS"] = json.dumps({**opts, "stall_timeout": 30})
    servers["groq"].faults("stall")
    servers["groq"].hang_s = 3.0
    try:
        with GatewayProcess(env) as gw:
            req = urllib.request.Request(gw.base_url + "/chat/completions", method="POST",
                                         headers={"content-type": "application/json"},
                                         data=json.dumps({"model": GROQ, "messages": MSG, "stream": True}).encode())
            t = time.monotonic()
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200
                events = [line[6:] for line in r.read().decode().splitlines() if line.startswith("data: ")]
            took = time.monotonic() - t
            assert json.loads(events[0])["choices"][0]["delta"]["content"]  # the first token came through
            err = json.loads(events[-1])["error"]
            assert err["type"] == "timeout" and took < 2.5
            status, _, body = call(gw.base_url, None, TOGETHER)
            assert status == 200
            metrics = urllib.request.urlopen(gw.base_url.replace("/v1", "/metrics"), timeout=10).read().decode()
            assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="504"} 1' in metrics
    finally:
        servers["groq"].script.clear()


def test_a_hold_left_by_a_killed_gateway_stops_counting_when_it_expires(servers, tmp_path):
    """A replica killed mid-call (SIGKILL: nothing runs after) leaves its hold on the key's
    budget. The other replica refuses a call that the dead hold leaves no room for, until
    the hold expires (the request time limit, 4 s, and as much again); then it serves."""
    import sqlite3
    import threading

    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_TIMEOUT_S="4")
    key = new_key(env, "crashy", "--budget", "0.15")  # a call below holds ~0.1 (50,000 tokens at $2/M)
    db = tmp_path / "knollm.db"

    def holds() -> list[tuple[float, float]]:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT amount, expires_at FROM gateway_key_holds").fetchall()

    servers["groq"].default = "hang"
    servers["groq"].hang_s = 10.0
    try:
        with GatewayProcess(env) as survivor:
            doomed = GatewayProcess(env).start()
            cut: list[BaseException] = []
            caller = threading.Thread(target=lambda: cut.append(pytest.raises(
                OSError, call, doomed.base_url, key, max_tokens=50_000).value))
            caller.start()
            deadline = time.monotonic() + 3
            while not holds() and time.monotonic() < deadline:
                time.sleep(0.01)
            doomed.proc.kill()  # mid-call: its hold is never settled
            doomed.proc.wait(10)
            caller.join(30)
            assert cut, "the call through the killed gateway did not break"
            ((amount, expires_at),) = holds()
            assert 0.09 < amount < 0.11
            listed = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
            assert listed["reserved_usd"] == pytest.approx(amount) and listed["spent_usd"] == 0
            servers["groq"].default = "ok"
            status, headers, body = call(survivor.base_url, key, max_tokens=50_000)
            assert time.time() < expires_at, "the survivor took too long to be asked"
            assert status == 429 and body["error"]["code"] == "insufficient_quota"
            # only a hold stands in the way: worth a retry (the SDKs retry a 429 with retry-after)
            assert headers.get("retry-after") == "1" and "x-should-retry" not in headers
            assert "held by calls in flight" in body["error"]["message"]
            time.sleep(max(0.0, expires_at - time.time()) + 0.2)
            status, _, body = call(survivor.base_url, key, max_tokens=50_000)
            assert status == 200, body
    finally:
        servers["groq"].default = "ok"
    listed = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert listed["spent_usd"] == pytest.approx(COST["groq"]) and listed["reserved_usd"] == 0
    assert holds() == []  # the expired hold was dropped, the served one settled


# --------------------------------------------------------------------------- 2 replicas, 1 PostgreSQL
def _burst(urls: list[str], key: str | None, n: int) -> list[tuple[int, dict]]:
    def one(i: int) -> tuple[int, dict]:
        status, _, body = call(urls[i % len(urls)], key, max_tokens=100)
        return status, body

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("which", ["gateway-key budget", "client budget"])
def test_two_replicas_share_one_postgres_budget(servers, tmp_path, postgres_server, which):
    import psycopg

    url = postgres_server.create_database("gw_" + uuid.uuid4().hex[:10])
    limit = 0.002
    opts = {"retries": 0, "breaker": {"failure_threshold": 1000}}
    if which == "client budget":
        opts["budgets"] = [{"limit_usd": limit, "period": "total", "provider": "groq"}]
    env = gateway_env(tmp_path, servers, KNOLLM_DATABASE_URL=url, KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps(opts))
    key = new_key(env, "shared", *(["--budget", str(limit)] if which == "gateway-key budget" else []))
    servers["groq"].latency = 0.05  # calls overlap, so reservations race
    try:
        with GatewayProcess(env) as a, GatewayProcess(env) as b:
            results = _burst([a.base_url, b.base_url], key, 40)
            with urllib.request.urlopen(a.url + "/health") as r:
                assert json.loads(r.read())["store"] == "postgres"
    finally:
        servers["groq"].latency = 0.0
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert ok and refused
    assert all(s == 429 and body["error"]["type"] == "insufficient_quota" for s, body in refused)
    with psycopg.connect(url) as con:
        rows = con.execute("SELECT provider, cost_usd FROM calls").fetchall()
        assert len(rows) == len(ok) and all(p == "groq" for p, _ in rows)  # one ledger for both replicas
        assert con.execute("SELECT DISTINCT tag FROM calls").fetchall() == [("key:shared",)]
        spent = sum(c for _, c in rows)
        assert spent == pytest.approx(len(ok) * COST["groq"]) and spent <= limit + 1e-12
        assert con.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
        if which == "gateway-key budget":
            k_spent, k_held = con.execute("SELECT spent_usd, reserved_usd FROM gateway_keys").fetchone()
            assert k_spent == pytest.approx(spent) and k_spent <= limit + 1e-12
            assert k_held == pytest.approx(0.0, abs=1e-12)
            assert con.execute("SELECT count(*) FROM gateway_key_holds").fetchone() == (0,)  # all settled


def test_a_postgres_failover_loses_no_call_and_no_ledger_row(servers, tmp_path, postgres_server):
    """Every session of the gateway's database ends (a restart, a failover) between two
    bursts of calls: the pooled connections are dead, and the store call that meets one
    drops them and runs again on a new one. Every call still answers 200, each once in
    the ledger, and the key's spend is the ledger's."""
    import psycopg

    url = postgres_server.create_database("fo_" + uuid.uuid4().hex[:10])
    env = gateway_env(tmp_path, servers, KNOLLM_DATABASE_URL=url, KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps(
        {"retries": 0, "budgets": [{"limit_usd": 10.0, "period": "day", "provider": "groq"}]}))
    key = new_key(env, "fo", "--budget", "10", "--rpm", "1000")
    with GatewayProcess(env, args=["--workers", "2"]) as gw:
        first = _burst([gw.base_url], key, 24)
        assert postgres_server.drop_connections(url) >= 2  # the workers' connections (and their threads')
        second = _burst([gw.base_url], key, 24)
    assert [s for s, _ in first + second] == [200] * 48, [b for s, b in first + second if s != 200][:2]
    with psycopg.connect(url) as con:
        rows = con.execute("SELECT request_id, cost_usd FROM calls").fetchall()
        assert len(rows) == 48 and len({r for r, _ in rows}) == 48
        spent, held = con.execute("SELECT spent_usd, reserved_usd FROM gateway_keys").fetchone()
        assert spent == pytest.approx(sum(c for _, c in rows)) == pytest.approx(48 * COST["groq"])
        assert held == 0 and con.execute("SELECT count(*) FROM gateway_key_holds").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM reservations").fetchone() == (0,)


def test_postgres_connections_per_gateway_process_are_bounded(servers, tmp_path, postgres_server):
    """64 concurrent calls with a budgeted key and a client budget run the stores from
    dozens of worker threads; the connections each process opens stay within its pools
    (``KNOLLM_DATABASE_POOL_SIZE`` for the keys' and for the ledger's): replicas times
    workers must fit under PostgreSQL's connection limit."""
    import psycopg

    url = postgres_server.create_database("cn_" + uuid.uuid4().hex[:10])
    env = gateway_env(tmp_path, servers, KNOLLM_DATABASE_URL=url, KNOLLM_DATABASE_POOL_SIZE="3",
                      KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps(
                          {"retries": 0, "budgets": [{"limit_usd": 100.0, "period": "day", "provider": "groq"}]}))
    key = new_key(env, "many", "--budget", "100", "--rpm", "100000")
    servers["groq"].latency = 0.05  # calls overlap
    try:
        with GatewayProcess(env) as gw:
            with ThreadPoolExecutor(64) as pool:
                statuses = list(pool.map(lambda _: call(gw.base_url, key)[0], range(256)))
            with psycopg.connect(postgres_server.url) as con:
                conns = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                    (url.rsplit("/", 1)[1],)).fetchone()[0]
    finally:
        servers["groq"].latency = 0.0
    assert statuses == [200] * 256
    assert 2 <= conns <= 2 * 3  # the key store's pool and the ledger's, 3 each (48 before the pools)
    with psycopg.connect(url) as con:
        assert con.execute("SELECT count(*) FROM calls").fetchone() == (256,)


def test_with_gateway_keys_metrics_need_one(servers, tmp_path):
    """What calls cost and the aliases callers sent are for the gateway's users: with keys,
    ``/metrics`` answers 401 without one (or with a revoked one) and the text with any
    active key (Prometheus' ``authorization``), not counted against its RPM; ``/health``
    stays open."""
    env = gateway_env(tmp_path, servers)
    token, other = new_key(env, "app"), new_key(env, "scraper", "--rpm", "1")
    with GatewayProcess(env) as gw:
        assert call(gw.base_url, token)[0] == 200

        def scrape(key: str | None) -> tuple[int, str]:
            req = urllib.request.Request(gw.url + "/metrics", headers={"authorization": "Bearer " + key} if key else {})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        status, body = scrape(None)
        assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"
        assert "knollm_gateway" not in body
        status, body = scrape("kn-not-a-key")
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
        for _ in range(3):  # a scrape is not a call: the scraper's RPM of 1 does not count it
            status, body = scrape(other)
            assert status == 200 and 'knollm_gateway_requests_total{route="/v1/chat/completions",status="200"} 1' in body
        assert token not in body and other not in body
        with urllib.request.urlopen(gw.url + "/health", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["keys_required"] is True
    assert cli(env, "serve", "keys", "revoke", "scraper").returncode == 0
    with GatewayProcess(env) as gw:
        req = urllib.request.Request(gw.url + "/metrics", headers={"authorization": "Bearer " + other})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 401


def test_health_and_metrics_count_the_ledger_spool_until_a_call_writes_it(servers, tmp_path):
    """Rows a process left in the spool (its ledger store failed) show in ``/health``
    (``ledger_spooled``) and ``/metrics`` (a gauge) until the gateway's next settle writes
    them to the ledger, once."""
    from knollm.client.spool import spool_for
    from tests.support.gateway_proc import ledger_rows

    env = gateway_env(tmp_path, servers)
    left = [{"reservation_id": None, "row": {"request_id": f"left-{i}", "ts": time.time(), "provider": "groq",
                                             "model": "m", "cost_usd": 0.5, "tag": "key:old"}} for i in range(2)]
    spool_for(tmp_path / "knollm.db").write_text("".join(json.dumps(x) + "\n" for x in left))

    def health_and_gauge(gw: GatewayProcess) -> tuple[int, float]:
        with urllib.request.urlopen(gw.url + "/health") as r:
            n = json.loads(r.read())["ledger_spooled"]
        with urllib.request.urlopen(gw.url + "/metrics") as r:
            line = next(x for x in r.read().decode().splitlines() if x.startswith("knollm_gateway_ledger_spooled_rows"))
        return n, float(line.split()[-1])

    with GatewayProcess(env) as gw:
        assert health_and_gauge(gw) == (2, 2.0)
        assert call(gw.base_url, None)[0] == 200
        assert health_and_gauge(gw) == (0, 0.0)
        assert call(gw.base_url, None)[0] == 200
    rows = ledger_rows(tmp_path)
    assert sorted(r["request_id"] for r in rows if r["request_id"].startswith("left-")) == ["left-0", "left-1"]
    assert len(rows) == 4


@pytest.mark.parametrize("budget", [False, True], ids=["ledger", "ledger+client budget"])
def test_a_ledger_another_process_keeps_locked_does_not_stall_the_gateway(servers, tmp_path, budget):
    """Another process holds the SQLite ledger's write lock: the group commit tries again
    on the event loop for 20 ms, never sleeping there (under a client budget, the
    reservation before the call tries once), then waits for the lock in a worker thread. The worker keeps answering (``/health`` in
    well under a second) while the call waits, and the call gets its answer once the lock
    is released, its row in the ledger."""
    import threading

    from knollm.client.spool import spool_for
    from tests.support.gateway_proc import ledger_rows
    from tests.test_ledger_spool import _lock, _unlock

    env = gateway_env(tmp_path, servers)
    if budget:
        opts = json.loads(env["KNOLLM_GATEWAY_CLIENT_OPTIONS"])
        env["KNOLLM_GATEWAY_CLIENT_OPTIONS"] = json.dumps(
            {**opts, "budgets": [{"limit_usd": 10.0, "period": "day", "provider": "groq"}]})
    with GatewayProcess(env) as gw:
        assert call(gw.base_url, None)[0] == 200  # the ledger exists
        locker = _lock(tmp_path / "knollm.db")
        got: list[tuple[int, float]] = []
        try:
            t0 = time.monotonic()
            caller = threading.Thread(target=lambda: got.append((call(gw.base_url, None)[0], time.monotonic() - t0)))
            caller.start()
            time.sleep(0.5)  # the call is answered upstream, and waits for the ledger's lock
            assert not got
            t = time.monotonic()
            with urllib.request.urlopen(gw.url + "/health", timeout=10) as r:
                assert r.status == 200
            assert time.monotonic() - t < 0.5
            time.sleep(0.5)
        finally:
            _unlock(locker)
        caller.join(30)
    assert got and got[0][0] == 200 and got[0][1] >= 1.0  # answered after the lock, not before
    assert len(ledger_rows(tmp_path)) == 2 and not spool_for(tmp_path / "knollm.db").exists()


def _stream_text(base_url: str, key: str, **extra) -> str:
    req = urllib.request.Request(base_url + "/chat/completions", method="POST",
                                 headers={"content-type": "application/json", "authorization": "Bearer " + key},
                                 data=json.dumps({"model": GROQ, "messages": MSG, "stream": True, **extra}).encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        return r.read().decode()


def test_ledger_rows_name_the_gateway_key_never_its_token(servers, tmp_path):
    import sqlite3
    from collections import Counter

    from knollm.gateway.keys import hash_key

    env = gateway_env(tmp_path, servers)
    alpha, beta = new_key(env, "team-alpha"), new_key(env, "team-beta", "--allow", "groq/*")
    ids = {k["name"]: k["id"] for k in json.loads(cli(env, "serve", "keys", "list", "--json").stdout)}
    for s in servers.values():
        s.requests.clear()
    with GatewayProcess(env) as gw:
        assert call(gw.base_url, alpha)[0] == 200
        assert call(gw.base_url, alpha, TOGETHER)[0] == 200
        assert call(gw.base_url, alpha, tag="key:team-beta")[0] == 200  # a caller cannot pick its own tag
        assert call(gw.base_url, beta)[0] == 200
        assert "[DONE]" in _stream_text(gw.base_url, beta)
        status, _, body = call(gw.base_url, beta, TOGETHER)  # refused calls leave no row
        assert status == 403
    con = sqlite3.connect(tmp_path / "knollm.db")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM calls ORDER BY id")]
    assert [(r["tag"], r["provider"], r["stream"]) for r in rows] == [
        ("key:team-alpha", "groq", 0), ("key:team-alpha", "togetherai", 0), ("key:team-alpha", "groq", 0),
        ("key:team-beta", "groq", 0), ("key:team-beta", "groq", 1)]
    ledger = json.dumps(rows) + json.dumps([list(r) for r in con.execute("SELECT * FROM reservations")])
    con.close()
    for token in (alpha, beta):
        assert token not in ledger and hash_key(token) not in ledger and token[:10] not in ledger
    assert not any(i in ledger for i in ids.values())  # the ledger names keys, not their ids
    for f in tmp_path.iterdir():  # no token anywhere on disk (the keys table holds only hashes)
        if f.is_file():
            data = f.read_bytes()
            assert alpha.encode() not in data and beta.encode() not in data, f.name
    for s in servers.values():  # the tag never goes upstream
        for req in s.requests:
            assert "tag" not in req["json"] and "key:team" not in json.dumps(req["json"])
    # knollm usage: by tag, and one tag
    by_tag = json.loads(cli(env, "usage", "--by", "tag", "--json").stdout)
    assert {g["tag"]: g["calls"] for g in by_tag} == {"key:team-alpha": 3, "key:team-beta": 2}
    assert sum(g["cost_usd"] for g in by_tag) == pytest.approx(3 * COST["groq"] + COST["togetherai"] + COST["groq"])
    one = json.loads(cli(env, "usage", "--tag", "key:team-beta", "--by", "model", "--json").stdout)
    assert one == [{"model": "groq/llama-3.3-70b-versatile", "calls": 2, "input_tokens": 240, "output_tokens": 60,
                    "cached_tokens": 0, "cost_usd": pytest.approx(2 * COST["groq"]), "unpriced_calls": 0,
                    "estimated_calls": 0, "interrupted_calls": 0, "saved_usd": 0.0}]
    r = cli(env, "usage", "--tag", "key:nobody")
    assert r.returncode == 1 and "tagged 'key:nobody'" in r.stderr


def test_a_client_leaving_a_stream_is_charged_to_its_key(servers, tmp_path):
    """A keyed client that disconnects mid-stream: the ledger gets one interrupted row
    tagged with the key, and the key's budget is charged that cost (its hold settled)."""
    import sqlite3

    env = gateway_env(tmp_path, servers)
    key = new_key(env, "leaver", "--budget", "1")
    servers["groq"].faults("stall")
    servers["groq"].hang_s = 20.0
    try:
        with GatewayProcess(env) as gw:
            body = json.dumps({"model": GROQ, "stream": True, "messages": MSG}).encode()
            _, text = leave_mid_stream(gw, body, b"authorization: Bearer " + key.encode() + b"\r\n")
            assert "knollm_gateway_in_flight 0" in text
    finally:
        servers["groq"].hang_s = 3.0
    con = sqlite3.connect(tmp_path / "knollm.db")
    con.row_factory = sqlite3.Row
    (row,) = [dict(r) for r in con.execute("SELECT * FROM calls")]
    con.close()
    assert (row["outcome"], row["tag"], row["provider"], row["output_tokens"]) == (
        "interrupted", "key:leaver", "groq", 2)
    assert row["cost_usd"] > 0
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["spent_usd"] == pytest.approx(row["cost_usd"])
    assert k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


def test_key_names_must_make_a_printable_tag(servers, tmp_path):
    env = gateway_env(tmp_path, servers)
    for bad in ("a\nb", "x" * 101):
        r = cli(env, "serve", "keys", "create", bad)
        assert r.returncode != 0 and "printable characters" in r.stderr


def test_an_answer_cut_mid_body_is_charged_to_the_key(servers, tmp_path):
    """A keyed request whose first answer was cut mid-body (billed by the provider) and
    retried: the key's spend is both rows of the ledger, tagged with the key."""
    import sqlite3

    env = gateway_env(tmp_path, servers)
    key = new_key(env, "cutter", "--budget", "1")
    servers["groq"].faults("bodycut")
    with GatewayProcess(env) as gw:
        status, headers, body = call(gw.base_url, key)
    assert status == 200 and headers["x-knollm-attempts"] == "2"
    con = sqlite3.connect(tmp_path / "knollm.db")
    rows = con.execute("SELECT outcome, tag, cost_usd FROM calls ORDER BY id").fetchall()
    con.close()
    assert [(o, t) for o, t, _ in rows] == [("interrupted", "key:cutter"), ("ok", "key:cutter")]
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["spent_usd"] == pytest.approx(sum(c for _, _, c in rows)) == pytest.approx(float(headers["x-knollm-cost-usd"]))
    assert k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


def _gauge(text: str, name: str) -> float:
    return float(next(ln for ln in text.splitlines() if ln.startswith(name + " ")).split()[-1])


def test_a_stream_refused_at_its_start_holds_nothing_and_is_counted(servers, tmp_path):
    """``stream_options`` that is not an object (or whose ``include_usage`` is not a
    boolean) is a 400 naming it, before any budget hold: nothing stays reserved, nothing
    stays in flight, and each refusal is counted. (Before, it failed inside the stream's
    setup: a 500 never counted, the request in flight for ever and its hold kept for the
    hold's lifetime, so a few such calls locked the key out with 429s.)"""
    env = gateway_env(tmp_path, servers)
    key = new_key(env, "streams", "--budget", "1")
    with GatewayProcess(env) as gw:
        for so in (True, "yes", [1], {"include_usage": "yes"}):
            status, _, body = call(gw.base_url, key, stream=True, stream_options=so)
            assert status == 400 and body["error"]["code"] == "stream_options", (so, body)
        assert "data: [DONE]" in _stream_text(gw.base_url, key)  # the key still has its budget
        req = urllib.request.Request(gw.url + "/metrics", headers={"authorization": "Bearer " + key})
        deadline = time.monotonic() + 15  # (the stream's settle may end just after its last bytes)
        while True:
            with urllib.request.urlopen(req) as r:
                text = r.read().decode()
            if _gauge(text, "knollm_gateway_in_flight") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="400"} 4' in text
    assert _gauge(text, "knollm_gateway_in_flight") == 0
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
    assert k["spent_usd"] == pytest.approx(COST["groq"])


def test_a_stream_whose_setup_fails_is_answered_settled_and_counted(servers, tmp_path, monkeypatch):
    """A failure while a stream is set up (here the backend's ``stream`` raises) is a JSON
    500 without its text, counted in the metrics, out of flight, and the key's hold is
    released."""
    from starlette.testclient import TestClient

    from knollm.gateway import server
    from knollm.gateway.client_backend import ClientBackend
    from knollm.gateway.keys import KeyStore

    env = gateway_env(tmp_path, servers)
    key = new_key(env, "setup", "--budget", "1")
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def broken(self, body, *, targets, tag=None):
        raise RuntimeError("setup failed at /secret/path")

    monkeypatch.setattr(ClientBackend, "stream", broken)
    auth = {"authorization": "Bearer " + key}
    with TestClient(server.app_factory(), base_url="http://127.0.0.1") as tc:
        r = tc.post("/v1/chat/completions", headers=auth,
                    json={"model": GROQ, "messages": MSG, "stream": True})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        assert "/secret/path" not in r.text
        text = tc.get("/metrics", headers=auth).text
    assert 'knollm_gateway_requests_total{route="/v1/chat/completions",status="500"} 1' in text
    assert _gauge(text, "knollm_gateway_in_flight") == 0
    store = KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}")  # the gateway's store
    assert store.get("setup").reserved_usd == pytest.approx(0.0, abs=1e-12)


def test_a_provider_pattern_is_not_passed_by_a_spelling_the_catalog_resolves_elsewhere(servers, tmp_path):
    """``--allow 'groq/*'`` matches the model string ``groq/LLAMA-3.3-70B-VERSATILE``, but
    the catalog resolves that spelling (and ``groq/<canonical id>``) to the model's every
    deployment, cheapest first: refused with 403, no provider called. A key that allows a
    canonical id by name may be served by any deployment of that model."""
    env = gateway_env(tmp_path, servers)
    team = new_key(env, "team", "--allow", "groq/*")
    by_model = new_key(env, "by-model", "--allow", "llama-3.3-70b-instruct")
    seen = {p: len(s.requests) for p, s in servers.items()}
    with GatewayProcess(env) as gw:
        for spelled in ("groq/LLAMA-3.3-70B-VERSATILE", "groq/llama-3.3-70b-instruct"):
            status, _, body = call(gw.base_url, team, spelled)
            assert status == 403 and body["error"]["code"] == "model_not_allowed", (spelled, body)
            assert "routes to" in body["error"]["message"] and team not in body["error"]["message"]
        assert {p: len(s.requests) for p, s in servers.items()} == seen  # nothing was called
        status, headers, _ = call(gw.base_url, team, GROQ)
        assert status == 200 and headers["x-knollm-provider"] == "groq"
        status, headers, _ = call(gw.base_url, by_model, "llama-3.3-70b-instruct")
        assert status == 200 and headers["x-knollm-provider"] == "togetherai"  # the cheapest with a key
        assert call(gw.base_url, by_model, GROQ)[0] == 403  # (a deployment named directly: not by that pattern)


def test_the_spend_of_a_key_without_a_budget_is_counted_for_a_budget_given_later(servers, tmp_path):
    """A key without a budget holds nothing, but its calls' cost still adds to its spend:
    ``keys list`` shows it, and a monthly budget given later counts this month's calls."""
    env = gateway_env(tmp_path, servers)
    key = new_key(env, "open")
    with GatewayProcess(env) as gw:
        assert [call(gw.base_url, key)[0] for _ in range(3)] == [200] * 3
        assert "data: [DONE]" in _stream_text(gw.base_url, key)
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["spent_usd"] == pytest.approx(4 * COST["groq"]) and k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
    r = cli(env, "serve", "keys", "update", "open", "--budget", str(4.5 * COST["groq"]), "--budget-period", "month")
    assert r.returncode == 0, r.stderr
    k = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)[0]
    assert k["spent_period_usd"] == pytest.approx(4 * COST["groq"])
    with GatewayProcess(env) as gw:  # the worst case of one more call does not fit in what is left
        status, _, body = call(gw.base_url, key, max_tokens=100)
    assert status == 429 and body["error"]["code"] == "insufficient_quota"


def test_a_budget_filled_exactly_is_not_refused_by_rounding(tmp_path):
    """Costs that fill a large budget exactly sum a few ulps over it in floating point:
    the call that fits is taken (the slack is relative to the budget), the next is not."""
    from knollm.gateway.keys import KeyStore

    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    key, _ = store.create("big", budget_usd=100_000.0)
    for cost in (99_998.35, 0.08):
        store.settle(key.id, store.reserve(key.id, cost, 60), cost)
    assert store.get(key.id).spent_usd + 1.57 > 100_000.0  # 1.57 left, in decimal; a few ulps over in binary
    assert store.reserve(key.id, 1.57, 60) is not None
    assert store.reserve(key.id, 0.01, 60) is None
