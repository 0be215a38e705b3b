"""Reading ``knollm.lock``: the file format, discovery, profiles, user config, ``resolve_alias``.

Reading uses :mod:`tomllib` (fast, no catalog); editing that keeps comments lives in
:mod:`knollm.lock.edit`. Precedence, lowest first::

    user config (~/.config/knollm/config.toml or $KNOLLM_CONFIG)
      < project lock (--lock FILE, $KNOLLM_LOCK, ./knollm.lock)
      < environment ($KNOLLM_PROFILE, $KNOLLM_LOCK)
      < command-line flags (--profile, --lock)
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knollm.errors import LockError

__all__ = [
    "LOCK_NAME", "REQUIRE_KEYS", "PREFER_VALUES", "Binding", "Lockfile", "UserConfig",
    "find_lock", "load_lock", "parse_lock", "user_config", "user_config_path", "active_profile",
    "resolve_alias", "binding_skip", "local_first", "EMBED_REQUIRE_KEYS", "merge_requires", "nested_binding",
    "chain_skip", "TOP_LEVEL_KEYS", "check_is_lockfile", "existing_binding",
]

LOCK_NAME = "knollm.lock"
LOCK_VERSION = 1
#: requirement keys a binding may carry, with their types
REQUIRE_KEYS: dict[str, type | tuple[type, ...]] = {
    "min_context": int, "max_output": int, "tools": bool, "vision": bool, "structured_output": bool,
    "reasoning": bool, "max_input_price": (int, float), "max_output_price": (int, float), "open_weights": bool,
    "local_only": bool,
}
PREFER_VALUES = ("cheapest", "fastest", "newest", "local")
_BINDING_KEYS = {"alias", "models", "requires", "strategy", "prefer", "cloud_fallback", "cache", "note"}
#: the top-level keys of a knollm.lock (llmring's files add a few of their own)
TOP_LEVEL_KEYS = ("version", "default_profile", "profiles", "pins", "meta")


@dataclass
class Binding:
    """One alias of one profile: a fallback chain of ``provider/model`` keys (first = primary)."""

    alias: str
    models: list[str]
    strategy: str | None = None
    requires: dict[str, Any] = field(default_factory=dict)
    prefer: str | None = None
    cloud_fallback: bool = False
    profile: str = "default"
    #: response cache for this alias: ``True`` (default TTL), a TTL in seconds, ``False``, or
    #: ``None`` (not set: the client's own setting applies)
    cache: bool | float | None = None
    #: a free-text note kept with the binding (``note = "…"``)
    note: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "models": list(self.models), "strategy": self.strategy,
                "requires": dict(self.requires), "prefer": self.prefer, "cloud_fallback": self.cloud_fallback,
                "profile": self.profile, "cache": self.cache, "note": self.note}


@dataclass
class Lockfile:
    path: Path
    version: int
    default_profile: str
    profiles: dict[str, dict[str, Any]]  # name -> {"extends": str|None, "bindings": {alias: Binding}}
    pins: dict[str, dict[str, Any]]
    meta: dict[str, Any]

    def profile_names(self) -> list[str]:
        return list(self.profiles)

    def bindings(self, profile: str | None = None) -> dict[str, Binding]:
        """Every binding of ``profile`` (default: the file's default), ``extends`` applied."""
        name = profile or self.default_profile
        if name not in self.profiles:
            raise LockError(str(self.path), f"no profile {name!r} (profiles: {', '.join(self.profiles) or 'none'})")
        chain: list[str] = []
        cur: str | None = name
        while cur is not None:
            if cur in chain:
                raise LockError(str(self.path), f"profile extends cycle: {' -> '.join(chain + [cur])}",
                                f"profiles.{name}")
            if cur not in self.profiles:
                raise LockError(str(self.path), f"extends unknown profile {cur!r}", f"profiles.{chain[-1]}")
            chain.append(cur)
            cur = self.profiles[cur].get("extends")
        out: dict[str, Binding] = {}
        for pname in reversed(chain):  # base first, the asked profile last (wins)
            for alias, b in self.profiles[pname]["bindings"].items():
                out[alias] = Binding(b.alias, list(b.models), b.strategy, dict(b.requires), b.prefer,
                                     b.cloud_fallback, profile=name, cache=b.cache, note=b.note)
        return out

    def binding(self, alias: str, profile: str | None = None) -> Binding | None:
        return self.bindings(profile).get(alias)


def _check_binding(path: str, rec: str, d: Any, profile: str) -> Binding:
    if not isinstance(d, dict):
        raise LockError(path, "a binding must be a table", rec)
    unknown = set(d) - _BINDING_KEYS
    if unknown:
        raise LockError(path, f"unknown key(s) {', '.join(sorted(unknown))}", rec)
    alias = d.get("alias")
    if not isinstance(alias, str) or not alias.strip():
        raise LockError(path, "binding without an 'alias'", rec)
    rec = f"{rec} alias={alias}"
    models = d.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and "/" in m for m in models):
        raise LockError(path, "'models' must be a non-empty list of 'provider/model' strings", rec)
    req = d.get("requires") or {}
    if not isinstance(req, dict):
        raise LockError(path, "'requires' must be a table", rec)
    for k, v in req.items():
        t = REQUIRE_KEYS.get(k)
        if t is None:
            raise LockError(path, f"unknown requirement {k!r} (known: {', '.join(REQUIRE_KEYS)})", rec)
        if isinstance(v, bool) and t is not bool or not isinstance(v, t):
            raise LockError(path, f"requirement {k} = {v!r} has the wrong type", rec)
        if t is not bool and not _amount(v):  # TOML has nan and inf: nan compares false, a cap that caps nothing
            raise LockError(path, f"requirement {k} = {v!r} must be a finite number >= 0", rec)
    prefer = d.get("prefer")
    if prefer is not None and prefer not in PREFER_VALUES:
        raise LockError(path, f"prefer = {prefer!r} is not one of {', '.join(PREFER_VALUES)}", rec)
    strategy = d.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise LockError(path, "'strategy' must be a string", rec)
    cf = d.get("cloud_fallback", False)
    if not isinstance(cf, bool):
        raise LockError(path, "'cloud_fallback' must be true or false", rec)
    cache = d.get("cache")
    if cache is not None and not isinstance(cache, bool) and not (isinstance(cache, (int, float)) and cache > 0):
        raise LockError(path, "'cache' must be true, false or a TTL in seconds (> 0)", rec)
    note = d.get("note")  # free text, kept as written (edits write it back)
    return Binding(alias, list(models), strategy, dict(req), prefer, cf, profile,
                   float(cache) if isinstance(cache, (int, float)) and not isinstance(cache, bool) else cache, note)


