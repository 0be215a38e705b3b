"""Measured, not claimed: capability probes, benchmarks, provider health, multi-model runs.

* :func:`~knollm.probe.probes.probe_target` – what a model does (tools, images, JSON mode,
  structured output, system prompts, usage in streams, context limit);
* :func:`~knollm.probe.bench.benchmark` – TTFT, tokens/s, latency p50/p95, success rate, cost;
* :func:`~knollm.probe.health.figures` – success rate and latency per provider/model;
* :func:`~knollm.probe.ask.ask` – one prompt to several models, side by side (+ a judge).

Every run goes through :mod:`knollm.client` with a budget equal to the cost it announced
first. Results are written to ``work/probes/``; ``knollm catalog`` reads the probe files
as source ``probe``. Modules are imported on use (the client stack is heavy).
"""

from __future__ import annotations

__all__ = ["probe_target", "benchmark", "figures", "health", "ask", "resolve_targets"]

_WHERE = {"probe_target": "knollm.probe.probes", "benchmark": "knollm.probe.bench", "figures": "knollm.probe.health",
          "health": "knollm.probe.health", "ask": "knollm.probe.ask", "resolve_targets": "knollm.probe.common"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
