"""The spool's review (2026-11-24): no ledger row is lost or lands in the wrong ledger, and
budgets count spooled spend. Real SQLite ledgers, a real lock held by another process,
loopback providers; each test failed before its fix.

1. a spooled line that is JSON but not a row (``"row": null``, a row without its provider)
   is set aside; it no longer makes every later call raise, and the good rows land;
2. a line cut short (a full disk, a killed process) no longer swallows the next row;
3. a row the store refuses for good (a count beyond SQLite's INTEGER) is set aside: the
   other rows of its batch, and of the spool, land;
4. each ledger has its own spool: a row one ledger could not take never lands in another;
5. rows in the spool count against the budgets before the next hold;
6. a call that fails with an exception the client does not turn into a failed attempt
   releases its budget hold at once, not when the exception is freed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings

import pytest

from knollm import AsyncClient, Client
from knollm.client import Budget, SQLiteStore
from knollm.client.spool import LedgerWarning, Spool, spool_for
from knollm.errors import BudgetExceeded
from tests.support.client_fixtures import env_for, servers, srv  # noqa: F401 - fixtures
from tests.test_ledger_spool import CAT, MSG, PROVIDERS, T, _ids, _lock, _sp, _unlock  # noqa: F401

KEYS = {"GROQ_API_KEY": "gsk-x"}


def _row(cost: float = 0.25, **kw) -> dict:
    return {"request_id": "left-" + uuid.uuid4().hex, "ts": time.time(), "provider": "groq", "model": "m",
            "cost_usd": cost, **kw}


def _line(row: dict | None, rid: str | None = None) -> str:
    return json.dumps({"reservation_id": rid, "row": row}) + "\n"


def _bad(tmp_path) -> str:
    p = _sp(tmp_path).with_name(_sp(tmp_path).name + ".bad")
    return p.read_text() if p.exists() else ""


def test_a_line_that_is_not_a_row_is_set_aside_and_calls_go_on(srv, tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db")
    good = _row()
    no_provider = {k: v for k, v in _row().items() if k != "provider"}
    _sp(tmp_path).write_text(_line(None) + _line(good) + _line(no_provider) + "[1, 2]\n")
    c = Client(catalog=CAT, env=env_for(srv, KEYS), store=store)
    with pytest.warns(LedgerWarning, match="3 line.*not ledger rows"):
        first = c.chat(T, MSG)
    second = c.chat(T, MSG)
    assert _ids(store) == sorted([good["request_id"], first.request_id, second.request_id])
    assert _sp(tmp_path).read_text() == "" and len(_bad(tmp_path).splitlines()) == 3


def test_a_line_cut_short_does_not_swallow_the_next_row(tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db")
    cut = _line(_row())[:40]  # a write the disk cut off: no newline
    _sp(tmp_path).write_text(cut)
    sp = Spool(_sp(tmp_path))
    row = _row(0.5)
    with pytest.warns(LedgerWarning, match="kept in"):
        sp.add([(None, row)], OSError("disk full"))
    with pytest.warns(LedgerWarning, match="not ledger rows"):
        assert sp.replay(store) == 1
    assert _ids(store) == [row["request_id"]] and _bad(tmp_path) == cut + "\n"


def test_a_row_the_store_refuses_for_good_is_set_aside_and_its_batch_lands(tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db")
    huge = _row(input_tokens=10**20)  # beyond SQLite's INTEGER: OverflowError, every time
    ok = [_row(), _row()]
    c = Client(catalog=CAT, env={}, store=store)
    with pytest.warns(LedgerWarning, match="refuses for good"):
        assert c._settle(store, [(None, ok[0]), (None, huge), (None, ok[1])]) == [True, True, True]
    assert _ids(store) == sorted(r["request_id"] for r in ok)
    assert huge["request_id"] in _bad(tmp_path) and "OverflowError" in _bad(tmp_path)
    # in the spool too: the poison row never blocks the rows behind it
    later = [_row(), _row()]
    _sp(tmp_path).write_text(_line(later[0]) + _line(_row(input_tokens=10**20)) + _line(later[1]))
    with pytest.warns(LedgerWarning, match="refuses for good"):  # (a new client: it finds the spool at once)
        Client(catalog=CAT, env={}, store=store)._settle(store, [(None, _row())])
    assert set(r["request_id"] for r in later) <= set(_ids(store)) and _sp(tmp_path).read_text() == ""


def test_each_ledger_has_its_own_spool(srv, tmp_path):
    a = SQLiteStore(tmp_path / "team-a.db", busy_timeout_ms=200)
    b = SQLiteStore(tmp_path / "team-b.db")
    assert spool_for(tmp_path / "team-a.db") != spool_for(tmp_path / "team-b.db")
    ca = Client(catalog=CAT, env=env_for(srv, KEYS), store=a)
    cb = Client(catalog=CAT, env=env_for(srv, KEYS), store=b)
    locker = _lock(tmp_path / "team-a.db")
    try:
        with pytest.warns(LedgerWarning, match="kept in"):
            ra = ca.chat(T, MSG)
    finally:
        _unlock(locker)
    rb = cb.chat(T, MSG)
    assert [r["request_id"] for r in b.rows()] == [rb.request_id]  # a's row is not b's
    rc = ca.chat(T, MSG)
    assert _ids(a) == sorted([ra.request_id, rc.request_id])


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_spooled_spend_counts_against_the_budgets_before_the_next_hold(srv, tmp_path, cls):
    """$0.9999 of a $1/day budget waits in the spool (left by a process without that budget):
    no call's worst case fits any more. Before, the first call (sync) or all ten concurrent
    calls (async) passed and spent past the budget."""
    store = SQLiteStore(tmp_path / "knollm.db")
    _sp(tmp_path).write_text(_line(_row(0.9999)))
    budget = Budget(1.0, "day")
    srv["groq"].usage = (1000, 500, 0)
    c = cls(catalog=CAT, env=env_for(srv, KEYS), store=store, budgets=[budget])
    try:
        if cls is Client:
            results = []
            for _ in range(10):
                try:
                    results.append(c.chat(T, MSG, max_tokens=500))
                except Exception as e:  # noqa: BLE001 - a refusal is the point
                    results.append(e)
        else:
            async def burst():
                async with c:
                    return await asyncio.gather(*(c.chat(T, MSG, max_tokens=500) for _ in range(10)),
                                                return_exceptions=True)
            results = asyncio.run(burst())
    finally:
        srv["groq"].usage = (120, 30, 0)
        if cls is Client:
            c.close()
    assert all(isinstance(r, BudgetExceeded) for r in results), results
    assert store.spent(budget) == pytest.approx(0.9999)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_failing_call_releases_its_hold_while_its_exception_is_kept(srv, tmp_path, cls):
    store = SQLiteStore(tmp_path / "knollm.db")
    budget = Budget(1.0, "day")
    # a configured header with a line break: refused after the hold was taken (a key with one
    # is disabled before: no hold)
    c = cls(catalog=CAT, env=env_for(srv, {"GROQ_API_KEY": "gsk-abc"}), store=store, budgets=[budget],
            providers={"groq": {"headers": {"x-team": "a\rb"}}})
    kept = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            try:
                if cls is Client:
                    c.chat(T, MSG)
                else:
                    asyncio.run(c.chat(T, MSG))
            except ValueError as e:  # a header with a line break: refused after the hold was taken
                kept.append(e)  # a logger or a retry wrapper keeps it
    assert len(kept) == 3 and store.spent(budget) == 0.0


def test_the_default_ledger_replays_the_shared_spool_of_earlier_versions(srv, tmp_path, monkeypatch, capsys):
    """Rows an earlier version left in ``ledger-spool.jsonl`` (the spool every ledger of a
    directory shared) are written by the default ledger, with its own spool's rows."""
    from knollm.cli import main
    from knollm.client.spool import SPOOL_NAME

    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path))
    monkeypatch.delenv("KNOLLM_DATABASE_URL", raising=False)
    old, new = _row(), _row()
    (tmp_path / SPOOL_NAME).write_text(_line(old))
    _sp(tmp_path).write_text(_line(new))
    main(["usage", "--json"])  # (exit 1: no call in the ledger yet)
    assert "2 call(s) wait in" in capsys.readouterr().err
    store = SQLiteStore()
    res = Client(catalog=CAT, env=env_for(srv, KEYS), store=store).chat(T, MSG)
    assert _ids(store) == sorted([old["request_id"], new["request_id"], res.request_id])
    assert (tmp_path / SPOOL_NAME).read_text() == "" and _sp(tmp_path).read_text() == ""
