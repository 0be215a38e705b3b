"""The lock operations behind the CLI: init, validate, analyze, optimize, diff, explain, import.

Every function takes a :class:`knollm.lock.roles.Chooser` (the catalog + local models +
user preferences) and returns plain dicts, so the CLI only formats them.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from knollm.lock.edit import LockDoc
from knollm.lock.facts import CAPS, catalog_digest, check_requires, drift, pin_facts
from knollm.lock.lockfile import Binding, Lockfile, UserConfig, chain_skip, local_first, nested_binding
from knollm.lock.roles import ALIASES, AliasSpec, Chooser, rank_date
from knollm.query.cost import Workload, applicable_prices, cost_per_request

__all__ = ["make_chooser", "use_case_spec", "spec_for", "init_lock", "validate", "analyze", "optimize",
           "diff_locks", "explain", "import_llmring", "DEFAULT_VOLUME", "exit_code"]

#: monthly tokens (input, output) per alias when no --volume/--usage is given
DEFAULT_VOLUME = (10_000_000, 2_000_000)


def make_chooser(catalog: Any, cfg: UserConfig | None = None, *, from_keys: bool = False,
                 budget: float | None = None, local: list[dict[str, Any]] | None = None,
                 memory: int | None = None) -> Chooser:
    """A chooser over ``catalog`` with the user config's preferences applied.

    ``from_keys``: only providers whose key variable is set (plus local ones);
    ``budget``: max output price (USD / 1M tokens) for every alias (a flag beats the config).
    """
    cfg = cfg or UserConfig()
    bud = {"max_input_price": cfg.max_input_price, "max_output_price": cfg.max_output_price}
    if budget is not None:
        bud["max_output_price"] = budget
    return Chooser(catalog, providers=set(cfg.providers) if cfg.providers else None,
                   exclude=set(cfg.exclude_providers), prefer_providers=cfg.prefer_providers, local=local,
                   memory=memory, local_only=cfg.local_only, budget=bud, require_key=from_keys)


def use_case_spec(name: str) -> AliasSpec:
    """An alias named after a :data:`knollm.query.recommend.USE_CASES` use case (its requirements)."""
    from knollm.query.recommend import USE_CASES

    uc = USE_CASES[name]
    req: dict[str, Any] = {c: True for c in uc.required if c in CAPS}
    req["min_context"] = uc.min_context
    return AliasSpec(name.replace("-", "_"), uc.description, req, uc.input_tokens, uc.output_tokens,
                     dict(ALIASES["balanced"].weights), tuple(c for c in uc.preferred if c in CAPS))


def _base_spec(alias: str) -> AliasSpec:
    """The built-in alias, or the use-case alias, of that name; else ``balanced``."""
    from knollm.query.recommend import USE_CASES

    if alias in ALIASES:
        return ALIASES[alias]
    uc = alias.replace("_", "-")
    return use_case_spec(uc) if uc in USE_CASES else ALIASES["balanced"]


def spec_for(b: Binding, ch: Chooser) -> AliasSpec:
    """The alias spec to re-choose binding ``b`` with: its own requirements, else the built-in
    alias's, else what its current primary offers (capabilities known true, its context)."""
    base = _base_spec(b.alias)
    req = dict(b.requires)
    if not req and base.name == b.alias:
        req = dict(base.requires)
    if not req:
        try:
            m = ch.model(b.models[0])
        except Exception:
            m = None
        if m is not None:
            req = {c: True for c in CAPS if (m.get("capabilities") or {}).get(c) is True}
            if m.get("context_window"):
                req["min_context"] = m["context_window"]
    return AliasSpec(b.alias, base.description, req, base.input_tokens, base.output_tokens, dict(base.weights),
                     base.preferred, b.prefer or base.prefer, b.cloud_fallback or base.cloud_fallback)


def _binding_from(spec: AliasSpec, res: dict[str, Any], profile: str, cloud_fallback: bool) -> Binding:
    req = {k: v for k, v in res["requires"].items() if v is not None}
    return Binding(spec.name, list(res["models"]), None, req, spec.prefer, cloud_fallback, profile)


def _pin_all(doc: LockDoc, ch: Chooser, keys: list[str]) -> None:
    for k in keys:
        try:
            m = ch.model(k)
        except Exception:
            continue
        doc.set_pin(k, pin_facts(m, ch.cat))


