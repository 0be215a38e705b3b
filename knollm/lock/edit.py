"""Writing ``knollm.lock`` with :mod:`tomlkit`: edits keep the file's comments and formatting."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, InlineTable

from knollm.errors import LockError
from knollm.fsutil import atomic_write
from knollm.lock.lockfile import LOCK_VERSION, Binding, parse_lock

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
    """A lockfile open for editing. ``save()`` validates the result before writing."""

    def __init__(self, path: str | Path, text: str | None = None) -> None:
        self.path = Path(path)
        if text is None:
            try:
                text = self.path.read_text("utf-8") if self.path.is_file() else ""
            except (OSError, UnicodeDecodeError) as e:
                raise LockError(str(self.path), f"cannot read: {e}") from None
        self.original = text
        try:
            self.doc = tomlkit.parse(text) if text else self._new()
        except Exception as e:  # tomlkit raises its own ParseError subclasses
            raise LockError(str(self.path), f"not valid TOML: {e}") from None

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
        """Validate and write atomically; returns the unified diff against the file as read."""
        text = self.text()
        parse_lock(text, self.path)  # never write a file we could not read back
        d = self.diff()
        atomic_write(self.path, text.encode("utf-8"))
        self.original = text
        return d
