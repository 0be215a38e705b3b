"""The facts a binding relies on: requirement checks, pins (facts + sources), drift.

A pin records, for one ``provider/model``, the values used when the binding was made:
prices, context window, max output, capabilities, deprecation - each with its source
from the model's ``sources`` map - plus the catalog's content digest and data date.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = ["CAPS", "PIN_PRICE_FIELDS", "catalog_digest", "pin_facts", "check_requires", "drift",
           "search_filters"]

#: capability requirements a binding may state (a subset of the catalog's capabilities)
CAPS = ("tools", "vision", "structured_output", "reasoning")
PIN_PRICE_FIELDS = ("input", "output", "cache_read")


def catalog_digest(cat: Any) -> str:
    """A content digest of the catalog's models (independent of build time)."""
    cached = getattr(cat, "_knollm_lock_digest", None)
    if cached:
        return cached
    import hashlib

    import orjson

    h = hashlib.blake2b(orjson.dumps(cat.models, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()
    try:
        cat._knollm_lock_digest = h
    except AttributeError:  # pragma: no cover
        pass
    return h


def pin_facts(m: dict[str, Any], cat: Any) -> dict[str, Any]:
    """The pin table for model ``m`` (only known values; every value with its source)."""
    src = m.get("sources") or {}
    prices = {k: v for k, v in (m.get("prices") or {}).items() if k in PIN_PRICE_FIELDS and v is not None}
    caps = {k: v for k, v in (m.get("capabilities") or {}).items() if k in CAPS and v is not None}
    pin: dict[str, Any] = {"pinned": _dt.date.today().isoformat(), "catalog_digest": catalog_digest(cat),
                           "data_date": (cat.data.get("data_date") or "")}
    if prices:
        pin["prices"] = prices
    for k in ("context_window", "max_output"):
        if m.get(k) is not None:
            pin[k] = m[k]
    if caps:
        pin["capabilities"] = caps
    pin["deprecated"] = bool(m.get("deprecated"))
    used = [f"prices.{k}" for k in prices] + [k for k in ("context_window", "max_output") if k in pin] + \
           [f"capabilities.{k}" for k in caps] + ["deprecated"]
    pin["sources"] = {k: src[k] for k in used if src.get(k)}
    return pin


def search_filters(req: dict[str, Any]) -> dict[str, Any]:
    """``Catalog.search`` keyword filters for a binding's requirements (those it can express)."""
    f: dict[str, Any] = {"capabilities": [c for c in CAPS if req.get(c) is True], "kinds": ["chat"]}
    if req.get("min_context"):
        f["min_context"] = int(req["min_context"])
    for k in ("max_input_price", "max_output_price"):
        if req.get(k) is not None:
            f[k] = float(req[k])
    if req.get("open_weights") is True:
        f["open_weights"] = True
    return f


def check_requires(m: dict[str, Any], req: dict[str, Any], *, local: bool | None = None) -> tuple[list[str], list[str]]:
    """``(failed, unknown)`` requirement messages for model ``m`` (both empty = all met).

    ``failed``: the catalog says the requirement is not met; ``unknown``: the value is not known
    (an unknown value never counts as meeting a requirement).
    """
    failed: list[str] = []
    unknown: list[str] = []
    caps = m.get("capabilities") or {}
    prices = m.get("prices") or {}
    for c in CAPS:
        if req.get(c) is True:
            v = caps.get(c)
            if v is None:
                unknown.append(f"{c} unknown")
            elif v is not True:
                failed.append(f"no {c}")
    for k, field in (("min_context", "context_window"), ("max_output", "max_output")):
        need = req.get(k)
        if need:
            have = m.get(field)
            if have is None:
                unknown.append(f"{field} unknown")
            elif have < need:
                failed.append(f"{field} {have:,} < {need:,}")
    for k, field in (("max_input_price", "input"), ("max_output_price", "output")):
        cap = req.get(k)
        if cap is not None:
            have = prices.get(field)
            if have is None:
                unknown.append(f"{field} price unknown")
            elif have > cap:
                failed.append(f"{field} price ${have:g} > ${cap:g}")
    if req.get("open_weights") is True:
        if m.get("open_weights") is None:
            unknown.append("open weights unknown")
        elif not m.get("open_weights"):
            failed.append("not open weights")
    if req.get("local_only"):
        is_local = local if local is not None else str(m.get("provider")) in ("ollama", "local")
        if not is_local:
            failed.append("not a local model")
    return failed, unknown


def _changes(old: Any, new: Any, path: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            _changes(old.get(k), new.get(k), f"{path}.{k}" if path else k, out)
    elif old != new:
        out.append((path, old, new))


def drift(pin: dict[str, Any], m: dict[str, Any], cat: Any) -> list[dict[str, Any]]:
    """Differences between a pin and the model now: ``[{field, pinned, now, source, worse}]``.

    ``worse`` is True when the change can break or overcharge the binding: a price up, a
    context or max output down, a capability lost, newly deprecated.
    """
    now = pin_facts(m, cat)
    out: list[tuple[str, Any, Any]] = []
    for k in ("prices", "context_window", "max_output", "capabilities", "deprecated"):
        if k not in pin:  # only the facts that were recorded
            continue
        old, new = pin[k], now.get(k)
        if isinstance(old, dict):
            new = {kk: (new or {}).get(kk) for kk in old}
        _changes(old, new, k, out)
    rows = []
    for field, old, new in out:
        if field.startswith("prices."):
            worse = old is not None and (new is None or new > old)
        elif field in ("context_window", "max_output"):
            worse = old is not None and (new is None or new < old)
        elif field.startswith("capabilities."):
            worse = old is True and new is not True
        else:  # deprecated
            worse = bool(new) and not old
        src = (m.get("sources") or {}).get(field) or (pin.get("sources") or {}).get(field)
        rows.append({"field": field, "pinned": old, "now": new, "source": src, "worse": worse})
    return rows