def _write_init(doc: LockDoc, ch: Chooser, profile: str, chosen: list) -> tuple[str, list[dict[str, Any]]]:
    if profile != "default" and "profiles" not in doc.doc:
        doc.doc["default_profile"] = profile
    results = []
    for spec, res in chosen:
        row = {"alias": spec.name, "models": res["models"], "candidates": res["candidates"],
               "requires": res["requires"], "skipped": res["skipped"]}
        if not res["models"]:
            row["note"] = "no model meets the requirements; alias not written"
        else:
            provs = {k.split("/", 1)[0] for k in res["models"]}
            if len(provs) < 3:
                row["note"] = f"only {len(provs)} provider(s) qualify: fewer than 2 fallbacks on other providers"
            cf = spec.cloud_fallback and not ch.local_only
            top = res["ranking"][0] if res["ranking"] else None
            comment = spec.description + (f" Top score {top['score']}/100 of {res['candidates']} offers."
                                                 if top else "")
            doc.set_binding(_binding_from(spec, res, profile, cf), profile, comment=comment)
            _pin_all(doc, ch, res["models"])
        results.append(row)
    doc.set_meta(generated_by="knollm lock init", catalog_digest=catalog_digest(ch.cat),
                 data_date=ch.cat.data.get("data_date") or "", updated=_dt.date.today().isoformat())
    doc.prune_pins()
    diff = doc.save()
    return diff, results


def init_lock(ch: Chooser, path: str | Path, *, profile: str = "default", use_cases: list[str] | None = None,
              include_local: bool = False) -> dict[str, Any]:
    """Choose every alias and write them into ``path`` (an existing file keeps its other content)."""
    specs = [s for s in ALIASES.values() if s.name != "local"]
    if include_local or any(m.get("kind") == "chat" and ch.is_local(m) for m in ch.local):
        specs.append(ALIASES["local"])
    specs += [use_case_spec(u) for u in use_cases or []]
    chosen = [(spec, ch.choose(spec)) for spec in specs]  # (the slow part, before taking the edit lock)
    with LockDoc.locked(path) as doc:
        diff, results = _write_init(doc, ch, profile, chosen)
    return {"path": str(path), "profile": profile, "aliases": results, "diff": diff}


# ---------------------------------------------------------------------------- validate
def _issue(level: str, code: str, msg: str, **kw: Any) -> dict[str, Any]:
    return {"level": level, "code": code, "message": msg, **kw}


def exit_code(issues: list[dict[str, Any]], strict: bool = False) -> int:
    if any(i["level"] == "error" for i in issues):
        return 2
    if any(i["level"] == "warning" for i in issues):
        return 2 if strict else 1
    return 0


def _successor(ch: Chooser, b: Binding, exclude: set[str]) -> str | None:
    res = ch.choose(spec_for(b, ch), chain=4)
    return next((k for k in res["models"] if k not in exclude), None)


