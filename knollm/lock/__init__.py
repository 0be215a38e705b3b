"""``knollm.lock``: semantic aliases bound to models in a ``knollm.lock`` file.

    >>> from knollm.lock import resolve_alias
    >>> b = resolve_alias("fast")          # None without a lockfile / alias
    >>> b.models                           # ["provider/model", …] first = primary

See ``src_docs/lockfile.md``. Only the reading side is imported here (fast); choosing,
validating and scanning import the catalog lazily.
"""

from __future__ import annotations

from knollm.lock.lockfile import Binding, Lockfile, UserConfig, active_profile, find_lock, load_lock, parse_lock, \
    resolve_alias, user_config
from knollm.lock.watch import LockWatcher

__all__ = ["Binding", "Lockfile", "UserConfig", "LockWatcher", "active_profile", "find_lock", "load_lock",
           "parse_lock", "resolve_alias", "user_config"]