def _amount(v: Any) -> bool:
    """A finite number >= 0 (a price cap, a context length)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


# ---------------------------------------------------------------------------- what a binding allows
#: the requirements that mean something to an embeddings call (capabilities, output size and
#: output price are chat matters)
EMBED_REQUIRE_KEYS = ("min_context", "max_input_price", "open_weights", "local_only")


def binding_skip(b: Any, m: dict[str, Any], *, local: bool, op: str = "chat") -> tuple[str | None, list[str]]:
    """Why model ``m`` (a catalog or local-scan model dict) may not serve binding ``b`` (None:
    it may), and the checks it passed. The one rule for ``knollm roles explain`` and the client
    at run time: for a local role (``requires.local_only`` or ``prefer = "local"``) a cloud model
    only with ``cloud_fallback = true`` (which lifts ``local_only`` for it); then every
    requirement by :func:`knollm.lock.facts.check_requires`, where an unknown value never counts
    as meeting one. ``op="embed"``: only :data:`EMBED_REQUIRE_KEYS` apply. ``b`` may be any object
    with ``requires`` (and optionally ``prefer``, ``cloud_fallback``), e.g. a custom resolver's."""
    from knollm.lock.facts import check_requires

    req = dict(getattr(b, "requires", None) or {})
    if op == "embed":
        req = {k: v for k, v in req.items() if k in EMBED_REQUIRE_KEYS}
    checks: list[str] = []
    prefer = getattr(b, "prefer", None)
    if (req.get("local_only") or prefer == "local") and not local:
        if not getattr(b, "cloud_fallback", False):
            return "cloud model, but cloud_fallback = false", checks
        req.pop("local_only", None)
        checks.append("cloud fallback (cloud_fallback = true)")
    failed, unknown = check_requires(m, req, local=local)
    if failed or unknown:
        return "requirements: " + "; ".join(failed + unknown), checks
    checks.append("requirements met")
    return None, checks