def validate(lf: Lockfile, ch: Chooser) -> list[dict[str, Any]]:
    """Problems with every binding of every profile: ``[{level, code, message, profile, alias, model}]``."""
    from knollm.errors import KnollmError
    from knollm.lock._providers import key_set

    issues: list[dict[str, Any]] = []
    scanned = {m["provider"] for m in ch.local}
    for pname in lf.profiles:
        try:
            lf.bindings(pname)
        except KnollmError as e:
            issues.append(_issue("error", "profile", str(e), profile=pname))
    for pname, prof in lf.profiles.items():
        for alias, b in prof["bindings"].items():
            where = {"profile": pname, "alias": alias}
            provs = [k.split("/", 1)[0] for k in b.models]
            if len(b.models) < 2:
                issues.append(_issue("warning", "no_fallback", f"{alias}: a single model, no fallback", **where))
            elif len(set(provs)) < 2:
                issues.append(_issue("warning", "one_provider", f"{alias}: every fallback is on {provs[0]}", **where))
            for key in b.models:
                w = {**where, "model": key}
                pid = key.split("/", 1)[0]
                try:
                    m = ch.model(key)
                except KnollmError:
                    try:
                        nested = key in lf.bindings(pname)
                    except KnollmError:
                        nested = False
                    if nested:  # another alias (its models are checked with it; the client honours both)
                        continue
                    if pid in ("ollama", "local") and pid not in scanned:
                        issues.append(_issue("warning", "local_unchecked",
                                             f"{key}: local model not checked (run `knollm local scan`)", **w))
                        continue
                    near = ch.cat.suggest(key, ch.cat._by_key, 3)
                    issues.append(_issue("error", "missing", f"{key}: missing from the catalog"
                                         + (f" (did you mean {', '.join(near)}?)" if near else ""), **w))
                    continue
                if m.get("deprecated"):
                    succ = _successor(ch, b, set(b.models))
                    issues.append(_issue("error", "deprecated", f"{key}: deprecated by the provider (source "
                                         f"{(m.get('sources') or {}).get('deprecated', '?')}); "
                                         + (f"suggested replacement meeting the requirements: {succ}" if succ
                                            else "no successor known"), successor=succ, **w))
                failed, unknown = check_requires(m, b.requires, local=ch.is_local(m))
                if failed:
                    issues.append(_issue("error", "requirements", f"{key}: requirements no longer met: "
                                         + "; ".join(failed), **w))
                if unknown:
                    issues.append(_issue("warning", "requirements_unknown", f"{key}: cannot confirm: "
                                         + "; ".join(unknown), **w))
                pin = lf.pins.get(key)
                if pin is None:
                    issues.append(_issue("warning", "unpinned", f"{key}: not pinned (no recorded facts)", **w))
                else:
                    for d in drift(pin, m, ch.cat):
                        lvl = "error" if d["worse"] else "warning"
                        issues.append(_issue(lvl, "drift", f"{key}: {d['field']} drifted {d['pinned']!r} -> "
                                             f"{d['now']!r} since pinned {pin.get('pinned', '?')} "
                                             f"(source {d['source'] or '?'})", **w))
                f = ch.facts(pid)
                if not ch.is_local(m):
                    why = ch.provider_skip(pid)
                    if why:
                        issues.append(_issue("warning", "provider", f"{key}: {why}", **w))
                    elif f.get("key_env") and not key_set(f):
                        issues.append(_issue("warning", "no_key", f"{key}: no API key set "
                                             f"({', '.join(f['key_env'])})", **w))
                else:
                    why = ch.memory_skip(m)
                    if why:
                        issues.append(_issue("warning", "memory", f"{key}: {why}", **w))
    # one row per distinct problem (an inherited binding is checked in its own profile only)
    seen: set[tuple] = set()
    out = []
    for i in issues:
        k = (i["level"], i["code"], i["message"], i.get("profile"))
        if k not in seen:
            seen.add(k)
            out.append(i)
    return out


# ---------------------------------------------------------------------------- analyze
def _month_requests(vol: tuple[int, ...], typical: tuple[int, int] | None) -> dict[str, Any]:
    """How a month's volume ``vol`` = ``(input, output[, requests])`` tokens is split into requests:
    the volume's own request count if it has one, else requests of the ``typical`` size (the
    alias's input/output tokens per request); ``requests`` None when neither is known.
    ``input_tokens`` / ``output_tokens``: per request."""
    vin, vout = vol[0], vol[1]
    n: float | None = vol[2] if len(vol) > 2 and vol[2] is not None else None
    basis = "volume" if n is not None else None
    if n is None and typical is not None:
        tin, tout = typical
        if vin > 0 and tin > 0:
            n = vin / tin
        elif vout > 0 and tout > 0:
            n = vout / tout
        elif vin == vout == 0:
            n = 0
        if n is not None:
            n, basis = (max(1, round(n)) if n else 0), "typical request"
    if n is None:
        return {"requests": None, "input_tokens": None, "output_tokens": None, "basis": "base prices"}
    return {"requests": n, "input_tokens": round(vin / n) if n else 0, "output_tokens": round(vout / n) if n else 0,
            "basis": basis}


def _monthly(m: dict[str, Any], vol: tuple[int, ...], per: dict[str, Any] | None = None) -> float | None:
    """USD for a month's volume ``vol`` on ``m``, priced as requests of the size ``per``
    (:func:`_month_requests`): a price tier is per request, so the request size picks it, never
    the month's aggregate; a per-request fee is charged per request. Without a request count:
    the base prices (no tier), and a per-request fee makes the cost unknown."""
    prices = m.get("prices") or {}
    n = per.get("requests") if per else None
    if n is not None:
        prices = applicable_prices(prices, m.get("price_tiers") or None, per["input_tokens"])
    tokens = cost_per_request({**prices, "request": None}, Workload(vol[0], vol[1]))  # no tiers: chosen above
    fee = prices.get("request")
    if tokens is None or (fee and n is None):
        return None
    return tokens + (fee or 0.0) * (n or 0)


