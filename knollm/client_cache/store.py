"""The response cache's store: SQLite beside the usage ledger, WAL, LRU under a size cap.

File: ``cache.db`` in the ledger's directory (``$KNOLLM_HOME``, else the user data dir; see
:func:`knollm.client.store.default_db_path`), a separate file so that a corrupt cache can be
set aside without touching the ledger. ``journal_mode=WAL`` and ``busy_timeout`` make it
safe for several threads and processes; a store and its eviction run in one
``BEGIN IMMEDIATE`` transaction.

An entry is keyed by :func:`cache_key`: SHA-256 of the provider, the model, the normalized
messages and every request parameter except those that cannot change the answer
(:data:`IGNORED_PARAMS`). It holds the answer (content, tool calls, finish reason, usage,
the stream's text deltas), the original call's cost (what a hit saves), its expiry and its
last use. Nothing else: no messages, no key values, no key labels.

A file SQLite reports as corrupt (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) is renamed to
``cache.db.corrupt-<time>`` (its ``-wal`` and ``-shm`` moved with it) with a
:class:`CacheWarning`, and a new cache starts. Any other error (busy, locked, a full disk,
an I/O error) leaves the file as it is: the lookup is a miss and the store a no-op, with a
warning. An entry whose stored answer cannot be decoded is deleted and is a miss. The
cache is never an error of the call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "CacheEntry", "CacheWarning", "cache_key", "normalize_messages", "output_params",
           "default_cache_path", "IGNORED_PARAMS", "DEFAULT_TTL", "DEFAULT_MAX_BYTES"]

_log = logging.getLogger("knollm.cache")

#: request parameters that do not change the answer (everything else is part of the key)
IGNORED_PARAMS = frozenset({
    "stream", "stream_options", "strategy", "timeout", "user", "metadata", "store", "extra_headers",
    "idempotency_key", "cache", "cache_ttl", "cache_sampled", "tag",
})
DEFAULT_TTL = 24 * 3600.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_SCHEMA = 1


class CacheWarning(UserWarning):
    """The cache file was set aside or the cache could not be used for one call."""


def default_cache_path() -> Path:
    """``cache.db`` beside the usage ledger (``$KNOLLM_HOME/cache.db`` when set)."""
    from knollm.client.store import default_db_path

    return default_db_path().parent / "cache.db"


def _number(v: int | float) -> int | float:
    """1 and 1.0 are the same request: a number is keyed as the float of its value when
    that float is exactly the value (every float; an int up to 2**53 and the larger ones a
    float holds exactly), else as the int itself (``seed=2**53 + 1``, ``10**400``), so
    two different values never share a key. The keys of floats and of ints up to 2**53
    are what they were before ints were kept exact."""
    if isinstance(v, float):
        return v
    try:
        f = float(v)
    except OverflowError:
        return int(v)
    return f if f == v else int(v)


def _norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return _number(v)
    if isinstance(v, dict):
        return {str(k): _norm(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return str(v)


def normalize_messages(messages: list[dict]) -> list[dict]:
    """Messages as the cache sees them: ``None`` fields dropped, line ends ``\\n``, text
    stripped at the end, a content list of one text part made a plain string."""
    out = []
    for m in messages:
        d = {k: v for k, v in m.items() if v is not None}
        c = d.get("content")
        if isinstance(c, list) and len(c) == 1 and isinstance(c[0], dict) and c[0].get("type") == "text":
            c = c[0].get("text", "")
        if isinstance(c, str):
            c = c.replace("\r\n", "\n").rstrip()
        if "content" in d:
            d["content"] = c
        out.append(_norm(d))
    return out


def output_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that can change the answer (all but :data:`IGNORED_PARAMS`)."""
    return {k: _norm(v) for k, v in params.items() if k not in IGNORED_PARAMS and v is not None}


