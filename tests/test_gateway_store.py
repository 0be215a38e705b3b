"""Gateway keys and budgets on SQLite and on a real PostgreSQL server: hashing, lookup,
revocation, RPM windows, and budget reservations that never overspend under concurrency
from two processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from knollm.errors import GatewayError, NotFoundError
from knollm.gateway.db import open_database, redact_url
from knollm.gateway.keys import KeyStore, hash_key


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database("t_" + uuid.uuid4().hex[:10])


def test_keys_are_stored_hashed_and_looked_up(db_url):
    store = KeyStore(db_url)
    key, token = store.create("ci", allowed=["groq/*", "fast"], rpm=3, budget_usd=2.5)
    assert token.startswith("kn-") and len(token) > 40
    assert store.lookup(token).id == key.id
    assert store.lookup(token + "x") is None
    rows = store.db.execute("SELECT * FROM gateway_keys")
    assert token not in repr(rows) and hash_key(token) in repr(rows)
    got = store.get("ci")
    assert got.allows("groq/llama-3.3-70b-versatile") and got.allows("fast")
    assert not got.allows("openai/gpt-4o")
    assert store.any_active()
    store.revoke(key.id)
    assert store.lookup(token) is None and not store.any_active()
    assert store.get("ci").revoked_at is not None
    with pytest.raises(NotFoundError) as e:
        store.get("cj")
    assert "ci" in e.value.suggestions


def test_bad_key_settings(db_url):
    store = KeyStore(db_url)
    with pytest.raises(GatewayError):
        store.create("x", rpm=0)
    with pytest.raises(GatewayError):
        store.create("x", budget_usd=-1)


def test_rpm_window_counts_per_minute(db_url):
    store = KeyStore(db_url)
    key, _ = store.create("r", rpm=2)
    t = 1_000_000 * 60.0
    assert [store.hit(key.id, t), store.hit(key.id, t + 10), store.hit(key.id, t + 59)] == [1, 2, 3]
    assert store.hit(key.id, t + 60) == 1


def _reserve_many(url: str, key_id: str, n: int, amount: float, out) -> None:
    store = KeyStore(url)

    def one(_):
        hold = store.reserve(key_id, amount)
        if hold:
            store.settle(key_id, hold, amount * 0.5)  # real cost below the worst case
            return 1
        return 0

    with ThreadPoolExecutor(8) as pool:
        out.put(sum(pool.map(one, range(n))))


def test_budget_never_exceeded_by_two_processes(db_url):
    store = KeyStore(db_url)
    key, _ = store.create("b", budget_usd=1.0)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(db_url, key.id, 25, 0.1, q)) for _ in range(2)]
    for p in procs:
        p.start()
    granted = q.get(timeout=120) + q.get(timeout=120)
    for p in procs:
        p.join(60)
    k = store.get(key.id)
    # each grant holds 0.1 of 1.0 and charges 0.05: holds are released as calls settle, so
    # between 10 and 20 of the 50 calls fit, and the spend never passes the budget
    assert 10 <= granted <= 20
    assert k.reserved_usd == pytest.approx(0.0, abs=1e-9)
    assert k.spent_usd == pytest.approx(0.05 * granted)
    assert k.spent_usd <= 1.0 + 1e-9


def test_a_key_hold_nobody_settles_stops_counting_when_it_expires(db_url):
    """A replica that dies mid-call never settles its hold: the hold counts against the
    key's budget until it expires (its maker's request time limit and a margin), then it
    does not, and is dropped. ``reserved_usd`` shows the live holds; an amount an older
    gateway left in that column still counts."""
    store = KeyStore(db_url)
    key, _ = store.create("k", budget_usd=1.0)
    t = time.time() + 10_000  # (holds made "then" are live now, by the real clock)
    dead = store.reserve(key.id, 0.6, ttl_s=10, now=t)  # its replica dies then
    assert dead and store.reserve(key.id, 0.6, ttl_s=10, now=t + 9.9) is None  # still counts
    assert store.get(key.id).reserved_usd == pytest.approx(0.6)
    live = store.reserve(key.id, 0.6, ttl_s=10, now=t + 10)  # expired: no longer counts
    assert live and live != dead
    assert store.db.execute("SELECT id FROM gateway_key_holds") == [(live,)]  # and is gone
    assert store.reserve(key.id, 0.5, ttl_s=3600) is None  # the live hold counts (0.6 + 0.5 > 1)
    assert store.settle(key.id, live, 0.25) is True  # settled at the real cost
    assert store.settle(key.id, live, 0.25) is False  # a repeat (a retry) never charges twice
    k = store.get(key.id)
    assert (k.spent_usd, k.reserved_usd) == (pytest.approx(0.25), pytest.approx(0.0))
    held = store.reserve(key.id, 0.5)
    assert store.get(key.id).reserved_usd == pytest.approx(0.5) and store.lookup("nope") is None
    assert store.settle(key.id, dead, 0.5) is False  # expired and dropped: its request is long over
    assert store.get(key.id).spent_usd == pytest.approx(0.25)
    store.db.execute("UPDATE gateway_keys SET reserved_usd = 0.2 WHERE id = ?", (key.id,))  # an older gateway's
    assert store.get(key.id).reserved_usd == pytest.approx(0.7)
    assert store.reserve(key.id, 0.1) is None  # 0.25 spent + 0.2 + 0.5 held + 0.1 > 1
    store.settle(key.id, held, 0.5)
    assert store.reserve(key.id, 0.05) and store.reserve("no-such-key", 0.01) is None
    unlimited, _ = store.create("u")
    assert store.reserve(unlimited.id, 1e6)  # no budget: held only to be settled


def _utc(text: str) -> float:
    from datetime import datetime, timezone

    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("period, last, first_of_next", [
    ("day", "2026-03-31T23:59:30", "2026-04-01T00:00:01"),
    ("month", "2026-01-31T23:59:30", "2026-02-01T00:00:01"),
    ("month", "2026-12-31T23:59:30", "2027-01-01T00:00:01"),
])
def test_a_day_or_month_key_budget_renews_at_utc_midnight(db_url, period, last, first_of_next):
    """A periodic budget counts what the key spent in the current UTC day or month: used
    up late in one, it has room again at the first second of the next, where the first
    charge starts the period from zero; the lifetime spend keeps everything."""
    store = KeyStore(db_url)
    key, _ = store.create("p", budget_usd=1.0, budget_period=period)
    t = _utc(last)
    h = store.reserve(key.id, 0.7, now=t - 3600)
    assert h and store.settle(key.id, h, 0.7, now=t - 3600)
    assert store.reserve(key.id, 0.5, now=t) is None  # 0.7 + 0.5 > 1 in this period
    assert store.reserve(key.id, 0.3, ttl_s=1, now=t)  # 0.7 + 0.3 fits (its hold expires at t + 1)
    nxt = _utc(first_of_next)
    h = store.reserve(key.id, 0.9, now=nxt)  # a new period: nothing spent in it yet
    assert h and store.settle(key.id, h, 0.9, now=nxt)
    assert store.reserve(key.id, 0.2, now=nxt + 1) is None  # 0.9 + 0.2 > 1
    col = "spent_day_usd, day_start" if period == "day" else "spent_month_usd, month_start"
    ((spent, start),) = store.db.execute(f"SELECT {col} FROM gateway_keys WHERE id = ?", (key.id,))
    assert (spent, start) == (pytest.approx(0.9), nxt - 1)
    assert store.get(key.id).spent_usd == pytest.approx(1.6)


def test_a_replica_whose_clock_runs_behind_never_resets_a_newer_period(db_url):
    store = KeyStore(db_url)
    key, _ = store.create("c", budget_usd=1.0, budget_period="day")
    ahead, behind = _utc("2026-05-02T00:00:02"), _utc("2026-05-01T23:59:59")
    for now, cost in ((ahead, 0.5), (behind, 0.25)):  # the second replica's clock is 3 s behind
        h = store.reserve(key.id, cost, now=now)
        assert h and store.settle(key.id, h, cost, now=now)
    ((day, start, month, mstart),) = store.db.execute(
        "SELECT spent_day_usd, day_start, spent_month_usd, month_start FROM gateway_keys WHERE id = ?", (key.id,))
    assert (day, start) == (pytest.approx(0.75), _utc("2026-05-02T00:00:00"))  # added to May 2nd, not reset
    assert (month, mstart) == (pytest.approx(0.75), _utc("2026-05-01T00:00:00"))
    assert store.reserve(key.id, 0.3, now=ahead + 5) is None  # 0.75 + 0.3 > 1


def test_updating_a_key_keeps_the_key_and_what_it_spent(db_url):
    """``update`` changes limits in place (the same key keeps working); a budget moved to
    a period counts what the key spent in it before the change."""
    store = KeyStore(db_url)
    key, token = store.create("u", allowed=["groq/*"], rpm=5, budget_usd=10.0)
    h = store.reserve(key.id, 0.4)
    store.settle(key.id, h, 0.4)
    k = store.update("u", budget_usd=0.5, budget_period="day")
    assert (k.budget_usd, k.budget_period, k.spent_period_usd, k.spent_day_usd) == (0.5, "day", 0.4, 0.4)
    assert store.reserve(key.id, 0.2) is None  # today's 0.4 + 0.2 > 0.5
    assert store.reserve(key.id, 0.1)
    k = store.update(key.id, allowed=(), rpm=None)
    assert (k.allowed, k.rpm, k.budget_usd, k.budget_period) == ((), None, 0.5, "day")
    assert store.lookup(token).id == key.id and store.lookup(token).allows("openai/gpt-4o")
    k = store.update("u", budget_usd=None)
    assert k.budget_usd is None and store.reserve(key.id, 1e6)
    assert k.budget_text() == "none" and store.update("u", budget_usd=2).budget_text() == "$2/day"
    for bad in ({"budget_period": "week"}, {"rpm": 0}, {"budget_usd": -1.0}, {"budget_usd": float("nan")}):
        with pytest.raises(GatewayError):
            store.update("u", **bad)
    with pytest.raises(GatewayError):
        store.create("w", budget_usd=1, budget_period="year")
    with pytest.raises(NotFoundError):
        store.update("nobody", rpm=3)
    assert store.get("u").budget_usd == 2.0  # the refused updates changed nothing


def test_a_key_past_its_expiry_is_refused_and_listed_expired(db_url):
    store = KeyStore(db_url)
    soon, token = store.create("temp", expires_at=time.time() + 0.5)
    later, later_token = store.create("later", expires_at=time.time() + 3600)
    assert store.lookup(token).active and store.any_active()
    time.sleep(0.6)
    k = store.lookup(token)  # found (its holder is told it expired), but not active
    assert k.expired() and not k.active and k.status == "expired" and k.public()["status"] == "expired"
    assert store.any_active()  # "later" still is
    store.update("later", expires_at=time.time() - 1)
    assert not store.any_active()  # an expired key does not count as configured
    assert store.update("later", expires_at=None).active and store.lookup(later_token).expires_at is None
    with pytest.raises(GatewayError):
        store.create("bad", expires_at=float("nan"))


def test_tokens_per_minute_are_counted_per_key_and_minute(db_url):
    store = KeyStore(db_url)
    key, _ = store.create("t", tpm=1000, rpm=10)
    other, _ = store.create("o")
    t = 1_000_000 * 60.0
    assert store.tokens_used(key.id, t) == 0
    store.hit(key.id, t)  # (the request count and the tokens share the minute's row)
    store.add_tokens(key.id, 150, t + 1)
    store.add_tokens(key.id, 0, t + 2)
    store.add_tokens(key.id, 600, t + 59)
    store.add_tokens(other.id, 999, t + 5)
    assert store.tokens_used(key.id, t + 30) == 750 and store.tokens_used(other.id, t) == 999
    assert store.tokens_used(key.id, t + 60) == 0  # a new minute
    assert store.hit(key.id, t + 10) == 2  # the count is untouched by the tokens
    assert store.get("t").tpm == 1000 and store.update("t", tpm=None).tpm is None
    with pytest.raises(GatewayError):
        store.create("bad", tpm=0)


def test_a_key_store_from_before_periodic_budgets_gains_them(db_url):
    """A ``gateway_keys`` table written by an older knollm (no period columns): opening
    the store adds them; its keys keep their lifetime budget and what they spent."""
    db = open_database(db_url)
    db.execute("""CREATE TABLE gateway_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        allowed TEXT NOT NULL DEFAULT '[]', rpm INTEGER, budget_usd DOUBLE PRECISION,
        spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0, reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)""")
    db.execute("INSERT INTO gateway_keys (id, name, prefix, hash, rpm, budget_usd, spent_usd, created_at) "
               "VALUES ('old1', 'old', 'kn-old', ?, 7, 1.0, 0.75, 1.7e9)", (hash_key("kn-old-token"),))
    db.execute("""CREATE TABLE gateway_key_minutes (key_id TEXT NOT NULL, minute BIGINT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (key_id, minute))""")
    minute = int(time.time() // 60)
    db.execute("INSERT INTO gateway_key_minutes (key_id, minute, n) VALUES ('old1', ?, 3)", (minute,))
    db.close()
    stores = [KeyStore(db_url), KeyStore(db_url)]  # (a second opening finds the columns there)
    k = stores[1].lookup("kn-old-token")
    assert (k.name, k.rpm, k.budget_usd, k.budget_period, k.spent_usd, k.spent_period_usd) == \
        ("old", 7, 1.0, "total", 0.75, 0.75)
    assert stores[0].reserve("old1", 0.3) is None  # 0.75 + 0.3 > 1: the lifetime spend counts
    h = stores[0].reserve("old1", 0.2)
    assert h and stores[0].settle("old1", h, 0.2)
    k = stores[1].update("old", budget_period="month")
    assert (k.spent_usd, k.spent_month_usd, k.spent_period_usd) == (pytest.approx(0.95), 0.2, 0.2)
    assert k.expires_at is None and k.active and k.tpm is None
    now = minute * 60.0 + 1
    assert stores[0].hit("old1", now) == 4 and stores[0].tokens_used("old1", now) == 0  # the old minute row
    stores[0].add_tokens("old1", 42, now)
    assert stores[1].tokens_used("old1", now) == 42


def test_redacted_url_and_sqlite_default(tmp_path, monkeypatch):
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))
    monkeypatch.delenv("KNOLLM_DATABASE_URL", raising=False)
    db = open_database()
    assert db.dialect == "sqlite"
    KeyStore(db).create("a")
    assert sqlite3.connect(tmp_path / "knollm.db").execute("select count(*) from gateway_keys").fetchone() == (1,)


def test_postgres_store_protocol(postgres_server):
    from knollm.client.store import LEDGER_COLUMNS, Budget
    from knollm.gateway.pgstore import PostgresStore, open_store

    url = postgres_server.create_database("s_" + uuid.uuid4().hex[:10])
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    budgets = [Budget(1.0, "total", provider="groq")]
    scope = {"provider": "groq", "alias": "fast", "key_label": "GROQ_API_KEY"}
    assert store.reserve(budgets, {**scope, "provider": "openai"}, 5.0) == (None, None)  # no budget applies
    assert store.reserve(budgets, scope, None)[1].startswith("unpriced model under budget")
    rid, refused = store.reserve(budgets, scope, 0.6)
    assert rid and refused is None
    assert store.spent(budgets[0]) == pytest.approx(0.6)
    assert store.reserve(budgets, scope, 0.5)[1].startswith("budget $1/total (provider=groq)")
    row = {c: None for c in LEDGER_COLUMNS}
    row.update(request_id="r1", ts=1.0, provider="groq", model="m", stream=True, cost_usd=0.25, input_tokens=3,
               output_tokens=4, attempts=1)
    assert store.settle(rid, row) is True
    assert store.settle(None, row) is False  # the same request is never charged twice
    assert store.spent(budgets[0]) == pytest.approx(0.25)
    rid2, _ = store.reserve(budgets, scope, 0.7)
    store.release(rid2)
    assert store.spent(budgets[0]) == pytest.approx(0.25)
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["cost_usd"] == 0.25 and rows[0]["stream"] == 1
    assert PostgresStore(url).rows(since=2.0) == []  # a second store on the same database
    with pytest.raises(TypeError):
        PostgresStore("sqlite:///x.db")


def test_postgres_store_tag_column_added_to_an_older_ledger(postgres_server):
    """A PostgreSQL ledger from before the tag column gains it (calls and reservations) and
    keeps its rows; tags are stored, filtered, and select budgets (held amounts included)."""
    import psycopg

    from knollm.client.store import Budget
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("v_" + uuid.uuid4().hex[:10])
    with psycopg.connect(url, autocommit=True) as con:  # the tables as the previous version made them
        con.execute("CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, request_id TEXT UNIQUE NOT NULL, "
                    "ts DOUBLE PRECISION NOT NULL, target TEXT, alias TEXT, provider TEXT NOT NULL, model TEXT NOT NULL, "
                    "key_label TEXT, stream INTEGER, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, "
                    "cache_write_tokens INTEGER, usage_estimated INTEGER, cost_usd DOUBLE PRECISION, price_source TEXT, "
                    "unpriced_reason TEXT, ttft_ms DOUBLE PRECISION, duration_ms DOUBLE PRECISION, attempts INTEGER, "
                    "saved_usd DOUBLE PRECISION)")
        con.execute("CREATE TABLE reservations (id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, provider TEXT, "
                    "alias TEXT, key_label TEXT, amount DOUBLE PRECISION NOT NULL)")
        con.execute("INSERT INTO calls (request_id, ts, provider, model, cost_usd) VALUES ('old', 5.0, 'groq', 'm', 0.5)")
    store = PostgresStore(url)
    PostgresStore(url)  # idempotent: a second replica starting finds the columns there
    assert [(r["request_id"], r["cost_usd"], r["tag"]) for r in store.rows()] == [("old", 0.5, None)]
    budget = Budget(1.0, "total", tag="key:ci")
    scope = {"provider": "groq", "alias": None, "key_label": "GROQ_API_KEY"}
    assert store.reserve([budget], scope, 5.0) == (None, None)  # untagged: the tag budget does not apply
    assert store.reserve([budget], {**scope, "tag": "key:other"}, 5.0) == (None, None)
    rid, refused = store.reserve([budget], {**scope, "tag": "key:ci"}, 0.75)
    assert rid and refused is None
    assert store.spent(budget) == pytest.approx(0.75)  # the held amount counts against the tag
    assert store.reserve([budget], {**scope, "tag": "key:ci"}, 0.5)[1].startswith("budget $1/total (tag=key:ci)")
    assert store.settle(rid, {"request_id": "new", "ts": 6.0, "provider": "groq", "model": "m", "cost_usd": 0.25,
                              "tag": "key:ci"}) is True
    assert store.spent(budget) == pytest.approx(0.25)
    assert [r["request_id"] for r in store.rows(tag="key:ci")] == ["new"]
    assert [r["tag"] for r in store.rows()] == [None, "key:ci"]
    with psycopg.connect(url) as con:
        assert con.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'calls_tag'").fetchone() == (1,)


def test_postgres_ledger_from_before_outcome_gains_it(postgres_server):
    """A v3 PostgreSQL ledger (tag, no outcome) gains ``outcome`` NOT NULL DEFAULT 'ok' in
    place: old rows read ok; interrupted rows go in through group commit (settle_many), and
    their hold is settled with their cost."""
    import psycopg

    from knollm.client.store import Budget
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("o_" + uuid.uuid4().hex[:10])
    with psycopg.connect(url, autocommit=True) as con:  # the tables as schema v3 made them
        con.execute("CREATE TABLE calls (id BIGSERIAL PRIMARY KEY, request_id TEXT UNIQUE NOT NULL, "
                    "ts DOUBLE PRECISION NOT NULL, target TEXT, alias TEXT, provider TEXT NOT NULL, model TEXT NOT NULL, "
                    "key_label TEXT, stream INTEGER, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, "
                    "cache_write_tokens INTEGER, usage_estimated INTEGER, cost_usd DOUBLE PRECISION, price_source TEXT, "
                    "unpriced_reason TEXT, ttft_ms DOUBLE PRECISION, duration_ms DOUBLE PRECISION, attempts INTEGER, "
                    "saved_usd DOUBLE PRECISION, tag TEXT)")
        con.execute("CREATE TABLE reservations (id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, provider TEXT, "
                    "alias TEXT, key_label TEXT, amount DOUBLE PRECISION NOT NULL, tag TEXT)")
        for i in range(3):
            con.execute("INSERT INTO calls (request_id, ts, provider, model, cost_usd, tag) VALUES (%s, %s, 'groq', "
                        "'m', 0.25, 'key:ci')", (f"v3-{i}", 5.0 + i))
    store = PostgresStore(url)
    PostgresStore(url)  # a second replica starting finds the column there
    assert [(r["request_id"], r["cost_usd"], r["tag"], r["outcome"]) for r in store.rows()] == [
        (f"v3-{i}", 0.25, "key:ci", "ok") for i in range(3)]
    budget = Budget(10.0, "total", tag="key:ci")
    scope = {"provider": "groq", "alias": None, "key_label": "K", "tag": "key:ci"}
    rid, _ = store.reserve([budget], scope, 2.0)
    assert store.spent(budget) == pytest.approx(0.75 + 2.0)
    assert store.settle_many([
        (rid, {"request_id": "cut", "ts": 10.0, "provider": "groq", "model": "m", "stream": True, "cost_usd": 0.0625,
               "usage_estimated": 2, "tag": "key:ci", "outcome": "interrupted"}),
        (None, {"request_id": "answered", "ts": 11.0, "provider": "groq", "model": "m", "cost_usd": 0.5})]) == \
        [True, True]
    assert store.settle(None, {"request_id": "cut", "ts": 12.0, "provider": "groq", "model": "m",
                               "outcome": "interrupted"}) is False  # never twice
    assert [(r["request_id"], r["outcome"], r["usage_estimated"]) for r in store.rows(since=10.0)] == [
        ("cut", "interrupted", 2), ("answered", "ok", None)]
    assert store.spent(budget) == pytest.approx(0.75 + 0.0625)  # the hold settled at the interrupted cost
    with psycopg.connect(url) as con:
        assert con.execute("SELECT is_nullable, column_default FROM information_schema.columns "
                           "WHERE table_name = 'calls' AND column_name = 'outcome'").fetchone() == ("NO", "'ok'::text")


def test_postgres_spent_never_misses_a_settle_in_flight(postgres_server):
    """``spent`` (and so every reservation's check) sums the ledger and the live holds in
    one snapshot: a settle committing meanwhile (hold deleted, row inserted) is seen whole
    or not at all. With two statements it could be seen as neither, undercounting by the
    hold, which let concurrent replicas overspend a budget. Here the spend only grows, so
    a reader must never see it drop. Also: stores opened next to busy ones run no DDL."""
    import threading

    from knollm.client.store import Budget
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("r_" + uuid.uuid4().hex[:10])
    budget = Budget(1e9, "total", provider="groq")
    scope = {"provider": "groq", "alias": None, "key_label": "K"}
    writers = [PostgresStore(url) for _ in range(2)]
    done = threading.Event()
    drops: list[tuple[float, float]] = []
    opened: list[int] = []

    def write(st: PostgresStore) -> None:
        for _ in range(300):
            rid, _ = st.reserve([budget], scope, 1.0)
            st.settle(rid, {"request_id": uuid.uuid4().hex, "ts": 1.0, "provider": "groq", "model": "m",
                            "cost_usd": 1.0})

    def read() -> None:
        st, last = PostgresStore(url), 0.0  # opened while the writers settle
        opened.append(1)
        while not done.is_set():
            v = st.spent(budget)
            if v < last:
                drops.append((last, v))
            last = max(last, v)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, writers))
    done.set()
    for t in readers:
        t.join()
    assert opened == [1, 1] and drops == []
    assert writers[0].spent(budget) == pytest.approx(600.0)


def test_knollm_usage_reads_the_shared_postgres_ledger(postgres_server, monkeypatch, capsys, tmp_path):
    """``knollm usage`` sums the ledger the gateway replicas share when
    ``KNOLLM_DATABASE_URL`` names PostgreSQL (``--db`` takes a URL too); the password never
    shows; ``sqlite:///FILE`` names a file."""
    import json

    from knollm.cli import main
    from knollm.client.store import LEDGER_COLUMNS, SQLiteStore
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("u_" + uuid.uuid4().hex[:10])
    assert url.startswith("postgresql://postgres@")
    url = url.replace("postgres@", "postgres:s3cret-pw@", 1)  # the test server trusts loopback: ignored
    store = PostgresStore(url)
    for i, (tag, cost) in enumerate((("key:alpha", 0.25), ("key:alpha", 0.5), ("key:beta", None))):
        row = {c: None for c in LEDGER_COLUMNS}
        row.update(request_id=f"r{i}", ts=1000.0 + i, provider="groq", model="m", stream=0, input_tokens=10,
                   output_tokens=5, cached_tokens=0, usage_estimated=0, cost_usd=cost, attempts=1, tag=tag)
        store.settle(None, row)
    monkeypatch.setenv("KNOLLM_DATABASE_URL", url)
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))  # no SQLite ledger here
    assert main(["usage", "--by", "tag", "--json"]) == 0
    got = {r["tag"]: (r["calls"], r["cost_usd"], r["unpriced_calls"]) for r in json.loads(capsys.readouterr().out)}
    assert got == {"key:alpha": (2, 0.75, 0), "key:beta": (1, 0.0, 1)}
    assert main(["usage", "--request-id", "r1", "--tag", "key:alpha", "--json"]) == 0  # one call's whole row
    (one,) = json.loads(capsys.readouterr().out)
    assert (one["request_id"], one["cost_usd"], one["tag"], one["ts"]) == ("r1", 0.5, "key:alpha", 1001.0)
    assert main(["usage", "--request-id", "r1", "--tag", "key:beta"]) == 1  # the filters combine
    capsys.readouterr()
    assert main(["usage", "--tag", "key:nobody"]) == 1
    err = capsys.readouterr().err
    assert "no calls in the ledger postgresql://postgres:***@127.0.0.1:" in err and "s3cret-pw" not in err
    monkeypatch.delenv("KNOLLM_DATABASE_URL")
    lite = SQLiteStore(tmp_path / "other.db")
    row = {c: None for c in LEDGER_COLUMNS}
    row.update(request_id="s1", ts=1.0, provider="groq", model="m", cost_usd=0.125, input_tokens=1,
               output_tokens=1, usage_estimated=0, attempts=1)
    lite.settle(None, row)
    assert main(["usage", "--db", f"sqlite:///{tmp_path / 'other.db'}", "--json"]) == 0
    assert [r["cost_usd"] for r in json.loads(capsys.readouterr().out)] == [0.125]
    assert main(["usage", "--db", url, "--json"]) == 0  # a URL through --db
    assert sum(r["calls"] for r in json.loads(capsys.readouterr().out)) == 3