def local_first(b: Any, items: list[Any], is_local: Any) -> list[Any]:
    """``items`` (model keys, offers, …) in order, local ones first (stable) when ``b.prefer`` is
    ``"local"``; ``is_local(item)`` says which are."""
    if getattr(b, "prefer", None) != "local":
        return list(items)
    return sorted(items, key=lambda x: 0 if is_local(x) else 1)


#: requirement keys where the larger value is the stricter one (the rest of the numbers are caps)
_AT_LEAST = ("min_context", "max_output")


def merge_requires(*reqs: dict[str, Any] | None) -> dict[str, Any]:
    """The requirements of several bindings together, the stricter value winning: the largest
    ``min_context`` / ``max_output``, the smallest price cap, a capability or ``local_only``
    required when any of them requires it."""
    out: dict[str, Any] = {}
    for req in reqs:
        for k, v in (req or {}).items():
            if v is None:
                continue
            have = out.get(k)
            if have is None:
                out[k] = v
            elif isinstance(v, bool) or isinstance(have, bool):
                out[k] = bool(have) or bool(v)
            elif k in _AT_LEAST:
                out[k] = max(have, v)
            else:
                out[k] = min(have, v)
    return out


def _local_role(b: Any) -> bool:
    return bool((getattr(b, "requires", None) or {}).get("local_only")) or getattr(b, "prefer", None) == "local"


@dataclass
class NestedBinding(Binding):
    """What an offer reached through nested aliases must meet: ``levels`` are the bindings it
    passed through, ``(alias, binding)``, innermost first. Each level is checked on its own
    (:func:`chain_skip`); the merged fields (``requires`` with the stricter value winning,
    ``prefer = "local"`` when any level has it, ``cloud_fallback`` only when every level that
    asks for local models allows it) say the same for code that reads one binding."""

    levels: list[tuple[str, Any]] = field(default_factory=list)


def nested_binding(levels: list[tuple[str, Any]]) -> Any:
    """One binding standing for ``levels`` (``(alias, binding)``, innermost first); a single
    level is returned as it is."""
    if len(levels) == 1:
        return levels[0][1]
    bs = [b for _, b in levels]
    outer = bs[-1]
    local = [b for b in bs if _local_role(b)]
    prefer = "local" if local else next((getattr(b, "prefer", None) for b in reversed(bs)
                                         if getattr(b, "prefer", None)), None)
    return NestedBinding(levels[-1][0], list(getattr(outer, "models", None) or []), getattr(outer, "strategy", None),
                         merge_requires(*(getattr(b, "requires", None) for b in bs)), prefer,
                         bool(local) and all(getattr(b, "cloud_fallback", False) for b in local),
                         getattr(outer, "profile", "default"), getattr(outer, "cache", None),
                         getattr(outer, "note", None), levels=list(levels))


def chain_skip(b: Any, m: dict[str, Any], *, local: bool, op: str = "chat") -> tuple[str | None, list[str], str | None]:
    """:func:`binding_skip` for every binding an offer passed through (a :class:`NestedBinding`'s
    ``levels``, innermost first; else ``b`` alone): ``(why, checks, alias)`` where ``alias``
    names the level that refused (None: every level allows ``m``)."""
    levels = getattr(b, "levels", None) or [(getattr(b, "alias", None), b)]
    checks: list[str] = []
    for alias, lb in levels:
        why, c = binding_skip(lb, m, local=local, op=op)
        if why is not None:
            return why, checks + c, alias
        checks += [x for x in c if x not in checks]
    return None, checks, None


