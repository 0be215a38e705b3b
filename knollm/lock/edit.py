"""Writing ``knollm.lock`` with :mod:`tomlkit`: edits keep the file's comments and formatting."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, InlineTable

from knollm.errors import LockError
from knollm.fsutil import atomic_write, exclusive_lock
from knollm.lock.lockfile import LOCK_VERSION, Binding, Lockfile, check_is_lockfile, parse_lock

__all__ = ["LockDoc", "HEADER"]

HEADER = """\
knollm.lock - semantic aliases bound to models (see https://knollm docs: lockfile).
Each binding's `models` is a fallback chain, first = primary. [pins] record the facts
used when a model was bound (with their sources) so `knollm lock validate` sees drift.
Edit freely; comments and formatting are kept by `knollm lock bind/unbind/optimize`."""


def _inline(d: dict[str, Any]) -> Any:
    t = tomlkit.inline_table()
    for k, v in d.items():
        t[k] = _inline(v) if isinstance(v, dict) else v
    return t


class LockDoc:
    """A lockfile open for editing. ``save()`` validates the result before writing.

    Several processes may edit one lockfile (``knollm lock bind`` in parallel, an MCP client):
    open it with ``with LockDoc.locked(path) as doc:`` to hold an exclusive lock (a ``flock`` on
    the sidecar ``<path>.lck``) from the read to the write, and read what the edit depends on
    (:meth:`lockfile`) inside the block. A ``LockDoc`` opened without it takes the lock for
    ``save()`` only and refuses to write over changes made since it read the file.

    A symbolic link is edited through (the file it points at is written, with its mode kept).
    A file that is some other tool's (``uv.lock``: top-level keys of its own, no profiles or
    pins) is refused with a :class:`LockError`."""

    def __init__(self, path: str | Path, text: str | None = None) -> None:
        self.path = Path(path)
        self._held = False  # this doc holds the edit lock (opened by locked())
        self._check_unchanged = text is None
        if text is None:
            text = self._read()
        self.original = text
        try:
            self.doc = tomlkit.parse(text) if text else self._new()
        except Exception as e:  # tomlkit raises its own ParseError subclasses
            raise LockError(str(self.path), f"not valid TOML: {e}") from None
        if text:
            check_is_lockfile(self.doc.keys(), self.path)

    def _read(self) -> str:
        try:
            return self.path.read_text("utf-8") if self.path.is_file() else ""
        except (OSError, UnicodeDecodeError) as e:
            raise LockError(str(self.path), f"cannot read: {e}") from None

    @classmethod
    @contextlib.contextmanager
    def locked(cls, path: str | Path, *, timeout: float = 120.0) -> Iterator[LockDoc]:
        """``path`` open for editing under an exclusive lock held until the block ends: no other
        process's edit can come between this read and this ``save()``."""
        with _edit_lock(Path(path), timeout):
            doc = cls(path)
            doc._held = True
            try:
                yield doc
            finally:
                doc._held = False

    def lockfile(self) -> Lockfile | None:
        """The file as read (parsed and checked); None when it did not exist or was empty."""
        return parse_lock(self.original, self.path) if self.original.strip() else None

    @staticmethod
    def _new() -> tomlkit.TOMLDocument:
        doc = tomlkit.document()
        for line in HEADER.splitlines():
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
        doc["version"] = LOCK_VERSION
        doc["default_profile"] = "default"
        return doc

    # ------------------------------------------------------------------ edits
    def set_meta(self, **kw: Any) -> None:
        meta = self.doc.setdefault("meta", tomlkit.table())
        for k, v in kw.items():
            if v is not None:
                meta[k] = v

    def _profile(self, name: str, create: bool = True) -> Any:
        profiles = self.doc.get("profiles")
        if profiles is None:
            if not create:
                return None
            profiles = tomlkit.table(is_super_table=True)
            self.doc["profiles"] = profiles
        if not isinstance(profiles, dict):
            raise LockError(str(self.path), "'profiles' must be a table")
        prof = profiles.get(name)
        if prof is None and create:
            # inside an inline table (profiles = { … }) only an inline table is valid TOML
            prof = tomlkit.inline_table() if isinstance(profiles, InlineTable) else tomlkit.table()
            profiles[name] = prof
        if prof is not None and not isinstance(prof, dict):
            raise LockError(str(self.path), "a profile must be a table", f"profiles.{name}")
        return prof

    def _bindings(self, prof: Any, profile: str) -> Any:
        """``prof``'s bindings array (None: it has none), every entry checked to be a table."""
        arr = prof.get("bindings")
        if arr is None:
            return None
        if not isinstance(arr, list):
            raise LockError(str(self.path), "'bindings' must be an array of tables", f"profiles.{profile}")
        for i, t in enumerate(arr):
            if not isinstance(t, dict):
                raise LockError(str(self.path), "a binding must be a table", f"profiles.{profile}.bindings[{i}]")
        return arr

    def set_binding(self, b: Binding, profile: str, *, comment: str | None = None) -> None:
        """Add or replace alias ``b.alias`` in ``profile`` (replacing keeps its position). Its
        ``cache`` and ``note`` are written when set (``None`` keeps what the entry has).

        ``bindings`` written as an inline array (``bindings = [ { … } ]``) gets an inline table."""
        prof = self._profile(profile)
        arr = self._bindings(prof, profile)
        if arr is None:
            if isinstance(prof, InlineTable):
                arr = tomlkit.array()
            else:
                arr = tomlkit.aot()
            prof["bindings"] = arr
        existing = next((t for t in arr if t.get("alias") == b.alias), None)
        inline = not isinstance(arr, AoT)  # an inline array takes inline tables only
        t = existing if existing is not None else (tomlkit.inline_table() if inline else tomlkit.table())
        if existing is None and comment and not inline:
            t.comment(comment)
        t["alias"] = b.alias
        models = tomlkit.array()
        models.extend(b.models)
        if len(b.models) > 1 and not inline:
            models.multiline(True)
        t["models"] = models
        cache = b.cache
        if isinstance(cache, float) and cache.is_integer():
            cache = int(cache)  # (read back as a float: a TTL of 3600 stays "3600")
        for key, val in (("requires", _inline(b.requires) if b.requires else None), ("strategy", b.strategy),
                         ("prefer", b.prefer), ("cloud_fallback", b.cloud_fallback or None)):
            if val is None:
                if key in t:
                    del t[key]
            else:
                t[key] = val
        # cache and note: written when the binding has them; None (not set) keeps what the entry has
        for key, val in (("cache", cache), ("note", getattr(b, "note", None))):
            if val is not None:
                t[key] = val
        if existing is None:
            arr.append(t)

    def remove_binding(self, alias: str, profile: str) -> bool:
        prof = self._profile(profile, create=False)
        arr = self._bindings(prof, profile) if prof is not None else None
        if not arr:
            return False
        for i, t in enumerate(arr):
            if t.get("alias") == alias:
                del arr[i]
                return True
        return False

    def set_pin(self, key: str, pin: dict[str, Any]) -> None:
        pins = self.doc.get("pins")
        if pins is None:
            pins = tomlkit.table(is_super_table=True)
            self.doc["pins"] = pins
        t = tomlkit.table()
        for k, v in pin.items():
            t[k] = _inline(v) if isinstance(v, dict) else v
        pins[key] = t

    def prune_pins(self) -> list[str]:
        """Drop pins of models no binding uses any more; returns their keys."""
        lf = parse_lock(self.text(), self.path)
        used = {m for p in lf.profiles.values() for b in p["bindings"].values() for m in b.models}
        pins = self.doc.get("pins") or {}
        gone = [k for k in list(pins) if k not in used]
        for k in gone:
            del pins[k]
        return gone

    # ------------------------------------------------------------------ output
    def text(self) -> str:
        return tomlkit.dumps(self.doc)

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.original.splitlines(True), self.text().splitlines(True),
                                            f"a/{self.path.name}", f"b/{self.path.name}"))

    def save(self) -> str:
        """Validate and write atomically; returns the unified diff against the file as read.

        Written through a symbolic link, keeping the file's mode. Outside :meth:`locked` the
        edit lock is taken for the write, and a file changed since it was read is not
        overwritten (:class:`LockError`: run the edit again)."""
        text = self.text()
        parse_lock(text, self.path)  # never write a file we could not read back
        d = self.diff()
        if self._held:
            atomic_write(self.path, text.encode("utf-8"))
        else:
            with _edit_lock(self.path, 120.0):
                if self._check_unchanged and self._read() != self.original:
                    raise LockError(str(self.path), "changed by another process since it was read; "
                                    "nothing written (run the edit again)")
                atomic_write(self.path, text.encode("utf-8"))
        self.original = text
        return d


@contextlib.contextmanager
def _edit_lock(path: Path, timeout: float) -> Iterator[None]:
    """:func:`knollm.fsutil.exclusive_lock` with its failures as :class:`LockError` naming the file."""
    try:
        cm = exclusive_lock(path, timeout=timeout)
        cm.__enter__()
    except TimeoutError as e:
        raise LockError(str(path), f"another process is editing it ({e})") from None
    except OSError as e:
        raise LockError(str(path), f"cannot lock for editing: {e}") from None
    try:
        yield
    finally:
        cm.__exit__(None, None, None)  # releases the lock (an error in the block propagates as it is)
