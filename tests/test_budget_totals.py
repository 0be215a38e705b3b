"""Budgets read running totals (table ``spend``), on SQLite and on a real PostgreSQL server.

What a budget has spent must equal the ledger's rows of its period (a brute-force sum over
``rows()``, the oracle), for every period and selector; a duplicate request id, an
unpriced call and a row inserted by a writer that knows nothing of the totals (an older
knollm, raw SQL) are handled as the ledger has them; a check never reads ``calls`` (so
its cost does not grow with the ledger: ``scripts/bench_budget.py`` measures it); a
ledger from before the totals gets them computed when opened; two PostgreSQL writers
settling rows of the same totals in opposite orders never deadlock."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

from knollm.client.store import SPEND_ALL, Budget, SQLiteStore, period_start


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request):
    return request.param


def open_store(kind: str, tmp_path: Path, request) -> tuple:  # noqa: ANN001
    """(store, url or path, a function running raw SQL the way another writer would)."""
    if kind == "sqlite":
        path = tmp_path / "ledger.db"

        def raw(sql: str, args: tuple = ()) -> None:
            with sqlite3.connect(path) as con:
                con.execute(sql, args)

        return SQLiteStore(path), path, raw
    import psycopg

    from knollm.gateway.pgstore import PostgresStore

    url = request.getfixturevalue("postgres_server").create_database("b_" + uuid.uuid4().hex[:10])

    def raw_pg(sql: str, args: tuple = ()) -> None:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(sql.replace("?", "%s"), args)

    return PostgresStore(url), url, raw_pg


def _row(ts: float, cost: float | None, **kw) -> dict:
    return {"request_id": uuid.uuid4().hex, "ts": ts, "provider": "groq", "model": "m", "cost_usd": cost, **kw}


def _oracle(store, budget: Budget, now: float) -> float:  # noqa: ANN001
    """The budget's settled spend, summed from the ledger's rows."""
    start = period_start(budget.period, now)
    sel = budget.selectors()
    return sum(r["cost_usd"] or 0.0 for r in store.rows()
               if r["ts"] >= start and all(r[k] == v for k, v in sel.items()))


BUDGETS = [Budget(1e9, p, **sel) for p in ("day", "month", "total") for sel in (
    {}, {"provider": "groq"}, {"provider": "openai"}, {"alias": "fast"}, {"key": "K2"}, {"tag": "key:ci"},
    {"provider": "groq", "alias": "fast", "tag": "key:ci"}, {"provider": "nobody"})]


def test_spent_equals_the_ledger_rows_of_each_period_and_selector(kind, tmp_path, request):
    store, _, raw = open_store(kind, tmp_path, request)
    now = time.time()
    month0, day0 = period_start("month", now), period_start("day", now)
    times = [now, day0 + 0.5, day0 - 0.5, month0 + 0.25, month0 - 0.25, month0 - 400 * 86400]  # today .. 13 months ago
    rows = []
    for i, ts in enumerate(times):
        for j, extra in enumerate(({}, {"alias": "fast"}, {"key_label": "K2"}, {"tag": "key:ci", "alias": "fast"},
                                   {"provider": "openai", "tag": "key:ci"})):
            rows.append(_row(ts, 0.001 * (i + 1) + 0.01 * j, **extra))
    rows.append(_row(now, None, unpriced_reason="no price"))  # unpriced: counts nothing
    rows.append(_row(now, 0.0))
    rows.append(_row(now, 0.5, outcome="interrupted", usage_estimated=1))  # an interrupted stream is billed
    assert store.settle_many([(None, r) for r in rows[:10]]) == [True] * 10
    for r in rows[10:]:
        assert store.settle(None, r) is True
    assert store.settle(None, rows[0]) is False  # the same request never counts twice
    assert store.settle_many([(None, rows[3]), (None, _row(now, 0.125, alias="fast"))]) == [False, True]
    # a writer that knows nothing of the totals (an older knollm on the same file or database)
    raw("INSERT INTO calls (request_id, ts, provider, model, alias, tag, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("raw-1", now, "groq", "m", "fast", "key:ci", 0.0625))
    for b in BUDGETS:
        assert store.spent(b) == pytest.approx(_oracle(store, b, now), abs=1e-12), b.label()
    assert store.spent(Budget(1, "total", provider="nobody")) == 0.0
    # live holds still count, and settling one moves it into the totals at the real cost
    b = Budget(10, "day", provider="groq", alias="fast")
    before = store.spent(b)
    rid, refused = store.reserve([b], {"provider": "groq", "alias": "fast", "key_label": None, "tag": None}, 2.0)
    assert rid and refused is None and store.spent(b) == pytest.approx(before + 2.0)
    assert store.settle(rid, _row(time.time(), 0.25, alias="fast")) is True
    assert store.spent(b) == pytest.approx(before + 0.25)
    assert store.reserve([b], {"provider": "groq", "alias": "fast"}, 10.0)[1].startswith("budget $10/day")


def test_a_budget_check_never_reads_the_ledger(kind, tmp_path, request):
    """Every statement a reservation or ``spent`` runs reads the totals and the holds only:
    a check costs the same with 10 rows or 10 million."""
    store, _, _ = open_store(kind, tmp_path, request)
    store.settle_many([(None, _row(time.time(), 0.01, tag="key:ci")) for _ in range(20)])
    seen: list[str] = []
    if kind == "sqlite":
        store._db.set_trace_callback(seen.append)
    else:
        run = store.db.execute
        store.db.execute = lambda sql, params=(): (seen.append(sql), run(sql, params))[1]
    budgets = [Budget(5, p, tag="key:ci") for p in ("day", "month", "total")]
    rid, refused = store.reserve(budgets, {"provider": "groq", "tag": "key:ci"}, 0.5)
    assert rid and refused is None
    assert [store.spent(b) for b in budgets] == pytest.approx([0.7, 0.7, 0.7])
    assert len([s for s in seen if "FROM spend" in s]) >= 6  # 3 budgets checked, then 3 read
    assert not [s for s in seen if "calls" in s], seen


def test_rows_before_the_totals_are_counted_when_the_ledger_is_opened(kind, tmp_path, request):
    """A ledger written before the totals existed (SQLite v4, or a PostgreSQL ``calls``
    without ``spend``) gets them computed from its rows when opened, once."""
    store, where, raw = open_store(kind, tmp_path, request)
    now = time.time()
    store.settle_many([(None, _row(now - d * 86400, 0.5, alias="fast")) for d in range(40)])
    if kind == "sqlite":
        store.close()
        with sqlite3.connect(where) as con:  # back to v4: no totals, no trigger
            con.execute("DROP TRIGGER calls_spend")
            con.execute("DROP TABLE spend")
            con.execute("PRAGMA user_version=4")
        raw("INSERT INTO calls (request_id, ts, provider, model, cost_usd) VALUES ('v4', ?, 'groq', 'm', 2.0)", (now,))
        store = SQLiteStore(where)
        with sqlite3.connect(where) as con:
            assert con.execute("PRAGMA user_version").fetchone() == (5,)
    else:
        from knollm.gateway.pgstore import PostgresStore

        raw("DROP TRIGGER calls_spend ON calls")
        raw("DROP TABLE spend")
        raw("INSERT INTO calls (request_id, ts, provider, model, cost_usd) VALUES ('v4', ?, 'groq', 'm', 2.0)", (now,))
        store = PostgresStore(where)
        PostgresStore(where)  # a second replica opening it computes nothing again
    for b in BUDGETS:
        assert store.spent(b) == pytest.approx(_oracle(store, b, now), abs=1e-12), b.label()
    assert store.spent(Budget(1e9, "total")) == pytest.approx(40 * 0.5 + 2.0)
    store.settle(None, _row(now, 1.0))  # and the trigger runs again
    assert store.spent(Budget(1e9, "total")) == pytest.approx(40 * 0.5 + 3.0)


def test_holds_of_a_crashed_process_stop_counting_and_are_dropped(kind, tmp_path, request):
    """A reservation nobody settles (its process died) counts until ``reservation_ttl``,
    then not, and the next reservation deletes it: the holds table keeps the live ones."""
    store, _, raw = open_store(kind, tmp_path, request)
    now = time.time()
    raw("INSERT INTO reservations (id, ts, provider, amount) VALUES ('dead', ?, 'groq', 100.0)", (now - 3700,))
    raw("INSERT INTO reservations (id, ts, provider, amount) VALUES ('alive', ?, 'groq', 0.5)", (now - 60,))
    b = Budget(1.0, "day", provider="groq")
    assert store.spent(b) == pytest.approx(0.5)
    rid, refused = store.reserve([b], {"provider": "groq"}, 0.25)
    assert rid and refused is None and store.spent(b) == pytest.approx(0.75)
    ids = {r[0] for r in (store._db.execute("SELECT id FROM reservations").fetchall() if kind == "sqlite"
                          else store.db.execute("SELECT id FROM reservations"))}
    assert ids == {"alive", rid}


def test_sqlite_totals_recomputed_after_an_older_knollm_opened_the_file(tmp_path):
    """An older knollm opening a v5 file sets its version back to 4 (and its inserts still
    run the trigger, which lives in the file); the next open recomputes the totals from
    the rows instead of adding them again."""
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    store.settle_many([(None, _row(time.time(), 0.25)) for _ in range(4)])
    store.close()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO calls (request_id, ts, provider, model, cost_usd) VALUES ('old', ?, 'groq', 'm', 1)",
                    (time.time(),))
        con.execute("PRAGMA user_version=4")
    store = SQLiteStore(path)
    assert store.spent(Budget(9, "total")) == pytest.approx(2.0)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT cost_usd FROM spend WHERE bucket = ? AND provider = 'groq'",
                           (SPEND_ALL,)).fetchall() == [(pytest.approx(2.0),)]


def test_postgres_writers_settling_the_same_totals_in_opposite_orders_never_deadlock(postgres_server):
    """The trigger locks each running total it raises until the settle commits. Two replicas
    settling batches whose rows touch the same totals in opposite orders would wait on
    each other in a cycle (PostgreSQL then aborts one: a lost ledger write); rows go in
    sorted by their totals, so they never do."""
    from knollm.gateway.pgstore import PostgresStore

    url = postgres_server.create_database("d_" + uuid.uuid4().hex[:10])
    stores = [PostgresStore(url), PostgresStore(url)]
    combos = [{"alias": a, "tag": t} for a in ("a", "b") for t in ("key:x", "key:y")]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(i: int) -> None:
        start.wait()
        try:
            for _ in range(150):
                mine = combos if i == 0 else combos[::-1]
                assert stores[i].settle_many([(None, _row(time.time(), 0.01, **c)) for c in mine]) == [True] * 4
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].spent(Budget(1e9, "day", alias="a", tag="key:y")) == pytest.approx(2 * 150 * 0.01)
    assert stores[0].spent(Budget(1e9, "total")) == pytest.approx(4 * 2 * 150 * 0.01)


@pytest.mark.parametrize("sel", [{"provider": ""}, {"alias": ""}, {"key": ""}, {"provider": 3}])
def test_a_budget_selector_is_a_non_empty_string(sel):
    with pytest.raises(ValueError, match="non-empty string"):
        Budget(1.0, "day", **sel)


_OLD_TRIGGER = (  # the spend trigger of knollm before 2026-11-24: two upserts a row
    "CREATE TRIGGER calls_spend AFTER INSERT ON calls WHEN NEW.cost_usd IS NOT NULL AND NEW.cost_usd != 0 BEGIN "
    + " ".join(f"INSERT INTO spend VALUES ({b}, NEW.provider, COALESCE(NEW.alias, ''), COALESCE(NEW.key_label, ''), "
               "COALESCE(NEW.tag, ''), NEW.cost_usd) ON CONFLICT (bucket, provider, alias, key_label, tag) DO UPDATE "
               "SET cost_usd = spend.cost_usd + excluded.cost_usd;" for b in (SPEND_ALL, "CAST(NEW.ts / 86400 AS INTEGER)"))
    + " END")


def test_a_ledger_with_the_earlier_trigger_gets_the_new_one_and_keeps_its_totals(tmp_path):
    """The trigger of an earlier version (two upserts a row) is replaced when the ledger is
    opened; the totals stay those of the rows, a row an earlier version's process still
    writes (through either trigger) counts once, and so does a row of this version."""
    from knollm.client.store import _SPEND_TRIGGER

    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    store.close()
    with sqlite3.connect(path) as con:
        con.execute("DROP TRIGGER calls_spend")
        con.execute(_OLD_TRIGGER)
    now = time.time()
    with sqlite3.connect(path) as con:  # written under the earlier trigger
        con.execute("INSERT INTO calls (request_id, ts, provider, model, cost_usd, tag) VALUES ('a', ?, 'groq', 'm', 1.5, 't')",
                    (now,))
    store = SQLiteStore(path)
    with sqlite3.connect(path) as con:
        sql = con.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'calls_spend'").fetchone()[0]
    assert sql == _SPEND_TRIGGER != _OLD_TRIGGER
    store.settle(None, _row(now, 0.25, tag="t"))
    with sqlite3.connect(path) as con:  # another process writing raw rows: the new trigger counts them
        con.execute("INSERT INTO calls (request_id, ts, provider, model, cost_usd, tag) VALUES ('b', ?, 'groq', 'm', 2.0, 't')",
                    (now,))
    for b in (Budget(1e9, "total", tag="t"), Budget(1e9, "day", tag="t"), Budget(1e9, "month", provider="groq")):
        assert store.spent(b) == pytest.approx(_oracle(store, b, now), abs=1e-12), b.label()
    assert store.spent(Budget(1e9, "total")) == pytest.approx(3.75)
    SQLiteStore(path)  # opened again: nothing to replace, nothing recounted
    assert store.spent(Budget(1e9, "total")) == pytest.approx(3.75)


def test_rows_with_and_without_none_values_are_written_whole(tmp_path):
    """A row's None values are left to the columns' NULL (one statement per pattern of
    None): every value read back as written, None as None, a duplicate request id
    ignored whatever its pattern."""
    from knollm.client.store import LEDGER_COLUMNS

    store = SQLiteStore(tmp_path / "ledger.db")
    now = time.time()
    full = {c: None for c in LEDGER_COLUMNS} | {
        "request_id": "full", "ts": now, "target": "fast", "alias": "fast", "provider": "groq", "model": "m",
        "key_label": "GROQ_API_KEY", "stream": 1, "input_tokens": 10, "output_tokens": 20, "cached_tokens": 3,
        "cache_write_tokens": 4, "usage_estimated": 0, "cost_usd": 0.5, "price_source": "catalog",
        "unpriced_reason": "n/a", "ttft_ms": 12.5, "duration_ms": 30.25, "attempts": 2, "saved_usd": 0.125,
        "tag": "key:ci", "outcome": "interrupted"}
    sparse = _row(now, None, request_id="sparse", alias=None, tag=None)
    assert store.settle_many([(None, full), (None, sparse)]) == [True, True]
    # the same ids again, each with the other's pattern of None: both ignored, nothing changed
    assert store.settle_many([(None, {**sparse, "request_id": "full"}), (None, {**full, "request_id": "sparse"})]) \
        == [False, False]
    rows = {r["request_id"]: r for r in store.rows()}
    assert rows["full"] == full
    assert rows["sparse"] == {c: None for c in LEDGER_COLUMNS} | sparse | {"outcome": "ok"}
    assert store.spent(Budget(1e9, "total")) == pytest.approx(0.5)


def test_a_quick_try_does_not_leave_the_busy_timeout_short(tmp_path):
    """The group commit's try without waiting (``busy_ms=0``) leaves the connection at
    that timeout for the next try; a statement that waits as usual (a release, a budget
    read, a plain settle) sets the store's own first, so another process's write lock
    held for a moment is waited for, never a ``database is locked``."""
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path, busy_timeout_ms=5000)
    rid, _ = store.reserve([Budget(10.0)], {"provider": "groq"}, 0.5)
    now = time.time()
    assert store.settle_many([(None, _row(now, 0.1))], busy_ms=0) == [True]
    for act in (lambda: store.release(rid), lambda: store.settle(None, _row(now, 0.1)),
                lambda: store.reserve([Budget(10.0)], {"provider": "groq"}, 0.5)):
        held = threading.Event()

        def hold() -> None:
            con = sqlite3.connect(path, isolation_level=None)
            con.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(0.3)
            con.execute("COMMIT")
            con.close()

        t = threading.Thread(target=hold)
        t.start()
        held.wait(5)
        act()  # waits for the lock (raised "database is locked" with the timeout left at 0)
        t.join()
        store.settle_many([(None, _row(now, 0.1))], busy_ms=0)  # and the quick try again, as the gateway does
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # the quick try itself still does not wait
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        try:
            store.settle_many([(None, _row(now, 0.1))], busy_ms=0)
        finally:
            con.execute("COMMIT")
            con.close()