def test_postgres_stores_survive_lost_connections(postgres_server):
    """A restart or failover ends every session: the pooled connections are dead at their
    next statement. Every store method then runs again on a new connection, so nothing
    fails and nothing counts twice: a settle repeated finds its row there (not charged
    again), a key's settle repeated finds its hold gone (not charged again)."""
    from knollm.client.store import Budget
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("l_" + uuid.uuid4().hex[:10])
    ledger, keys = PostgresStore(url), KeyStore(url)
    key, token = keys.create("k", budget_usd=1.0, rpm=100)
    budget = Budget(5.0, "day", provider="groq")
    scope = {"provider": "groq", "alias": None, "key_label": "K", "tag": "key:k"}

    def row(cost: float) -> dict:
        return {"request_id": uuid.uuid4().hex, "ts": time.time(), "provider": "groq", "model": "m",
                "cost_usd": cost, "tag": "key:k"}

    steps = [
        lambda: keys.any_active() is True,
        lambda: keys.lookup(token).id == key.id,
        lambda: keys.hit(key.id) >= 1,
        lambda: bool(hold := keys.reserve(key.id, 0.01)) and keys.settle(key.id, hold, 0.005),
        lambda: bool(rid := ledger.reserve([budget], scope, 0.1)[0]) and ledger.settle(rid, row(0.01)),
        lambda: ledger.settle_many([(None, row(0.01)), (None, row(0.01))]) == [True, True],
        lambda: ledger.release(ledger.reserve([budget], scope, 0.1)[0]) is None,
        lambda: ledger.spent(budget) > 0,
        lambda: len(ledger.rows()) > 0,
        lambda: keys.get(key.id).id == key.id,
    ]
    for step in steps:  # every method, each right after the sessions were ended
        assert postgres_server.drop_connections(url) >= 1
        assert step()
    with ThreadPoolExecutor(3) as pool:  # three threads, each with a connection found dead
        for step in steps:
            list(pool.map(lambda _: step(), range(3)))  # (each thread connects)
            postgres_server.drop_connections(url)
            assert all(pool.map(lambda _: step(), range(3)))
    assert len(ledger.rows()) == 21 and ledger.spent(budget) == pytest.approx(21 * 0.01)
    k = keys.get(key.id)
    assert k.spent_usd == pytest.approx(7 * 0.005) and k.reserved_usd == pytest.approx(0.0)


