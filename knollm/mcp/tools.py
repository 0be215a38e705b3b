"""The tools behind ``knollm mcp`` and ``knollm advisor``: plain functions over the catalog.

Each tool calls the same code as the CLI and the Python API — :class:`~knollm.query.api.Catalog`
(search with :class:`~knollm.query.filters.Filters`, where, compare), :mod:`knollm.query.cost`,
:func:`knollm.query.recommend.recommend`, :mod:`knollm.libraries.query` and the lock
operations — and returns a JSON-able dict. Every answer carries the catalog's
``data_date`` and ``catalog_sources`` (name, kind, version of each input), and every
model in it carries its ``sources`` map (field -> the source that gave the value).

No MCP SDK here: :mod:`knollm.mcp.server` registers these functions with it, and the
advisor (:mod:`knollm.mcp.advisor`) calls them by name through :meth:`KnollmTools.call`.
Bad arguments raise :class:`ToolArgumentError` (a ``KnollmError`` and ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knollm.errors import ToolArgumentError

__all__ = ["KnollmTools", "ToolArgumentError", "TOOL_NAMES", "WRITING_TOOLS", "model_view", "price_units",
           "price_units_text"]

#: every tool, in the order the issue lists them
TOOL_NAMES = ("search_models", "get_provider_models", "get_model", "where_is", "compare_models",
              "recommend_for_use_case", "get_cost_analysis", "validate_lockfile", "create_lockfile_binding",
              "list_libraries", "recommend_library")
#: tools that may write (only with ``confirm=true``); all others only read
WRITING_TOOLS = frozenset({"create_lockfile_binding"})

_VIEW_FIELDS = ("key", "provider", "id", "name", "canonical_id", "kind", "context_window", "max_output",
                "prices", "capabilities", "free", "deprecated", "open_weights", "release_date")


def price_units() -> dict[str, str]:
    """Price field -> what its USD number is per (``1M tokens``, ``request``, ``image``, ``second``,
    ``pixel``, ``1M characters``), from :data:`knollm.vocab.PRICE_TABLE`."""
    from knollm.vocab import PRICE_TABLE

    return {p.key: p.unit for p in PRICE_TABLE}


def price_units_text() -> str:
    """One sentence giving every price field's unit (for the server's instructions)."""
    groups: dict[str, list[str]] = {}
    for field, unit in price_units().items():
        groups.setdefault(unit, []).append(field)
    return "Prices are USD per unit of each field: " + "; ".join(
        f"per {unit}: {', '.join(fields)}" for unit, fields in groups.items()) + "."


def model_view(m: dict[str, Any], data_date: str | None) -> dict[str, Any]:
    """A model as tools return it: the main fields (unknown prices/capabilities left out, never
    0 or False), with the source of each value shown, the unit of each price shown
    (``price_units``) and the catalog's data date."""
    out: dict[str, Any] = {}
    for k in _VIEW_FIELDS:
        v = m.get(k)
        if isinstance(v, dict):
            v = {a: b for a, b in v.items() if b is not None}
        out[k] = v
        if k == "prices":
            units = price_units()
            out["price_units"] = {a: units.get(a, "?") for a in v or {}}
    src = m.get("sources") or {}
    shown = {f"{g}.{a}" for g in ("prices", "capabilities") for a in out[g] or {}} | set(_VIEW_FIELDS)
    out["sources"] = {f: s for f, s in src.items() if f in shown}
    out["data_date"] = data_date
    return out