def existing_binding(lf: Lockfile | None, alias: str, profile: str) -> Binding | None:
    """The binding an edit of ``alias`` in ``profile`` starts from: the profile's own, else the one
    it inherits (``extends``), so a rebind keeps ``requires`` (``local_only``!), ``prefer``,
    ``strategy``, ``cloud_fallback``, ``cache`` and ``note``. None: a new alias."""
    if lf is None or profile not in lf.profiles:
        return None
    own = lf.profiles[profile]["bindings"].get(alias)
    if own is not None:
        return own
    try:
        return lf.bindings(profile).get(alias)
    except LockError:
        return None


def check_is_lockfile(keys: Any, path: str | Path) -> None:
    """Refuse a file that is some other tool's (a ``uv.lock``, a ``Cargo.lock``): top-level keys
    of its own and no ``profiles`` or ``pins``. :class:`LockError` names the file."""
    keys = list(keys)
    other = [k for k in keys if k not in TOP_LEVEL_KEYS]
    if other and "profiles" not in keys and "pins" not in keys:
        raise LockError(str(path), f"not a knollm lockfile (top-level {', '.join(map(repr, other[:5]))}"
                        f"{', …' if len(other) > 5 else ''} and no [profiles] or [pins]); refusing to edit it")


def parse_lock(text: str, path: str | Path = LOCK_NAME) -> Lockfile:
    """Parse and validate lockfile text; :class:`LockError` names the file and the record."""
    p = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LockError(p, f"not valid TOML: {e}") from None
    check_is_lockfile(raw, p)
    version = raw.get("version", LOCK_VERSION)
    if isinstance(version, str):  # llmring writes "1.0"
        try:
            version = int(float(version))
        except ValueError:
            raise LockError(p, f"version {version!r} is not a number") from None
    if not isinstance(version, int) or version > LOCK_VERSION:
        raise LockError(p, f"unsupported lockfile version {version!r} (this Knollm reads {LOCK_VERSION})")
    profiles_raw = raw.get("profiles") or {}
    if not isinstance(profiles_raw, dict):
        raise LockError(p, "'profiles' must be a table")
    profiles: dict[str, dict[str, Any]] = {}
    for name, prof in profiles_raw.items():
        if not isinstance(prof, dict):
            raise LockError(p, "a profile must be a table", f"profiles.{name}")
        ext = prof.get("extends")
        if ext is not None and not isinstance(ext, str):
            raise LockError(p, "'extends' must be a profile name", f"profiles.{name}")
        bl = prof.get("bindings") or []
        if not isinstance(bl, list):
            raise LockError(p, "'bindings' must be an array of tables", f"profiles.{name}")
        bindings: dict[str, Binding] = {}
        for i, b in enumerate(bl):
            bd = _check_binding(p, f"profiles.{name}.bindings[{i}]", b, name)
            if bd.alias in bindings:
                raise LockError(p, f"alias {bd.alias!r} bound twice", f"profiles.{name}.bindings[{i}]")
            bindings[bd.alias] = bd
        profiles[name] = {"extends": ext, "bindings": bindings}
    default = raw.get("default_profile") or ("default" if "default" in profiles or not profiles else next(iter(profiles)))
    if not isinstance(default, str):
        raise LockError(p, "'default_profile' must be a string")
    if default not in profiles:
        profiles[default] = {"extends": None, "bindings": {}}
    pins = raw.get("pins") or {}
    if not isinstance(pins, dict) or not all(isinstance(v, dict) for v in pins.values()):
        raise LockError(p, "'pins' must be a table of tables keyed by 'provider/model'")
    meta = raw.get("meta") or {}
    return Lockfile(Path(path), version, default, profiles, pins, meta if isinstance(meta, dict) else {})


