"""Runtime switching: re-read the lockfile when asked (or when it changed, with ``watch``).

A client or gateway keeps one :class:`LockWatcher`. ``reload()`` re-reads the file; a
bad edit (unparsable, invalid) keeps the last good version and records why in
:attr:`LockWatcher.error`. With ``watch=True`` (default off) every :meth:`resolve` call
checks the file's mtime/size first (a ``stat``, no parsing unless it changed).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from knollm.errors import LockError
from knollm.lock.lockfile import Binding, Lockfile, active_profile, find_lock, load_lock

__all__ = ["LockWatcher"]


class LockWatcher:
    def __init__(self, lock: str | Path | None = None, *, profile: str | None = None, watch: bool = False) -> None:
        self.path: Path | None = find_lock(lock)
        self.profile = profile
        self.watch = watch
        self.lockfile: Lockfile | None = None
        self.error: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.reload()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path) if self.path else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    def reload(self) -> bool:
        """Re-read the file. True if a new good version was loaded; on error the last good
        version stays active and :attr:`error` says why (False)."""
        with self._lock:
            stamp = self._stat()
            if self.path is None:
                return False
            try:
                lf = load_lock(self.path)
                lf.bindings(active_profile(lf, self.profile))  # profile exists, extends resolve
            except LockError as e:
                self.error = f"{e} (keeping the last good lockfile)" if self.lockfile else str(e)
                self._stamp = stamp
                return False
            self.lockfile, self.error, self._stamp = lf, None, stamp
            return True

    def changed(self) -> bool:
        return self._stat() != self._stamp

    def resolve(self, alias: str) -> Binding | None:
        """The binding of ``alias`` in the active profile (None if no lockfile/alias)."""
        if self.watch and self.changed():
            self.reload()
        lf = self.lockfile
        if lf is None:
            return None
        return lf.binding(alias, active_profile(lf, self.profile))
