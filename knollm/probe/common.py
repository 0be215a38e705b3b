"""What probes, benchmarks and ``ask`` share: the model record to call, a cost-capped
client, announced (worst-case) costs, the result files and the environment they record.

A run is announced before it starts: :func:`announce` prices every planned request at
its worst case (the prompt estimate x 1.5 at the highest input price, plus ``max_tokens``
at the highest output price – the same bound the client reserves against a budget), and
the client is given that total as a :class:`~knollm.client.Budget`, so the run can never
spend more than it announced. A model with no known price cannot be capped: it runs only
with ``allow_unpriced``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

from knollm.errors import KnollmError, NotFoundError, ProbeError

__all__ = ["DEFAULT_DIR", "Target", "resolve_targets", "configured_targets", "capped_client", "announce", "environment", "write_result",
           "read_results", "now_iso", "ProbeError", "percentile", "error_info"]

#: where probe and benchmark results are written (``knollm catalog`` reads ``probe-*.json`` from here)
DEFAULT_DIR = Path("work/probes")


@dataclass
class Target:
    """One catalog model to call (``key`` = ``provider/id``) and its record."""

    key: str
    provider: str
    model: str
    record: dict[str, Any]

    @property
    def canonical(self) -> str | None:
        return self.record.get("canonical_id")


def _model_record(catalog: Any, key: str) -> dict[str, Any] | None:
    by_key = getattr(catalog, "_by_key", None)
    if by_key is not None:
        return by_key.get(key)
    pos = catalog.by_key.get(key)  # the compact index
    return catalog.summary(catalog.rows[pos]) if pos is not None else None


def resolve_targets(catalog: Any, refs: list[str], provider: str | None = None) -> list[Target]:
    """Catalog keys for ``refs``: a key (``groq/llama-3.3-70b-versatile``) stays itself; a
    canonical id becomes every provider serving it (only ``provider`` with ``--provider``).
    A ``provider/model`` the catalog does not list is called with no known price."""
    out: list[Target] = []
    for ref in refs:
        found: list[dict[str, Any]] = []
        if catalog is not None and catalog is not False:
            m = _model_record(catalog, ref)
            if m is not None:
                found = [m]
            else:
                try:
                    ms = catalog.where(ref)
                except (NotFoundError, KnollmError):
                    ms = []
                found = [m if isinstance(m, dict) else catalog.summary(m) for m in ms]
        if provider:
            found = [m for m in found if m["provider"] == provider]
        if not found:
            pid, sep, mid = ref.partition("/")
            if provider and not sep:
                pid, mid, sep = provider, ref, "/"
            if not sep or not mid:
                raise ProbeError(f"unknown target {ref!r}: not a catalog key or canonical id"
                                 + (f" served by {provider}" if provider else ""))
            found = [{"key": f"{pid}/{mid}", "provider": pid, "id": mid, "prices": {}, "capabilities": {}}]
        for m in found:
            if m["key"] not in {t.key for t in out}:
                out.append(Target(m["key"], m["provider"], m["id"], dict(m)))
    return out


def configured_targets(catalog: Any, env: Any = None, per_provider: int = 1) -> list[Target]:
    """The cheapest priced, live chat model(s) of every provider whose API key is set in
    ``env`` (the scheduled refresh probes these)."""
    from knollm.providers import provider_registry

    env = os.environ if env is None else env
    reg = provider_registry()
    keyed = {pid for pid in reg.ids() if any(env.get(v) for v in reg.get(pid).api.key_env)}
    models = catalog.models if hasattr(catalog, "_by_key") else [catalog.summary(r) for r in catalog.rows]
    best: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        p = m.get("prices") or {}
        if m["provider"] in keyed and m.get("kind") == "chat" and not m.get("deprecated") \
                and p.get("input") is not None and p.get("output") is not None and not m.get("free"):
            best.setdefault(m["provider"], []).append(m)
    out = []
    for pid in sorted(best):
        for m in sorted(best[pid], key=lambda m: (m["prices"]["input"] * 3 + m["prices"]["output"], m["id"]))[
                :per_provider]:
            out.append(Target(m["key"], m["provider"], m["id"], dict(m)))
    return out


def _open_record(m: dict[str, Any]) -> dict[str, Any]:
    """The record the probe client routes on: prices kept (for cost), every capability and
    limit claim blanked – the client must not refuse a request the probe wants to try."""
    caps = {k: None for k in (m.get("capabilities") or {})}
    return {**m, "capabilities": caps, "input_modalities": [], "context_window": None,
            "max_output": None, "sources": dict(m.get("sources") or {})}


@contextlib.contextmanager
def capped_client(targets: list[Target], cap_usd: float | None, *, env: Any = None, providers: dict | None = None,
                  retries: int = 0, timeout: float = 60.0) -> Iterator[Any]:
    """``with capped_client(…) as client``: a :class:`~knollm.client.Client` that can call
    only ``targets`` and spends at most ``cap_usd`` (a total budget in a private ledger;
    ``None`` = no cap, unpriced runs). The private ledger lives in a temporary directory
    removed when the block ends (what the run spent is in its result file)."""
    from knollm.client import Budget, Client, SQLiteStore

    cat = {"models": [_open_record(t.record) for t in targets],
           "providers": [{"id": p, "name": p} for p in sorted({t.provider for t in targets})]}
    budgets = [Budget(cap_usd, "total")] if cap_usd is not None else []
    with contextlib.ExitStack() as stack:  # (unwound in reverse: the client, the ledger, its directory)
        store: Any = False
        if budgets:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="knollm-probe-"))
            store = SQLiteStore(Path(home) / "ledger.db")
            stack.callback(store.close)
        yield stack.enter_context(Client(catalog=cat, store=store, budgets=budgets, env=env, providers=providers,
                                         resolver=False, retries=retries, timeout=timeout, ttft_timeout=timeout,
                                         stall_timeout=timeout, breaker={"failure_threshold": 10**9}))


def request_worst_case(target: Target, messages: list[dict], params: dict) -> float | None:
    """The most one request can cost (the client's own reservation bound); None if unpriced."""
    from knollm.client.accounting import prompt_tokens, worst_case_cost
    from knollm.client.routing import RESERVE_PROMPT_FACTOR, Offer

    offer = Offer.from_model(_open_record(target.record))
    max_tokens = params.get("max_tokens") or 1024
    return worst_case_cost(offer, int(prompt_tokens(messages, params) * RESERVE_PROMPT_FACTOR) + 1, max_tokens)


def announce(items: list[tuple[Target, list[dict], dict]]) -> float | None:
    """The announced (worst-case) cost of every planned request; None if any is unpriced."""
    total = 0.0
    for t, msgs, params in items:
        c = request_worst_case(t, msgs, params)
        if c is None:
            return None
        total += c
    return total


def check_cap(announced: float | None, max_cost: float | None, allow_unpriced: bool) -> float | None:
    """The budget to give the client, or :class:`ProbeError` when the run must not start."""
    if announced is None:
        if not allow_unpriced:
            raise ProbeError("a target has no known price, so the cost cannot be capped; "
                             "pass --allow-unpriced to run anyway (cost then unknown)")
        return None
    if max_cost is not None and announced > max_cost + 1e-12:
        raise ProbeError(f"announced worst case ${announced:.6f} is above --max-cost ${max_cost:.6f}")
    return announced


def error_info(e: BaseException | None) -> dict[str, Any] | None:
    """A JSON-able summary of a failed call (kind, status, message); never holds a key."""
    if e is None:
        return None
    last = getattr(e, "last", None) or e
    return {"error": type(e).__name__, "kind": getattr(last, "kind", None), "status": getattr(last, "status", None),
            "message": str(last)[:400]}


def now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def environment() -> dict[str, Any]:
    """Where a measurement was taken (no host name, no key values)."""
    from knollm import __version__

    return {"knollm": __version__, "python": sys.version.split()[0], "platform": platform.platform(terse=True),
            "machine": platform.machine(), "ci": bool(os.environ.get("CI")),
            "runner": os.environ.get("RUNNER_OS") or None}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120] or "x"


def write_result(out_dir: str | Path, kind: str, name: str, doc: dict[str, Any]) -> Path:
    """Write one result file ``<kind>-<name>-<UTC time>.json`` atomically; returns its path."""
    import orjson

    from knollm.fsutil import atomic_write

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    stamp = doc.get("date", now_iso()).replace(":", "").replace("-", "")
    path = d / f"{kind}-{_slug(name)}-{stamp}.json"
    n = 2
    while path.exists():
        path = d / f"{kind}-{_slug(name)}-{stamp}-{n}.json"
        n += 1
    atomic_write(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def read_results(out_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    """Every ``<kind>-*.json`` in ``out_dir`` (oldest first); unreadable files are skipped
    with a warning on stderr naming the file."""
    import orjson

    d = Path(out_dir)
    out = []
    for p in sorted(d.glob(f"{kind}-*.json")) if d.is_dir() else []:
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, ValueError) as e:
            print(f"knollm: skipping {p}: {e}", file=sys.stderr)
            continue
        if isinstance(doc, dict) and doc.get("kind") == kind:
            doc["_file"] = p.name
            out.append(doc)
    out.sort(key=lambda x: x.get("date") or "")
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; None when empty."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    if len(v) == 1:
        return float(v[0])
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))