def load_lock(path: str | Path) -> Lockfile:
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise LockError(str(p), "no such lockfile (create one with `knollm lock init`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LockError(str(p), f"cannot read: {e}") from None
    return parse_lock(text, p)


# ---------------------------------------------------------------------------- user config
@dataclass
class UserConfig:
    """User-wide preferences (the lowest precedence level)."""

    path: Path | None = None
    providers: list[str] | None = None          # only these providers are available
    exclude_providers: list[str] = field(default_factory=list)
    prefer_providers: list[str] = field(default_factory=list)
    local_only: bool = False                    # privacy: never choose a cloud model
    max_input_price: float | None = None        # budget, USD / 1M tokens
    max_output_price: float | None = None
    profile: str | None = None
    lock: str | None = None
    ollama_hosts: list[str] = field(default_factory=list)


def user_config_path() -> Path:
    env = os.environ.get("KNOLLM_CONFIG")
    if env:
        return Path(env)
    try:
        from platformdirs import user_config_dir

        return Path(user_config_dir("knollm", appauthor=False)) / "config.toml"
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "knollm" / "config.toml"


def user_config(path: str | Path | None = None) -> UserConfig:
    p = Path(path) if path is not None else user_config_path()
    if not p.is_file():
        return UserConfig()
    try:
        raw = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LockError(str(p), f"user config unreadable: {e}") from None
    cfg = UserConfig(path=p)
    budget = raw.pop("budget", {}) or {}
    for k, v in {**raw, **{f"max_{k}_price": v for k, v in budget.items()
                            if k in ("input", "output")}}.items():
        if not hasattr(cfg, k) or k == "path":
            raise LockError(str(p), f"unknown setting {k!r}")
        setattr(cfg, k, v)
    for k in ("max_input_price", "max_output_price"):
        v = getattr(cfg, k)
        if v is not None and not _amount(v):
            raise LockError(str(p), f"budget {k.split('_')[1]} = {v!r} must be a finite USD amount >= 0")
    for k in ("providers", "exclude_providers", "prefer_providers", "ollama_hosts"):
        v = getattr(cfg, k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise LockError(str(p), f"{k} must be a list of strings")
    return cfg


# ---------------------------------------------------------------------------- discovery
def find_lock(lock: str | Path | None = None, cfg: UserConfig | None = None) -> Path | None:
    """The lockfile to use: ``lock`` (flag) > ``$KNOLLM_LOCK`` > ``./knollm.lock`` > user config ``lock``.

    An explicitly named file (flag or env) is returned even when missing (so the error names it).
    """
    if lock:
        return Path(lock)
    env = os.environ.get("KNOLLM_LOCK")
    if env:
        return Path(env)
    here = Path.cwd() / LOCK_NAME
    if here.is_file():
        return here
    if cfg is None:
        try:
            cfg = user_config()
        except LockError:
            cfg = None
    if cfg is not None and cfg.lock:
        return Path(cfg.lock).expanduser()
    return None


def active_profile(lf: Lockfile | None, profile: str | None = None, cfg: UserConfig | None = None) -> str:
    """``--profile`` > ``$KNOLLM_PROFILE`` > lock ``default_profile`` > user config ``profile`` > ``default``."""
    if profile:
        return profile
    env = os.environ.get("KNOLLM_PROFILE")
    if env:
        return env
    if lf is not None and lf.default_profile:
        return lf.default_profile
    if cfg is not None and cfg.profile:
        return cfg.profile
    return "default"


def resolve_alias(name: str, *, lock: str | Path | None = None, profile: str | None = None) -> Binding | None:
    """The binding of alias ``name`` in the active lockfile/profile; None when there is no
    lockfile or no such alias (the caller then treats ``name`` as a model). Errors in an
    explicitly chosen or present lockfile raise :class:`LockError`."""
    path = find_lock(lock)
    if path is None:
        return None
    if not path.is_file() and not lock and not os.environ.get("KNOLLM_LOCK"):
        return None
    lf = load_lock(path)
    prof = active_profile(lf, profile)
    return lf.binding(name, prof)
