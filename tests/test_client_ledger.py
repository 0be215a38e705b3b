"""The usage ledger and budgets: exact rows and costs, nothing charged twice, no overspend
under concurrency (threads and 2 processes), and no key in the database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knollm import AllAttemptsFailed, BudgetExceeded, Client, StreamInterrupted
from knollm.client import Budget, SQLiteStore
from knollm.client.spool import spool_for
from knollm.client.store import default_db_path
from knollm.query.api import Catalog
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures
from tests.support.provider_servers import ProviderServer

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"GROQ_API_KEY": "gsk_ledger_SECRET_1111", "GROQ_API_KEY_2": "gsk_ledger_SECRET_2222",
        "CEREBRAS_API_KEY": "csk_ledger_SECRET_3333"}
MSG = [{"role": "user", "content": "hi there"}]


PROVIDERS = ("groq", "cerebras", "ollama")


CAT = catalog(
    model("groq", "llama-3.3-70b-versatile", input=0.59, output=0.79),
    model("cerebras", "llama-3.3-70b", input=0.85, output=1.2),
    model("ollama", "llama3.3", "llama3.3", input=None, output=None),
    model("groq", "tiered", "tiered", input=1.0, output=2.0, cache_read=0.1,
          tiers=[{"start": 0, "input": 1.0, "output": 2.0}, {"start": 100, "input": 3.0, "output": 6.0}]),
)


def client(srv, tmp_path, **kw):
    kw.setdefault("backoff_base", 0.01)
    store = kw.pop("store", None) or SQLiteStore(tmp_path / "knollm.db")
    return Client(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store, **kw), store


def test_default_db_path_honours_knollm_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "knollm.db"
    monkeypatch.delenv("KNOLLM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    if sys.platform.startswith("linux"):
        assert default_db_path() == tmp_path / "x" / "knollm" / "knollm.db"


def test_one_row_per_call_only_the_provider_that_answered_is_charged(srv, tmp_path):
    srv["groq"].faults(*["500"] * 6)
    c, store = client(srv, tmp_path)
    r = c.chat(CANON, MSG)
    assert [(a["provider"], a["key"]) for a in r.attempts] == [("groq", "GROQ_API_KEY")] * 3 + \
        [("groq", "GROQ_API_KEY_2")] * 3 + [("cerebras", "CEREBRAS_API_KEY")]
    rows = store.rows()
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("provider", "model", "key_label", "input_tokens", "output_tokens", "cached_tokens",
                                "usage_estimated", "attempts", "stream", "target", "price_source")} == {
        "provider": "cerebras", "model": "llama-3.3-70b", "key_label": "CEREBRAS_API_KEY", "input_tokens": 120,
        "output_tokens": 30, "cached_tokens": 0, "usage_estimated": 0, "attempts": 7, "stream": 0,
        "target": CANON, "price_source": "catalog:genai-prices"}
    assert row["cost_usd"] == pytest.approx((120 * 0.85 + 30 * 1.2) / 1e6) == r.cost_usd
    assert row["request_id"] == r.request_id


def test_failed_calls_are_never_charged_interrupted_ones_are(srv, tmp_path):
    """A call that failed before any output is not billed: no row, holds released. A
    stream cut after its first token is: one ``interrupted`` row, the hold settled with
    its cost (see tests/test_client_interrupted.py for the token counts)."""
    groq = Budget(1.0, "day", provider="groq")
    c, store = client(srv, tmp_path, retries=0, stall_timeout=0.3, budgets=[groq])
    srv["groq"].default = srv["cerebras"].default = "503"
    with pytest.raises(AllAttemptsFailed):
        c.chat(CANON, MSG)
    with pytest.raises(AllAttemptsFailed):
        list(c.stream(CANON, MSG))
    assert store.rows() == []
    assert store.spent(groq) == 0  # reservations released
    srv["groq"].default = srv["cerebras"].default = "ok"
    srv["groq"].faults("cut")
    with pytest.raises(StreamInterrupted) as ei:
        list(c.stream(CANON, MSG))
    (cut,) = store.rows()
    assert cut["outcome"] == "interrupted" and cut["request_id"] == ei.value.row["request_id"]
    assert cut["cost_usd"] > 0 and store.spent(groq) == pytest.approx(cut["cost_usd"])
    res = list(c.stream(CANON, MSG))[-1]
    cut_again, row = store.rows()
    assert cut_again == cut
    assert row["outcome"] == "ok" and row["stream"] == 1 and row["ttft_ms"] == res.ttft_ms
    assert row["cost_usd"] == pytest.approx(res.cost_usd)


def test_settle_is_idempotent(tmp_path):
    store = SQLiteStore(tmp_path / "k.db")
    row = {"request_id": "r1", "ts": 1.0, "provider": "groq", "model": "m", "cost_usd": 0.5, "input_tokens": 1,
           "output_tokens": 1}
    assert store.settle(None, row) is True
    assert store.settle(None, row) is False
    assert len(store.rows()) == 1


def test_unpriced_call_is_recorded_with_null_cost_and_reason(srv, tmp_path):
    c, store = client(srv, tmp_path)
    r = c.chat("ollama/llama3.3", MSG)
    (row,) = store.rows()
    assert r.cost_usd is None and row["cost_usd"] is None
    assert row["unpriced_reason"] == r.unpriced_reason == "ollama/llama3.3: no input/output price in the catalog"


def test_tiers_and_cache_reads_priced(srv, tmp_path):
    srv["groq"].usage = (120, 30, 20)  # 120 prompt tokens (>= the 100 tier), 20 of them cache reads
    c, _ = client(srv, tmp_path)
    r = c.chat("groq/tiered", MSG)
    assert r.usage.cached_tokens == 20
    assert r.cost_usd == pytest.approx((100 * 3.0 + 20 * 0.1 + 30 * 6.0) / 1e6)


def test_budget_refuses_before_calling_and_names_the_budget(srv, tmp_path):
    c, store = client(srv, tmp_path, budgets=[Budget(0.000001, "month", provider="groq")])
    n = len(srv["groq"].requests)
    with pytest.raises(BudgetExceeded, match=r"\$1e-06/month \(provider=groq\)"):
        c.chat("groq/llama-3.3-70b-versatile", MSG)
    assert len(srv["groq"].requests) == n  # never sent
    r = c.chat(CANON, MSG)  # the canonical target routes around the budget
    assert r.provider == "cerebras"
    assert next(x for x in r.candidates if x["provider"] == "groq")["status"] == "skipped"
    assert "earlier candidates skipped: budget $1e-06/month (provider=groq)" in r.why


def test_budget_per_key_moves_to_the_next_key(srv, tmp_path):
    c, store = client(srv, tmp_path, budgets=[Budget(0.0002, "day", key="GROQ_API_KEY")])
    keys = [c.chat("groq/llama-3.3-70b-versatile", MSG, max_tokens=30).key for _ in range(4)]
    # each call really costs (120*0.59 + 30*0.79)/1e6 = 9.45e-5; a third would need 1.89e-4 + its worst case
    # (1.5 x the prompt estimate + 30 output tokens = 2.96e-5) > 2e-4
    assert keys == ["GROQ_API_KEY", "GROQ_API_KEY", "GROQ_API_KEY_2", "GROQ_API_KEY_2"]
    assert store.spent(Budget(0.0002, "day", key="GROQ_API_KEY")) <= 0.0002


def test_unpriced_model_under_a_budget_is_refused(srv, tmp_path):
    c, _ = client(srv, tmp_path, budgets=[Budget(10, "day")])
    with pytest.raises(BudgetExceeded, match="unpriced"):
        c.chat("ollama/llama3.3", MSG)


def test_budget_holds_with_50_concurrent_calls_from_2_processes(tmp_path):
    db = tmp_path / "knollm.db"
    per_call = (6 * 1.0 + 30 * 2.0) / 1e6  # what the server reports (6 prompt, 30 output tokens) at $1/$2
    limit = 10 * per_call
    with ProviderServer("groq", usage=(6, 30, 0)) as s:
        s.latency = 0.05
        SQLiteStore(db).close()  # create the schema once
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [subprocess.Popen([sys.executable, "-m", "tests.support.budget_worker", str(db), s.base_url,
                                   repr(limit), "25"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        n_requests = len(s.requests)
    assert all(o["other"] == [] for o in outs), outs
    ok = sum(o["ok"] for o in outs)
    assert ok + sum(o["refused"] for o in outs) == 50
    rows = SQLiteStore(db).rows()
    assert len(rows) == ok == n_requests  # every call that reached the server is in the ledger, once
    assert sum(r["cost_usd"] for r in rows) <= limit + 1e-12
    assert 9 <= ok <= 10
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    for f in tmp_path.iterdir():
        assert b"gsk_worker_SECRET_9999" not in f.read_bytes()


def test_no_key_in_the_database_files(srv, tmp_path):
    srv["groq"].faults("401")
    c, store = client(srv, tmp_path, budgets=[Budget(5, "day")])
    c.chat(CANON, MSG)
    c.chat(CANON, MSG)
    list(c.stream(CANON, MSG))
    store.close()
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        for k in KEYS.values():
            assert k.encode() not in data, f.name


def test_a_version_1_ledger_is_upgraded_in_place(tmp_path):
    """A ledger written before `saved_usd` existed gains the column and keeps its rows."""
    import sqlite3

    from knollm.client.store import LEDGER_COLUMNS, SQLiteStore

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    old_cols = [c for c in LEDGER_COLUMNS if c not in ("saved_usd", "tag", "outcome")]
    con.execute(f"CREATE TABLE calls (id INTEGER PRIMARY KEY, {', '.join(old_cols)})")
    con.execute("CREATE TABLE reservations (id TEXT PRIMARY KEY, ts REAL NOT NULL, provider TEXT, alias TEXT, "
                "key_label TEXT, amount REAL NOT NULL)")
    con.execute(f"INSERT INTO calls (request_id, ts, provider, model, cost_usd) VALUES ('r1', 1.0, 'groq', 'm', 0.5)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    rows = SQLiteStore(path).rows()
    assert [(r["request_id"], r["cost_usd"], r["saved_usd"]) for r in rows] == [("r1", 0.5, None)]
    assert rows[0]["tag"] is None and rows[0]["outcome"] == "ok"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (5,)


# the v2 schema exactly as knollm wrote it before the tag column (schema version 2)
_V2_CALLS = ("CREATE TABLE calls (id INTEGER PRIMARY KEY, request_id TEXT UNIQUE NOT NULL, ts REAL NOT NULL, "
             "target TEXT, alias TEXT, provider TEXT NOT NULL, model TEXT NOT NULL, key_label TEXT, stream INTEGER, "
             "input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, cache_write_tokens INTEGER, "
             "usage_estimated INTEGER, cost_usd REAL, price_source TEXT, unpriced_reason TEXT, ttft_ms REAL, "
             "duration_ms REAL, attempts INTEGER, saved_usd REAL)")
_V2_RESERVATIONS = ("CREATE TABLE reservations (id TEXT PRIMARY KEY, ts REAL NOT NULL, provider TEXT, alias TEXT, "
                    "key_label TEXT, amount REAL NOT NULL)")


def _v2_ledger(path: Path, n: int = 3) -> None:
    import time as _t

    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(_V2_CALLS)
    con.execute("CREATE INDEX calls_ts ON calls(ts)")
    con.execute(_V2_RESERVATIONS)
    for i in range(n):
        con.execute("INSERT INTO calls (request_id, ts, target, alias, provider, model, key_label, stream, "
                    "input_tokens, output_tokens, cost_usd, attempts, saved_usd) "
                    "VALUES (?, ?, 'fast', 'fast', 'groq', 'm', 'GROQ_API_KEY', 0, 10, 5, ?, 1, ?)",
                    (f"old{i}", 1000.0 + i, 0.25 * (i + 1), 0.5 if i == 0 else None))
    con.execute("INSERT INTO reservations VALUES ('held1', ?, 'groq', 'fast', 'GROQ_API_KEY', 0.125)", (_t.time(),))
    con.execute("PRAGMA user_version=2")
    con.commit()
    con.close()


def test_a_version_2_ledger_is_upgraded_to_5_keeping_rows(tmp_path):
    path = tmp_path / "v2.db"
    _v2_ledger(path)
    store = SQLiteStore(path)
    rows = store.rows()
    assert [(r["request_id"], r["ts"], r["alias"], r["input_tokens"], r["cost_usd"], r["saved_usd"], r["tag"])
            for r in rows] == [("old0", 1000.0, "fast", 10, 0.25, 0.5, None), ("old1", 1001.0, "fast", 10, 0.5, None, None),
                               ("old2", 1002.0, "fast", 10, 0.75, None, None)]
    assert {r["outcome"] for r in rows} == {"ok"}
    assert store.spent(Budget(10, "total", provider="groq")) == pytest.approx(1.5 + 0.125)  # the live hold kept
    # the upgraded file takes tagged rows, reservations and tag budgets
    assert store.settle(None, {"request_id": "new1", "ts": 2000.0, "provider": "groq", "model": "m",
                               "cost_usd": 1.0, "tag": "key:ci"}) is True
    rid, refused = store.reserve([Budget(1.5, "total", tag="key:ci")],
                                 {"provider": "groq", "alias": None, "key_label": "K", "tag": "key:ci"}, 0.25)
    assert rid and refused is None
    assert store.spent(Budget(9, "total", tag="key:ci")) == pytest.approx(1.25)
    assert [r["request_id"] for r in store.rows(tag="key:ci")] == ["new1"]
    store.close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (5,)
        assert "tag" in {r[1] for r in con.execute("PRAGMA table_info(reservations)")}
        assert "calls_tag" in {r[1] for r in con.execute("PRAGMA index_list(calls)")}
    assert len(SQLiteStore(path).rows()) == 4  # opening a v5 file again changes nothing


# the v3 calls table exactly as knollm wrote it before the outcome column (schema version 3)
_V3_CALLS = _V2_CALLS[:-1] + ", tag TEXT)"


def test_a_version_3_ledger_is_upgraded_to_5_keeping_rows(tmp_path):
    """v3 -> v5 adds ``outcome`` (old rows were answered calls: ``ok``); interrupted rows
    then go in, and group commit (``settle_many``) takes both kinds."""
    import time as _t

    path = tmp_path / "v3.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(_V3_CALLS)
    con.execute("CREATE INDEX calls_ts ON calls(ts)")
    con.execute("CREATE INDEX calls_tag ON calls(tag, ts)")
    con.execute(_V2_RESERVATIONS[:-1] + ", tag TEXT)")
    for i in range(3):
        con.execute("INSERT INTO calls (request_id, ts, provider, model, input_tokens, output_tokens, cost_usd, "
                    "usage_estimated, tag) VALUES (?, ?, 'groq', 'm', 10, 5, 0.25, 0, ?)",
                    (f"v3-{i}", 1000.0 + i, "key:ci" if i else None))
    con.execute("INSERT INTO reservations VALUES ('held1', ?, 'groq', NULL, 'K', 0.125, 'key:ci')", (_t.time(),))
    con.execute("PRAGMA user_version=3")
    con.commit()
    con.close()
    store = SQLiteStore(path)
    rows = store.rows()
    assert [(r["request_id"], r["cost_usd"], r["tag"], r["outcome"]) for r in rows] == [
        ("v3-0", 0.25, None, "ok"), ("v3-1", 0.25, "key:ci", "ok"), ("v3-2", 0.25, "key:ci", "ok")]
    assert store.spent(Budget(10, "total", tag="key:ci")) == pytest.approx(0.5 + 0.125)  # the live hold kept
    assert store.settle_many([
        ("held1", {"request_id": "cut", "ts": 2000.0, "provider": "groq", "model": "m", "cost_usd": 0.0625,
                   "usage_estimated": 2, "tag": "key:ci", "outcome": "interrupted"}),
        (None, {"request_id": "answered", "ts": 2001.0, "provider": "groq", "model": "m", "cost_usd": 0.5})]) == \
        [True, True]
    assert [(r["request_id"], r["outcome"]) for r in store.rows(since=2000.0)] == [
        ("cut", "interrupted"), ("answered", "ok")]
    assert store.spent(Budget(10, "total", tag="key:ci")) == pytest.approx(0.5 + 0.0625)  # hold settled at cost
    store.close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (5,)
        col = next(r for r in con.execute("PRAGMA table_info(calls)") if r[1] == "outcome")
        assert (col[2], col[3], col[4]) == ("TEXT", 1, "'ok'")  # type, NOT NULL, default
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO calls (request_id, ts, provider, model, outcome) VALUES ('x', 1, 'p', 'm', NULL)")
    assert len(SQLiteStore(path).rows()) == 5


_OPEN_AND_SETTLE = """
import sys, time
from knollm.client.store import SQLiteStore
path, me, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
s = SQLiteStore(path)
s.settle(None, {"request_id": me, "ts": 3000.0, "provider": "groq", "model": "m", "cost_usd": 0.01, "tag": me})
print(len(s.rows()))
"""


def test_processes_opening_a_v2_ledger_at_once_upgrade_it_once(tmp_path):
    import time as _t

    path = tmp_path / "v2.db"
    _v2_ledger(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = _t.time() + 1.5  # every process imports first, then all open the file together
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_SETTLE, str(path), f"p{i}", repr(start)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    rows = SQLiteStore(path).rows()
    assert sorted(r["request_id"] for r in rows) == ["old0", "old1", "old2"] + [f"p{i}" for i in range(6)]
    assert {r["request_id"]: r["tag"] for r in rows if r["request_id"].startswith("p")} == {f"p{i}": f"p{i}"
                                                                                           for i in range(6)}



def test_async_calls_finishing_together_share_one_ledger_transaction(srv, tmp_path):
    """Group commit: concurrent AsyncClient calls write their rows through one
    ``settle_many``; every call still has its own row. When the transaction fails, every
    call that waited on it still gets its answer (the provider billed it): the rows go to
    the spool with a warning, and into the ledger, once each, at the next settle."""
    import asyncio

    from knollm import AsyncClient

    class Recording(SQLiteStore):
        batches: list[int] = []
        fail = False

        def settle_many(self, items):
            self.batches.append(len(items))
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            if len(self.batches) == 1:  # a slow first commit: the other answers arrive meanwhile and are
                time.sleep(0.3)  # read together after it, as on a busy gateway (not left to the timing)
            return super().settle_many(items)

    store = Recording(tmp_path / "k.db")

    async def main(n):
        async with AsyncClient(catalog=Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), store=store,
                               env=env_for(srv, {"GROQ_API_KEY": "gsk-x"})) as c:
            return await asyncio.gather(*(c.chat("groq/llama-3.3-70b-versatile", MSG) for _ in range(n)),
                                        return_exceptions=True)

    results = asyncio.run(main(40))
    assert all(r.provider == "groq" for r in results)
    assert sorted(r["request_id"] for r in store.rows()) == sorted(r.request_id for r in results)
    assert sum(store.batches) == 40 and max(store.batches) > 1  # rows shared transactions
    Recording.fail = True
    store.batches.clear()
    from knollm.client.spool import LedgerWarning

    with pytest.warns(LedgerWarning, match="disk I/O error"):
        spooled = asyncio.run(main(10))
    assert all(r.provider == "groq" for r in spooled) and sum(store.batches) == 10
    assert len(store.rows()) == 40  # nothing half-written
    assert len(spool_for(tmp_path / "k.db").read_text().splitlines()) == 10
    Recording.fail = False
    later = asyncio.run(main(2))  # a new client finds the spool, and writes it after its own rows
    assert sorted(r["request_id"] for r in store.rows()) == sorted(
        r.request_id for r in results + spooled + later)  # each once
    assert spool_for(tmp_path / "k.db").read_text() == ""


def test_a_batch_a_stopped_loop_left_is_written_with_the_next_loops(srv, tmp_path):
    """The group commit joins a call to the batch of the loop writing it (looked up once a
    batch); a batch a loop left unwritten (stopped before its flush ran) is written with the
    next loop's batch, and that loop's calls are answered (before, its flag stayed busy)."""
    import asyncio

    from knollm.client.core import _GroupCommit

    store = SQLiteStore(tmp_path / "k.db")

    async def one():
        async with AsyncClient(catalog=Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), store=store,
                               env=env_for(srv, {"GROQ_API_KEY": "gsk-x"})) as c:
            return await asyncio.gather(*(c.chat("groq/llama-3.3-70b-versatile", MSG) for _ in range(5)))

    from knollm import AsyncClient

    done = asyncio.run(one())
    assert sorted(r["request_id"] for r in store.rows()) == sorted(r.request_id for r in done)

    # a batch left behind: its loop stops before the flush it scheduled runs
    g = _GroupCommit(store, lambda st, items, busy_ms=None: st.settle_many(items))
    row = dict(store.rows()[0], request_id="left-behind")
    loop = asyncio.new_event_loop()
    task = loop.create_task(g.settle((None, row)))
    loop.call_soon(loop.stop)  # (runs before the flush the settle schedules)
    loop.run_forever()
    assert g.pending and not store.rows(request_id="left-behind")
    task.cancel()
    loop.close()

    async def later():
        return await asyncio.wait_for(g.settle((None, dict(row, request_id="next-loop"))), 10)

    assert asyncio.run(later()) is True
    assert store.rows(request_id="left-behind") and store.rows(request_id="next-loop")
    assert not g.pending


@pytest.mark.parametrize("http", ["h1", "aiohttp", "httpx2"])
def test_one_async_client_serves_one_asyncio_run_after_another(srv, tmp_path, http):
    """An AsyncClient kept across ``asyncio.run`` calls (a script's, a notebook's): each
    later loop's calls, whole and streamed, are answered and each written to the ledger
    once (before, the second loop's first call failed with "Event loop is closed": the
    connection it took from the pool belonged to the first loop)."""
    import asyncio

    from knollm import AsyncClient

    store = SQLiteStore(tmp_path / "k.db")
    c = AsyncClient(catalog=Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), store=store,
                    env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), http=http)

    async def calls():  # (the test server closes a stream's connection: the whole answers' stays idle)
        *pieces, streamed = [x async for x in c.stream("groq/llama-3.3-70b-versatile", MSG)]
        whole = [await c.chat("groq/llama-3.3-70b-versatile", MSG) for _ in range(2)]
        return whole, "".join(pieces), streamed

    got = [asyncio.run(calls()) for _ in range(3)]
    asyncio.run(c.aclose())
    for whole, text, streamed in got:
        assert all(r.content for r in whole) and text and streamed.content == text
        # each answered at its first attempt (a failed one would be retried on a new connection)
        assert [len(r.attempts) for r in (*whole, streamed)] == [1, 1, 1], [r.attempts for r in whole]
    ids = [r.request_id for whole, _, streamed in got for r in (*whole, streamed)]
    assert len(set(ids)) == 9
    assert sorted(r["request_id"] for r in store.rows()) == sorted(ids)  # each written once


def test_a_network_store_is_called_off_the_event_loop(srv, tmp_path):
    """A store that says it blocks (``blocking = True``, as PostgreSQL's does) gets its
    budget holds and ledger writes from worker threads, never on the event loop; rows and
    the budget come out the same."""
    import asyncio
    import threading

    from knollm import AsyncClient

    class Remote(SQLiteStore):
        blocking = True
        threads: set[int] = set()

        def reserve(self, *a, **kw):
            self.threads.add(threading.get_ident())
            return super().reserve(*a, **kw)

        def settle_many(self, items):
            self.threads.add(threading.get_ident())
            return super().settle_many(items)

    store = Remote(tmp_path / "k.db")
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0)))

    async def main():
        loop_thread = threading.get_ident()
        async with AsyncClient(catalog=cat, store=store, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}),
                               budgets=[Budget(1.0, "day")]) as c:
            out = await asyncio.gather(*(c.chat("groq/llama-3.3-70b-versatile", MSG, max_tokens=30)
                                         for _ in range(20)))
        return loop_thread, out

    loop_thread, results = asyncio.run(main())
    assert store.threads and loop_thread not in store.threads
    assert sorted(r["request_id"] for r in store.rows()) == sorted(r.request_id for r in results)
    assert store.spent(Budget(1.0, "day")) == pytest.approx(sum(r.cost_usd for r in results))


def test_request_ids_are_unique_across_forked_processes():
    """``new_id``: 32 hex digits; a forked child draws its own random half, so ids from
    processes sharing one ledger (gateway workers) never collide."""
    import os
    import re

    from knollm.client.result import new_id

    children = []
    for _ in range(3):
        r, w = os.pipe()  # one pipe each: writes over PIPE_BUF from several writers interleave
        pid = os.fork()
        if pid == 0:  # a child: 1000 ids to its pipe
            os.close(r)
            data = ("\n".join(new_id() for _ in range(1000)) + "\n").encode()
            while data:
                data = data[os.write(w, data):]
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    mine = [new_id() for _ in range(1000)]
    theirs = []
    for pid, r in children:
        with os.fdopen(r) as f:  # read to the end before waiting: the child fills the pipe
            theirs += f.read().split()
        os.waitpid(pid, 0)
    ids = mine + theirs
    assert len(theirs) == 3000 and len(set(ids)) == 4000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
