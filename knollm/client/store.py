"""The usage ledger and budgets behind one small interface, :class:`Store`.

:class:`SQLiteStore` is the embedded default: ``$KNOLLM_HOME/knollm.db`` (default: the
user data dir, e.g. ``~/.local/share/knollm``), WAL journal, ``busy_timeout``, and every
budget check-and-reserve in one ``BEGIN IMMEDIATE`` transaction, so concurrent calls from
several threads *and processes* cannot overspend. A budget reads the running totals in
``spend`` (cost per UTC day and of all time, per provider, alias, key and tag; a trigger
on ``calls`` keeps them), never the ledger's rows: a check does not grow with the
ledger. A gateway can add another backend (e.g. PostgreSQL) by implementing the same five
methods.

Budget protocol (the client does this for every attempt):

1. ``reserve(budgets, scope, worst_case_usd)`` -> reservation id, or a reason it was refused;
   the worst case counts against every matching budget until settled or released;
2. success: ``settle(reservation_id, row)`` deletes the reservation and writes the ledger row
   (real cost) in one transaction; the row's ``request_id`` is unique, so a retry of the
   bookkeeping can never charge twice;
3. failure: ``release(reservation_id)`` – a call that failed before any output is never
   charged (the provider does not bill it);
4. a stream cut after its output started (the upstream broke, or the caller stopped
   reading): ``settle`` as in 2, with a row whose ``outcome`` is ``interrupted`` – the
   provider bills the prompt and every token it generated before the cut, so the client
   does too (tokens the provider reported before the cut, else estimated).

A call may carry a ``tag`` (who made it, e.g. ``key:ci`` for a gateway key): it is written
to the ledger row, kept on the reservation, and selects budgets (``Budget(tag=…)``).

Reservations older than ``reservation_ttl`` seconds (a crashed process) stop counting.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import compress
from operator import is_not
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Protocol

__all__ = ["Budget", "Store", "SQLiteStore", "default_db_path", "LEDGER_COLUMNS", "period_start", "budgets_for",
           "budget_slack",
           "check_tag", "MAX_TAG_LEN", "OUTCOMES", "row_values", "rows_where"]

#: columns of a ledger row, in order
LEDGER_COLUMNS = ("request_id", "ts", "target", "alias", "provider", "model", "key_label", "stream",
                  "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "usage_estimated",
                  "cost_usd", "price_source", "unpriced_reason", "ttft_ms", "duration_ms", "attempts", "saved_usd",
                  "tag", "outcome")
#: ``outcome`` of a ledger row: an answered call, or a stream cut after its output started
OUTCOMES = ("ok", "interrupted")
# PRAGMA user_version of a ledger with these tables (2: + saved_usd, a cache hit's saving;
# 3: + tag, who made the call, on calls and reservations; 4: + outcome; 5: + spend, the
# running totals budgets read)
_SCHEMA = 5
_OLD = (1, 2, 3, 4)
MAX_TAG_LEN = 200
#: the ``spend`` bucket of the running total of all time; every other bucket is a UTC day
#: (``int(ts // 86400)``): budget periods start at UTC midnight, so each is whole days
SPEND_ALL = -1
#: the running totals' dimensions (what a budget selects on); none is ``''`` there
SPEND_KEYS = ("provider", "alias", "key_label", "tag")



_SPEND_DIMS = "NEW.provider, COALESCE(NEW.alias, ''), COALESCE(NEW.key_label, ''), COALESCE(NEW.tag, '')"
#: the trigger on ``calls`` that keeps ``spend``: a row's cost added to its day's total and
#: to the all-time one, in one statement (as ``sqlite_master`` keeps it: :meth:`SQLiteStore._new_trigger`)
_SPEND_TRIGGER = (
    "CREATE TRIGGER calls_spend AFTER INSERT ON calls WHEN NEW.cost_usd IS NOT NULL AND NEW.cost_usd != 0 BEGIN "
    f"INSERT INTO spend VALUES ({SPEND_ALL}, {_SPEND_DIMS}, NEW.cost_usd), "
    f"(CAST(NEW.ts / 86400 AS INTEGER), {_SPEND_DIMS}, NEW.cost_usd) ON CONFLICT "
    "(bucket, provider, alias, key_label, tag) DO UPDATE SET cost_usd = spend.cost_usd + excluded.cost_usd; END")


def budget_slack(limit: float) -> float:
    """How far spend may pass ``limit`` by floating-point rounding alone (costs that fill
    the limit exactly can sum to a few ulps over it): relative, so it holds for a $100,000
    budget as for a $1 one, and stays far below a micro-dollar either way."""
    return max(1e-12, abs(limit) * 1e-12)

def spend_filter(budget: Budget, now: float) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (and its arguments) of ``budget``'s current period over the
    ``spend`` running totals: every bucket a budget reads is one row per day and
    selector combination, whatever the size of the ledger."""
    if budget.period == "total":
        where, args = "bucket = ?", [SPEND_ALL]
    else:
        where, args = "bucket >= ?", [int(period_start(budget.period, now) // 86400)]
    sel = budget.selectors()
    return where + "".join(f" AND {k} = ?" for k in sel), args + list(sel.values())


def row_values(row: dict[str, Any]) -> list[Any]:
    """A ledger row's values in :data:`LEDGER_COLUMNS` order (``outcome`` defaults to ``ok``)."""
    vals = list(map(row.get, LEDGER_COLUMNS))
    if vals[-1] is None:
        vals[-1] = "ok"
    return vals


_NONES = (None,) * len(LEDGER_COLUMNS)
_INSERTS: dict[tuple[bool, ...], str] = {}


def _insert(vals: list[Any]) -> tuple[str, list[Any]]:
    """The ``INSERT`` of a ledger row's values (:func:`row_values`) and its parameters:
    only the columns whose value is not None, the others left to their default (NULL).
    The sqlite3 module looks for an adapter for every None it binds, raising and clearing
    an ``AttributeError`` each time (about a fifth of a row's insert on CPython 3.11, with
    the five or so None of a usual row); one statement per pattern of None, kept."""
    present = tuple(map(is_not, vals, _NONES))
    sql = _INSERTS.get(present)
    if sql is None:
        cols = list(compress(LEDGER_COLUMNS, present))
        sql = (f"INSERT OR IGNORE INTO calls ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
        if len(_INSERTS) < 256:  # (a handful of patterns in practice)
            _INSERTS[present] = sql
    return sql, list(compress(vals, present))


def check_tag(tag: Any) -> str | None:
    """``tag`` if it is a valid caller tag (a non-empty printable string of at most
    :data:`MAX_TAG_LEN` characters, no control characters) or None; else ValueError."""
    if tag is None:
        return None
    if not isinstance(tag, str):
        raise ValueError(f"tag must be a string, not {type(tag).__name__}")
    if not tag or len(tag) > MAX_TAG_LEN:
        raise ValueError(f"tag must be 1 to {MAX_TAG_LEN} characters long, not {len(tag)}")
    if not tag.isprintable():
        bad = next(c for c in tag if not c.isprintable())
        raise ValueError(f"tag must be printable: it contains {bad!r} at position {tag.index(bad)}")
    return tag


def budgets_for(budgets: list[Budget], scope: dict[str, Any], amount: float | None
                ) -> tuple[list[Budget], tuple[str | None, str | None] | None]:
    """The budgets that apply to ``scope``, and the answer ``reserve`` gives before touching
    the store: ``(None, None)`` when none applies, a refusal when the call is unpriced."""
    mine = [b for b in budgets if b.applies(scope)]
    if not mine:
        return mine, (None, None)
    if amount is None:
        return mine, (None, f"unpriced model under budget {mine[0].label()}")
    return mine, None


def default_db_path() -> Path:
    """``$KNOLLM_HOME/knollm.db``, else the platform's user data dir."""
    home = os.environ.get("KNOLLM_HOME")
    if home:
        return Path(home) / "knollm.db"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "knollm" / "knollm.db"


def rows_where(since: float | None, tag: str | None, request_id: str | None) -> tuple[str, tuple]:
    """The ``WHERE`` clause (and its arguments) of :meth:`Store.rows` (both stores)."""
    where, args = ["ts >= ?"], [since or 0.0]
    if tag is not None:
        where.append("tag = ?")
        args.append(tag)
    if request_id is not None:
        where.append("request_id = ?")
        args.append(request_id)
    return " AND ".join(where), tuple(args)


def period_start(period: str, now: float | None = None) -> float:
    """Epoch seconds where the budget period containing ``now`` began (UTC)."""
    if period == "total":
        return 0.0
    d = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    if period == "day":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "month":
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(f"budget period must be day, month or total, not {period!r}")
    return d.timestamp()


@dataclass(frozen=True)
class Budget:
    """``limit_usd`` per ``period`` (day/month/total) for calls matching every selector
    given (``provider``, ``alias``, ``key`` = key label such as ``GROQ_API_KEY_2``,
    ``tag`` = the caller tag of the call, e.g. ``key:ci``); no selector = every call."""

    limit_usd: float
    period: str = "month"
    provider: str | None = None
    alias: str | None = None
    key: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        period_start(self.period)
        check_tag(self.tag)
        for name in ("provider", "alias", "key"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise ValueError(f"budget {name} must be a non-empty string, not {v!r}")
        lim = self.limit_usd
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not math.isfinite(lim) or lim < 0:
            # nan passed the old ``< 0`` check and then compared false with every spend: no limit at all
            raise ValueError(f"budget limit must be a finite USD amount >= 0, not {lim!r}")

    def selectors(self) -> dict[str, str]:
        return {k: v for k, v in (("provider", self.provider), ("alias", self.alias), ("key_label", self.key),
                                  ("tag", self.tag)) if v is not None}

    def applies(self, scope: dict[str, Any]) -> bool:
        return all(scope.get(k) == v for k, v in self.selectors().items())

    def label(self) -> str:
        sel = ",".join(f"{k}={v}" for k, v in self.selectors().items()) or "all calls"
        return f"${self.limit_usd:g}/{self.period} ({sel})"


class Store(Protocol):
    """What the client needs from a ledger + budget backend."""

    def reserve(self, budgets: list[Budget], scope: dict[str, Any], amount: float | None) -> tuple[str | None, str | None]:
        """``(reservation_id, None)`` or ``(None, reason refused)``."""

    def settle(self, reservation_id: str | None, row: dict[str, Any]) -> bool:
        """Write the ledger row (and drop the reservation); False if ``request_id`` was already recorded."""

    # optional: ``settle_many(items) -> list[bool]``, several settles in one transaction
    # (AsyncClient uses it for group commit when the store has it), and ``blocking = True``
    # for a store reached over the network (AsyncClient then calls it from a worker thread)

    def release(self, reservation_id: str | None) -> None: ...

    def spent(self, budget: Budget) -> float: ...

    def rows(self, since: float | None = None, tag: str | None = None,
             request_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows since ``since`` (epoch seconds), only those tagged ``tag`` (and the
        one whose ``request_id`` is ``request_id``) when given."""


class SQLiteStore:
    """The embedded ledger (see the module docs). Thread-safe; safe across processes.

    ``quick_busy_ms``: for how long :class:`knollm.AsyncClient`'s group commit, finding
    another process's write lock held, tries again on its event loop (each millisecond,
    never sleeping there); past that the commit waits in a worker thread (up to the busy
    timeout), and the loop serves meanwhile."""

    quick_busy_ms = 20

    def __init__(self, path: str | Path | None = None, *, reservation_ttl: float = 3600.0,
                 busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reservation_ttl = reservation_ttl
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._busy_ms = self._busy_now = int(busy_timeout_ms)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._cur = self._db.cursor()
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version in _OLD:
            self._upgrade()
        elif version != _SCHEMA:
            self._create()
        self._new_trigger()

    def _upgrade(self) -> None:
        """Bring a v1 to v4 ledger to v5 in place, keeping every row: one ``BEGIN IMMEDIATE``
        transaction that re-reads the version, so two processes opening it at once upgrade once.
        Rows written before ``outcome`` existed were answered calls: they read ``ok``. The
        ``spend`` running totals are computed from the rows (v5)."""
        with self._immediate():
            if self._db.execute("PRAGMA user_version").fetchone()[0] in _OLD:
                # v1 had no saved_usd, v1 and v2 no tag, v1 to v3 no outcome
                for table, col, typ in (("calls", "saved_usd", "REAL"), ("calls", "tag", "TEXT"),
                                        ("calls", "outcome", "TEXT NOT NULL DEFAULT 'ok'"),
                                        ("reservations", "tag", "TEXT")):
                    if col not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")
                self._db.execute("CREATE INDEX IF NOT EXISTS calls_tag ON calls(tag, ts)")
                self._spend_table()
                self._db.execute(f"PRAGMA user_version={_SCHEMA}")

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction under the store's lock: committed, or rolled
        back when the block raises."""
        with self._lock:
            self._busy(self._busy_ms)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _spend_table(self) -> None:
        """The ``spend`` running totals (cost per UTC day and of all time, per provider,
        alias, key and tag), kept by a trigger on ``calls`` (so a row any writer inserts
        counts, and a duplicate ``request_id`` ignored does not), and computed afresh from
        the rows already there (in the caller's transaction)."""
        self._db.execute("CREATE TABLE IF NOT EXISTS spend (bucket INTEGER NOT NULL, provider TEXT NOT NULL, "
                         "alias TEXT NOT NULL, key_label TEXT NOT NULL, tag TEXT NOT NULL, cost_usd REAL NOT NULL, "
                         "PRIMARY KEY (bucket, provider, alias, key_label, tag)) WITHOUT ROWID")
        self._db.execute(_SPEND_TRIGGER.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1))
        self._db.execute("DELETE FROM spend")
        dims = "provider, COALESCE(alias, ''), COALESCE(key_label, ''), COALESCE(tag, '')"
        for bucket in (str(SPEND_ALL), "CAST(ts / 86400 AS INTEGER)"):
            self._db.execute(f"INSERT INTO spend SELECT {bucket}, {dims}, SUM(cost_usd) FROM calls "
                             f"WHERE cost_usd IS NOT NULL AND cost_usd != 0 GROUP BY 1, 2, 3, 4, 5")

    def _new_trigger(self) -> None:
        """Replace the ``spend`` trigger of a ledger written by an earlier version (two
        upserts a row) with this one's (one upsert of both rows: about a microsecond less
        a row). Both keep the same totals, so processes of either version can share the
        ledger meanwhile; one ``BEGIN IMMEDIATE`` transaction that looks again, so two
        processes opening it at once replace it once."""
        def old() -> bool:
            r = self._db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'calls_spend'"
                                 ).fetchone()
            return r is not None and r[0] != _SPEND_TRIGGER
        if old():
            with self._immediate():
                if old():
                    self._db.execute("DROP TRIGGER calls_spend")
                    self._db.execute(_SPEND_TRIGGER)

    def _create(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, with the tables
        cols = ", ".join(f"{c} {t}" for c, t in zip(LEDGER_COLUMNS, (
            "TEXT UNIQUE NOT NULL", "REAL NOT NULL", "TEXT", "TEXT", "TEXT NOT NULL", "TEXT NOT NULL", "TEXT",
            "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "REAL", "TEXT", "TEXT", "REAL",
            "REAL", "INTEGER", "REAL", "TEXT", "TEXT NOT NULL DEFAULT 'ok'")))
        with self._immediate():
            self._db.execute(f"CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, {cols})")
            self._db.execute("CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts)")
            self._db.execute("CREATE INDEX IF NOT EXISTS calls_tag ON calls(tag, ts)")
            self._db.execute("CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, ts REAL NOT NULL, "
                             "provider TEXT, alias TEXT, key_label TEXT, amount REAL NOT NULL, tag TEXT)")
            self._spend_table()
            self._db.execute(f"PRAGMA user_version={_SCHEMA}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- budgets
    def _spent(self, budget: Budget, now: float) -> float:
        """The period's settled cost (from the ``spend`` running totals: a few rows, however
        long the ledger) plus the live holds."""
        where, args = spend_filter(budget, now)
        (ledger,) = self._db.execute(f"SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE {where}", args).fetchone()
        sel = budget.selectors()
        (held,) = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE ts >= ?"
                                   + "".join(f" AND {k} = ?" for k in sel),
                                   [now - self.reservation_ttl, *sel.values()]).fetchone()
        return float(ledger) + float(held)

    def spent(self, budget: Budget) -> float:
        """Settled cost plus live reservations in the budget's current period."""
        with self._lock:
            self._busy(self._busy_ms)
            return self._spent(budget, time.time())

    def _busy(self, ms: int) -> None:
        """Set the connection's busy timeout to ``ms`` unless it is so already: a PRAGMA is
        a statement of its own, and setting and restoring it around each group commit
        cost two more per commit. Under ``self._lock``: every statement that may wait for
        another process's lock sets the wait it needs first."""
        if ms != self._busy_now:
            self._db.execute(f"PRAGMA busy_timeout={int(ms)}")
            self._busy_now = ms

    def _begin(self, busy_ms: int | None) -> None:
        """``BEGIN IMMEDIATE``, waiting at most ``busy_ms`` (when given) for another
        process's write lock instead of the store's busy timeout. Under ``self._lock``."""
        self._busy(self._busy_ms if busy_ms is None else int(busy_ms))
        self._cur.execute("BEGIN IMMEDIATE")

    def reserve(self, budgets: list[Budget], scope: dict[str, Any], amount: float | None,
                busy_ms: int | None = None) -> tuple[str | None, str | None]:
        """``busy_ms``: as for :meth:`settle_many`."""
        mine, early = budgets_for(budgets, scope, amount)
        if early is not None:
            return early
        now = time.time()
        with self._lock:
            self._begin(busy_ms)
            try:
                # holds of crashed processes count no more: drop them (the table stays the live ones)
                self._db.execute("DELETE FROM reservations WHERE ts < ?", (now - self.reservation_ttl,))
                for b in mine:
                    spent = self._spent(b, now)
                    if spent + amount > b.limit_usd + budget_slack(b.limit_usd):
                        self._db.execute("ROLLBACK")
                        return None, f"budget {b.label()}: ${spent:.6f} used/held + ${amount:.6f} worst case"
                rid = uuid.uuid4().hex
                self._db.execute("INSERT INTO reservations (id, ts, provider, alias, key_label, amount, tag) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, now, scope.get("provider"), scope.get("alias"),
                                                                  scope.get("key_label"), amount, scope.get("tag")))
                self._db.execute("COMMIT")
                return rid, None
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def release(self, reservation_id: str | None) -> None:
        if reservation_id is None:
            return
        with self._lock:
            self._busy(self._busy_ms)
            self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    def settle(self, reservation_id: str | None, row: dict[str, Any]) -> bool:
        return self.settle_many([(reservation_id, row)])[0]

    def settle_many(self, items: list[tuple[str | None, dict[str, Any]]], busy_ms: int | None = None) -> list[bool]:
        """Several settles in one transaction (an async client's calls that finished
        together: group commit); one answer per item, as :meth:`settle` gives. ``busy_ms``:
        wait at most that long for another process's write lock (instead of the store's
        busy timeout), then raise ``sqlite3.OperationalError`` (the event loop's try: see
        :data:`quick_busy_ms`)."""
        with self._lock:
            self._begin(busy_ms)
            try:
                out = []
                cur = self._cur  # (one cursor for the ledger's writes: Connection.execute makes one a statement)
                for reservation_id, row in items:
                    if reservation_id is not None:
                        cur.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
                    out.append(cur.execute(*_insert(row_values(row))).rowcount == 1)
                cur.execute("COMMIT")
                return out
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    # -- reading
    def rows(self, since: float | None = None, tag: str | None = None,
             request_id: str | None = None) -> list[dict[str, Any]]:
        where, args = rows_where(since, tag, request_id)
        with self._lock:
            self._busy(self._busy_ms)
            cur = self._db.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM calls WHERE {where} ORDER BY ts, id", args)
            return [dict(zip(LEDGER_COLUMNS, r)) for r in cur.fetchall()]