def _workload(usage: dict[str, Any] | None, *, what: str) -> Any:
    from knollm.query.cost import Workload, parse_count

    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise ToolArgumentError(f"{what} must be an object with input_tokens, output_tokens, "
                                "cached_tokens, requests")
    known = {"input_tokens", "output_tokens", "cached_tokens", "requests"}
    bad = sorted(set(usage) - known)
    if bad:
        raise ToolArgumentError(f"{what}: unknown field(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    try:
        vals = {k: parse_count(v) for k, v in usage.items() if v is not None}
    except ValueError as e:
        raise ToolArgumentError(f"{what}: {e}") from None
    if "input_tokens" not in vals:
        # a missing count is not 0: {} or {"requests": n} would price every model at $0
        raise ToolArgumentError(f"{what}: input_tokens (per request) is required, e.g. "
                                "{\"input_tokens\": 2000, \"output_tokens\": 500, \"requests\": 10000}")
    if not vals["input_tokens"] and not vals.get("output_tokens"):
        raise ToolArgumentError(f"{what}: no tokens: give input_tokens and/or output_tokens above 0")
    try:
        return Workload(vals["input_tokens"], vals.get("output_tokens", 0), vals.get("cached_tokens", 0),
                        vals.get("requests", 1))
    except ValueError as e:
        raise ToolArgumentError(f"{what}: {e}") from None


def _limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ToolArgumentError(f"limit must be >= 0, not {limit}")


def _check_requires_types(req: dict[str, Any]) -> None:
    """``requires`` keys and value types as a lockfile binding takes them
    (:data:`knollm.lock.lockfile.REQUIRE_KEYS`), checked before any model is."""
    from knollm.lock.lockfile import REQUIRE_KEYS

    names = {bool: "true or false", int: "an integer", float: "a number"}
    for k, v in req.items():
        t = REQUIRE_KEYS.get(k)
        if t is None:
            raise ToolArgumentError(f"requires: unknown requirement {k!r}; known: {', '.join(REQUIRE_KEYS)}")
        ts = t if isinstance(t, tuple) else (t,)
        if (isinstance(v, bool) and bool not in ts) or not isinstance(v, ts):
            want = " or ".join(dict.fromkeys(names.get(x, x.__name__) for x in ts))
            raise ToolArgumentError(f"requires.{k} must be {want}, not {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not (0 <= v < float("inf")):
            raise ToolArgumentError(f"requires.{k} must be a finite number >= 0, not {v!r}")


def _unpriced(m: dict[str, Any], w: Any) -> dict[str, Any]:
    """Why ``m`` has no ranked cost for workload ``w``: the suspect prices it would use
    (``suspect``: true; :func:`knollm.query.cost.estimate`), else the needed prices that are unknown."""
    from knollm.query.cost import applicable_prices, estimate
    from knollm.vocab import SUSPECT_CHECKS

    e = estimate(m, w)
    if e["suspect"]:
        marks = m.get("suspect") or {}
        prices = m.get("prices") or {}
        why = "; ".join(f"{f} = {prices.get(f)!r}: {SUSPECT_CHECKS.get(marks.get(f'prices.{f}'), 'suspect')}"
                        for f in e["suspect"])
        return {"suspect": True, "suspect_prices": e["suspect"],
                "reason": f"suspect price(s) needed for this usage, so not ranked ({why})"}
    p = applicable_prices(m.get("prices") or {}, m.get("price_tiers") or None, w.input_tokens)
    need = [("input", w.input_tokens > w.cached_tokens or (w.cached_tokens > 0 and p.get("cache_read") is None)),
            ("output", w.output_tokens > 0)]
    missing = [f for f, used in need if used and p.get(f) is None]
    return {"suspect": False, "suspect_prices": [],
            "reason": f"price(s) needed for this usage unknown: {', '.join(missing) or '?'}"}


class KnollmTools:
    """The tool functions over one catalog (loaded on first use from ``dumps``, default
    ``$KNOLLM_DUMPS``), a lockfile (``lock``, default ``$KNOLLM_LOCK`` / ``./knollm.lock``)
    and a profile."""

    def __init__(self, catalog: Any = None, *, dumps: str | Path | None = None, lock: str | Path | None = None,
                 profile: str | None = None) -> None:
        self._catalog = catalog
        self.dumps = dumps
        self.lock = lock
        self.profile = profile
        self._checked: dict[str, Callable[..., dict[str, Any]]] = {}

    # ------------------------------------------------------------------ plumbing
    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            from knollm.query.api import Catalog

            self._catalog = Catalog.load(dumps=self.dumps)
        return self._catalog

    def _envelope(self, **result: Any) -> dict[str, Any]:
        data = self.catalog.data
        return {"data_date": data.get("data_date"),
                "catalog_sources": [{k: s.get(k) for k in ("name", "kind", "version", "files", "records") if k in s}
                                    for s in data.get("sources") or []],
                **result}

    def _view(self, m: dict[str, Any]) -> dict[str, Any]:
        return model_view(m, self.catalog.data.get("data_date"))

    def _model(self, key: str) -> dict[str, Any]:
        if not isinstance(key, str) or not key.strip():
            raise ToolArgumentError("a model key (provider/id) is required")
        return self.catalog.model(key.strip())

    def functions(self) -> dict[str, Callable[..., dict[str, Any]]]:
        return {n: getattr(self, n) for n in TOOL_NAMES}

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call tool ``name`` with JSON ``arguments``; unknown tools and bad arguments raise
        :class:`ToolArgumentError` (other Knollm errors propagate, e.g. NotFoundError)."""
        fn = self.functions().get(name)
        if fn is None:
            raise ToolArgumentError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
        args = dict(arguments or {})
        sig = inspect.signature(fn)
        bad = sorted(set(args) - set(sig.parameters))
        if bad:
            raise ToolArgumentError(f"{name}: unknown argument(s) {', '.join(bad)}; "
                                    f"takes {', '.join(sig.parameters)}")
        try:
            sig.bind(**args)
        except TypeError as e:
            raise ToolArgumentError(f"{name}: {e}") from None
        from pydantic import ValidationError, validate_call

        checked = self._checked.get(name)
        if checked is None:
            checked = self._checked[name] = validate_call(fn)  # the types the MCP schema states
        try:
            return checked(**args)
        except ValidationError as e:
            raise ToolArgumentError(f"{name}: {e}") from None

    # ------------------------------------------------------------------ catalog tools
    def search_models(self, text: str | None = None, providers: list[str] | None = None,
                      capabilities: list[str] | None = None, modalities: list[str] | None = None,
                      kinds: list[str] | None = None, min_context: int | None = None,
                      max_input_price: float | None = None, max_output_price: float | None = None,
                      free: bool | None = None, open_weights: bool | None = None, include_deprecated: bool = False,
                      sort: str = "name", limit: int = 20) -> dict[str, Any]:
        """Search models with the CLI's filters (`knollm models search`): text words, providers,
        capabilities known true, modalities, kinds, minimum context, maximum input/output price
        (USD per 1M tokens; unknown prices never match), free, open weights. sort: name, price,
        output_price, context, provider. Returns the total count and the first `limit` models."""
        from knollm.query.filters import Filters

        f = Filters(text=text, providers=providers or (), capabilities=capabilities or (),
                    modalities=modalities or (), kinds=kinds or (), min_context=min_context,
                    max_input_price=max_input_price, max_output_price=max_output_price, free=free,
                    open_weights=open_weights, include_deprecated=include_deprecated, sort=sort, limit=None)
        _limit(limit)
        rows = self.catalog.search(f)
        shown = rows[:limit] if limit else rows
        return self._envelope(filters=f.as_dict(), count=len(rows), models=[self._view(m) for m in shown])

    def get_provider_models(self, provider: str, limit: int = 100) -> dict[str, Any]:
        """A provider (by id or alias) with its facts and sources, and its models (`knollm providers show`);
        the first `limit` models (0: all)."""
        _limit(limit)
        p = self.catalog.provider(provider)
        models = self.catalog.provider_models(p["id"])
        return self._envelope(provider=p, count=len(models), models=[self._view(m) for m in models[:limit or None]])

    def get_model(self, key: str) -> dict[str, Any]:
        """Every field of one model (provider/id key; a bare id when unambiguous), with the
        source of each value (`knollm models show`) and the unit of each known price (`price_units`)."""
        m = self._model(key)
        units = price_units()
        return self._envelope(model=m, price_units={f: units.get(f, "?") for f, v in (m.get("prices") or {}).items()
                                                    if v is not None})

    def where_is(self, model: str, include_deprecated: bool = False) -> dict[str, Any]:
        """Every provider serving the canonical model `model` (a canonical id, model id or key),
        cheapest paid offer first, then free offers, then offers with unknown prices."""
        offers = self.catalog.where(model)
        if not include_deprecated:
            offers = [m for m in offers if not m.get("deprecated")]

        def rank(m: dict[str, Any]) -> int:
            p = m.get("prices") or {}
            if p.get("input") is None or p.get("output") is None:
                return 2
            return 1 if (p["input"] + p["output"]) <= 0 else 0

        offers = sorted(offers, key=rank)  # stable: keeps the API's cheapest-first order inside each group
        canon = offers[0]["canonical_id"] if offers else None
        return self._envelope(query=model, canonical_id=canon, count=len(offers),
                              offers=[self._view(m) for m in offers])

    def compare_models(self, models: list[str], workload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Models side by side (`knollm compare`); with `workload` ({input_tokens (required),
        output_tokens, cached_tokens per request, requests}) also the cost of it on each (total
        None when a needed price is unknown; `suspect` lists suspect prices it used)."""
        from knollm.query.cost import estimate

        if not models:
            raise ToolArgumentError("models: give at least one model key")
        w = _workload(workload, what="workload")
        rows = []
        for m in self.catalog.compare(models):
            row = self._view(m)
            if w is not None:
                e = estimate(m, w)
                if e["total"] is None or e["suspect"]:
                    e["reason"] = _unpriced(m, w)["reason"]
                row["cost"] = e
            rows.append(row)
        return self._envelope(workload=None if w is None else dataclasses.asdict(w), models=rows)

    def recommend_for_use_case(self, use_case: str, budget: float | None = None, needs: list[str] | None = None,
                               providers: list[str] | None = None, limit: int = 5) -> dict[str, Any]:
        """Rank models for a use case (`knollm recommend`), each with a score, the cost per 1,000
        requests of the use case's token mix and the reasons. budget: max USD per 1,000 requests;
        needs: capabilities that must be known true; providers: only these."""
        from knollm.query.recommend import USE_CASES, recommend

        if use_case not in USE_CASES:
            raise ToolArgumentError(f"unknown use case {use_case!r}; known: {', '.join(USE_CASES)}")
        if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 0):
            raise ToolArgumentError(f"budget must be a finite USD amount >= 0, not {budget}")
        _limit(limit)
        res = recommend(self.catalog, use_case, budget=budget, needs=list(needs or []),
                        filters={"providers": providers} if providers else None, limit=limit)
        res["results"] = [{**{k: v for k, v in r.items() if k != "model"}, "model": self._view(r["model"])}
                          for r in res["results"]]
        return self._envelope(**res)

    def get_cost_analysis(self, models: list[str], usage: dict[str, Any]) -> dict[str, Any]:
        """What `usage` ({input_tokens (required), output_tokens, cached_tokens per request,
        requests}) costs on each model, cheapest first (`knollm cost`); models whose needed price
        is unknown, or suspect (`suspect`: true), are listed under `unknown` with the reason (never $0)."""
        from knollm.query.cost import cost_rows

        if not models:
            raise ToolArgumentError("models: give at least one model key")
        w = _workload(usage, what="usage")
        if w is None:
            raise ToolArgumentError("usage is required")
        pool = [self._model(k) for k in models]
        rows = cost_rows(pool, w)
        priced = {r["key"] for r in rows}
        return self._envelope(
            usage=dataclasses.asdict(w),
            costs=[{"key": r["key"], "per_request": r["per_request"], "total": r["total"],
                    "cache_price_used": r["cache_price_used"], "model": self._view(r["model"])} for r in rows],
            unknown=[{"key": m["key"], **_unpriced(m, w),
                      "prices": {k: v for k, v in (m.get("prices") or {}).items() if v is not None},
                      "sources": self._view(m)["sources"]} for m in pool if m["key"] not in priced])

    # ------------------------------------------------------------------ lockfile tools
    def _lock_path(self, path: str | None, must_exist: bool = True) -> Path:
        from knollm.lock import find_lock
        from knollm.lock.lockfile import LOCK_NAME

        p = find_lock(path or self.lock)
        if p is None:
            if must_exist:
                raise ToolArgumentError(f"no lockfile: pass path, set KNOLLM_LOCK or create ./{LOCK_NAME}")
            p = Path(path or self.lock or LOCK_NAME)
        return p

    def chooser(self, *, from_keys: bool = False) -> Any:
        """The lock's chooser over this catalog with the user config and the last local scan
        (what ``knollm lock`` commands use); ``from_keys``: only providers with a key set."""
        from knollm.lock import user_config
        from knollm.lock.local import join, load_scan, machine_memory
        from knollm.lock.ops import make_chooser

        local = [m for m in load_scan().get("models") or [] if isinstance(m, dict) and m.get("key")]
        mem = machine_memory()
        memory = max(v for v in (mem["ram"], mem["vram"], 0) if v is not None) or None
        return make_chooser(join(self.catalog, local), user_config(), local=local, memory=memory, from_keys=from_keys)

    def validate_lockfile(self, path: str | None = None) -> dict[str, Any]:
        """Check a lockfile (`knollm lock validate`): missing, deprecated, requirements, drift since
        pinned, keys. exit_code 0 ok, 1 warnings, 2 errors."""
        from knollm.lock import load_lock
        from knollm.lock.ops import exit_code, validate

        p = self._lock_path(path)
        issues = validate(load_lock(p), self.chooser())
        return self._envelope(path=str(p), exit_code=exit_code(issues), issues=issues)

    def _writable_lock(self, path: str | None) -> Path:
        """The lockfile ``create_lockfile_binding`` may edit: the server's own (``--lock``,
        ``$KNOLLM_LOCK``, ``./knollm.lock``), a file named ``knollm.lock``, or a ``*.lock`` file
        under the working directory (links followed) - never some other file a client names."""
        default = self._lock_path(None, must_exist=False)
        if path is None:
            return default
        p = Path(path).expanduser()
        real = p.resolve()
        if real == default.resolve() or (self.lock is not None and real == Path(self.lock).resolve()):
            return p
        if p.name == "knollm.lock":
            return p
        cwd = Path.cwd().resolve()
        if p.suffix == ".lock" and real.suffix == ".lock" and real.is_relative_to(cwd):
            return p
        raise ToolArgumentError(f"path must be a lockfile (*.lock) or the server's --lock file: {path!r} is "
                                f"neither the server's lockfile ({default}), a knollm.lock, nor a *.lock file "
                                f"under the working directory ({cwd})")

    def create_lockfile_binding(self, alias: str, models: list[str], requires: dict[str, Any] | None = None,
                                path: str | None = None, profile: str | None = None,
                                confirm: bool = False, cloud_fallback: bool | None = None,
                                loosen_local_only: bool = False) -> dict[str, Any]:
        """Bind `alias` to `models` (provider/id keys, first = primary, then fallbacks) with
        optional `requires` (min_context, max_output, tools, vision, structured_output, reasoning,
        max_input_price, max_output_price, open_weights, local_only) and pin their facts. An
        existing alias keeps its requires, prefer, strategy, cloud_fallback, cache and note
        unless given; removing its local_only or allowing cloud_fallback on a local alias needs
        loosen_local_only=true and is reported in warnings. `path`: the server's lockfile (default),
        a knollm.lock, or a *.lock under the working directory. Shows the lockfile diff; WRITES
        ONLY WITH confirm=true."""
        return self.write_binding(self._writable_lock(path), alias, models, requires, profile, confirm,
                                  cloud_fallback, loosen_local_only)

    def write_binding(self, p: Path, alias: str, models: list[str], requires: dict[str, Any] | None = None,
                      profile: str | None = None, confirm: bool = False, cloud_fallback: bool | None = None,
                      loosen_local_only: bool = False) -> dict[str, Any]:
        """``create_lockfile_binding`` into ``p`` without its rule on which paths a client may
        name (for Knollm's own files, e.g. the advisor's bootstrap lockfile in the cache)."""
        if not isinstance(alias, str) or not alias.strip() or not alias.replace("_", "").replace("-", "").isalnum():
            raise ToolArgumentError(f"alias must be a word (letters, digits, _ or -), not {alias!r}")
        if not models:
            raise ToolArgumentError("models: give at least one provider/id key")
        if requires is not None:
            _check_requires_types(dict(requires))
        from knollm.lock.edit import LockDoc

        p = Path(p)
        ch = self.chooser()
        chain = [self._model(k) for k in models]
        if not confirm:  # a preview: nothing is written, no lock needed
            return self._bind(LockDoc(p), ch, alias, chain, requires, profile, cloud_fallback, loosen_local_only,
                              confirm)
        with LockDoc.locked(p) as doc:  # read to write under the edit lock
            return self._bind(doc, ch, alias, chain, requires, profile, cloud_fallback, loosen_local_only, confirm)

    def _bind(self, doc: Any, ch: Any, alias: str, chain: list[dict[str, Any]], requires: dict[str, Any] | None,
              profile: str | None, cloud_fallback: bool | None, loosen: bool, confirm: bool) -> dict[str, Any]:
        from knollm.lock import Binding, active_profile
        from knollm.lock.facts import check_requires, pin_facts
        from knollm.lock.lockfile import binding_skip, existing_binding

        lf = doc.lockfile()
        prof = profile or self.profile or (active_profile(lf) if lf is not None else "default")
        old = existing_binding(lf, alias, prof)
        problems: list[dict[str, Any]] = []
        req = dict(old.requires) if old is not None else {}
        if requires is not None:
            req = dict(requires)
        cf = (old.cloud_fallback if old is not None else False) if cloud_fallback is None else bool(cloud_fallback)
        if old is not None and old.requires.get("local_only"):
            if not req.get("local_only"):
                if not loosen:
                    raise ToolArgumentError(
                        f"{alias}: the existing binding has requires.local_only = true (its prompts stay on this "
                        "machine); removing it needs loosen_local_only=true")
                problems.append({"model": None, "level": "warning",
                                 "message": f"local_only removed from {alias!r}: its prompts may now go to cloud "
                                            "providers"})
            if requires is not None:
                dropped = sorted(k for k in old.requires if k not in req and k != "local_only")
                problems += [{"model": None, "level": "warning",
                              "message": f"requires.{k} dropped (was {old.requires[k]!r})"} for k in dropped]
        elif old is not None and requires is not None:
            problems += [{"model": None, "level": "warning", "message": f"requires.{k} dropped (was {v!r})"}
                         for k, v in old.requires.items() if k not in req]
        b = Binding(alias, [m["key"] for m in chain], old.strategy if old else None, req,
                    old.prefer if old else None, cf, prof, old.cache if old else None, old.note if old else None)
        local_role = bool(req.get("local_only")) or b.prefer == "local"
        if cf and local_role and not (old is not None and old.cloud_fallback):
            if not loosen:
                raise ToolArgumentError(f"{alias}: cloud_fallback=true lets a local alias use cloud models; "
                                        "it needs loosen_local_only=true")
            problems.append({"model": None, "level": "warning",
                             "message": f"cloud_fallback = true on local alias {alias!r}: cloud models may answer "
                                        "when the local ones fail"})
        for m in chain:
            local = ch.is_local(m)
            why, _ = binding_skip(b, m, local=local)
            r = dict(req)
            if not local and cf:
                r.pop("local_only", None)  # cloud_fallback lifts local_only for a cloud model (the run-time rule)
            failed, unknown = check_requires(m, r, local=local)
            if why is not None and not failed and not unknown:
                failed = [why]
            problems += [{"model": m["key"], "level": "error", "message": f} for f in failed]
            problems += [{"model": m["key"], "level": "warning", "message": f"cannot confirm: {u}"} for u in unknown]
        if any(x["level"] == "error" for x in problems):
            kept = "" if old is None or requires is not None or not old.requires else (
                f" (the existing binding's requires {old.requires} are kept; pass `requires` to change them"
                + (", with loosen_local_only=true to drop local_only" if old.requires.get("local_only") else "")
                + ")")
            raise ToolArgumentError(f"{alias}: requirements not met: "
                                    + "; ".join(f"{x['model']}: {x['message']}" for x in problems
                                                if x["level"] == "error") + kept)
        doc.set_binding(b, prof)
        for m in chain:
            doc.set_pin(m["key"], pin_facts(m, ch.cat))
        doc.prune_pins()
        diff = doc.save() if confirm else doc.diff()
        return self._envelope(path=str(doc.path), profile=prof, alias=alias, models=[self._view(m) for m in chain],
                              requires=req, warnings=problems, written=bool(confirm), diff=diff)

    # ------------------------------------------------------------------ libraries
    def list_libraries(self, category: str | None = None) -> dict[str, Any]:
        """Python LLM client libraries, best rated first (`knollm libraries list`)."""
        from knollm.libraries.query import list_libraries

        rows = list_libraries(category=category)
        return {"libraries": [_library_view(r) for r in rows], "count": len(rows)}

    def recommend_library(self, needs: list[str] | None = None, use_case: str | None = None) -> dict[str, Any]:
        """Libraries having every needed feature (e.g. async, streaming, tools, structured,
        retries, local), best first, each with how each feature was established."""
        from knollm.libraries.query import recommend

        try:
            recs = recommend(needs or [], use_case)
        except ValueError as e:
            raise ToolArgumentError(str(e)) from None
        return {"needs": list(needs or []), "use_case": use_case,
                "libraries": [{**r.as_dict(), **_library_view(r.row)} for r in recs]}


def _library_view(row: Any) -> dict[str, Any]:
    from knollm.libraries.schema import FEATURES

    lib = row.record.library
    feats = {name: {"value": cell.value, "how": cell.how, "ref": cell.ref}
             for name, cell in ((f, lib.features.cell(f)) for f in FEATURES)}
    return {"slug": lib.slug, "name": lib.name, "pypi": lib.pypi, "category": lib.category, "summary": lib.summary,
            "rating": row.rating.rating, "score": round(row.rating.score, 2), "features": feats,
            "sources": {"features": "each feature's `how` (docs/source/tested/measured) and `ref`",
                        "measurement": row.record.path},
            "data_date": row.record.measured_at}