#: how a month is priced (in ``analyze``'s note)
_PRICING_NOTE = ("Monthly = the volume as requests of the alias's typical size (its input/output tokens per "
                 "request, or the volume's request count): that size picks any long-context price tier and "
                 "per-request fees are charged per request; without a request size, base prices (no tier).")


def _typical(b: Binding, ch: Chooser) -> tuple[int, int] | None:
    """The alias's typical request size (input, output tokens), from its spec (:func:`spec_for`)."""
    try:
        spec = spec_for(b, ch)
    except Exception:
        return None
    return spec.input_tokens, spec.output_tokens


def read_usage(path: str | Path) -> dict[str, tuple[int, int]]:
    """Monthly tokens per alias from a usage ledger (JSON lines with ``alias`` and
    ``input_tokens``/``output_tokens``, or ``prompt_tokens``/``completion_tokens``)."""
    import orjson

    from knollm.errors import LockError

    out: dict[str, list[int]] = {}
    p = Path(path)
    try:
        lines = p.read_bytes().splitlines()
    except OSError as e:
        raise LockError(str(p), f"cannot read usage ledger: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise LockError(str(p), f"not JSON: {e}", f"line {n}") from None
        alias = row.get("alias") if isinstance(row, dict) else None
        if not alias:
            continue
        acc = out.setdefault(alias, [0, 0])
        acc[0] += int(row.get("input_tokens", row.get("prompt_tokens", 0)) or 0)
        acc[1] += int(row.get("output_tokens", row.get("completion_tokens", 0)) or 0)
    return {a: (v[0], v[1]) for a, v in out.items()}


def analyze(lf: Lockfile, ch: Chooser, profile: str, volume: dict[str, tuple[int, int]] | None = None,
            default: tuple[int, int] = DEFAULT_VOLUME) -> dict[str, Any]:
    """Monthly cost per alias (its primary) and per pool member, with price sources, and the total."""
    aliases = []
    total = 0.0
    unknown = []
    for alias, b in lf.bindings(profile).items():
        vol = (volume or {}).get(alias, default)
        per = _month_requests(vol, _typical(b, ch))
        members = []
        for i, key in enumerate(b.models):
            try:
                m = ch.model(key)
            except Exception:
                members.append({"model": key, "role": "primary" if i == 0 else f"fallback {i}",
                                "monthly_usd": None, "note": "missing from the catalog"})
                continue
            src = m.get("sources") or {}
            members.append({"model": key, "role": "primary" if i == 0 else f"fallback {i}",
                            "monthly_usd": _monthly(m, vol, per),
                            "input_price": (m.get("prices") or {}).get("input"),
                            "output_price": (m.get("prices") or {}).get("output"),
                            "source": "/".join(dict.fromkeys(s for s in (src.get("prices.input"),
                                                                         src.get("prices.output")) if s)) or None})
        cost = members[0]["monthly_usd"] if members else None
        if cost is None:
            unknown.append(alias)
        else:
            total += cost
        aliases.append({"alias": alias, "input_tokens": vol[0], "output_tokens": vol[1], "monthly_usd": cost,
                        "requests": per["requests"], "request_input_tokens": per["input_tokens"],
                        "request_output_tokens": per["output_tokens"], "requests_from": per["basis"],
                        "members": members})
    return {"profile": profile, "aliases": aliases, "total_monthly_usd": total, "unknown": unknown,
            "note": "alias cost = its primary serving all its traffic; fallbacks show the cost if they did. "
                    + _PRICING_NOTE}


# ---------------------------------------------------------------------------- optimize
def _what_changes(cur: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    if cur is None:
        return ["current primary is missing from the catalog"]
    out = ["current primary is deprecated"] if cur.get("deprecated") else []
    for k in ("context_window", "max_output"):
        if cur.get(k) != new.get(k):
            out.append(f"{k} {cur.get(k)} -> {new.get(k)}")
    cc, nc = cur.get("capabilities") or {}, new.get("capabilities") or {}
    out += [f"{c} {cc.get(c)} -> {nc.get(c)}" for c in CAPS if cc.get(c) != nc.get(c)]
    if rank_date(new) != rank_date(cur):
        out.append(f"released {rank_date(new) or '?'} (was {rank_date(cur) or '?'})")
    return out


def optimize(lf: Lockfile, ch: Chooser, profile: str, volume: dict[str, tuple[int, int]] | None = None,
             default: tuple[int, int] = DEFAULT_VOLUME, top: int = 3) -> list[dict[str, Any]]:
    """Per alias: cheaper and newer models meeting the same requirements (with the monthly saving
    and what changes), and the chain the alias's ranking (its ``prefer``) picks now - what
    ``--apply`` writes when its primary differs and is cheaper, newer, or replaces a missing or
    deprecated one."""
    out = []
    for alias, b in lf.bindings(profile).items():
        spec = spec_for(b, ch)
        res = ch.choose(spec, chain=max(3, len(b.models)))
        vol = (volume or {}).get(alias, default)
        per = _month_requests(vol, (spec.input_tokens, spec.output_tokens))
        try:
            cur = ch.model(b.models[0])
        except Exception:
            cur = None
        c_cur = _monthly(cur, vol, per) if cur is not None else None
        d_cur = rank_date(cur) if cur is not None else ""
        row: dict[str, Any] = {"alias": alias, "current": b.models, "requires": spec.requires,
                               "volume": {"input_tokens": vol[0], "output_tokens": vol[1],
                                          "requests": per["requests"], "request_input_tokens": per["input_tokens"]},
                               "monthly_now": c_cur}
        cheaper, newer = [], []
        for r in res["ranking"]:
            m = r["best"]["model"]
            if cur is not None and m["canonical_id"] == cur.get("canonical_id"):
                continue
            c = _monthly(m, vol, per)
            alt = {"model": m["key"], "monthly": c, "saving": (c_cur - c) if c_cur is not None and c is not None
                   else None, "score": r["score"], "changes": _what_changes(cur, m)}
            if alt["saving"] is not None and alt["saving"] > 0:
                cheaper.append(alt)
            if rank_date(m) > d_cur:
                newer.append(alt)
        cheaper.sort(key=lambda a: -a["saving"])
        row["cheaper"], row["newer"] = cheaper[:top], newer[:top]
        change = None
        if res["models"] and res["models"] != b.models:
            new = ch.model(res["models"][0])
            c_new = _monthly(new, vol, per)
            if res["models"][0] == b.models[0]:
                change = "fallbacks"
            elif cur is None or cur.get("deprecated") or rank_date(new) > d_cur or (
                    c_new is not None and c_cur is not None and c_new < c_cur):
                change = "replace"
            if change:
                row.update(monthly_new=c_new, saving=c_cur - c_new if c_cur is not None and c_new is not None
                           else None, changes=_what_changes(cur, new))
        row["change"] = change
        row["proposed"] = res["models"] if change else list(b.models)
        out.append(row)
    return out


def apply_optimize(lf: Lockfile, ch: Chooser, profile: str, rows: list[dict[str, Any]]) -> str:
    with LockDoc.locked(lf.path) as doc:
        return _apply_optimize(doc, doc.lockfile() or lf, ch, profile, rows)


def _apply_optimize(doc: LockDoc, lf: Lockfile, ch: Chooser, profile: str, rows: list[dict[str, Any]]) -> str:
    """The proposals written over the file as it is now (read under the edit lock): an alias
    removed meanwhile is left out, one edited meanwhile keeps its other fields."""
    now = lf.bindings(profile) if profile in lf.profiles else {}
    for r in rows:
        if not r.get("change") or r["alias"] not in now:
            continue
        b = now[r["alias"]]
        b.models = list(r["proposed"])
        doc.set_binding(b, profile)
        _pin_all(doc, ch, b.models)
    doc.set_meta(catalog_digest=catalog_digest(ch.cat), data_date=ch.cat.data.get("data_date") or "",
                 updated=_dt.date.today().isoformat())
    doc.prune_pins()
    return doc.save()


# ---------------------------------------------------------------------------- diff
def diff_locks(old: Lockfile, new: Lockfile) -> list[dict[str, Any]]:
    """What changed between two lockfiles: per profile and alias, and in the pins."""
    rows: list[dict[str, Any]] = []
    for pname in sorted(set(old.profiles) | set(new.profiles)):
        a = old.bindings(pname) if pname in old.profiles else {}
        b = new.bindings(pname) if pname in new.profiles else {}
        for alias in sorted(set(a) | set(b)):
            x, y = a.get(alias), b.get(alias)
            if x is None or y is None:
                rows.append({"profile": pname, "alias": alias, "change": "added" if x is None else "removed",
                             "old": x.models if x else None, "new": y.models if y else None})
                continue
            for f in ("models", "requires", "strategy", "prefer", "cloud_fallback"):
                if getattr(x, f) != getattr(y, f):
                    rows.append({"profile": pname, "alias": alias, "change": f, "old": getattr(x, f),
                                 "new": getattr(y, f)})
    for key in sorted(set(old.pins) & set(new.pins)):
        for f in ("prices", "context_window", "max_output", "capabilities", "deprecated"):
            if old.pins[key].get(f) != new.pins[key].get(f):
                rows.append({"profile": "", "alias": f"pin {key}", "change": f, "old": old.pins[key].get(f),
                             "new": new.pins[key].get(f)})
    if old.default_profile != new.default_profile:
        rows.append({"profile": "", "alias": "", "change": "default_profile", "old": old.default_profile,
                     "new": new.default_profile})
    return rows


# ---------------------------------------------------------------------------- explain
def explain(lf: Lockfile, ch: Chooser, alias: str, profile: str) -> dict[str, Any]:
    """How ``alias`` resolves now, step by step: each model in order, taken or skipped and why."""
    from knollm.errors import KnollmError, NotFoundError
    from knollm.lock._providers import key_set

    b = lf.binding(alias, profile)
    if b is None:
        raise NotFoundError("alias", alias, ch.cat.suggest(alias, lf.bindings(profile), 3))
    binds = lf.bindings(profile)
    steps: list[dict[str, Any]] = []
    chosen = None

    def is_local(key: str) -> bool:
        try:
            return ch.is_local(ch.model(key))
        except KnollmError:
            from knollm.lock.local import is_cloud_model

            pid, _, mid = key.partition("/")
            return ch.facts(pid).get("kind") == "local" and not is_cloud_model(pid, mid)

    def is_model(key: str) -> bool:
        try:
            ch.model(key)
            return True
        except KnollmError:
            return False

    def expand(name: str, bd: Binding, via: tuple[str, ...]) -> list[tuple[str, list[tuple[str, Any]]]]:
        """``bd``'s models as (key, levels innermost first), nested aliases expanded, in the
        client's order (a model key before an alias of the same name; first mention wins;
        local first per level with prefer = "local")."""
        out: list[tuple[str, list[tuple[str, Any]]]] = []
        for key in bd.models:
            if not is_model(key) and key in binds:
                if key in via + (name,):
                    continue  # an alias cycle: the client brings nothing for it either
                items = [(k, lv + [(name, bd)]) for k, lv in expand(key, binds[key], via + (name,))]
            else:
                items = [(key, [(name, bd)])]
            out += [x for x in items if x[0] not in {y[0] for y in out}]
        return local_first(bd, out, lambda x: is_local(x[0]))

    # the plan puts the local deployments of a prefer = "local" binding first (any level)
    leaves = [(k, nested_binding(lv)) for k, lv in expand(alias, b, ())]
    leaves.sort(key=lambda x: 0 if getattr(x[1], "prefer", None) == "local" and is_local(x[0]) else 1)
    for i, (key, nb) in enumerate(leaves, 1):
        st: dict[str, Any] = {"step": i, "model": key, "checks": []}
        levels = getattr(nb, "levels", None) or []
        if levels:
            st["via"] = [a for a, _ in levels[:-1]]  # the nested aliases it came through, innermost first
        try:
            m = ch.model(key)
        except KnollmError:
            st.update(status="skipped", reason="not in the catalog or the local scan")
            steps.append(st)
            continue
        local = ch.is_local(m)
        if m.get("deprecated"):
            st.update(status="skipped", reason="deprecated by the provider")
            steps.append(st)
            continue
        # the one requirement rule, shared with the client at run time: every binding the
        # model came through (innermost first)
        why, checks, level = chain_skip(nb, m, local=local)
        st["checks"] += checks
        if why:
            st.update(status="skipped", reason=why if level in (None, alias) else f"binding {level!r}: {why}")
            steps.append(st)
            continue
        if local:
            why = ch.memory_skip(m)
            if why:
                st.update(status="skipped", reason=f"resources: {why}")
                steps.append(st)
                continue
            need = m.get("memory_estimate")
            st["checks"].append(f"resources: ~{need / 2**30:.1f} GiB fits" if need and ch.memory else
                                "resources: memory need unknown")
        else:
            why = ch.provider_skip(m["provider"])
            f = ch.facts(m["provider"])
            if why is None and f.get("key_env") and not key_set(f):
                why = f"no API key set ({', '.join(f['key_env'])})"
            if why:
                st.update(status="skipped", reason=why)
                steps.append(st)
                continue
            st["checks"].append(f"key {key_set(f)} is set" if key_set(f) else "no key needed")
        if chosen is None:
            chosen = key
            st.update(status="taken", reason="first usable model in order")
        else:
            st.update(status="fallback", reason="usable if the ones before fail")
        steps.append(st)
    nested = {a: x.as_dict() for _, nb in leaves for a, x in (getattr(nb, "levels", None) or [])[:-1]}
    res = {"alias": alias, "profile": profile, "binding": b.as_dict(), "resolves_to": chosen, "steps": steps}
    if nested:
        res["nested"] = nested
    return res


# ---------------------------------------------------------------------------- llmring import
def import_llmring(src: str | Path, dest: str | Path, ch: Chooser) -> dict[str, Any]:
    """Convert an ``llmring.lock`` (profiles/bindings, ``provider:model`` refs) into ``dest``.

    Returns ``{"bindings", "unmapped": [{profile, alias, ref, reason}], "ignored": [keys], "diff"}``.
    """
    import tomllib

    from knollm.errors import KnollmError, LockError
    from knollm.lock._providers import provider_facts

    p = Path(src)
    try:
        raw = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LockError(str(p), f"cannot read llmring lockfile: {e}") from None
    with LockDoc.locked(dest) as doc:  # read to write under the edit lock
        unmapped: list[dict[str, Any]] = []
        ignored = sorted(k for k in raw if k not in ("version", "default_profile", "profiles"))
        written = []
        for pname, prof in (raw.get("profiles") or {}).items():
            for i, bd in enumerate((prof or {}).get("bindings") or []):
                alias = bd.get("alias")
                if not alias:
                    unmapped.append({"profile": pname, "alias": None, "ref": f"bindings[{i}]",
                                     "reason": "binding without an alias"})
                    continue
                refs = list(bd.get("models") or [])
                if not refs and bd.get("model"):
                    refs = [f"{bd.get('provider')}:{bd['model']}" if bd.get("provider") else bd["model"]]
                extra = sorted(set(bd) - {"alias", "models", "model", "provider"})
                if extra:
                    unmapped.append({"profile": pname, "alias": alias, "ref": ",".join(extra),
                                     "reason": "binding keys with no knollm.lock equivalent (dropped)"})
                keys = []
                for ref in refs:
                    if ":" not in ref:
                        unmapped.append({"profile": pname, "alias": alias, "ref": ref, "reason": "not provider:model"})
                        continue
                    prov, mid = ref.split(":", 1)
                    pid = provider_facts(prov, ch.cat)["id"]
                    key = f"{pid}/{mid}"
                    try:
                        keys.append(ch.model(key)["key"])
                    except KnollmError:
                        try:
                            offers = [m for m in ch.cat.where(mid) if m["provider"] == pid] if mid else []
                        except KnollmError:
                            offers = []
                        if offers:
                            keys.append(offers[0]["key"])
                        else:
                            unmapped.append({"profile": pname, "alias": alias, "ref": ref,
                                             "reason": f"{key} is not in the catalog"})
                if not keys:
                    unmapped.append({"profile": pname, "alias": alias, "ref": "", "reason": "no model mapped; alias skipped"})
                    continue
                doc.set_binding(Binding(alias, keys, profile=pname), pname)
                _pin_all(doc, ch, keys)
                written.append({"profile": pname, "alias": alias, "models": keys})
        default = raw.get("default_profile")
        if isinstance(default, str):
            doc.doc["default_profile"] = default
        doc.set_meta(imported_from=p.name, catalog_digest=catalog_digest(ch.cat),
                     data_date=ch.cat.data.get("data_date") or "")
        diff = doc.save()
    return {"path": str(dest), "bindings": written, "unmapped": unmapped, "ignored": ignored, "diff": diff}
