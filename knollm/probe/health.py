"""Provider health: success rate and latency per provider / model over a time window.

Three sources of calls, each one observation ``(ts, provider, model, ok, ttft_ms,
latency_ms, tokens_per_s)``:

* benchmark runs (``work/probes/benchmark-*.json``): every run, failures included (a run
  the client's own cost cap refused was never sent: skipped, not counted);
* probe requests (``work/probes/probe-*.json``): every HTTP attempt, retries included
  (``evidence.attempts``): an attempt the provider answered – or refused on purpose (a 4xx
  about the request: that measures the model, not the provider) – is a success; 5xx,
  timeouts, broken streams, auth / rate-limit / payment errors are failures, even when
  the probe's retry then succeeded;
* the client's ledger (``knollm.client`` SQLite store): successful calls only (the ledger
  keeps no failed calls), so it adds latency and volume, not failures.

:func:`figures` is the one lookup for other code: ``figures(provider, model)`` returns a
:class:`Figures` (success rate, TTFT / latency p50, tokens/s, error rate, n) or None. The
client's ``fastest`` strategy can seed a deployment's moving averages from it and its
circuit breaker can start half-open for a deployment whose success rate is low.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knollm.probe.common import DEFAULT_DIR, percentile, read_results


def tokens_per_s_p50(obs: list[dict]) -> tuple[float | None, bool]:
    from knollm.probe.bench import tokens_per_s_p50 as f

    return f(obs)

__all__ = ["Figures", "observations", "health", "provider_health", "figures", "parse_window"]


@dataclass(frozen=True)
class Figures:
    provider: str
    model: str | None
    n: int
    success_rate: float
    error_rate: float
    ttft_p50_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    tokens_per_s_p50: float | None
    sources: tuple[str, ...]
    last: str | None
    #: the tokens/s figure comes from estimated token counts (no run reported its usage)
    tokens_per_s_estimated: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d


def parse_window(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` or seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except (KeyError, ValueError):
        raise ValueError(f"bad window {text!r}: use e.g. 24h, 7d, 2w") from None


def _ts(date: str | None) -> float:
    if not date:
        return 0.0
    return datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def observations(since: float, *, probes_dir: str | Path | None = DEFAULT_DIR, store: Any = None) -> list[dict]:
    """Every call observed since ``since`` (epoch s) in results and the ledger
    (``store=None``: the default ledger if it exists; ``False``: none)."""
    obs: list[dict] = []
    if probes_dir is not None:
        for doc in read_results(probes_dir, "benchmark"):
            for r in doc.get("results", []):
                for run in r.get("run_details", []):
                    if run.get("skipped") or run.get("error") == "BudgetExceeded":
                        continue  # refused by the client's own cost cap: never sent
                    if run.get("ts", 0) >= since:
                        obs.append({"ts": run["ts"], "provider": r["provider"], "model": r["model"], "ok": run["ok"],
                                    "ttft_ms": run.get("ttft_ms"), "latency_ms": run.get("latency_ms") if run["ok"]
                                    else None, "tokens_per_s": run.get("tokens_per_s"),
                                    "usage_estimated": run.get("usage_estimated"), "source": "benchmark"})
        for doc in read_results(probes_dir, "probe"):
            ts = _ts(doc.get("date"))
            if ts < since:
                continue
            for r in doc.get("results", []):  # (a probe file's extra ``control`` request is not counted)
                if r["verdict"] == "skipped":
                    continue
                for ok, resp in _probe_attempts(r):
                    obs.append({"ts": ts, "provider": doc["provider"], "model": doc["model"], "ok": ok,
                                "ttft_ms": resp.get("ttft_ms"), "latency_ms": resp.get("duration_ms"),
                                "tokens_per_s": None, "source": "probe"})
    if store is not False:
        st = store
        if st is None:
            from knollm.client.store import default_db_path

            if not default_db_path().exists():
                st = None
            else:
                from knollm.client import SQLiteStore

                st = SQLiteStore()
        if st is not None:
            for row in st.rows(since):
                if row.get("outcome") == "interrupted":  # cut mid-stream (maybe by the caller): no figure
                    continue
                obs.append({"ts": row["ts"], "provider": row["provider"], "model": row["model"], "ok": True,
                            "ttft_ms": row.get("ttft_ms"), "latency_ms": row.get("duration_ms"),
                            "tokens_per_s": None, "source": "ledger"})
    return obs


_REQUEST_FAULTS = ("bad_request", "context_length")


def _attempt_ok(a: dict) -> bool:
    """An attempt the provider answered, or refused on purpose (a 4xx about the request)."""
    if not a.get("error"):
        return True
    st = a.get("status")
    return a.get("kind") in _REQUEST_FAULTS and isinstance(st, int) and 400 <= st < 500 and st != 402


def _probe_attempts(r: dict) -> list[tuple[bool, dict]]:
    """(ok, figures) for every HTTP attempt of one probe result; the answered attempt
    carries the response's TTFT / duration. Files without an attempt log: one outcome by
    the verdict, plus the failed attempts a retried success implies."""
    ev = r.get("evidence") or {}
    resp = ev.get("response") or {}
    log = ev.get("attempts")
    if isinstance(log, list):
        out: list[tuple[bool, dict]] = []
        answered = len(log) - 1 if resp else -1
        for i, a in enumerate(log):
            out.append((_attempt_ok(a), resp if i == answered else {}))
        return out
    n = resp.get("attempts") if isinstance(resp.get("attempts"), int) else 1
    ok = r["verdict"] != "error"
    return [(False, {})] * (max(n, 1) - 1 if ok and resp else 0) + [(ok, resp)]


def _figures(provider: str, model: str | None, obs: list[dict]) -> Figures:
    ok = [o for o in obs if o["ok"]]
    n = len(obs)
    sr = len(ok) / n if n else 0.0

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    tps, tps_estimated = tokens_per_s_p50(ok)
    return Figures(provider, model, n, round(sr, 4), round(1 - sr, 4),
                   r(percentile([o["ttft_ms"] for o in ok if o["ttft_ms"] is not None], 50)),
                   r(percentile([o["latency_ms"] for o in ok if o["latency_ms"] is not None], 50)),
                   r(percentile([o["latency_ms"] for o in ok if o["latency_ms"] is not None], 95)),
                   r(tps),
                   tuple(sorted({o["source"] for o in obs})),
                   datetime.fromtimestamp(max(o["ts"] for o in obs), UTC).strftime("%Y-%m-%d") if obs else None,
                   tps_estimated and tps is not None)


def health(window: float = 7 * 86400, *, by: str = "model", probes_dir: str | Path | None = DEFAULT_DIR,
           store: Any = None, now: float | None = None) -> list[Figures]:
    """Figures per provider/model (``by="model"``) or per provider, over the last ``window`` s."""
    obs = observations((now or time.time()) - window, probes_dir=probes_dir, store=store)
    groups: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    for o in obs:
        groups[(o["provider"], o["model"] if by == "model" else None)].append(o)
    return [_figures(p, m, g) for (p, m), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


def provider_health(window: float = 7 * 86400, **kw: Any) -> dict[str, Figures]:
    """Figures per provider id."""
    return {f.provider: f for f in health(window, by="provider", **kw)}


def figures(provider: str, model: str | None = None, *, window: float = 7 * 86400,
            probes_dir: str | Path | None = DEFAULT_DIR, store: Any = None) -> Figures | None:
    """The health figures of one provider (or one of its models); None when nothing was observed.

    The hook for :mod:`knollm.client`: ``fastest`` can seed ``Stats.ttft_ms`` /
    ``Stats.tps`` from ``ttft_p50_ms`` / ``tokens_per_s_p50``, and the circuit breaker its
    error rate from ``error_rate`` (weighted by ``n``)."""
    for f in health(window, by="model" if model else "provider", probes_dir=probes_dir, store=store):
        if f.provider == provider and (model is None or f.model == model):
            return f
    return None
