"""A call the provider answered keeps its answer and its ledger row when the store fails.

Real failures, no mocked store: a SQLite ledger locked by another process past the
store's busy timeout, a PostgreSQL server stopped and started again. The caller gets
its answer and a ``LedgerWarning``; the row waits in the ledger's spool and reaches
the ledger, once, at the next settle that succeeds (or when a new client finds the
spool). When the spool cannot be written either, the row is in the warning."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest

from knollm import AsyncClient, Client
from knollm.client import SQLiteStore
from knollm.client.spool import LedgerWarning, spool_for, spool_path
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
T = "groq/llama-3.3-70b-versatile"
MSG = [{"role": "user", "content": "hi"}]
CAT = Catalog(catalog(model("groq", "llama-3.3-70b-versatile", input=0.59, output=0.79)))
PROVIDERS = ("groq",)  # the loopback servers the srv fixture starts

# another process holds the ledger's write lock until told to stop (stdin closed)
_LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
con.execute("ROLLBACK")
"""


def _lock(path: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def _unlock(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(30)


def _ledger_warning(w) -> str:  # noqa: ANN001
    """The LedgerWarning's text among what ``pytest.warns`` recorded (it records every warning:
    a ResourceWarning the collector emits for another test's socket may come first)."""
    return next(str(x.message) for x in w if issubclass(x.category, LedgerWarning))


def _sp(tmp_path: Path) -> Path:
    """The spool of the tests' ledger ``knollm.db``."""
    return spool_for(tmp_path / "knollm.db")


def _ids(store) -> list[str]:  # noqa: ANN001
    return sorted(r["request_id"] for r in store.rows())


def test_a_locked_ledger_spools_the_row_and_the_next_call_writes_it(srv, tmp_path, capsys):
    store = SQLiteStore(tmp_path / "knollm.db", busy_timeout_ms=200)
    c = Client(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-spool-SECRET"}), store=store)
    first = c.chat(T, MSG)
    locker = _lock(tmp_path / "knollm.db")
    try:
        with pytest.warns(LedgerWarning, match=r"database is locked.*kept in .*knollm\.db\.spool\.jsonl") as w:
            held = c.chat(T, MSG)
        assert held.content and held.cost_usd and held.request_id in _ledger_warning(w)
    finally:
        _unlock(locker)
    spooled = [json.loads(line) for line in (_sp(tmp_path)).read_text().splitlines()]
    assert [s["row"]["request_id"] for s in spooled] == [held.request_id]
    assert spooled[0]["row"]["cost_usd"] == pytest.approx(held.cost_usd)
    assert _ids(store) == [first.request_id]  # not in the ledger yet
    from knollm.cli import main

    assert main(["usage", "--db", str(tmp_path / "knollm.db"), "--json"]) == 0  # says so, on stderr
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["calls"] == 1 and f"1 call(s) wait in {_sp(tmp_path)}" in err
    third = c.chat(T, MSG)  # the store takes rows again: its own, then the spooled one
    assert _ids(store) == sorted([first.request_id, held.request_id, third.request_id])
    assert (_sp(tmp_path)).read_text() == ""
    for data in (p.read_bytes() for p in tmp_path.iterdir() if p.is_file()):
        assert b"gsk-spool-SECRET" not in data


def test_async_calls_keep_their_answers_through_a_locked_ledger(srv, tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db", busy_timeout_ms=200)

    async def burst(n: int) -> list:
        async with AsyncClient(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store) as c:
            return await asyncio.gather(*(c.chat(T, MSG) for _ in range(n)))

    locker = _lock(tmp_path / "knollm.db")
    try:
        with pytest.warns(LedgerWarning, match="database is locked"):
            held = asyncio.run(burst(12))
    finally:
        _unlock(locker)
    assert len({r.request_id for r in held}) == 12 and all(r.content for r in held)
    assert len((_sp(tmp_path)).read_text().splitlines()) == 12 and _ids(store) == []
    later = asyncio.run(burst(3))
    assert _ids(store) == sorted(r.request_id for r in held + later)  # each once
    asyncio.run(burst(1))
    assert len(store.rows()) == 16  # the spool is not written twice


@pytest.mark.parametrize("budget", [False, True], ids=["ledger", "ledger+budget"])
def test_the_event_loop_never_sleeps_on_another_process_lock(srv, tmp_path, budget):
    """Another process holds the ledger's write lock for 1.2 s while an async call settles
    (and, under a budget, reserves first). SQLite's busy handler would sleep on the event
    loop for the whole quick try (here 1 s, far above any scheduling noise of a loaded
    test machine): every other request of the process would wait. The loop keeps turning
    instead (a 1 ms ticker never waits 0.4 s; alone it waits at most a few ms), the call is
    answered once the lock is released, and its row is written once."""
    from knollm.client.store import Budget

    store = SQLiteStore(tmp_path / "knollm.db")
    store.quick_busy_ms = 1000
    budgets = [Budget(100.0, "day", provider="groq")] if budget else []

    async def main() -> tuple[object, float, float]:
        async with AsyncClient(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store,
                               budgets=budgets) as c:
            await c.chat(T, MSG)  # the ledger exists
            locker = _lock(tmp_path / "knollm.db")
            gaps: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                last = time.perf_counter()
                while not stop.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            tick = asyncio.create_task(ticker())
            t0 = time.perf_counter()
            call = asyncio.create_task(c.chat(T, MSG))
            await asyncio.sleep(1.2)
            held = call.done()
            await asyncio.to_thread(_unlock, locker)
            res = await asyncio.wait_for(call, 30)
            took = time.perf_counter() - t0
            stop.set()
            await tick
            assert not held  # it waited for the lock
            return res, max(gaps), took

    res, worst_gap, took = asyncio.run(main())
    assert worst_gap < 0.4, f"the event loop stalled {worst_gap * 1000:.0f} ms on the ledger's lock"
    assert took >= 1.2 and res.content
    assert _ids(store).count(res.request_id) == 1 and len(store.rows()) == 2
    assert not (_sp(tmp_path)).exists() or (_sp(tmp_path)).read_text() == ""


def test_a_spool_left_by_another_process_is_written_by_the_next_client(srv, tmp_path):
    """A process that spooled rows and exited (or crashed) before a settle succeeded: the
    next client that opens the store finds them; a line that is not a row is set aside."""
    store = SQLiteStore(tmp_path / "knollm.db")
    row = {"request_id": "left-" + uuid.uuid4().hex, "ts": time.time(), "provider": "groq", "model": "m",
           "cost_usd": 0.25, "tag": "key:ci"}
    (_sp(tmp_path)).write_text(json.dumps({"reservation_id": None, "row": row}) + "\n{not json\n")
    c = Client(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store)
    with pytest.warns(LedgerWarning, match="set aside"):
        res = c.chat(T, MSG)
    assert _ids(store) == sorted([row["request_id"], res.request_id])
    assert (_sp(tmp_path).with_name(_sp(tmp_path).name + ".bad")).read_text() == "{not json\n"
    assert (_sp(tmp_path)).read_text() == ""


def test_a_running_client_finds_rows_another_process_spooled_later(srv, tmp_path, monkeypatch):
    """Rows another process spools after this client opened its spool are found when it
    looks again (once a minute; at once here) and written at its next settle."""
    from knollm.client.spool import Spool

    store = SQLiteStore(tmp_path / "knollm.db")
    c = Client(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store)
    first = c.chat(T, MSG)  # the client's spool is open, and empty
    row = {"request_id": "other-" + uuid.uuid4().hex, "ts": time.time(), "provider": "groq", "model": "m",
           "cost_usd": 0.125}
    (_sp(tmp_path)).write_text(json.dumps({"reservation_id": None, "row": row}) + "\n")
    second = c.chat(T, MSG)
    assert _ids(store) == sorted([first.request_id, second.request_id])  # not looked at again yet
    monkeypatch.setattr(Spool, "look_every", 0.0)
    third = c.chat(T, MSG)
    assert _ids(store) == sorted([first.request_id, second.request_id, third.request_id, row["request_id"]])
    assert (_sp(tmp_path)).read_text() == ""


def test_when_the_spool_cannot_be_written_the_row_is_in_the_warning(srv, tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db", busy_timeout_ms=200)
    c = Client(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store)
    c.chat(T, MSG)
    (_sp(tmp_path)).mkdir()  # no file can be written there (root or not)
    locker = _lock(tmp_path / "knollm.db")
    try:
        with pytest.warns(LedgerWarning, match="not recorded") as w:
            res = c.chat(T, MSG)
    finally:
        _unlock(locker)
    msg = _ledger_warning(w)
    assert res.content and res.request_id in msg and '"cost_usd"' in msg
    assert len(c.chat(T, MSG).content) and len(store.rows()) == 2  # and calls go on


def test_a_spool_whose_directory_is_a_file_warns_with_the_row(tmp_path):
    from knollm.client.spool import Spool

    (tmp_path / "afile").write_text("x")
    sp = Spool(tmp_path / "afile" / "x.spool.jsonl")
    row = {"request_id": "r-1", "cost_usd": 0.5}
    with pytest.warns(LedgerWarning, match=r"not recorded.*\"request_id\": \"r-1\".*\"cost_usd\": 0.5"):
        sp.add([(None, row)], sqlite3.OperationalError("disk I/O error"))
    assert sp.pending is False


def test_a_postgres_outage_spools_rows_and_they_land_when_it_is_back(srv, tmp_path, monkeypatch):
    """A real PostgreSQL server stopped mid-run (its own, not the shared one) and started
    again: the calls made meanwhile answer, their rows wait in the spool, and the first
    settle after the restart writes them (group commit, from a worker thread)."""
    from tests.support.postgres import PostgresServer, unavailable

    if unavailable():
        pytest.skip(unavailable())
    from knollm.gateway.pgstore import PostgresStore

    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))  # the spool of a store without a file
    server = PostgresServer().start()
    try:
        url = server.create_database("spool")
        store = PostgresStore(url)

        async def burst(n: int) -> list:
            async with AsyncClient(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-x"}), store=store) as c:
                return await asyncio.gather(*(c.chat(T, MSG) for _ in range(n)))

        before = asyncio.run(burst(2))
        server.pause()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            during = asyncio.run(burst(5))
        assert all(r.content for r in during)
        assert any(issubclass(x.category, LedgerWarning) for x in w)
        assert spool_path(store).parent == tmp_path and spool_path(store).name.startswith("ledger-spool-")
        assert len(spool_path(store).read_text().splitlines()) == 5
        server.resume()
        after = asyncio.run(burst(2))
        assert _ids(store) == sorted(r.request_id for r in before + during + after)
        assert spool_path(store).read_text() == ""
    finally:
        server.stop()
