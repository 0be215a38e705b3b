"""Gateway keys: the keys callers present to ``knollm serve`` (not provider keys).

A key is ``kn-`` + 43 random URL-safe characters, shown once at creation; the store
keeps only its SHA-256 and a display prefix. Each key may restrict the ``model`` values it
can ask for (aliases, catalog keys or canonical ids; ``*`` globs allowed), have a
requests-per-minute and a tokens-per-minute limit (fixed one-minute windows counted in
the database, so all replicas share them) and a USD budget, for its lifetime or for each UTC day or month (the
key's spend today and this month are kept either way, so its period can change): before
a call its worst case is held (a row of ``gateway_key_holds``, made in one transaction
that locks the key's row, so concurrent replicas cannot overspend), and the call settles
it at the real cost. A hold names when
it expires (the request's time limit, plus a margin): one a crashed replica never
settled stops counting then, instead of shrinking the budget forever.

Revocation and changes take effect at once: every statement a keyed request runs against
the store (the RPM count, the TPM reservation, the budget hold, or, for a key with none of
those limits, one read of the key's row) refuses a key revoked since the gateway cached it
(:class:`KeyRevoked`), and one whose settings ``keys update`` changed since (its
``revision``, counted by each update: :class:`KeyChanged`, on which the gateway reads the
key again and checks the request anew, so a replica never applies the old limits). Once
any key was created (even one now revoked or expired), :meth:`KeyStore.keys_configured`
says so: a loopback gateway then requires keys.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from knollm.errors import GatewayError, NotFoundError
from knollm.gateway.db import Database, again_if_lost, open_database

__all__ = ["GatewayKey", "KeyStore", "KeyRevoked", "KeyChanged", "hash_key", "KEY_PREFIX", "BUDGET_PERIODS", "KEEP"]

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
        revoked_at DOUBLE PRECISION,
        budget_period TEXT NOT NULL DEFAULT 'total',
        day_start DOUBLE PRECISION,
        spent_day_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        month_start DOUBLE PRECISION,
        spent_month_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        expires_at DOUBLE PRECISION,
        tpm INTEGER,
        revision INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS gateway_key_minutes (
        key_id TEXT NOT NULL,
        minute BIGINT NOT NULL,
        n INTEGER NOT NULL,
        tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, minute))""",
    """CREATE TABLE IF NOT EXISTS gateway_key_holds (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        amount DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS gateway_key_holds_key ON gateway_key_holds (key_id, expires_at)",
]
#: columns added after the first release, with their definitions (a store from before
#: gains them when opened)
_ADDED = [("gateway_keys", "budget_period", "TEXT NOT NULL DEFAULT 'total'"),
          ("gateway_keys", "day_start", "DOUBLE PRECISION"),
          ("gateway_keys", "spent_day_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
          ("gateway_keys", "month_start", "DOUBLE PRECISION"),
          ("gateway_keys", "spent_month_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
          ("gateway_keys", "expires_at", "DOUBLE PRECISION"), ("gateway_keys", "tpm", "INTEGER"),
          ("gateway_keys", "revision", "INTEGER NOT NULL DEFAULT 0"),
          ("gateway_key_minutes", "tokens", "BIGINT NOT NULL DEFAULT 0")]
#: the periods a key's budget may cover (the client's budgets' vocabulary)
BUDGET_PERIODS = ("day", "month", "total")
#: how long a hold counts when its maker gives no time limit (the gateway gives its
#: request time limit plus a minute, or plus the limit when that is shorter)
HOLD_TTL_S = 3600.0

_MAX_NAME = 100  # the ledger tag key:<name> stays under the client's limit

_COLS = ("id, name, prefix, allowed, rpm, budget_usd, spent_usd, reserved_usd, created_at, revoked_at, "
         "budget_period, day_start, spent_day_usd, month_start, spent_month_usd, expires_at, tpm, revision")
# ``reserved_usd`` as shown: the live holds, plus any a gateway from before the holds
# table left in the column (its own holds, settled there)
_HELD = "(reserved_usd + COALESCE((SELECT SUM(amount) FROM gateway_key_holds h WHERE h.key_id = k.id " \
        "AND h.expires_at > ?), 0))"
_COLS_HELD = _COLS.replace("reserved_usd", _HELD)
_SAME = " AND revision = ?"  # a statement for the key's settings as the caller has them


class KeyRevoked(GatewayError):
    """The key was revoked (or deleted) since the gateway looked it up: 401, as an unknown key."""

    def __init__(self) -> None:
        super().__init__("invalid or revoked gateway key", status=401, type="authentication_error",
                         code="invalid_api_key")


class KeyChanged(GatewayError):
    """The key's settings changed (``keys update``) since the gateway looked it up: the
    statement did nothing, and the gateway reads the key again and checks the request anew
    with its current settings. It reaches a caller only if the key keeps changing under
    that check (503: retry)."""

    def __init__(self) -> None:
        super().__init__("the gateway key's settings changed while the request was checked; retry", status=503,
                         type="server_error", code="key_changed")


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
    budget_period: str = "total"  # what ``budget_usd`` covers: day, month (UTC) or total
    spent_day_usd: float = 0.0  # spent today (UTC), whatever the budget's period
    spent_month_usd: float = 0.0  # spent this month (UTC)
    expires_at: float | None = None  # epoch seconds; None: never
    tpm: int | None = None  # tokens (input + output) per minute
    revision: int = 0  # how many times ``keys update`` changed the key's settings

    @property
    def active(self) -> bool:
        """Not revoked and not expired (as of now)."""
        return self.revoked_at is None and not self.expired()

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "expired" if self.expired() else "active"

    @property
    def spent_period_usd(self) -> float:
        """What counts against the budget: the spend of its period (as of when read)."""
        return {"day": self.spent_day_usd, "month": self.spent_month_usd}.get(self.budget_period, self.spent_usd)

    def budget_text(self) -> str:
        """The budget as said in errors and listings: ``$5`` (lifetime), ``$5/month``."""
        if self.budget_usd is None:
            return "none"
        return f"${self.budget_usd:g}" + ("" if self.budget_period == "total" else f"/{self.budget_period}")

    def renews_at(self, now: float | None = None) -> float | None:
        """When the budget's period ends (epoch seconds, UTC); None for a lifetime budget."""
        from knollm.client.store import period_start

        if self.budget_period not in ("day", "month"):
            return None
        start = period_start(self.budget_period, time.time() if now is None else now)
        return period_start(self.budget_period, start + 32 * 86400 if self.budget_period == "month" else start + 86400)

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
        d["status"] = self.status
        d["spent_period_usd"] = self.spent_period_usd
        return d

    @classmethod
    def from_row(cls, row: tuple, now: float | None = None) -> GatewayKey:
        now = time.time() if now is None else now
        day, month = _current(row[11], row[12], "day", now), _current(row[13], row[14], "month", now)
        return cls(id=row[0], name=row[1], prefix=row[2], allowed=tuple(json.loads(row[3] or "[]")),
                   rpm=row[4], budget_usd=row[5], spent_usd=float(row[6] or 0), reserved_usd=float(row[7] or 0),
                   created_at=float(row[8]), revoked_at=row[9], budget_period=row[10] or "total",
                   spent_day_usd=day, spent_month_usd=month, expires_at=row[15], tpm=row[16],
                   revision=int(row[17] or 0))


