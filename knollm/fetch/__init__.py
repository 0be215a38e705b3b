"""Refresh provider dumps from their model-list APIs (``knollm fetch``).

Library use::

    from knollm.fetch import load_registry, fetch_all
    registry = load_registry()          # the packaged provider registry
    report = fetch_all(registry, out_dir="work/model_catalog", only=["openai"])
    print(report.render_text())

* :mod:`knollm.fetch.registry` – the fetch plan derived from the provider registry (:mod:`knollm.providers`), validated
* :mod:`knollm.fetch.client` – async fetching: concurrency limit, timeouts, retries with
  exponential backoff + jitter honouring ``retry-after-ms`` and ``Retry-After``, pagination, size limit, atomic
  writes
* :mod:`knollm.fetch.redact` – keeps API key values out of every message
* :mod:`knollm.fetch.report` – the fetch report (JSON + text)
"""

from __future__ import annotations

from knollm.fetch.client import fetch_all, fetch_all_async
from knollm.fetch.redact import Redactor, safe_url
from knollm.fetch.registry import FetchPlan, ProviderSpec, RegistryError, Settings, load_registry
from knollm.fetch.report import FetchReport, ProviderResult

__all__ = [
    "FetchReport",
    "ProviderResult",
    "ProviderSpec",
    "Redactor",
    "FetchPlan",
    "RegistryError",
    "Settings",
    "fetch_all",
    "fetch_all_async",
    "load_registry",
    "safe_url",
]
