"""``knollm benchmark``: TTFT, output tokens/s, latency p50/p95, success rate, cost per run.

Every run is one streamed request through a cost-capped client with no retries and no
circuit breaker (a failure is a measurement, not something to hide). Per run: time to
first token, total latency, output tokens after the first / seconds after the first
token, cost. Per target: success rate, TTFT and latency p50/p95, tokens/s p50, mean cost
per successful run. A run the client's own cost cap refused (never sent) is ``skipped``
and left out of every figure. tokens/s p50 is taken over runs whose token count the
provider reported; only when no run has one is it taken over estimated counts, and then
``tokens_per_s_estimated`` is true.

Opening a connection is not the model's latency: a run that opened a new one (TCP connect
with the name lookup, TLS handshake; the client measures it, ``ChatResult.connect_ms``)
is ``cold``, that time is its ``connect_ms``, and its ``ttft_ms`` and ``latency_ms`` are
measured without it: every TTFT and latency figure is a warm connection's, however many
runs opened one (the client's own one-time setup, its HTTP library and TLS context, is
done before the first run). Per target, ``cold_runs`` counts them and ``connect_p50_ms``
is their median setup time. No warm-up request is made: every run is a real, billed call, in the
cost and in the announced (capped) worst case, and no call is made that is not a run.
Results are written with the environment (``work/probes/benchmark-*.json``).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from knollm.probe.common import (DEFAULT_DIR, Target, announce, capped_client, check_cap, environment, error_info,
                                 now_iso, percentile, write_result)

__all__ = ["DEFAULT_PROMPTS", "load_prompt_set", "benchmark", "summarize_runs", "table_rows"]

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Explain in three sentences what a write-ahead log is.",
    "List five prime numbers and say why each is prime.",
    "Write a haiku about latency.",
)


def load_prompt_set(path: str | Path | None) -> list[list[dict]]:
    """Message lists from FILE: ``.json`` (a list of strings or message lists), ``.jsonl``
    (one ``{"prompt": …}`` or ``{"messages": […]}`` per line) or text (one prompt a line).
    Errors name the file and line."""
    if path is None:
        return [[{"role": "user", "content": p}] for p in DEFAULT_PROMPTS]
    from knollm.errors import ProbeError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProbeError(f"{p}: cannot read prompt set: {e}") from None

    def one(x: Any, where: str) -> list[dict]:
        if isinstance(x, str) and x.strip():
            return [{"role": "user", "content": x}]
        if isinstance(x, dict) and isinstance(x.get("prompt"), str):
            return [{"role": "user", "content": x["prompt"]}]
        if isinstance(x, dict) and isinstance(x.get("messages"), list):
            x = x["messages"]
        if isinstance(x, list) and x and all(isinstance(m, dict) and "role" in m for m in x):
            return x
        raise ProbeError(f"{p}: {where}: not a prompt (a string, {{'prompt'}} or {{'messages'}})")

    try:
        if p.suffix == ".json":
            items = json.loads(text)
            if not isinstance(items, list):
                raise ProbeError(f"{p}: expected a JSON list of prompts")
            out = [one(x, f"item {i}") for i, x in enumerate(items)]
        elif p.suffix == ".jsonl":
            out = [one(json.loads(ln), f"line {i}") for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        else:
            out = [one(ln, f"line {i}") for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    except ValueError as e:
        raise ProbeError(f"{p}: not valid JSON: {e}") from None
    if not out:
        raise ProbeError(f"{p}: no prompts")
    return out


def _one_run(client: Any, target: Target, messages: list[dict], max_tokens: int, i: int) -> dict[str, Any]:
    from knollm.errors import BudgetExceeded, ClientError

    t0 = time.time()
    try:
        res = None
        for x in client.stream(target.key, messages, max_tokens=max_tokens):
            if not isinstance(x, str):
                res = x
    except BudgetExceeded as e:  # the client's own cost cap: nothing was sent, nothing measured
        return {"run": i, "ts": t0, "ok": False, "skipped": True, **(error_info(e) or {})}
    except ClientError as e:  # (what the client charged for it: a stream cut after its output, cut answers)
        return {"run": i, "ts": t0, "ok": False, "latency_ms": round((time.time() - t0) * 1000, 2),
                **(error_info(e) or {}), "cost_usd": _charged(getattr(e, "row", None), getattr(e, "attempts", None))}
    gen_ms = res.duration_ms - (res.ttft_ms or 0)
    out_tok = res.usage.output_tokens
    # the first token arrived at ttft: the time after it generated the other out_tok - 1
    tps = round((out_tok - 1) / (gen_ms / 1000), 2) if out_tok > 1 and gen_ms > 0.5 else None
    # the client's ttft_ms and duration_ms include opening a new connection: measured apart
    conn = getattr(res, "connect_ms", None)  # (None: not measured; 0.0: a kept-alive connection)
    ttft = res.ttft_ms if res.ttft_ms is None or not conn else round(max(res.ttft_ms - conn, 0.0), 2)
    latency = res.duration_ms if not conn else round(max(res.duration_ms - conn, 0.0), 2)
    return {"run": i, "ts": t0, "ok": True, "ttft_ms": ttft, "latency_ms": latency, "connect_ms": conn,
            "cold": None if conn is None else conn > 0,
            "output_tokens": out_tok, "input_tokens": res.usage.input_tokens, "usage_estimated": res.usage.estimated,
            "tokens_per_s": tps, "cost_usd": _charged({"cost_usd": res.cost_usd}, res.attempts)}


def _charged(row: dict[str, Any] | None, attempts: list[dict[str, Any]] | None) -> float | None:
    """What a run was charged: its ledger row (the answer, or a stream cut after its output)
    and every failed attempt the provider billed (``charged``); None when one is unpriced."""
    parts = [] if row is None else [row.get("cost_usd")]
    parts += [a["charged"].get("cost_usd") for a in attempts or () if a.get("charged")]
    return None if any(p is None for p in parts) else float(sum(parts))


def tokens_per_s_p50(runs: list[dict[str, Any]]) -> tuple[float | None, bool]:
    """(p50 tokens/s, estimated?): over runs with reported token counts; over estimated
    ones (flagged) only when no run reported its usage."""
    have = [r for r in runs if r.get("tokens_per_s")]
    measured = [r["tokens_per_s"] for r in have if not r.get("usage_estimated")]
    if measured or not have:
        return percentile(measured, 50), False
    return percentile([r["tokens_per_s"] for r in have], 50), True


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate figures of one target's runs (skipped runs – refused by the cost cap,
    never sent – are counted apart and left out of every figure)."""
    skipped = [r for r in runs if r.get("skipped")]
    runs = [r for r in runs if not r.get("skipped")]
    ok = [r for r in runs if r["ok"]]
    tps, tps_est = tokens_per_s_p50(ok)

    def r2(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    timed = [r for r in ok if r.get("connect_ms") is not None]  # (runs whose connection setup was measured)
    cold = [r["connect_ms"] for r in timed if r["cold"]]
    costs = [r["cost_usd"] for r in ok]
    known = [c for c in costs if c is not None]
    spent = [r.get("cost_usd") for r in runs]  # every run sent, failed ones included (what they were charged)
    return {
        "runs": len(runs), "ok": len(ok), "success_rate": round(len(ok) / len(runs), 4) if runs else None,
        "ttft_p50_ms": r2(percentile([r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None], 50)),
        "ttft_p95_ms": r2(percentile([r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None], 95)),
        "latency_p50_ms": r2(percentile([r["latency_ms"] for r in ok], 50)),
        "latency_p95_ms": r2(percentile([r["latency_ms"] for r in ok], 95)),
        "tokens_per_s_p50": r2(tps), "tokens_per_s_estimated": tps_est, "skipped": len(skipped),
        "cold_runs": len(cold) if timed else None, "connect_p50_ms": r2(percentile(cold, 50)),
        "cost_per_run_usd": (sum(known) / len(known)) if known and len(known) == len(costs) else None,
        "cost_usd": None if any(c is None for c in spent) else sum(spent),
    }


def benchmark(targets: list[Target], *, runs: int = 5, concurrency: int = 1, prompts: list[list[dict]] | None = None,
              max_tokens: int = 128, max_cost: float | None = None, allow_unpriced: bool = False, env: Any = None,
              providers: dict | None = None, out_dir: str | Path | None = DEFAULT_DIR, timeout: float = 60.0,
              on_announce: Callable[[float | None], None] | None = None) -> dict[str, Any]:
    """Benchmark ``targets`` (``runs`` each, ``concurrency`` at a time per target, prompts
    cycled). Announces the worst-case cost first and never spends more."""
    prompts = prompts or load_prompt_set(None)
    plan = [(t, [prompts[i % len(prompts)] for i in range(runs)]) for t in targets]
    announced = announce([(t, m, {"max_tokens": max_tokens}) for t, ms in plan for m in ms])
    cap = check_cap(announced, max_cost, allow_unpriced)
    if on_announce:
        on_announce(announced)
    results = []
    with capped_client(targets, cap, env=env, providers=providers, retries=0, timeout=timeout) as client:
        prepare = getattr(client.http, "prepare", None)
        if prepare is not None:  # the client's one-time setup (HTTP library, TLS context): never in a run's time
            prepare()
        for t, msgs in plan:
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                rs = list(pool.map(lambda a: _one_run(client, t, a[1], max_tokens, a[0]), enumerate(msgs)))
            p = t.record.get("prices") or {}
            results.append({"key": t.key, "provider": t.provider, "model": t.model, "canonical_id": t.canonical,
                            "price_input": p.get("input"), "price_output": p.get("output"),
                            **summarize_runs(rs), "run_details": rs})
    # format 2: a run's ttft_ms / latency_ms exclude opening a connection (connect_ms, cold)
    doc = {"kind": "benchmark", "format": 2, "date": now_iso(), "runs_per_target": runs, "concurrency": concurrency,
           "max_tokens": max_tokens, "prompts": len(prompts), "announced_usd": announced, "cap_usd": cap,
           "cost_usd": None if any(r["cost_usd"] is None for r in results) else sum(r["cost_usd"] for r in results),
           "environment": environment(), "results": results}
    if out_dir is not None:
        doc["file"] = str(write_result(out_dir, "benchmark", "-".join(t.key for t in targets)[:80], doc))
    return doc


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One terminal-table row per target."""
    def f(v: Any, fmt: str = "{:.0f}") -> str:
        return "-" if v is None else fmt.format(v)

    return [{"target": r["key"], "runs": r["runs"], "ok %": f(r["success_rate"] * 100 if r["success_rate"] is not None
                                                               else None),
             "ttft p50": f(r["ttft_p50_ms"]), "ttft p95": f(r["ttft_p95_ms"]),
             "lat p50": f(r["latency_p50_ms"]), "lat p95": f(r["latency_p95_ms"]),
             "connect": f(r.get("connect_p50_ms")),
             "tok/s": f(r["tokens_per_s_p50"], "{:.1f}"), "$/run": f(r["cost_per_run_usd"], "{:.6f}")}
            for r in doc["results"]]
