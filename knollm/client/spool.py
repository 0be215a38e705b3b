"""Ledger rows the store could not take, kept on disk until it can (the spool).

A call the provider answered is billed whatever happens to the ledger. When the store
fails to take its row (PostgreSQL down past a reconnect, a SQLite file locked past its
busy timeout, a full disk), the row goes to the ledger's own spool (:func:`spool_path`:
``<ledger file>.spool.jsonl`` beside a SQLite ledger, ``ledger-spool-<hash>.jsonl`` in the
data directory for a PostgreSQL one; appended and flushed to disk under an exclusive lock:
processes share the file), a :class:`LedgerWarning` says so, and the caller gets its
answer. The spooled rows go to the store before the next budget hold and after the next
settle that succeeds (in this process; or in any process whose client finds the file not
empty, when it first uses its store and then once a minute). A replay may repeat: a row
whose ``request_id`` the ledger has already is not inserted again, so nothing counts twice.

A line that is not a ledger row, or a row the store refuses for good (a value out of its
range), is set aside in ``<spool>.bad`` with a warning: it never blocks the rows behind
it. A row that reaches neither the store nor the spool is written whole into the warning.
(Before 2026-11-24 every ledger in a directory shared ``ledger-spool.jsonl``; the default
ledger still replays that file.)
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["LedgerWarning", "Spool", "spool_path", "spool_for", "waiting", "data_errors"]

try:  # POSIX: one writer at a time across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: this process's threads only
    fcntl = None  # type: ignore[assignment]

SPOOL_NAME = "ledger-spool.jsonl"  # the one spool every ledger of a directory shared before 2026-11-24
SPOOL_SUFFIX = ".spool.jsonl"
_ROW_KEYS = {"request_id": str, "ts": (int, float), "provider": str, "model": str}


class LedgerWarning(UserWarning):
    """The ledger could not take a row now: it is spooled (or, failing that, in the message)."""


def spool_for(db: str | Path | None) -> Path:
    """The spool of the ledger ``db`` names: a SQLite file (``sqlite:///path`` or a path; None:
    the default ledger) or a PostgreSQL URL. Each ledger has its own: a row one ledger could
    not take is never replayed into another."""
    import hashlib

    from knollm.client.store import default_db_path
    from knollm.gateway.db import is_postgres, redact_url

    if db is not None and is_postgres(str(db)):
        digest = hashlib.sha256(redact_url(str(db)).encode()).hexdigest()[:16]
        return default_db_path().parent / f"ledger-spool-{digest}.jsonl"
    if db is None:
        path = default_db_path()
    else:
        text = str(db)
        path = Path(text[len("sqlite:///"):] if text.startswith("sqlite:///") else text)
    return path.with_name(path.name + SPOOL_SUFFIX)


def spool_path(store: Any) -> Path:
    """The spool of ``store``: beside its file (SQLite), else named after its URL."""
    path = getattr(store, "path", None)
    if path is not None:
        return spool_for(Path(path))
    url = getattr(getattr(store, "db", None), "url", None) or getattr(store, "url", None)
    return spool_for(url)


def legacy_spool(store_or_path: Any) -> Path | None:
    """The shared spool of earlier versions, replayed by the default ledger only."""
    from knollm.client.store import default_db_path

    path = store_or_path if isinstance(store_or_path, (str, Path)) else getattr(store_or_path, "path", None)
    if path is None:  # (a PostgreSQL ledger: its spool was never shared with a file's)
        return None
    try:
        if path is not None and Path(path).resolve() == default_db_path().resolve():
            return Path(path).parent / SPOOL_NAME
    except OSError:
        pass
    return None


def data_errors() -> tuple[type[BaseException], ...]:
    """What a store raises for a row it will never take (not an outage): a value out of its
    range or type, a constraint. Such a row is set aside; retrying cannot help."""
    import sqlite3
    import sys

    errs: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
                                             OverflowError, ValueError, TypeError)
    pg = sys.modules.get("psycopg")
    return errs + (pg.DataError, pg.IntegrityError) if pg is not None else errs


def _row_of(line: str) -> tuple[str | None, dict[str, Any]] | None:
    """``(reservation_id, row)`` of a spool line, or None when it is not a ledger row."""
    try:
        d = json.loads(line)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    rid, row = d.get("reservation_id"), d.get("row")
    if not (rid is None or isinstance(rid, str)) or not isinstance(row, dict):
        return None
    for k, t in _ROW_KEYS.items():
        if not isinstance(row.get(k), t) or isinstance(row.get(k), bool):
            return None
    return rid, row


def waiting(path: Path) -> int:
    """How many rows wait in the spool at ``path`` (0 when there is none: one ``stat``)."""
    try:
        if path.stat().st_size == 0:
            return 0
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


class Spool:
    """The spool of one store. ``pending``: there may be rows to replay (this process
    spooled some, or the file was not empty when last looked at: when the spool was
    opened, then every ``look_every`` seconds, for rows another process left)."""

    look_every = 60.0

    def __init__(self, path: Path, legacy: Path | None = None) -> None:
        self.path = path
        self.legacy = legacy  # the shared spool of earlier versions (the default ledger replays it)
        self._lock = threading.Lock()
        self._looked = time.monotonic()
        self.pending = self._waiting()

    def _waiting(self) -> bool:
        return waiting(self.path) > 0 or (self.legacy is not None and waiting(self.legacy) > 0)

    @property
    def bad_path(self) -> Path:
        return self.path.with_name(self.path.name + ".bad")

    def due(self) -> bool:
        """True when rows may wait: this process spooled some, or (looked at every
        ``look_every`` seconds, one ``stat``) another process left some."""
        if self.pending:
            return True
        now = time.monotonic()
        if now - self._looked >= self.look_every:
            self._looked = now
            self.pending = self._waiting()
        return self.pending

    def _open(self, mode: str, path: Path | None = None) -> Any:
        f = open(path or self.path, mode, encoding="utf-8")
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        return f

    def add(self, items: list[tuple[str | None, dict[str, Any]]], error: BaseException) -> None:
        """Keep ``items`` (``(reservation_id, row)``, as ``settle_many`` takes them) until the
        store takes them; warn either way."""
        lines = "".join(json.dumps({"reservation_id": rid, "row": row}, default=str) + "\n" for rid, row in items)
        what = f"{len(items)} ledger row(s) ({', '.join(str(r.get('request_id')) for _, r in items)})"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self._open("a") as f:
                size = f.seek(0, os.SEEK_END)
                if size:  # a line cut short (a full disk, a killed process) must not swallow this one
                    with open(self.path, "rb") as r:
                        r.seek(size - 1)
                        if r.read(1) != b"\n":
                            lines = "\n" + lines
                try:
                    f.write(lines)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    f.truncate(size)  # no half row left behind
                    raise
        except OSError as e:
            warnings.warn(f"the ledger store failed ({type(error).__name__}: {error}) and so did its spool "
                          f"{self.path} ({e}): {what} not recorded: {lines.strip()}", LedgerWarning, stacklevel=4)
            return
        self.pending = True
        warnings.warn(f"the ledger store failed ({type(error).__name__}: {error}): {what} kept in {self.path}, "
                      "written to the ledger at its next settle", LedgerWarning, stacklevel=4)

    def set_aside(self, lines: list[str], why: str) -> None:
        """Keep ``lines`` in the ``.bad`` file beside the spool, with a warning saying why (or,
        when that file cannot be written, the lines in the warning)."""
        try:
            with open(self.bad_path, "a", encoding="utf-8") as out:
                out.writelines(x if x.endswith("\n") else x + "\n" for x in lines)
        except OSError as e:
            warnings.warn(f"{self.path}: {len(lines)} ledger line(s) {why}, and {self.bad_path} cannot be written "
                          f"({e}): {''.join(lines).strip()}", LedgerWarning, stacklevel=4)
            return
        warnings.warn(f"{self.path}: {len(lines)} line(s) {why}: set aside in {self.bad_path.name}",
                      LedgerWarning, stacklevel=4)

    def replay(self, store: Any, busy_ms: int | None = None) -> int:
        """Write the spooled rows to ``store`` (one transaction when it has ``settle_many``)
        and empty the spool; how many rows there were. An outage (the store's error)
        propagates and the spool stays as it was. A line that is not a ledger row, and a row
        the store refuses for good (:func:`data_errors`, found row by row), is set aside.
        ``busy_ms``: SQLite's short try (on an event loop): a lock held longer is an error."""
        with self._lock:
            files = [self.path] + ([self.legacy] if self.legacy is not None else [])
            handles = []
            try:
                for p in files:
                    try:
                        handles.append(self._open("r+", p))
                    except FileNotFoundError:
                        pass
                items: list[tuple[str | None, dict[str, Any]]] = []
                lines: list[str] = []
                bad: list[str] = []
                for f in handles:
                    for line in f:
                        if not line.strip():
                            continue
                        it = _row_of(line)
                        if it is None:
                            bad.append(line)
                        else:
                            items.append(it)
                            lines.append(line)
                refused: list[str] = []
                if items:
                    try:
                        self._write(store, items, busy_ms)
                    except data_errors():
                        for it, line in zip(items, lines):  # find the rows the store will never take
                            try:
                                self._write(store, [it], busy_ms)
                            except data_errors() as e:
                                refused.append(f"{line.rstrip()}  # {type(e).__name__}: {e}\n")
                if bad:
                    self.set_aside(bad, "that are not ledger rows")
                if refused:
                    self.set_aside(refused, "the ledger store refuses for good")
                for f in handles:
                    f.seek(0)
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                for f in handles:
                    f.close()
            self.pending = False
            return len(items)

    @staticmethod
    def _write(store: Any, items: list[tuple[str | None, dict[str, Any]]], busy_ms: int | None) -> None:
        if busy_ms is not None:
            store.settle_many(items, busy_ms=busy_ms)
        elif hasattr(store, "settle_many"):
            store.settle_many(items)
        else:
            for rid, row in items:
                store.settle(rid, row)