def test_keys_update_command(tmp_path, monkeypatch, capsys):
    """``knollm serve keys update``: only the options given change; contradicting or no
    options are a usage error (exit 2) that changes nothing; an unknown key exits 1."""
    from knollm.cli import main

    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))
    monkeypatch.delenv("KNOLLM_DATABASE_URL", raising=False)
    assert main(["serve", "keys", "create", "ci", "--allow", "groq/*", "--rpm", "60", "--budget", "5"]) == 0
    capsys.readouterr()
    assert main(["serve", "keys", "update", "ci", "--budget-period", "month", "--json"]) == 0
    out = capsys.readouterr().out
    got = json.loads(out)
    assert (got["allowed"], got["rpm"], got["budget_usd"], got["budget_period"]) == (["groq/*"], 60, 5.0, "month")
    assert "kn-" not in out.replace(got["prefix"], "")  # the record, never the key
    for argv in (["--rpm", "3", "--no-rpm"], ["--budget", "1", "--no-budget"], ["--allow", "x", "--allow-any"], [],
                 ["--budget-period", "week"], ["--expires", "2h", "--no-expiry"], ["--expires", "2001-01-01"],
                 ["--tpm", "100", "--no-tpm"], ["--tpm", "0"],
                 ["--expires", "next week"]):
        assert main(["serve", "keys", "update", "ci", *argv]) == 2, argv
    assert main(["serve", "keys", "update", "nobody", "--rpm", "3"]) == 1
    assert main(["serve", "keys", "update", "ci", "--no-rpm", "--allow-any", "--no-budget"]) == 0
    k = KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}").get("ci")
    assert (k.allowed, k.rpm, k.budget_usd, k.budget_period) == ((), None, None, "month")
    t0 = time.time()
    assert main(["serve", "keys", "update", "ci", "--expires", "30d"]) == 0
    k = KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}").get("ci")
    assert t0 + 30 * 86400 <= k.expires_at <= time.time() + 30 * 86400
    assert main(["serve", "keys", "update", "ci", "--expires", "2099-12-31T18:00Z"]) == 0
    assert KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}").get("ci").expires_at == 4102423200.0
    assert main(["serve", "keys", "update", "ci", "--expires", "2099-12-31"]) == 0  # a date: UTC midnight
    assert KeyStore(f"sqlite:///{tmp_path / 'knollm.db'}").get("ci").expires_at == 4102358400.0