def _current(start: float | None, spent: float | None, period: str, now: float) -> float:
    """A period's running spend as of ``now``: what is stored, unless the stored period
    began before the current one (nothing spent in this one yet). A start later than
    ``now``'s period (a replica whose clock runs ahead wrote it) is the current period."""
    from knollm.client.store import period_start

    if start is None or float(start) < period_start(period, now):
        return 0.0
    return float(spent or 0)


def _check_settings(rpm: int | None, budget_usd: float | None, budget_period: str,
                    expires_at: float | None = None, tpm: int | None = None) -> None:
    if tpm is not None and (not isinstance(tpm, int) or tpm < 1):
        raise GatewayError("tpm must be a positive integer")
    if expires_at is not None and not expires_at > 0:
        raise GatewayError("expires_at must be a time (epoch seconds)")
    if rpm is not None and (not isinstance(rpm, int) or rpm < 1):
        raise GatewayError("rpm must be a positive integer")
    if budget_usd is not None and not (isinstance(budget_usd, (int, float)) and math.isfinite(budget_usd)
                                       and budget_usd >= 0):
        raise GatewayError(f"budget must be a finite USD amount >= 0, not {budget_usd!r}")
    if budget_period not in BUDGET_PERIODS:
        raise GatewayError(f"budget period must be one of {', '.join(BUDGET_PERIODS)}, not {budget_period!r}")


