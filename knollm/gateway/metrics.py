"""A small Prometheus text-format registry for ``GET /metrics`` (exposition format 0.0.4).

Counters and histograms keyed by label values, kept in memory per worker process (with
``--workers N`` each worker reports its own series; scrape them through the load
balancer or run one worker per replica). No dependency, no locks needed: the gateway
updates them from one event loop.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from typing import Any, Iterable

__all__ = ["Metrics", "Counter", "Histogram", "CONTENT_TYPE", "Refused"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else repr(float(v))


class Counter:
    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str, amount: float = 1.0) -> None:
        self.values[values] = self.values.get(values, 0.0) + amount  # label values: str

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_labels(self.labels, k)} {_num(v)}" for k, v in sorted(self.values.items())]
        return out


class Histogram:
    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        # per label values: the count in each bucket alone (+Inf last), then [sum, count];
        # cumulated when rendered, so an observation is one bisect and three additions
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, value: float, *values: str) -> None:
        row = self.values.get(values)
        if row is None:
            row = self.values[values] = [0.0] * (len(self.buckets) + 3)
        row[bisect_left(self.buckets, value)] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, row in sorted(self.values.items()):
            count = 0.0
            for i, b in enumerate((*self.buckets, float("inf"))):
                le = 'le="%s"' % _num(b)
                count += row[i]
                out.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {_num(count)}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {_num(row[-2])}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {_num(row[-1])}")
        return out


class _GCTime:
    """The process's time in the garbage collector, by generation (one callback per
    collection, installed once per process)."""

    installed = False
    seconds = [0.0, 0.0, 0.0]
    collections = [0, 0, 0]
    _t0 = 0.0

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            cls.installed = True
            gc.callbacks.append(cls._on_gc)

    @classmethod
    def _on_gc(cls, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            cls._t0 = time.perf_counter()
        else:
            g = info["generation"]
            cls.seconds[g] += time.perf_counter() - cls._t0
            cls.collections[g] += 1

    @classmethod
    def render(cls) -> list[str]:
        out = ["# HELP knollm_gateway_gc_seconds_total Time in the garbage collector, by generation.",
               "# TYPE knollm_gateway_gc_seconds_total counter"]
        out += [f'knollm_gateway_gc_seconds_total{{generation="{g}"}} {_num(v)}' for g, v in enumerate(cls.seconds)]
        out += ["# HELP knollm_gateway_gc_collections_total Garbage collections, by generation.",
                "# TYPE knollm_gateway_gc_collections_total counter"]
        out += [f'knollm_gateway_gc_collections_total{{generation="{g}"}} {n}' for g, n in enumerate(cls.collections)]
        out += ["# HELP knollm_gateway_cpu_seconds_total CPU time of the worker process (user + system).",
                "# TYPE knollm_gateway_cpu_seconds_total counter", f"knollm_gateway_cpu_seconds_total {_num(time.process_time())}"]
        return out


class Refused:
    """Connections the worker's HTTP protocol refused before reading them (past
    ``KNOLLM_GATEWAY_MAX_CONNECTIONS``: :mod:`knollm.gateway.server`), per process."""

    connections = 0

    @classmethod
    def render(cls) -> list[str]:
        return ["# HELP knollm_gateway_refused_connections_total Connections refused with 503 before being read "
                "(the worker held KNOLLM_GATEWAY_MAX_CONNECTIONS).",
                "# TYPE knollm_gateway_refused_connections_total counter",
                f"knollm_gateway_refused_connections_total {cls.connections}"]


#: an ``alias`` label past the first ``alias_cap`` distinct ones of a worker
OTHER_ALIAS = "(other)"


class Metrics:
    """The gateway's series. ``alias`` is the ``model`` the caller asked for: text the
    caller chooses (``g,g``, ``g, g``, ``g,,g`` all route alike), so its distinct values
    are capped (``alias_cap``, default 1,000 or ``$KNOLLM_GATEWAY_METRICS_ALIASES``):
    later ones are counted as ``(other)``, and no caller can grow the series without bound."""

    def __init__(self, alias_cap: int | None = None) -> None:
        import os

        self.alias_cap = int(os.environ.get("KNOLLM_GATEWAY_METRICS_ALIASES", 1000)) if alias_cap is None \
            else alias_cap
        self._aliases: set[str] = set()
        self.requests = Counter("knollm_gateway_requests_total", "Requests by route and HTTP status.",
                                ("route", "status"))
        self.errors = Counter("knollm_gateway_errors_total", "Error responses by route and error type.",
                              ("route", "type"))
        self.latency = Histogram("knollm_gateway_request_duration_seconds",
                                 "Time from request to the last byte, by route.", ("route",))
        self.ttft = Histogram("knollm_gateway_ttft_seconds", "Time to the first streamed token, by provider/model.",
                              ("provider", "model"))
        self.upstream = Histogram("knollm_gateway_upstream_duration_seconds",
                                  "Duration of served calls by provider/model/alias.", ("provider", "model", "alias"))
        self.tokens = Counter("knollm_gateway_tokens_total", "Tokens by provider/model/alias and kind.",
                              ("provider", "model", "alias", "kind"))
        self.cost = Counter("knollm_gateway_cost_usd_total", "Cost in USD by provider/model/alias (priced calls).",
                            ("provider", "model", "alias"))
        self.unpriced = Counter("knollm_gateway_unpriced_calls_total", "Calls whose cost is unknown.",
                                ("provider", "model", "alias"))
        self.attempts = Counter("knollm_gateway_attempts_total", "Upstream attempts by provider/model and outcome.",
                                ("provider", "model", "status"))
        self.interrupted = Counter("knollm_gateway_interrupted_streams_total",
                                   "Streams cut after their output started (upstream broke or the client left), "
                                   "charged what the provider bills.", ("provider", "model", "alias"))
        self.cut = Counter("knollm_gateway_cut_answers_total",
                           "Failed attempts the provider bills: an answer whose body was cut, a tool call cut "
                           "before it was given out (each retried or fallen back; in the ledger as interrupted).",
                           ("provider", "model", "alias"))
        self.in_flight = 0
        # (provider, model, alias) -> the label tuples :meth:`charged` counts under (built once)
        self._series: dict[tuple[str, str, str], tuple[tuple[str, ...], ...]] = {}
        _GCTime.install()

    def charged(self, p: str, mod: str, alias: str, inp: int, out: int, cached: int, cost: float | None,
                interrupted: bool, duration_s: float | None = None) -> None:
        """One charged call or attempt: its tokens by kind, its cost (or one more unpriced
        call), an interrupted stream, and (``duration_s``) the upstream duration. What every
        served request counts, so done in one call, the label tuples built once per
        (provider, model, alias) instead of once per series a request."""
        key = (p, mod, alias)
        keys = self._series.get(key)
        if keys is None:
            keys = (key + ("input",), key + ("output",), key + ("cached",))
            if len(self._series) < 4096:  # (bounded: the aliases are capped, but not the models)
                self._series[key] = keys
        if interrupted:
            self.interrupted.inc(p, mod, alias)
        t = self.tokens.values
        k = keys[0]
        t[k] = t.get(k, 0.0) + inp
        k = keys[1]
        t[k] = t.get(k, 0.0) + out
        k = keys[2]
        t[k] = t.get(k, 0.0) + cached
        if cost is None:
            self.unpriced.inc(p, mod, alias)
        else:
            c = self.cost.values
            c[key] = c.get(key, 0.0) + cost
        if duration_s is not None:
            self.upstream.observe(duration_s, p, mod, alias)

    def alias(self, value: str) -> str:
        """``value`` as an ``alias`` label: itself while fewer than ``alias_cap`` distinct
        values were seen, else ``(other)``."""
        seen = self._aliases
        if value in seen:
            return value
        if len(seen) < self.alias_cap:
            seen.add(value)
            return value
        return OTHER_ALIAS

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.errors, self.latency, self.ttft, self.upstream, self.tokens, self.cost,
                  self.unpriced, self.attempts, self.interrupted, self.cut):
            lines += m.render()
        lines += ["# HELP knollm_gateway_in_flight Requests being served.", "# TYPE knollm_gateway_in_flight gauge",
                  f"knollm_gateway_in_flight {self.in_flight}"]
        lines += Refused.render()
        lines += _GCTime.render()
        return "\n".join(lines) + "\n"
