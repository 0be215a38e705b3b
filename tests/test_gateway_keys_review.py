"""Gateway keys, as a review found them wanting: a loopback gateway whose keys were all
revoked or expired went keyless; a gateway key sent to a keyless gateway was ignored; a
revoked key kept working for the key cache's 5 s; concurrent calls overspent a TPM limit;
a call without ``max_tokens`` overspent a key's budget; a key rotated under its name could
not be named. Real gateways over loopback providers, or the key store on real SQLite
files (and PostgreSQL, where the store tests' ``db_url`` runs)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from knollm.errors import GatewayError
from knollm.gateway import keys as gateway_keys
from knollm.gateway.keys import KeyStore
from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import GROQ, TOGETHER, gateway_env
from tests.test_gateway_keys import call, cli, count, new_key, servers  # noqa: F401 - servers: the fixture
from tests.test_gateway_store import db_url  # noqa: F401 - the fixture (SQLite and PostgreSQL)


def _store(tmp_path) -> KeyStore:
    """The key store of a gateway with ``KNOLLM_HOME=tmp_path``."""
    return KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}")


def _health(gw: GatewayProcess) -> dict:
    import urllib.request

    with urllib.request.urlopen(gw.url + "/health", timeout=10) as r:
        return json.loads(r.read())


def _in_one_minute(margin: float = 15.0) -> None:
    """Wait for a new minute when fewer than ``margin`` seconds are left of this one."""
    if time.time() % 60 > 60 - margin:
        time.sleep(61 - time.time() % 60)


# ---------------------------------------------------------------- 1. keys stay required
def test_a_loopback_gateway_whose_keys_are_all_revoked_or_expired_still_requires_one(servers, tmp_path):
    """Keys are required once any key was created: a loopback gateway whose only keys are
    revoked and expired refuses a call without a key, and the revoked and expired keys
    themselves (before, it turned keyless: any model, no budget, for anyone)."""
    env = gateway_env(tmp_path, servers)
    revoked = new_key(env, "team", "--allow", "groq/*", "--budget", "0.0000001")
    assert cli(env, "serve", "keys", "revoke", "team").returncode == 0
    store = _store(tmp_path)
    _, expired = store.create("short", allowed=["groq/*"], expires_at=time.time() + 0.2)
    time.sleep(0.3)
    assert not store.any_active()  # none active, but keys were created
    with GatewayProcess(env) as gw:
        assert _health(gw)["keys_required"] is True
        status, _, body = call(gw.base_url, None, TOGETHER)
        assert status == 401 and body["error"]["code"] == "missing_api_key"
        status, headers, body = call(gw.base_url, revoked, TOGETHER)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert headers["x-knollm-provider"] == "none"
        status, _, body = call(gw.base_url, expired, TOGETHER)
        assert status == 401 and body["error"]["code"] == "expired_api_key"
    assert not ledger_rows(tmp_path)  # nothing was called


def test_a_gateway_key_sent_to_a_gateway_without_keys_is_checked_not_ignored(servers, tmp_path):
    """No key was ever created: the gateway is keyless (loopback callers, any value as
    their SDK's API key). A ``kn-`` token is checked all the same: unknown, 401. A key
    created while the gateway runs (its "no keys" answer still cached) is served as a key:
    its allowed models apply and its calls are tagged with it."""
    env = gateway_env(tmp_path, servers)
    with GatewayProcess(env) as gw:
        assert _health(gw)["keys_required"] is False
        assert call(gw.base_url, None)[0] == 200
        assert call(gw.base_url, "unused")[0] == 200  # (what an SDK is given for a keyless gateway)
        status, _, body = call(gw.base_url, "kn-" + "x" * 43)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        key, token = _store(tmp_path).create("late", allowed=["groq/*"])
        assert call(gw.base_url, token, TOGETHER)[0] == 403  # the key's restrictions, at once
        assert call(gw.base_url, token)[0] == 200
    tags = [r["tag"] for r in ledger_rows(tmp_path)]
    assert tags == [None, None, "key:late"]


# ---------------------------------------------------------------- 2. revocation at once
def test_revocation_takes_effect_at_once_on_every_replica(servers, tmp_path):
    """Two replicas have each key cached (5 s). Revoked, every key is refused at the next
    request on both, whatever limits it has: its RPM count, TPM reservation or budget hold
    refuses it, and a key with none of those has its row read."""
    env = gateway_env(tmp_path, servers)
    opts = {"plain": (), "rpm": ("--rpm", "1000"), "budget": ("--budget", "1"), "tpm": ("--tpm", "1000000")}
    tokens = {name: new_key(env, name, *o) for name, o in opts.items()}
    store = _store(tmp_path)
    with GatewayProcess(env) as a, GatewayProcess(env) as b:
        for name, token in tokens.items():
            assert [call(gw.base_url, token)[0] for gw in (a, b)] == [200, 200], name
        for name in tokens:
            store.revoke(name)
        for name, token in tokens.items():
            got = [call(gw.base_url, token) for gw in (a, b)]
            assert [s for s, _, _ in got] == [401, 401], name
            assert all(body["error"]["code"] == "invalid_api_key" for _, _, body in got)
    assert len(ledger_rows(tmp_path)) == 2 * len(tokens)  # no call after the revocation
    assert store.get("budget").reserved_usd == 0  # the refused hold left nothing behind


def _get(url: str, token: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, (json.loads(r.read()) if "json" in r.headers.get("content-type", "") else {})
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_revocation_reaches_the_free_routes_and_the_refusals_at_once(servers, tmp_path):
    """What charges nothing (the model list, token counts, metrics) and the refusal of a
    model the key does not allow: with the key cached on both replicas, a revocation turns
    each into 401 ``invalid_api_key`` at the next request, not a list, a count or a 403."""
    env = gateway_env(tmp_path, servers)
    token = new_key(env, "scoped", "--allow", "groq/*")
    store = _store(tmp_path)
    with GatewayProcess(env) as a, GatewayProcess(env) as b:
        def each(gw: GatewayProcess) -> list[int]:
            return [_get(gw.base_url + "/models", token)[0], count(gw.base_url, token, GROQ)[0],
                    _get(gw.url + "/metrics", token)[0], call(gw.base_url, token, TOGETHER)[0]]

        assert [each(gw) for gw in (a, b)] == [[200, 200, 200, 403]] * 2  # cached on both
        store.revoke("scoped")
        assert [each(gw) for gw in (a, b)] == [[401, 401, 401, 401]] * 2
        assert _get(a.base_url + "/models", token)[1]["error"]["code"] == "invalid_api_key"
    assert not ledger_rows(tmp_path)


def test_keys_update_reaches_every_replica_at_the_next_request(servers, tmp_path):
    """Four keys (no limit, RPM, TPM, budget), each allowed ``groq/*``, cached on two
    replicas whose key cache lasts 5 minutes. ``keys update`` moves each to
    ``togetherai/*``: at the next request both replicas refuse groq (403) and serve
    together, and list together's models only. Before, each replica kept the old list
    for its key cache's lifetime."""
    env = {**gateway_env(tmp_path, servers), "KNOLLM_GATEWAY_KEY_CACHE_S": "300"}
    tokens = {name: new_key(env, name, "--allow", "groq/*", *opts) for name, opts in
              (("plain", ()), ("rpm", ("--rpm", "100")), ("tpm", ("--tpm", "1000000")), ("budget", ("--budget", "10")))}
    store = _store(tmp_path)
    with GatewayProcess(env) as a, GatewayProcess(env) as b:
        def each(gw: GatewayProcess, token: str) -> list[int]:
            return [call(gw.base_url, token, GROQ)[0], call(gw.base_url, token, TOGETHER)[0]]

        _in_one_minute()
        assert [each(gw, t) for gw in (a, b) for t in tokens.values()] == [[200, 403]] * 8
        for name in tokens:
            assert store.update(name, allowed=["togetherai/*"]).revision == 1
        assert [each(gw, t) for gw in (a, b) for t in tokens.values()] == [[403, 200]] * 8
        for gw in (a, b):
            ids = [m["id"] for m in _get(gw.base_url + "/models", tokens["plain"])[1]["data"]]
            assert ids and all(i.startswith("togetherai/") for i in ids)
    rows = ledger_rows(tmp_path)
    assert sorted(r["provider"] for r in rows) == ["groq"] * 8 + ["togetherai"] * 8


def test_limits_given_by_keys_update_apply_at_the_next_request(servers, tmp_path):
    """A key without limits, cached: ``keys update`` gives it an RPM limit of 2 and then a
    budget of 0, and the next requests are refused accordingly (429), on the replica
    that cached it without them."""
    env = {**gateway_env(tmp_path, servers), "KNOLLM_GATEWAY_KEY_CACHE_S": "300"}
    token = new_key(env, "grows")
    store = _store(tmp_path)
    with GatewayProcess(env) as gw:
        _in_one_minute()
        assert [call(gw.base_url, token)[0] for _ in range(2)] == [200, 200]
        store.update("grows", rpm=2)
        assert [call(gw.base_url, token)[0] for _ in range(3)] == [200, 200, 429]  # counted from the change
        store.update("grows", rpm=None, budget_usd=0.0)
        status, _, body = call(gw.base_url, token)
        assert status == 429 and body["error"]["code"] == "insufficient_quota"
        store.update("grows", budget_usd=None)
        assert call(gw.base_url, token)[0] == 200
    assert len(ledger_rows(tmp_path)) == 5


def test_a_key_changed_while_a_request_is_checked_is_checked_anew_and_counted_once(tmp_path):
    """``keys update`` lands between two statements of one request's check (its RPM count
    done, its budget hold not yet): the hold is refused as changed, the request is checked
    again with the key as stored now (its new budget), and its RPM count stays at one."""
    import asyncio

    from knollm.gateway.app import GatewayConfig, _Access

    store = _store(tmp_path)
    key, _ = store.create("racing", rpm=5, budget_usd=1.0)
    reserve, seen = store.reserve, []

    def update_first(key_id, amount, ttl_s, now=None, revision=None):
        seen.append(revision)
        if len(seen) == 1:
            store.update("racing", budget_usd=0.01)  # below the call's hold (0.05): refused once read
        return reserve(key_id, amount, ttl_s, now, revision)

    store.reserve = update_first
    access = _Access(store, GatewayConfig())
    with pytest.raises(GatewayError) as e:
        asyncio.run(access.admit(key, ["groq/llama-3.3-70b-versatile"], {"messages": []}))
    assert e.value.status == 429 and e.value.code == "insufficient_quota" and "$0.01" in str(e.value)
    assert seen == [0, 1]  # refused as changed, then held against the key as updated
    minute = int(time.time() // 60)
    (n,) = store.db.execute("SELECT n FROM gateway_key_minutes WHERE key_id = ? AND minute >= ?",
                            (key.id, minute - 1))[0]
    assert n == 1
    store.update("racing", budget_usd=1.0)
    held = asyncio.run(access.admit(key, ["groq/llama-3.3-70b-versatile"], {"messages": []}))  # (the old revision)
    assert held.id is not None and held.amount == pytest.approx(0.05) and seen[-1] == 2


def test_a_statement_for_a_changed_key_counts_and_holds_nothing(db_url):  # noqa: F811
    """Each statement a request runs for a key, given the revision the gateway cached,
    refuses a key changed since (:class:`KeyChanged`) without counting, reserving or
    holding; a revoked key is refused as revoked whatever its revision."""
    store = KeyStore(db_url)
    key, _ = store.create("k", rpm=10, tpm=1000, budget_usd=1.0)
    now = time.time()
    assert key.revision == 0 and store.hit(key.id, now, 0) == 1
    assert store.reserve_tokens(key.id, 10, 1000, now, 0) is not None
    assert store.reserve(key.id, 0.1, revision=0) is not None
    store.check_live(key.id, 0)
    assert store.update("k", rpm=20).revision == 1
    for statement in (lambda: store.hit(key.id, now, 0), lambda: store.reserve_tokens(key.id, 10, 1000, now, 0),
                      lambda: store.reserve(key.id, 0.1, revision=0), lambda: store.check_live(key.id, 0)):
        with pytest.raises(gateway_keys.KeyChanged):
            statement()
    fresh = store.get(key.id)
    assert (fresh.reserved_usd, store.tokens_used(key.id, now), store.hit(key.id, now, 1)) == \
        (pytest.approx(0.1), 10, 2)  # nothing counted, reserved or held by the refused statements
    store.revoke(key.id)
    with pytest.raises(gateway_keys.KeyRevoked):
        store.hit(key.id, now, 0)
    with pytest.raises(gateway_keys.KeyRevoked):
        store.check_live(key.id, 1)


def test_the_store_refuses_a_revoked_key_in_every_statement_a_request_runs(db_url):  # noqa: F811
    store = KeyStore(db_url)
    key, _ = store.create("k", rpm=10, tpm=1000, budget_usd=1.0)
    store.check_live(key.id)
    assert store.hit(key.id) == 1 and store.reserve_tokens(key.id, 10, 1000) is not None
    hold = store.reserve(key.id, 0.1)
    store.revoke(key.id)
    for statement in (lambda: store.hit(key.id), lambda: store.reserve_tokens(key.id, 10, 1000),
                      lambda: store.reserve(key.id, 0.1), lambda: store.check_live(key.id)):
        with pytest.raises(gateway_keys.KeyRevoked) as e:
            statement()
        assert e.value.status == 401
    assert store.settle(key.id, hold, 0.05)  # a call in flight at the revocation is still charged
    assert store.get(key.id).spent_usd == pytest.approx(0.05)


# ---------------------------------------------------------------- 3. TPM reservations
def test_concurrent_calls_on_two_replicas_cannot_overspend_a_tpm_limit(servers, tmp_path):
    """10 calls at once over 2 replicas sharing one SQLite store; the key has 200 tokens a
    minute, every call uses 150 (120 in, 30 out). A call reserves its estimate when
    admitted (the prompt's estimate plus the output it may use: no ``max_tokens`` here, so
    the 4096 it is then capped at), in one conditional statement: one call is admitted,
    the other nine get 429 with ``retry-after``. Before, all 10 passed (1,500 tokens)."""
    env = gateway_env(tmp_path, servers)
    key = new_key(env, "tpm", "--tpm", "200")
    store = _store(tmp_path)
    servers["groq"].latency = 1.0  # the calls overlap
    try:
        with GatewayProcess(env) as a, GatewayProcess(env) as b:
            _in_one_minute(20)
            minute = int(time.time() // 60)
            with ThreadPoolExecutor(10) as pool:
                results = list(pool.map(lambda url: call(url, key), [a.base_url, b.base_url] * 5))
            used = store.tokens_used(store.get("tpm").id)
    finally:
        servers["groq"].latency = 0.0
    assert int(time.time() // 60) == minute, "the minute turned during the test"
    assert sorted(s for s, _, _ in results) == [200] + [429] * 9
    for status, headers, body in results:
        if status == 429:
            assert body["error"]["code"] == "tokens_per_minute_exceeded" and 1 <= int(headers["retry-after"]) <= 60
    # the admitted call's estimate (~4100) was corrected to what it used
    assert used == 150


def test_token_reservations_settle_to_what_calls_used(db_url):  # noqa: F811
    """While the minute's tokens (finished calls, plus the estimates of calls in flight)
    are under the limit, a call is admitted and its estimate counted; settled, the
    estimate is replaced by what the call used (0 for a failed call): in the minute it
    was reserved in, or, for a call that ended in a later minute, in that one."""
    store = KeyStore(db_url)
    key, _ = store.create("t", tpm=200)
    t = 1_000_000 * 60.0
    m1 = store.reserve_tokens(key.id, 158, 200, t)
    m2 = store.reserve_tokens(key.id, 158, 200, t + 1)  # 158 < 200: admitted
    assert m1 == m2 == 1_000_000 and store.tokens_used(key.id, t) == 316
    assert store.reserve_tokens(key.id, 1, 200, t + 2) is None  # 316: used up
    store.settle_tokens(key.id, m1, 158, 150, t + 3)
    store.settle_tokens(key.id, m2, 158, 0, t + 4)  # a failed call releases its estimate
    assert store.tokens_used(key.id, t) == 150
    m3 = store.reserve_tokens(key.id, 4000, 200, t + 5)
    assert m3 == m1 and store.tokens_used(key.id, t) == 4150
    store.settle_tokens(key.id, m3, 4000, 40, t + 65)  # ended in the next minute
    assert store.tokens_used(key.id, t) == 150 and store.tokens_used(key.id, t + 65) == 40
    # concurrent reservations: the database serializes them; admitted while under the limit
    # (at 40, 70, 100, 130, 160, 190), so the minute ends at most one estimate past it
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: store.reserve_tokens(key.id, 30, 200, t + 70), range(20)))
    assert sum(m is not None for m in got) == 6 and store.tokens_used(key.id, t + 70) == 220
    store.revoke(key.id)
    store.settle_tokens(key.id, m1 + 1, 30, 25, t + 80)  # a call in flight at the revocation still settles
    assert store.tokens_used(key.id, t + 70) == 215


# ---------------------------------------------------------------- 4. output capped
class _CappedServer(ProviderServer):
    """Answers 10,000 output tokens, or the ``max_tokens`` the request asks for when fewer."""

    @property
    def usage(self) -> tuple[int, int, int]:
        body = self.requests[-1]["json"] if self.requests else {}
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        n_in, n_out, cached = self._usage
        return n_in, min(n_out, cap) if cap else n_out, cached

    @usage.setter
    def usage(self, value: tuple[int, int, int]) -> None:
        self._usage = value


def test_a_call_without_max_tokens_is_capped_at_what_its_key_held(tmp_path):
    """The provider answers 10,000 output tokens when nothing caps it. A key with a $0.01
    budget: a call without ``max_tokens`` is held at the client's default output (4096
    tokens, $0.0083 at $2/M), and now also sent with ``max_tokens: 4096``: it costs what
    was held, and the next call is refused. Before, it cost $0.02 (201% of the budget).
    A Responses call of a TPM key gets the cap too; a key without limits does not."""
    srvs = {"groq": _CappedServer("groq", usage=(120, 10_000, 0)).start(),
            "togetherai": ProviderServer("together").start()}
    try:
        env = gateway_env(tmp_path, srvs)
        budget = new_key(env, "b", "--budget", "0.01")
        tpm = new_key(env, "t", "--tpm", "100000")
        free = new_key(env, "f")
        with GatewayProcess(env) as gw:
            status, headers, _ = call(gw.base_url, budget)
            assert status == 200 and srvs["groq"].requests[-1]["json"]["max_tokens"] == 4096
            assert float(headers["x-knollm-cost-usd"]) == pytest.approx((120 * 1.0 + 4096 * 2.0) / 1e6)
            status, _, body = call(gw.base_url, budget)
            assert status == 429 and body["error"]["code"] == "insufficient_quota"
            assert call(gw.base_url, budget, max_tokens=100)[0] == 200  # the caller's own cap is kept
            assert srvs["groq"].requests[-1]["json"]["max_tokens"] == 100
            import urllib.request

            req = urllib.request.Request(gw.base_url + "/responses", method="POST", data=json.dumps(
                {"model": GROQ, "input": "hi"}).encode(), headers={"content-type": "application/json",
                                                                    "authorization": "Bearer " + tpm})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200
            assert srvs["groq"].requests[-1]["json"]["max_tokens"] == 4096
            assert call(gw.base_url, free)[0] == 200
            assert "max_tokens" not in srvs["groq"].requests[-1]["json"]  # no limit: nothing added
        k = _store(tmp_path).get("b")
        assert k.spent_usd <= k.budget_usd and k.spent_usd == pytest.approx(
            (120 + 4096 * 2.0) / 1e6 + (120 + 100 * 2.0) / 1e6)
    finally:
        for s in srvs.values():
            s.stop()


# ---------------------------------------------------------------- 5. a rotated key by name
def test_a_key_rotated_under_its_name_is_updated_and_revoked_by_name(tmp_path):
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    old, _ = store.create("ci")
    store.revoke("ci")
    new, _ = store.create("ci")
    assert store.get("ci").id == new.id  # the one not revoked
    assert store.update("ci", rpm=5).id == new.id and store.get(new.id).rpm == 5
    assert store.revoke("ci").id == new.id and store.get(new.id).revoked_at is not None
    with pytest.raises(GatewayError, match="names 2 keys; use the id"):  # both revoked: which one?
        store.update("ci", rpm=6)
    store.create("ci")
    store.create("ci")
    with pytest.raises(GatewayError, match=r"names 4 keys \(2 not revoked\); use the id"):
        store.revoke("ci")