#: "leave as is" for :meth:`KeyStore.update` (None removes a limit)
KEEP: Any = object()


class KeyStore:
    """Gateway keys in the gateway database (:func:`knollm.gateway.db.open_database`)."""

    def __init__(self, db: Database | str | None = None) -> None:
        self.db = db if isinstance(db, Database) else open_database(db)
        for stmt in _SCHEMA:
            self.db.execute(stmt)
        self._add_columns()
        self._for_update = " FOR UPDATE" if self.db.dialect == "postgres" else ""  # SQLite: BEGIN IMMEDIATE

    def _add_columns(self) -> None:
        """Give a store from before the periodic budgets, expiry and TPM their columns (a
        key from then keeps its lifetime budget, no expiry, no TPM limit). Replicas starting
        together may race: adding a column that is there is harmless."""
        pg = self.db.dialect == "postgres"
        for table in dict.fromkeys(t for t, _, _ in _ADDED):
            if pg:  # (asked first: an ALTER locks the table even when it adds nothing)
                have = {r[0] for r in self.db.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "AND table_schema = current_schema()", (table,))}
            else:
                have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for name, spec in ((n, sp) for t, n, sp in _ADDED if t == table and n not in have):
                try:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {'IF NOT EXISTS ' if pg else ''}{name} {spec}")
                except Exception as e:  # noqa: BLE001 - another process added it meanwhile
                    if "duplicate column" not in str(e):
                        raise

    # admin -------------------------------------------------------------------------
    def create(self, name: str, *, allowed: list[str] | tuple[str, ...] = (), rpm: int | None = None,
               budget_usd: float | None = None, budget_period: str = "total",
               expires_at: float | None = None, tpm: int | None = None) -> tuple[GatewayKey, str]:
        """A new key; returns the record and the key itself (shown once, never stored).
        ``budget_usd`` covers ``budget_period``: each UTC ``day``, each UTC ``month``, or the
        key's ``total`` (lifetime). From ``expires_at`` (epoch seconds) on, the key is refused.
        ``tpm``: tokens (input + output) per minute."""
        _check_settings(rpm, budget_usd, budget_period, expires_at, tpm)
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise GatewayError(f"a key name is 1 to {_MAX_NAME} printable characters (it tags the key's calls "
                               "in the usage ledger)")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = GatewayKey(id=uuid.uuid4().hex[:12], name=name, prefix=token[:10], allowed=tuple(allowed), rpm=rpm,
                         budget_usd=budget_usd, budget_period=budget_period, expires_at=expires_at, tpm=tpm)
        self.db.execute(
            "INSERT INTO gateway_keys (id, name, prefix, hash, allowed, rpm, tpm, budget_usd, budget_period, "
            "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.prefix, hash_key(token), json.dumps(list(key.allowed)), rpm, tpm, budget_usd,
             budget_period, expires_at, key.created_at))
        return key, token

    def update(self, ref: str, *, allowed: Any = KEEP, rpm: Any = KEEP, budget_usd: Any = KEEP,
               budget_period: Any = KEEP, expires_at: Any = KEEP, tpm: Any = KEEP) -> GatewayKey:
        """Change a key's limits without issuing a new key (:data:`KEEP` leaves a setting
        as it is; ``None`` removes the RPM limit or the budget, ``()`` the model list).
        What the key spent stays: a budget changed to ``month`` counts this month's spend
        so far. Running gateways apply it at the key's next request: its revision changes, so
        every statement a request runs for it refuses the cached settings (:class:`KeyChanged`)."""
        key = self.get(ref)
        new = {"allowed": key.allowed if allowed is KEEP else tuple(allowed),
               "rpm": key.rpm if rpm is KEEP else rpm,
               "budget_usd": key.budget_usd if budget_usd is KEEP else budget_usd,
               "budget_period": key.budget_period if budget_period is KEEP else budget_period,
               "expires_at": key.expires_at if expires_at is KEEP else expires_at,
               "tpm": key.tpm if tpm is KEEP else tpm}
        _check_settings(new["rpm"], new["budget_usd"], new["budget_period"], new["expires_at"], new["tpm"])
        self.db.execute("UPDATE gateway_keys SET allowed = ?, rpm = ?, tpm = ?, budget_usd = ?, budget_period = ?, "
                        "expires_at = ?, revision = revision + 1 WHERE id = ?",
                        (json.dumps(list(new["allowed"])), new["rpm"], new["tpm"], new["budget_usd"],
                         new["budget_period"], new["expires_at"], key.id))
        return self.get(key.id)

    @again_if_lost
    def list(self, include_revoked: bool = True) -> list[GatewayKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        now = time.time()
        return [GatewayKey.from_row(r, now) for r in
                self.db.execute(f"SELECT {_COLS_HELD} FROM gateway_keys k{where} ORDER BY created_at", (now,))]

    def get(self, ref: str) -> GatewayKey:
        """A key by id, name or display prefix (NotFoundError with suggestions otherwise)."""
        keys = self.list()
        hits = [k for k in keys if ref in (k.id, k.name, k.prefix)]
        if len(hits) > 1:  # a key rotated under its name: the revoked ones are not meant
            live = [k for k in hits if k.revoked_at is None]
            if len(live) != 1:
                raise GatewayError(f"{ref!r} names {len(hits)} keys"
                                   f"{f' ({len(live)} not revoked)' if live else ''}; use the id")
            hits = live
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
        """Whether a key is active now (neither revoked nor expired)."""
        return bool(self.db.execute("SELECT 1 FROM gateway_keys WHERE revoked_at IS NULL "
                                    "AND (expires_at IS NULL OR expires_at > ?) LIMIT 1", (time.time(),)))

    @again_if_lost
    def keys_configured(self) -> bool:
        """Whether any key was ever created, active, expired or revoked: from then on a
        gateway requires keys (the last key revoked or expired locks a loopback gateway,
        it does not open it)."""
        return bool(self.db.execute("SELECT 1 FROM gateway_keys LIMIT 1"))

    @again_if_lost
    def check_live(self, key_id: str, revision: int | None = None) -> None:
        """Raise :class:`KeyRevoked` when the key is revoked (or gone), :class:`KeyChanged`
        when ``revision`` (the one the caller has) is not the key's now: one primary-key read,
        for a request whose key has no limit that reads its row anyway."""
        rows = self.db.execute("SELECT revoked_at, revision FROM gateway_keys WHERE id = ?", (key_id,))
        if not rows or rows[0][0] is not None:
            raise KeyRevoked()
        if revision is not None and int(rows[0][1] or 0) != revision:
            raise KeyChanged()

    # serving -----------------------------------------------------------------------
    @again_if_lost
    def lookup(self, token: str) -> GatewayKey | None:
        """The key not revoked whose hash matches ``token`` (None when unknown or revoked).
        An expired key is returned (its holder is told it expired): check :meth:`GatewayKey.expired`."""
        now = time.time()
        rows = self.db.execute(f"SELECT {_COLS_HELD} FROM gateway_keys k WHERE hash = ? AND revoked_at IS NULL",
                               (now, hash_key(token)))
        return GatewayKey.from_row(rows[0], now) if rows else None

    @again_if_lost
    def hit(self, key_id: str, now: float | None = None, revision: int | None = None) -> int:
        """Count one request in the current minute; returns the count so far (this one included).
        A revoked key counts nothing: :class:`KeyRevoked`; nor does one whose revision is not
        ``revision``: :class:`KeyChanged` (the same statement checks both)."""
        minute = int((now if now is not None else time.time()) // 60)
        rows = self.db.execute(
            "INSERT INTO gateway_key_minutes (key_id, minute, n) SELECT id, ?, 1 FROM gateway_keys "
            f"WHERE id = ? AND revoked_at IS NULL{_SAME if revision is not None else ''} "
            "ON CONFLICT (key_id, minute) DO UPDATE SET n = gateway_key_minutes.n + 1 RETURNING n",
            (minute, key_id) if revision is None else (minute, key_id, revision))
        if not rows:
            self.check_live(key_id, revision)
            raise KeyChanged()  # (not reached: no row counted is a key revoked or changed)
        self._tidy(minute)
        return int(rows[0][0])

    def _tidy(self, minute: int) -> None:
        if minute % 10 == 0:  # keep the table small
            self.db.execute("DELETE FROM gateway_key_minutes WHERE minute < ?", (minute - 2,))

    @again_if_lost
    def tokens_used(self, key_id: str, now: float | None = None) -> int:
        """Tokens (input + output) the key's calls used in the current minute (as settled)."""
        minute = int((now if now is not None else time.time()) // 60)
        rows = self.db.execute("SELECT tokens FROM gateway_key_minutes WHERE key_id = ? AND minute = ?",
                               (key_id, minute))
        return int(rows[0][0]) if rows else 0

    @again_if_lost
    def reserve_tokens(self, key_id: str, tokens: int, tpm: int, now: float | None = None,
                       revision: int | None = None) -> int | None:
        """Count a call's estimated ``tokens`` in the current minute, in one conditional
        statement (replicas share it, and the database serializes it): only while the
        minute's tokens, those of finished calls plus the estimates of calls in flight, are
        under ``tpm``. Returns the minute (for :meth:`settle_tokens`), or None when the
        minute is used up. A revoked key: :class:`KeyRevoked`; one whose revision is not
        ``revision``: :class:`KeyChanged`, nothing counted. Run again on a lost
        connection, a reservation may count twice; it is corrected once, so the minute
        keeps the extra estimate (it only refuses sooner)."""
        tokens = max(0, int(tokens))
        minute = int((now if now is not None else time.time()) // 60)
        rows = self.db.execute(
            "INSERT INTO gateway_key_minutes (key_id, minute, n, tokens) SELECT id, ?, 0, ? FROM gateway_keys "
            f"WHERE id = ? AND revoked_at IS NULL{_SAME if revision is not None else ''} ON CONFLICT (key_id, minute) "
            "DO UPDATE SET tokens = gateway_key_minutes.tokens + EXCLUDED.tokens WHERE gateway_key_minutes.tokens < ? "
            "RETURNING tokens", (minute, tokens, key_id, tpm) if revision is None else
            (minute, tokens, key_id, revision, tpm))
        if rows:
            self._tidy(minute)
            return minute
        self.check_live(key_id, revision)  # refused: revoked, changed, or the minute is used up
        return None

    def settle_tokens(self, key_id: str, minute: int, reserved: int, used: int, now: float | None = None) -> None:
        """A call reserved with :meth:`reserve_tokens` is over: its estimate leaves the
        minute it was reserved in, and the tokens it used (as the provider reported them; 0
        for a failed call) count in the current minute, where the call ended (the same
        minute, usually: one statement corrects it by ``used - reserved``). Not run again on
        a lost connection (a repeat would correct twice): the error reaches the caller."""
        now_min = int((now if now is not None else time.time()) // 60)
        reserved, used = max(0, int(reserved)), max(0, int(used))
        if now_min == minute or not used:
            if used != reserved:
                self.db.execute("UPDATE gateway_key_minutes SET tokens = CASE WHEN tokens + ? < 0 THEN 0 "
                                "ELSE tokens + ? END WHERE key_id = ? AND minute = ?",
                                (used - reserved, used - reserved, key_id, minute))
            return
        with self.db.tx():
            if reserved:
                self.db.execute("UPDATE gateway_key_minutes SET tokens = CASE WHEN tokens < ? THEN 0 "
                                "ELSE tokens - ? END WHERE key_id = ? AND minute = ?",
                                (reserved, reserved, key_id, minute))
            self._add_tokens(key_id, used, now_min)

    @again_if_lost
    def add_tokens(self, key_id: str, tokens: int, now: float | None = None) -> None:
        """Count a finished call's tokens in the current minute (the minute it ended)."""
        if tokens <= 0:
            return
        self._add_tokens(key_id, tokens, int((now if now is not None else time.time()) // 60))

    def _add_tokens(self, key_id: str, tokens: int, minute: int) -> None:
        self.db.execute(
            "INSERT INTO gateway_key_minutes (key_id, minute, n, tokens) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (key_id, minute) DO UPDATE SET tokens = gateway_key_minutes.tokens + ?",
            (key_id, minute, tokens, tokens))

    @again_if_lost
    def reserve(self, key_id: str, amount: float, ttl_s: float = HOLD_TTL_S, now: float | None = None,
                revision: int | None = None) -> str | None:
        """Hold ``amount`` USD of the key's budget for at most ``ttl_s`` seconds (a call's
        time limit): the hold's id, or None when it would exceed the budget (spent in the
        budget's period, plus the live holds, plus this one). One transaction, the key's
        row locked, so replicas reserving at once are serialized. Expired holds of the key
        are dropped. A revoked key holds nothing: :class:`KeyRevoked`; nor does one whose
        revision is not ``revision`` (its budget may have changed): :class:`KeyChanged`."""
        from knollm.client.store import budget_slack

        now = time.time() if now is None else now
        with self.db.tx():
            rows = self.db.execute(f"SELECT budget_usd, spent_usd, reserved_usd, budget_period, day_start, "
                                   f"spent_day_usd, month_start, spent_month_usd, revoked_at, revision FROM gateway_keys "
                                   f"WHERE id = ?{self._for_update}", (key_id,))
            if not rows:
                return None
            budget, spent, legacy, period, day_start, day, month_start, month, revoked, rev = rows[0]
            if revoked is not None:
                raise KeyRevoked()
            if revision is not None and int(rev or 0) != revision:
                raise KeyChanged()
            self.db.execute("DELETE FROM gateway_key_holds WHERE key_id = ? AND expires_at <= ?", (key_id, now))
            if budget is not None:
                if period == "day":
                    spent = _current(day_start, day, "day", now)
                elif period == "month":
                    spent = _current(month_start, month, "month", now)
                (held,) = self.db.execute("SELECT COALESCE(SUM(amount), 0) FROM gateway_key_holds WHERE key_id = ?",
                                          (key_id,))[0]
                if float(spent or 0) + float(legacy or 0) + float(held) + amount > budget + budget_slack(budget):
                    return None
            hold = uuid.uuid4().hex
            self.db.execute("INSERT INTO gateway_key_holds (id, key_id, amount, expires_at) VALUES (?, ?, ?, ?)",
                            (hold, key_id, amount, now + ttl_s))
        return hold

    @again_if_lost
    def current(self, key_id: str) -> GatewayKey | None:
        """The key as stored now (its spend in the budget's period, its live holds): why a
        reservation was refused, which a key cached by a gateway may be seconds behind."""
        now = time.time()
        rows = self.db.execute(f"SELECT {_COLS_HELD} FROM gateway_keys k WHERE id = ?", (now, key_id))
        return GatewayKey.from_row(rows[0], now) if rows else None

    @again_if_lost
    def settle(self, key_id: str, hold: str, cost: float, now: float | None = None) -> bool:
        """Drop the hold and charge the real cost, in one transaction; only while the hold
        is there (False: it was settled already, so a repeat never charges twice, or it
        expired, its request being long over, and was dropped). The cost counts in the
        key's lifetime spend and in the day's and the month's (UTC) of the settle: a period
        that began since the last charge starts from this one. Periods only move forward,
        so a replica whose clock runs behind adds to the newer period, never resets it."""
        now = time.time() if now is None else now
        with self.db.tx():
            if not self.db.execute("DELETE FROM gateway_key_holds WHERE id = ? RETURNING id", (hold,)):
                return False
            self._add_spend(key_id, cost, now)
        return True

    def charge(self, key_id: str, cost: float, now: float | None = None) -> None:
        """Add the cost of a call that held nothing (a key without a budget) to the key's
        spend, as :meth:`settle` does: so ``keys list`` shows it, and a budget given later
        counts what was spent in its period. Not run again on a lost connection (a repeat
        could count twice): the error reaches the caller, the ledger has the call."""
        now = time.time() if now is None else now
        with self.db.tx():
            self._add_spend(key_id, cost, now)

    def _add_spend(self, key_id: str, cost: float, now: float) -> None:
        from knollm.client.store import period_start

        d, m = period_start("day", now), period_start("month", now)
        self.db.execute(
            "UPDATE gateway_keys SET spent_usd = spent_usd + ?, "
            "spent_day_usd = CASE WHEN day_start IS NULL OR day_start < ? THEN ? ELSE spent_day_usd + ? END, "
            "day_start = CASE WHEN day_start IS NULL OR day_start < ? THEN ? ELSE day_start END, "
            "spent_month_usd = CASE WHEN month_start IS NULL OR month_start < ? THEN ? "
            "ELSE spent_month_usd + ? END, "
            "month_start = CASE WHEN month_start IS NULL OR month_start < ? THEN ? ELSE month_start END "
            "WHERE id = ?", (cost, d, cost, cost, d, d, m, cost, cost, m, m, key_id))
