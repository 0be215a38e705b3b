"""The response cache's review fixes, with real components (loopback provider servers, real
SQLite files): a damaged row is a miss, large integer seeds keep their own keys, a hit
with the ledger busy is spooled like a live call, only real corruption sets the file
aside (a full disk or an I/O error leaves it and its WAL alone), and ``cache warm``
reports what the store did."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import warnings
from pathlib import Path

import pytest

from knollm.cli import main
from knollm.client import Client, LedgerWarning, SQLiteStore
from knollm.client.spool import spool_for
from knollm.client_cache import CachedClient, CacheWarning, ResponseCache, cache_key
from knollm.query.api import Catalog
from tests.support.client_fixtures import env_for, servers, srv  # noqa: F401 - fixtures

from tests.test_client_cache import CAT, COST, GROQ, KEYS, MSG, PROVIDERS  # noqa: E402,F401 - one setup


def make(srv, tmp_path, *, cache=None, store=None, **kw):
    store = store or SQLiteStore(tmp_path / "knollm.db")
    c = Client(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store, backoff_base=0.01)
    cache = cache or ResponseCache(tmp_path / "cache.db")
    return CachedClient(c, cache, **kw), store


def n_requests(srv) -> int:
    return sum(len(s.requests) for s in srv.values())


def sqlite_error(cls: type, msg: str, name: str, code: int) -> sqlite3.Error:
    """The error SQLite itself raises (message, ``sqlite_errorname``, ``sqlite_errorcode``)."""
    e = cls(msg)
    e.sqlite_errorname, e.sqlite_errorcode = name, code
    return e


class FailingConnection:
    """The cache's real connection, except that statements starting with ``prefix`` fail
    with ``error`` (what a full disk or a failing device gives; it cannot be made here)."""

    def __init__(self, db: sqlite3.Connection, prefix: str, error: sqlite3.Error) -> None:
        self._db, self._prefix, self._error = db, prefix, error

    def execute(self, sql: str, *args):
        if sql.lstrip().startswith(self._prefix):
            raise self._error
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._db, name)


# ---------------------------------------------------------------------------- 1. a damaged row
@pytest.mark.parametrize("damage", [
    lambda p: p[:-5],                       # truncated JSON
    lambda p: b"\xff\xfe" + p[2:],          # not UTF-8
    lambda p: b"[1, 2]",                    # JSON, not an object
    lambda p: p.replace(b'"usage":{', b'"usage":5,"x":{', 1),  # a field of the wrong type
], ids=["truncated", "not-utf8", "not-object", "usage-not-object"])
def test_a_damaged_row_is_a_miss_and_is_deleted(srv, tmp_path, damage):
    cc, _ = make(srv, tmp_path, enabled=True)
    first = cc.chat(GROQ, MSG)
    db = sqlite3.connect(tmp_path / "cache.db")
    (p,) = db.execute("SELECT payload FROM entries").fetchone()
    db.execute("UPDATE entries SET payload = ?", (damage(bytes(p)),))
    db.commit()
    with pytest.warns(CacheWarning, match="could not be read"):
        again = cc.chat(GROQ, MSG)
    assert not getattr(again, "cached", False) and again.content == first.content
    assert n_requests(srv) == 2  # the miss went to the provider
    assert cc.cache.stats()["hits"] == 0
    # the damaged row was deleted, the fresh answer stored in its place: the next call hits
    assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 1
    db.close()
    assert cc.chat(GROQ, MSG).cached and n_requests(srv) == 2
    assert not list(tmp_path.glob("cache.db.corrupt-*"))  # a bad row is not a bad file


# ---------------------------------------------------------------------------- 2. integer seeds
def test_large_integer_seeds_have_their_own_keys(srv, tmp_path):
    def key(seed):
        return cache_key("groq", "m", MSG, {"seed": seed})

    assert key(2**53) != key(2**53 + 1)
    assert key(9223372036854775000) != key(9223372036854775001)
    assert key(10**400) != key(10**400 + 1)  # no OverflowError
    assert key(1) == key(1.0) and key(2**53) == key(float(2**53)) and key(2**60) == key(2.0**60)
    cc, _ = make(srv, tmp_path, enabled=True)
    cc.chat(GROQ, MSG, seed=2**53)
    b = cc.chat(GROQ, MSG, seed=2**53 + 1)
    assert not getattr(b, "cached", False)
    assert [r["json"].get("seed") for s in srv.values() for r in s.requests] == [2**53, 2**53 + 1]
    assert cc.chat(GROQ, MSG, seed=2**53 + 1).cached and n_requests(srv) == 2


def test_ordinary_keys_are_byte_identical_to_the_old_format():
    """Small ints and floats are keyed as floats, as before ints were kept exact: an
    existing cache keeps hitting."""
    blob = json.dumps([1, "groq", "m", [{"content": "hi", "role": "user"}],
                       {"max_tokens": 200.0, "temperature": 0.0, "top_p": 0.9, "seed": 42.0, "n": 1.0}],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cache_key("groq", "m", [{"role": "user", "content": "hi"}],
                     {"max_tokens": 200, "temperature": 0, "top_p": 0.9, "seed": 42, "n": 1.0}
                     ) == hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------- 3. the ledger busy on a hit
def test_a_hit_with_the_ledger_busy_is_spooled_like_a_live_call(srv, tmp_path):
    store = SQLiteStore(tmp_path / "knollm.db", busy_timeout_ms=300)
    cc, _ = make(srv, tmp_path, store=store, enabled=True)
    cc.chat(GROQ, MSG)
    other = sqlite3.connect(tmp_path / "knollm.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing the ledger for a while
    try:
        with pytest.warns(LedgerWarning, match="kept in"):
            hit = cc.chat(GROQ, MSG)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert hit.cached and hit.saved_usd == pytest.approx(COST)
    spooled = [json.loads(x)["row"] for x in spool_for(tmp_path / "knollm.db").read_text().splitlines()]
    assert [(r["request_id"], r["price_source"]) for r in spooled] == [(hit.request_id, "cache")]
    st = cc.cache.stats()
    assert (st["hits"], st["saved_usd"]) == (1, pytest.approx(COST))
    # the ledger free again: the next settle writes the spooled row after its own
    later = cc.chat(GROQ, MSG)
    rows = {r["request_id"]: r for r in store.rows()}
    assert {hit.request_id, later.request_id} <= rows.keys()
    assert rows[hit.request_id]["saved_usd"] == pytest.approx(COST) and rows[hit.request_id]["cost_usd"] == 0
    assert spool_for(tmp_path / "knollm.db").read_text() == ""


def test_a_hit_is_recorded_only_once_its_ledger_row_is_written(srv, tmp_path):
    class Failing(SQLiteStore):
        fail = False

        def settle_many(self, items, busy_ms=None):
            if self.fail:
                raise RuntimeError("the ledger store has a bug")  # not a store error: not spooled
            return super().settle_many(items, busy_ms)

    store = Failing(tmp_path / "knollm.db")
    cc, _ = make(srv, tmp_path, store=store, enabled=True)
    cc.chat(GROQ, MSG)
    store.fail = True
    with pytest.raises(RuntimeError):
        cc.chat(GROQ, MSG)
    st = cc.cache.stats()
    assert (st["hits"], st["saved_usd"]) == (0, 0)  # no saving counted for a row never written


# ---------------------------------------------------------------------------- 4. full disk, I/O error, corruption
@pytest.mark.parametrize("prefix, error", [
    ("INSERT OR REPLACE INTO entries",
     sqlite_error(sqlite3.OperationalError, "database or disk is full", "SQLITE_FULL", 13)),
    ("INSERT OR REPLACE INTO entries",
     sqlite_error(sqlite3.OperationalError, "disk I/O error", "SQLITE_IOERR_WRITE", 778)),
    ("SELECT created, expires",
     sqlite_error(sqlite3.OperationalError, "disk I/O error", "SQLITE_IOERR_READ", 266)),
], ids=["full-on-store", "ioerr-on-store", "ioerr-on-lookup"])
def test_a_full_disk_or_io_error_keeps_the_cache_and_its_wal(srv, tmp_path, prefix, error):
    cache = ResponseCache(tmp_path / "cache.db")
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    for i in range(3):
        cc.chat(GROQ, [{"role": "user", "content": f"q{i}"}])
    assert Path(f"{cache.path}-wal").stat().st_size > 0  # the entries are (at least partly) in the WAL
    real = cache._db
    cache._db = FailingConnection(real, prefix, error)
    with pytest.warns(CacheWarning, match=error.sqlite_errorname):
        res = cc.chat(GROQ, [{"role": "user", "content": "q0" if "SELECT" in prefix else "big"}])
    assert res.content and not getattr(res, "cached", False)
    assert not list(tmp_path.glob("cache.db.corrupt-*"))  # nothing set aside
    assert Path(f"{cache.path}-wal").exists()
    cache._db = real  # the device works again: every entry is still there
    assert cache.stats()["entries"] == 3
    assert all(cc.chat(GROQ, [{"role": "user", "content": f"q{i}"}]).cached for i in range(3))
    # another process sees the same entries
    assert ResponseCache(tmp_path / "cache.db").stats()["entries"] == 3


def test_a_failure_while_setting_a_corrupt_file_aside_is_not_fatal(srv, tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a sqlite database " * 100)  # real corruption (SQLITE_NOTADB)

    class DiskFullAfterSetAside(ResponseCache):
        opened = 0

        def _connect(self):
            self.opened += 1
            if self.opened > 1:  # the new file cannot be created: the disk is full
                raise sqlite_error(sqlite3.OperationalError, "database or disk is full", "SQLITE_FULL", 13)
            return super()._connect()

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cache = DiskFullAfterSetAside(path)
    msgs = [str(x.message) for x in w if issubclass(x.category, CacheWarning)]
    assert any("set aside" in m for m in msgs) and any("uncached" in m for m in msgs)
    assert len(list(tmp_path.glob("cache.db.corrupt-*"))) == 1
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    assert cc.chat(GROQ, MSG).content and not getattr(cc.chat(GROQ, MSG), "cached", False)
    assert n_requests(srv) == 2 and cache.stats()["entries"] == 0


def test_real_corruption_is_set_aside_with_its_wal(srv, tmp_path):
    path = tmp_path / "cache.db"
    cache = ResponseCache(path)
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    for i in range(3):
        cc.chat(GROQ, [{"role": "user", "content": f"q{i}"}])
    (root,) = cache._db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries'").fetchone()
    (page,) = cache._db.execute("PRAGMA page_size").fetchone()
    cache.close()  # checkpointed: the entries' table is in the file
    with open(path, "r+b") as f:  # its root page overwritten
        f.seek((root - 1) * page)
        f.write(b"\xff" * page)
    keeper = sqlite3.connect(path)  # another process with a write in the WAL
    keeper.execute("INSERT INTO counters VALUES ('other', 1)")
    keeper.commit()
    assert Path(f"{path}-wal").stat().st_size > 0
    try:
        cache2 = ResponseCache(path)
        cc2, _ = make(srv, tmp_path, cache=cache2, enabled=True)
        with pytest.warns(CacheWarning, match="set aside"):
            res = cc2.chat(GROQ, [{"role": "user", "content": "q0"}])
        assert res.content and not getattr(res, "cached", False)
    finally:
        keeper.close()
    (aside,) = tmp_path.glob("cache.db.corrupt-*[0-9]")
    assert Path(f"{aside}-wal").exists()  # moved with its file, not deleted
    assert cc2.chat(GROQ, [{"role": "user", "content": "q0"}]).cached  # the new cache works


# ---------------------------------------------------------------------------- 5. cache warm
def test_warm_reports_what_the_store_did(srv, tmp_path, monkeypatch, capsys):
    for k, v in env_for(srv, KEYS).items():
        monkeypatch.setenv(k, v)
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(CAT))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(f'{{"target": "{GROQ}", "prompt": "one", "temperature": 0.7}}\n'
                       f'{{"target": "{GROQ}", "prompt": "two"}}\n'
                       f'{{"target": "{GROQ}", "prompt": "two"}}\n')
    db = str(tmp_path / "cache.db")
    args = ["--db", db, "--catalog", str(cat), "--json"]
    assert main(["cache", "warm", str(prompts), *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["result"] for r in out["requests"]] == ["bypassed", "stored", "hit"]
    assert "temperature 0.7" in out["requests"][0]["reason"] and "--sampled" in out["requests"][0]["reason"]
    assert out["cache"]["entries"] == 1
    # --ttl 0: sent, not stored
    other = tmp_path / "q.jsonl"
    other.write_text(f'{{"target": "{GROQ}", "prompt": "three"}}\n')
    assert main(["cache", "warm", str(other), "--ttl", "0", *args]) == 0
    (row,) = json.loads(capsys.readouterr().out)["requests"]
    assert row["result"] == "not stored" and "TTL" in row["reason"]
    # --sampled: the sampled line is stored
    assert main(["cache", "warm", str(prompts), "--sampled", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["result"] for r in out["requests"]] == ["stored", "hit", "hit"]
    assert ResponseCache(db).stats()["entries"] == 2
    assert main(["cache", "warm", str(prompts), "--db", db, "--catalog", str(cat)]) == 0
    assert "3 request(s): 2 hit, 0 stored, 1 bypassed, 0 not stored, 0 failed" in capsys.readouterr().err
