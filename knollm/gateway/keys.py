"""Gateway keys: the keys callers present to ``knollm serve`` (not provider keys).

A key is ``kn-`` + 43 random URL-safe characters, shown once at creation; the store
keeps only its SHA-256 and a display prefix. Each key may restrict the ``model`` values it
can ask for (aliases, catalog keys or canonical ids; ``*`` globs allowed), have a
requests-per-minute limit (a fixed one-minute window counted in the database, so all
replicas share it) and a USD budget (reserved before a call at the worst case, settled
at the real cost, with one conditional ``UPDATE`` so concurrent replicas cannot overspend).
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
from knollm.gateway.db import Database, open_database

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
]

_MAX_NAME = 100  # the ledger tag key:<name> stays under the client's limit

_COLS = "id, name, prefix, allowed, rpm, budget_usd, spent_usd, reserved_usd, created_at, revoked_at"


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
    reserved_usd: float = 0.0
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

    def list(self, include_revoked: bool = True) -> list[GatewayKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        return [GatewayKey.from_row(r) for r in
                self.db.execute(f"SELECT {_COLS} FROM gateway_keys{where} ORDER BY created_at")]

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

    def any_active(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM gateway_keys WHERE revoked_at IS NULL LIMIT 1"))

    # serving -----------------------------------------------------------------------
    def lookup(self, token: str) -> GatewayKey | None:
        """The active key whose hash matches ``token`` (None when unknown or revoked)."""
        rows = self.db.execute(f"SELECT {_COLS} FROM gateway_keys WHERE hash = ? AND revoked_at IS NULL",
                               (hash_key(token),))
        return GatewayKey.from_row(rows[0]) if rows else None

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

    def reserve(self, key_id: str, amount: float) -> bool:
        """Hold ``amount`` USD of the key's budget; False when it would exceed it."""
        return self.db.rowcount(
            "UPDATE gateway_keys SET reserved_usd = reserved_usd + ? WHERE id = ? AND "
            "(budget_usd IS NULL OR spent_usd + reserved_usd + ? <= budget_usd + 1e-12)",
            (amount, key_id, amount)) == 1

    def settle(self, key_id: str, reserved: float, cost: float) -> None:
        """Release a hold and charge the real cost."""
        self.db.execute("UPDATE gateway_keys SET reserved_usd = reserved_usd - ?, spent_usd = spent_usd + ? "
                        "WHERE id = ?", (reserved, cost, key_id))
