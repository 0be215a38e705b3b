"""The client's usage ledger and budgets in PostgreSQL (:class:`PostgresStore`), so several
gateway replicas share one ledger and one set of budgets.

Same protocol as :class:`knollm.client.store.SQLiteStore` (reserve, settle, release,
spent, rows). A reservation runs in one transaction that first takes a transaction-level
advisory lock per matching budget (in a fixed order, so no deadlock), then reads the
period's settled cost and the live reservations and inserts its own: two replicas
reserving against the same budget are serialized by the database, and no budget is
exceeded. The settled cost comes from ``spend``, running totals per UTC day and of all
time that a trigger on ``calls`` keeps: a check reads a few rows however long the ledger.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from knollm.client.store import (LEDGER_COLUMNS, SPEND_ALL, SPEND_KEYS, Budget, budget_slack, budgets_for, row_values,
                                 rows_where, spend_filter)
from knollm.gateway.db import Database, PostgresDatabase, again_if_lost, open_database

__all__ = ["PostgresStore", "open_store"]

_TYPES = ("TEXT UNIQUE NOT NULL", "DOUBLE PRECISION NOT NULL", "TEXT", "TEXT", "TEXT NOT NULL", "TEXT NOT NULL",
          "TEXT", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "DOUBLE PRECISION", "TEXT",
          "TEXT", "DOUBLE PRECISION", "DOUBLE PRECISION", "INTEGER", "DOUBLE PRECISION", "TEXT",
          "TEXT NOT NULL DEFAULT 'ok'")


def _lock_id(budget: Budget) -> int:
    """A stable signed 64-bit advisory-lock id for a budget's selectors."""
    digest = hashlib.sha256(("knollm-budget|" + budget.label()).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore:
    """The ledger (table ``calls``) and live budget reservations (``reservations``).

    ``blocking = True``: every call is a network round trip, so :class:`knollm.AsyncClient`
    calls it from a worker thread (one connection per thread) instead of its event loop."""

    blocking = True

    def __init__(self, db: Database | str | None = None, *, reservation_ttl: float = 3600.0) -> None:
        self.db = db if isinstance(db, Database) else open_database(db)
        if not isinstance(self.db, PostgresDatabase):
            raise TypeError("PostgresStore needs a postgresql:// database URL")
        self.reservation_ttl = reservation_ttl
        if not self._schema_current():
            self._create()

    def _schema_current(self) -> bool:
        """True when the tables, columns and indexes are all there. Read from the catalog,
        which takes no table lock: a replica starting next to busy ones runs no DDL (even
        ``… IF NOT EXISTS`` locks the table, and could deadlock with a settle in flight)."""
        cols = self.db.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "WHERE table_schema = current_schema() AND table_name IN ('calls', 'reservations', "
                               "'spend')")
        have = {(t, c) for t, c in cols}
        idx = {r[0] for r in self.db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                                             "AND tablename = 'calls'")}
        return all(("calls", c) in have for c in LEDGER_COLUMNS) and ("reservations", "tag") in have and \
            ("spend", "cost_usd") in have and {"calls_ts", "calls_tag"} <= idx

    def _create(self) -> None:
        cols = ", ".join(f"{c} {t}" for c, t in zip(LEDGER_COLUMNS, _TYPES))
        with self.db.tx():
            self.db.execute("SELECT pg_advisory_xact_lock(7071)")  # one replica creates the schema
            self.db.execute(f"CREATE TABLE IF NOT EXISTS calls (id BIGSERIAL PRIMARY KEY, {cols})")
            # columns added since the first version (a ledger keeps its rows)
            self.db.execute("ALTER TABLE calls ADD COLUMN IF NOT EXISTS saved_usd DOUBLE PRECISION")
            self.db.execute("ALTER TABLE calls ADD COLUMN IF NOT EXISTS tag TEXT")
            # ok, or interrupted (a stream cut after its output started); older rows read ok
            self.db.execute("ALTER TABLE calls ADD COLUMN IF NOT EXISTS outcome TEXT NOT NULL DEFAULT 'ok'")
            self.db.execute("CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts)")
            self.db.execute("CREATE INDEX IF NOT EXISTS calls_tag ON calls(tag, ts)")
            self.db.execute("CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, "
                            "ts DOUBLE PRECISION NOT NULL, provider TEXT, alias TEXT, key_label TEXT, "
                            "amount DOUBLE PRECISION NOT NULL, tag TEXT)")
            self.db.execute("ALTER TABLE reservations ADD COLUMN IF NOT EXISTS tag TEXT")
            if self.db.execute("SELECT to_regclass('spend') IS NULL")[0][0]:
                self._spend_table()

    def _spend_table(self) -> None:
        """The ``spend`` running totals budgets read (cost per UTC day and of all time, per
        provider, alias, key and tag), kept by a trigger on ``calls``, so a row any replica
        inserts counts (an older replica's too) and a duplicate ``request_id`` does not;
        then computed from the rows already there. Inserts into ``calls`` wait meanwhile
        (``SHARE`` lock): none can land between the totals and the trigger."""
        self.db.execute("LOCK TABLE calls IN SHARE MODE")
        self.db.execute("CREATE TABLE spend (bucket BIGINT NOT NULL, provider TEXT NOT NULL, alias TEXT NOT NULL, "
                        "key_label TEXT NOT NULL, tag TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
                        "PRIMARY KEY (bucket, provider, alias, key_label, tag))")
        dims = "NEW.provider, COALESCE(NEW.alias, ''), COALESCE(NEW.key_label, ''), COALESCE(NEW.tag, '')"
        # the all-time row first, then the day's: one order, so two settles never wait on each other in a cycle
        upsert = ("INSERT INTO spend VALUES ({bucket}, " + dims + ", NEW.cost_usd) ON CONFLICT "
                  "(bucket, provider, alias, key_label, tag) DO UPDATE SET cost_usd = spend.cost_usd + EXCLUDED.cost_usd;")
        self.db.execute("CREATE OR REPLACE FUNCTION knollm_spend() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                        "IF NEW.cost_usd IS NOT NULL AND NEW.cost_usd <> 0 THEN "
                        + upsert.format(bucket=SPEND_ALL) + " " + upsert.format(bucket="FLOOR(NEW.ts / 86400)::BIGINT")
                        + " END IF; RETURN NULL; END $$")
        self.db.execute("CREATE TRIGGER calls_spend AFTER INSERT ON calls FOR EACH ROW EXECUTE FUNCTION knollm_spend()")
        dims = "provider, COALESCE(alias, ''), COALESCE(key_label, ''), COALESCE(tag, '')"
        for bucket in (str(SPEND_ALL), "FLOOR(ts / 86400)::BIGINT"):
            self.db.execute(f"INSERT INTO spend SELECT {bucket}, {dims}, SUM(cost_usd) FROM calls "
                            f"WHERE cost_usd IS NOT NULL AND cost_usd <> 0 GROUP BY 1, 2, 3, 4, 5")

    def close(self) -> None:
        self.db.close()

    def _spent(self, budget: Budget, now: float) -> float:
        sel = budget.selectors()
        where, args = spend_filter(budget, now)
        # one statement, so one snapshot (READ COMMITTED takes one per statement): a settle that
        # commits meanwhile (hold deleted, row inserted, running total raised) is seen whole or
        # not at all, never as neither, which would undercount by the hold
        ((ledger, held),) = self.db.execute(
            f"SELECT (SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE {where}), "
            "(SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE ts >= ?" + "".join(f" AND {k} = ?" for k in sel)
            + ")", [*args, now - self.reservation_ttl, *sel.values()])
        return float(ledger) + float(held)

    @again_if_lost
    def spent(self, budget: Budget) -> float:
        """Settled cost plus live reservations in the budget's current period."""
        return self._spent(budget, time.time())

    @again_if_lost
    def reserve(self, budgets: list[Budget], scope: dict[str, Any], amount: float | None
                ) -> tuple[str | None, str | None]:
        mine, early = budgets_for(budgets, scope, amount)
        if early is not None:
            return early
        now = time.time()
        with self.db.tx():
            for lock in sorted({_lock_id(b) for b in mine}):
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
            # holds of crashed replicas count no more: drop them (the table stays the live ones)
            self.db.execute("DELETE FROM reservations WHERE ts < ?", (now - self.reservation_ttl,))
            for b in mine:
                spent = self._spent(b, now)
                if spent + amount > b.limit_usd + budget_slack(b.limit_usd):
                    return None, f"budget {b.label()}: ${spent:.6f} used/held + ${amount:.6f} worst case"
            rid = uuid.uuid4().hex
            self.db.execute("INSERT INTO reservations (id, ts, provider, alias, key_label, amount, tag) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, now, scope.get("provider"), scope.get("alias"),
                                                             scope.get("key_label"), amount, scope.get("tag")))
        return rid, None

    @again_if_lost
    def release(self, reservation_id: str | None) -> None:
        if reservation_id is not None:
            self.db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    def settle(self, reservation_id: str | None, row: dict[str, Any]) -> bool:
        return self.settle_many([(reservation_id, row)])[0]

    @again_if_lost
    def settle_many(self, items: list[tuple[str | None, dict[str, Any]]]) -> list[bool]:
        """Several settles in one transaction (group commit); one answer per item. Run
        again on a new connection when the connection was lost meanwhile (a restart, a
        failover): a row whose ``request_id`` is there already is not inserted again, so
        nothing is charged twice, and a call the provider answered keeps its row."""
        out = [False] * len(items)
        si = LEDGER_COLUMNS.index("stream")
        # rows go in ordered by their running totals (the trigger locks each row of ``spend``
        # it raises): two settles take those locks in one order, so neither deadlocks
        order = sorted(range(len(items)), key=lambda i: tuple(items[i][1].get(k) or "" for k in SPEND_KEYS))
        with self.db.tx():
            for i in order:
                reservation_id, row = items[i]
                vals = row_values(row)
                if isinstance(vals[si], bool):
                    vals[si] = int(vals[si])
                if reservation_id is not None:
                    self.db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
                out[i] = bool(self.db.execute(
                    f"INSERT INTO calls ({', '.join(LEDGER_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(LEDGER_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING RETURNING id",
                    vals))
        return out

    @again_if_lost
    def rows(self, since: float | None = None, tag: str | None = None,
             request_id: str | None = None) -> list[dict[str, Any]]:
        where, args = rows_where(since, tag, request_id)
        rows = self.db.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM calls WHERE {where} ORDER BY ts, id", args)
        return [dict(zip(LEDGER_COLUMNS, r)) for r in rows]


def open_store(url: str | None = None) -> Any:
    """The client's store for ``url`` (default ``$KNOLLM_DATABASE_URL``): PostgreSQL when
    it names one, else the client's SQLite store (its default file, or the path given)."""
    import os

    from knollm.gateway.db import is_postgres

    url = url or os.environ.get("KNOLLM_DATABASE_URL") or ""
    if is_postgres(url):
        return PostgresStore(url)
    from knollm.client.store import SQLiteStore

    return SQLiteStore(url[len("sqlite:///"):] if url.startswith("sqlite:///") else None)
