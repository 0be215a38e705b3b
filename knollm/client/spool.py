"""Ledger rows the store could not take, kept on disk until it can (the spool).

A call the provider answered is billed whatever happens to the ledger. When the store
fails to take its row (PostgreSQL down past a reconnect, a SQLite file locked past its
busy timeout, a full disk), the row goes to ``ledger-spool.jsonl`` beside the ledger
(appended and flushed to disk under an exclusive lock: processes share the file), a
:class:`LedgerWarning` says so, and the caller gets its answer. The spooled rows go to the
store at the next settle that succeeds (in this process; or in any process whose client
finds the file not empty, when it opens its store and then once a minute). A replay may repeat: a row whose
``request_id`` the ledger has already is not inserted again, so nothing counts twice.
A row that reaches neither the store nor the spool is written whole into the warning.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["LedgerWarning", "Spool", "spool_path", "waiting"]

try:  # POSIX: one writer at a time across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: this process's threads only
    fcntl = None  # type: ignore[assignment]

SPOOL_NAME = "ledger-spool.jsonl"


class LedgerWarning(UserWarning):
    """The ledger could not take a row now: it is spooled (or, failing that, in the message)."""


def spool_path(store: Any) -> Path:
    """The spool beside ``store``'s file (SQLite), else beside the default ledger."""
    path = getattr(store, "path", None)
    if path is None:
        from knollm.client.store import default_db_path

        path = default_db_path()
    return Path(path).parent / SPOOL_NAME


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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._looked = time.monotonic()
        self.pending = waiting(path) > 0

    def due(self) -> bool:
        """True when rows may wait: this process spooled some, or (looked at every
        ``look_every`` seconds, one ``stat``) another process left some."""
        if self.pending:
            return True
        now = time.monotonic()
        if now - self._looked >= self.look_every:
            self._looked = now
            self.pending = waiting(self.path) > 0
        return self.pending

    def _open(self, mode: str) -> Any:
        f = open(self.path, mode, encoding="utf-8")
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
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            warnings.warn(f"the ledger store failed ({type(error).__name__}: {error}) and so did its spool "
                          f"{self.path} ({e}): {what} not recorded: {lines.strip()}", LedgerWarning, stacklevel=4)
            return
        self.pending = True
        warnings.warn(f"the ledger store failed ({type(error).__name__}: {error}): {what} kept in {self.path}, "
                      "written to the ledger at its next settle", LedgerWarning, stacklevel=4)

    def replay(self, store: Any) -> int:
        """Write the spooled rows to ``store`` (one transaction when it has ``settle_many``)
        and empty the spool; how many rows there were. The store's error propagates and
        the spool stays as it was. A line that is not a spooled row is set aside."""
        with self._lock:
            try:
                f = self._open("r+")
            except FileNotFoundError:
                self.pending = False
                return 0
            with f:
                items, bad = [], []
                for line in f:
                    try:
                        d = json.loads(line)
                        items.append((d["reservation_id"], d["row"]))
                    except (ValueError, KeyError, TypeError):
                        if line.strip():
                            bad.append(line)
                if items:
                    if hasattr(store, "settle_many"):
                        store.settle_many(items)
                    else:
                        for rid, row in items:
                            store.settle(rid, row)
                if bad:
                    with open(self.path.with_name(SPOOL_NAME + ".bad"), "a", encoding="utf-8") as out:
                        out.writelines(bad)
                    warnings.warn(f"{self.path}: {len(bad)} line(s) that are not ledger rows set aside in "
                                  f"{SPOOL_NAME}.bad", LedgerWarning, stacklevel=3)
                f.seek(0)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
            self.pending = False
            return len(items)