def cache_key(provider: str, model: str, messages: list[dict], params: dict[str, Any]) -> str:
    """The entry key: SHA-256 over provider, model, normalized messages and output parameters."""
    blob = json.dumps([_SCHEMA, provider, model, normalize_messages(messages), output_params(params)],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CacheEntry:
    """A stored answer. ``deltas``: the stream's text pieces (one piece for a whole answer)."""

    provider: str
    model: str
    content: str | None
    finish_reason: str | None = None
    tool_calls: list[dict] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    deltas: list[str] = field(default_factory=list)
    cost_usd: float | None = None  # the original call's cost: what a hit saves
    price_source: str | None = None
    response_id: str | None = None
    created: float = 0.0
    expires: float | None = None
    hits: int = 0

    def payload(self) -> bytes:
        return json.dumps({k: getattr(self, k) for k in (
            "content", "finish_reason", "tool_calls", "usage", "deltas", "cost_usd", "price_source", "response_id")},
            separators=(",", ":"), ensure_ascii=False).encode()


_COLUMNS = "key, provider, model, created, expires, last_used, hits, size, cost_usd, payload"


def _decode(payload: Any) -> dict[str, Any]:
    """A stored answer's fields; ValueError when the payload is not one (a damaged row)."""
    d = json.loads(payload)
    if not isinstance(d, dict):
        raise ValueError(f"payload is a {type(d).__name__}, not an object")
    for name, kinds in (("content", (str, type(None))), ("finish_reason", (str, type(None))),
                        ("tool_calls", (list, type(None))), ("usage", (dict, type(None))),
                        ("deltas", (list, type(None))), ("price_source", (str, type(None))),
                        ("response_id", (str, type(None)))):
        if not isinstance(d.get(name), kinds):
            raise ValueError(f"payload field {name!r} is a {type(d.get(name)).__name__}")
    if not all(isinstance(x, str) for x in d.get("deltas") or []):
        raise ValueError("payload field 'deltas' holds a non-string")
    if not all(isinstance(x, dict) for x in d.get("tool_calls") or []):
        raise ValueError("payload field 'tool_calls' holds a non-object")
    for k, x in (d.get("usage") or {}).items():
        if not isinstance(x, (int, float, bool, type(None))):
            raise ValueError(f"payload usage {k!r} is a {type(x).__name__}")
    return d


def _error_name(e: BaseException) -> str:
    return getattr(e, "sqlite_errorname", None) or ""


def _is_corrupt(e: BaseException) -> bool:
    """SQLite says the file is damaged or not a database (``SQLITE_CORRUPT*``,
    ``SQLITE_NOTADB``): the only errors that set the file aside."""
    return _error_name(e).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _is_busy(e: BaseException) -> bool:
    """Another connection holds a lock (``SQLITE_BUSY*``, ``SQLITE_LOCKED*``)."""
    return _error_name(e).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


class ResponseCache:
    """The cache (see the module docs). ``ttl``: default seconds an entry lives (None: no
    expiry); ``provider_ttl``: per-provider overrides; ``max_bytes``: size cap (LRU
    eviction of the least recently used entries beyond it)."""

    def __init__(self, path: str | Path | None = None, *, ttl: float | None = DEFAULT_TTL,
                 provider_ttl: dict[str, float | None] | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.ttl = ttl
        self.provider_ttl = dict(provider_ttl or {})
        self.max_bytes = max_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._open()

    # ------------------------------------------------------------------ opening, corruption
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, provider TEXT NOT NULL, "
                       "model TEXT NOT NULL, created REAL NOT NULL, expires REAL, last_used REAL NOT NULL, "
                       "hits INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL, cost_usd REAL, payload BLOB NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_used)")
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS hits (ts REAL NOT NULL, provider TEXT, model TEXT, "
                       "saved_usd REAL, request_id TEXT)")
            db.execute("SELECT count(*) FROM entries").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                self._db = self._connect()
                return
            except sqlite3.DatabaseError as e:
                # two processes creating the file at once: switching a new database to WAL
                # can fail with "locked" without waiting for the busy timeout; try again
                if _is_busy(e) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                if _is_corrupt(e):
                    self._set_aside(e)
                    return
                # busy past the timeout, a full disk, an I/O error: the file stays as it is
                # and calls go uncached (never fatal)
                self._uncached(e)
                return

    def _uncached(self, err: BaseException) -> None:
        msg = f"{self.path}: cache not usable ({_error_name(err) or type(err).__name__}: {err}); calls go uncached"
        warnings.warn(msg, CacheWarning, stacklevel=4)
        _log.warning(msg)
        self._db = None

    def _set_aside(self, err: Exception) -> None:
        """Move a corrupt cache file away, its ``-wal`` and ``-shm`` with it (warning, never
        fatal), and start a new one; when that fails too, calls go uncached."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        dest = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, dest)
            for ext in ("-wal", "-shm"):  # beside the file they belong to, never deleted
                try:
                    os.replace(f"{self.path}{ext}", f"{dest}{ext}")
                except FileNotFoundError:
                    pass
        except FileNotFoundError:
            pass
        except OSError as e:
            self._uncached(e)
            return
        msg = f"{self.path}: not a usable cache database ({err}); set aside as {dest.name}, starting a new cache"
        warnings.warn(msg, CacheWarning, stacklevel=3)
        _log.warning(msg)
        try:
            self._db = self._connect()
        except sqlite3.Error as e:
            self._uncached(e)

    def _guard(self, what: str, fn: Any, default: Any) -> Any:
        """Run ``fn(db)`` under the lock. A corrupt file is set aside and ``fn`` retried
        once; any other database error (busy, a full disk, I/O) gives ``default`` with a
        warning and leaves the file as it is."""
        with self._lock:
            for attempt in (1, 2):
                if self._db is None:
                    return default
                try:
                    return fn(self._db)
                except sqlite3.DatabaseError as e:
                    try:
                        if self._db is not None and self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if attempt == 1 and _is_corrupt(e):
                        self._set_aside(e)
                        continue
                    msg = f"{self.path}: cache {what} skipped ({_error_name(e) or type(e).__name__}: {e})"
                    warnings.warn(msg, CacheWarning, stacklevel=4)
                    _log.warning(msg)
                    return default
        return default

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ entries
    def ttl_for(self, provider: str, ttl: float | None = None) -> float | None:
        """The TTL of a new entry: the call's ``ttl``, else the provider's, else the default."""
        if ttl is not None:
            return ttl
        return self.provider_ttl.get(provider, self.ttl)

    def lookup(self, provider: str, model: str, messages: list[dict], params: dict[str, Any],
               now: float | None = None) -> CacheEntry | None:
        """The live entry for this request (its use recorded for LRU), or None."""
        key = cache_key(provider, model, messages, params)
        now = time.time() if now is None else now

        def run(db: sqlite3.Connection) -> CacheEntry | None:
            row = db.execute("SELECT created, expires, hits, cost_usd, payload FROM entries WHERE key = ?",
                             (key,)).fetchone()
            if row is None:
                return None
            created, expires, hits, cost, payload = row
            if expires is not None and expires <= now:
                db.execute("DELETE FROM entries WHERE key = ? AND expires <= ?", (key, now))
                return None
            try:
                d = _decode(payload)
                if not isinstance(cost, (int, float, type(None))) or isinstance(cost, bool):
                    raise ValueError(f"cost_usd is a {type(cost).__name__}")
            except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
                # a damaged row (SQLite keeps no page checksums): a miss, and the row goes
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                msg = f"{self.path}: a cached answer could not be read ({type(e).__name__}: {e}); entry deleted"
                warnings.warn(msg, CacheWarning, stacklevel=5)
                _log.warning(msg)
                return None
            db.execute("UPDATE entries SET last_used = ?, hits = hits + 1 WHERE key = ?", (now, key))
            return CacheEntry(provider, model, d.get("content"), d.get("finish_reason"), d.get("tool_calls"),
                              d.get("usage") or {}, d.get("deltas") or [], cost, d.get("price_source"),
                              d.get("response_id"), created, expires, hits + 1)

        return self._guard("lookup", run, None)

    def store(self, entry: CacheEntry, messages: list[dict], params: dict[str, Any], *, ttl: float | None = None,
              now: float | None = None) -> bool:
        """Store (or replace) the answer for this request, then evict least recently used
        entries beyond ``max_bytes``. ``ttl <= 0``: not stored. True when stored."""
        life = self.ttl_for(entry.provider, ttl)
        if life is not None and life <= 0:
            return False
        key = cache_key(entry.provider, entry.model, messages, params)
        now = time.time() if now is None else now
        payload = entry.payload()
        if len(payload) > self.max_bytes:
            return False

        def run(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                       (key, entry.provider, entry.model, now, None if life is None else now + life, now,
                        len(payload), entry.cost_usd, payload))
            self._evict(db)
            db.execute("COMMIT")
            return True

        return self._guard("store", run, False)

    def _evict(self, db: sqlite3.Connection) -> int:
        (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        if total <= self.max_bytes:
            return 0
        drop, freed = [], 0
        for key, size in db.execute("SELECT key, size FROM entries ORDER BY last_used, created"):
            if total - freed <= self.max_bytes:
                break
            drop.append(key)
            freed += size
        db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in drop])
        self._count(db, "evictions", len(drop))
        return len(drop)

    # ------------------------------------------------------------------ counters, stats
    @staticmethod
    def _count(db: sqlite3.Connection, name: str, by: float = 1) -> None:
        db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                   (name, by))

    def count(self, name: str, by: float = 1) -> None:
        """Add to a counter (``misses``, ``bypassed``, …)."""
        self._guard("count", lambda db: self._count(db, name, by), None)

    def record_hit(self, provider: str, model: str, saved_usd: float | None, request_id: str = "") -> None:
        """A hit: the ``hits`` counter and what it saved (the original call's cost)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            self._count(db, "hits")
            if saved_usd:
                self._count(db, "saved_usd", saved_usd)
            db.execute("INSERT INTO hits VALUES (?, ?, ?, ?, ?)", (time.time(), provider, model, saved_usd, request_id))
            db.execute("COMMIT")

        self._guard("hit record", run, None)

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Entries, bytes, expired entries, counters (hits, misses, bypassed, evictions,
        saved_usd) and per provider."""
        now = time.time() if now is None else now

        def run(db: sqlite3.Connection) -> dict[str, Any]:
            n, size = db.execute("SELECT count(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
            (expired,) = db.execute("SELECT count(*) FROM entries WHERE expires IS NOT NULL AND expires <= ?",
                                    (now,)).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            prov = [{"provider": p, "entries": c, "bytes": s, "hits": h}
                    for p, c, s, h in db.execute("SELECT provider, count(*), SUM(size), SUM(hits) FROM entries "
                                                 "GROUP BY provider ORDER BY count(*) DESC, provider")]
            hits, misses = int(counters.get("hits", 0)), int(counters.get("misses", 0))
            return {"path": str(self.path), "entries": n, "bytes": size, "max_bytes": self.max_bytes,
                    "expired": expired, "hits": hits, "misses": misses,
                    "bypassed": int(counters.get("bypassed", 0)), "evictions": int(counters.get("evictions", 0)),
                    "hit_rate": hits / (hits + misses) if hits + misses else None,
                    "saved_usd": round(counters.get("saved_usd", 0.0), 12), "providers": prov}

        return self._guard("stats", run, {"path": str(self.path), "entries": 0})

    def clear(self, provider: str | None = None, expired_only: bool = False, now: float | None = None) -> int:
        """Delete entries (all, one provider's, or only the expired); returns how many.
        Clearing everything also resets the counters."""
        now = time.time() if now is None else now

        def run(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            where, args = [], []
            if provider:
                where.append("provider = ?")
                args.append(provider)
            if expired_only:
                where.append("expires IS NOT NULL AND expires <= ?")
                args.append(now)
            cur = db.execute("DELETE FROM entries" + (" WHERE " + " AND ".join(where) if where else ""), args)
            if not where:
                db.execute("DELETE FROM counters")
                db.execute("DELETE FROM hits")
            db.execute("COMMIT")
            return cur.rowcount

        return self._guard("clear", run, 0)
