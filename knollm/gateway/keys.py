"""Gateway keys: the keys callers present to ``knollm serve`` (not provider keys).

A key is ``kn-`` + 43 random URL-safe characters, shown once at creation; the store
keeps only its SHA-256 and a display prefix. Each key may restrict the ``model`` values it
can ask for (aliases, catalog keys or canonical ids; ``*`` globs allowed), have a
requests-per-minute limit (a fixed one-minute window counted in the database, so all
replicas share it) and a USD budget: before a call its worst case is held (a row of
``gateway_key_holds``, made in one transaction that locks the key's row, so concurrent
replicas cannot overspend), and the call settles it at the real cost. A hold names when
it expires (the request's time limit, plus a margin): one a crashed replica never
settled stops counting then, instead of shrinking the budget forever.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from knollm.errors import GatewayError, NotFoundError
from knollm.gateway.db import Database, again_if_lost, open_database

__all__ = ["GatewayKey", "KeyStore", "hash_key", "KEY_PREFIX"]

KEY_PREFIX = "kn-"

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS gateway_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        allowed TEXT NOT NULL DEFAULT '[]',
        rpm INTEGER,
        budget_usd DOUBLE PRECISION,
        spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS gateway_key_minutes (
        key_id TEXT NOT NULL,
        minute BIGINT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (key_id, minute))""",
    """CREATE TABLE IF NOT EXISTS gateway_key_holds (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        amount DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS gateway_key_holds_key ON gateway_key_holds (key_id, expires_at)",
]
#: how long a hold counts when its maker gives no time limit (the gateway gives its
#: request time limit plus a minute, or plus the limit when that is shorter)
HOLD_TTL_S = 3600.0

_MAX_NAME = 100  # the ledger tag key:<name> stays under the client's limit

_COLS = "id, name, prefix, allowed, rpm, budget_usd, spent_usd, reserved_usd, created_at, revoked_at"
# ``reserved_usd`` as shown: the live holds, plus any a gateway from before the holds
# table left in the column (its own holds, settled there)
_HELD = "(reserved_usd + COALESCE((SELECT SUM(amount) FROM gateway_key_holds h WHERE h.key_id = k.id " \
        "AND h.expires_at > ?), 0))"
_COLS_HELD = _COLS.replace("reserved_usd", _HELD)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class GatewayKey:
    id: str
    name: str
    prefix: str
    allowed: tuple[str, ...] = ()
    rpm: int | None = None
    budget_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0  # live holds
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def tag(self) -> str:
        """The caller tag of this key's calls in the usage ledger: ``key:<name>`` (never the
        key or its hash). Keys that share a name share the tag (e.g. a rotated key)."""
        from knollm.client.store import MAX_TAG_LEN

        name = "".join(c if c.isprintable() else "?" for c in self.name)  # names from before the check
        return ("key:" + name)[:MAX_TAG_LEN]

    def allows(self, target: str) -> bool:
        return not self.allowed or any(fnmatch.fnmatchcase(target, pat) for pat in self.allowed)

    def public(self) -> dict[str, Any]:
        """The fields shown by ``keys list`` (never the key or its hash)."""
        d = asdict(self)
        d["allowed"] = list(self.allowed)
        d["active"] = self.active
        return d

    @classmethod
    def from_row(cls, row: tuple) -> GatewayKey:
        return cls(id=row[0], name=row[1], prefix=row[2], allowed=tuple(json.loads(row[3] or "[]")),
                   rpm=row[4], budget_usd=row[5], spent_usd=float(row[6] or 0), reserved_usd=float(row[7] or 0),
                   created_at=float(row[8]), revoked_at=row[9])


class KeyStore:
    """Gateway keys in the gateway database (:func:`knollm.gateway.db.open_database`)."""

    def __init__(self, db: Database | str | None = None) -> None:
        self.db = db if isinstance(db, Database) else open_database(db)
        for stmt in _SCHEMA:
            self.db.execute(stmt)
        self._for_update = " FOR UPDATE" if self.db.dialect == "postgres" else ""  # SQLite: BEGIN IMMEDIATE

    # admin -------------------------------------------------------------------------
    def create(self, name: str, *, allowed: list[str] | tuple[str, ...] = (), rpm: int | None = None,
               budget_usd: float | None = None) -> tuple[GatewayKey, str]:
        """A new key; returns the record and the key itself (shown once, never stored)."""
        if rpm is not None and rpm < 1:
            raise GatewayError("rpm must be a positive integer")
        if budget_usd is not None and budget_usd < 0:
            raise GatewayError("budget must be >= 0")
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise GatewayError(f"a key name is 1 to {_MAX_NAME} printable characters (it tags the key's calls "
                               "in the usage ledger)")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = GatewayKey(id=uuid.uuid4().hex[:12], name=name, prefix=token[:10], allowed=tuple(allowed), rpm=rpm,
                         budget_usd=budget_usd)
        self.db.execute(
            "INSERT INTO gateway_keys (id, name, prefix, hash, allowed, rpm, budget_usd, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.prefix, hash_key(token), json.dumps(list(key.allowed)), rpm, budget_usd,
             key.created_at))
        return key, token

    @again_if_lost
    def list(self, include_revoked: bool = True) -> list[GatewayKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        return [GatewayKey.from_row(r) for r in
                self.db.execute(f"SELECT {_COLS_HELD} FROM gateway_keys k{where} ORDER BY created_at", (time.time(),))]

    def get(self, ref: str) -> GatewayKey:
        """A key by id, name or display prefix (NotFoundError with suggestions otherwise)."""
        keys = self.list()
        hits = [k for k in keys if ref in (k.id, k.name, k.prefix)]
        if len(hits) > 1:
            raise GatewayError(f"{ref!r} names {len(hits)} keys; use the id")
        if not hits:
            import difflib

            names = [k.name for k in keys] + [k.id for k in keys]
            raise NotFoundError("gateway key", ref, difflib.get_close_matches(ref, names, n=3, cutoff=0.4))
        return hits[0]

    def revoke(self, ref: str) -> GatewayKey:
        key = self.get(ref)
        self.db.execute("UPDATE gateway_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (time.time(), key.id))
        return self.get(key.id)

    @again_if_lost
    def any_active(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM gateway_keys WHERE revoked_at IS NULL LIMIT 1"))

    # serving -----------------------------------------------------------------------
    @again_if_lost
    def lookup(self, token: str) -> GatewayKey | None:
        """The active key whose hash matches ``token`` (None when unknown or revoked)."""
        rows = self.db.execute(f"SELECT {_COLS_HELD} FROM gateway_keys k WHERE hash = ? AND revoked_at IS NULL",
                               (time.time(), hash_key(token)))
        return GatewayKey.from_row(rows[0]) if rows else None

    @again_if_lost
    def hit(self, key_id: str, now: float | None = None) -> int:
        """Count one request in the current minute; returns the count so far (this one included)."""
        minute = int((now if now is not None else time.time()) // 60)
        rows = self.db.execute(
            "INSERT INTO gateway_key_minutes (key_id, minute, n) VALUES (?, ?, 1) "
            "ON CONFLICT (key_id, minute) DO UPDATE SET n = gateway_key_minutes.n + 1 RETURNING n",
            (key_id, minute))
        if minute % 10 == 0:  # keep the table small
            self.db.execute("DELETE FROM gateway_key_minutes WHERE minute < ?", (minute - 2,))
        return int(rows[0][0])

    @again_if_lost
    def reserve(self, key_id: str, amount: float, ttl_s: float = HOLD_TTL_S, now: float | None = None) -> str | None:
        """Hold ``amount`` USD of the key's budget for at most ``ttl_s`` seconds (a call's
        time limit): the hold's id, or None when it would exceed the budget (spent, plus the
        live holds, plus this one). One transaction, the key's row locked, so replicas
        reserving at once are serialized. Expired holds of the key are dropped."""
        now = time.time() if now is None else now
        with self.db.tx():
            rows = self.db.execute(f"SELECT budget_usd, spent_usd, reserved_usd FROM gateway_keys WHERE id = ?"
                                   f"{self._for_update}", (key_id,))
            if not rows:
                return None
            budget, spent, legacy = rows[0]
            self.db.execute("DELETE FROM gateway_key_holds WHERE key_id = ? AND expires_at <= ?", (key_id, now))
            if budget is not None:
                (held,) = self.db.execute("SELECT COALESCE(SUM(amount), 0) FROM gateway_key_holds WHERE key_id = ?",
                                          (key_id,))[0]
                if float(spent or 0) + float(legacy or 0) + float(held) + amount > budget + 1e-12:
                    return None
            hold = uuid.uuid4().hex
            self.db.execute("INSERT INTO gateway_key_holds (id, key_id, amount, expires_at) VALUES (?, ?, ?, ?)",
                            (hold, key_id, amount, now + ttl_s))
        return hold

    @again_if_lost
    def settle(self, key_id: str, hold: str, cost: float) -> bool:
        """Drop the hold and charge the real cost, in one transaction; only while the hold
        is there (False: it was settled already, so a repeat never charges twice, or it
        expired, its request being long over, and was dropped)."""
        with self.db.tx():
            if not self.db.execute("DELETE FROM gateway_key_holds WHERE id = ? RETURNING id", (hold,)):
                return False
            self.db.execute("UPDATE gateway_keys SET spent_usd = spent_usd + ? WHERE id = ?", (cost, key_id))
        return True
