"""Knollm: a sourced catalog of LLM models, providers and Python LLM client libraries.

Public API (imported lazily so ``import knollm`` stays cheap)::

    from knollm import Catalog, Workload, build_catalog
    cat = Catalog.load()                       # cached build of dumps + registries
    cat.search("llama", max_input_price=1)     # filter / search
    cat.where("llama-3.3-70b-instruct")        # providers of one model, cheapest first
    cat.costs(Workload(2000, 500, requests=10_000))

    from knollm import Client                  # call any catalog model (see knollm.client)
    Client().chat("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi"}]).content

Errors: every deliberate error is a :class:`KnollmError` (see :mod:`knollm.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knollm.errors import __all__ as _ERROR_NAMES

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "Workload",
    "Filters",
    "build_catalog",
    "cost_per_request",
    "estimate",
    "parse_count",
    "canonical_id",
    "json_schema",
    *_ERROR_NAMES,
    "Client",
    "AsyncClient",
    "ChatResult",
    "EmbeddingResult",
    "__version__",
]

_LAZY = {
    "Catalog": "knollm.query.api",
    "Workload": "knollm.query.cost",
    "Filters": "knollm.query.filters",
    "cost_per_request": "knollm.query.cost",
    "estimate": "knollm.query.cost",
    "parse_count": "knollm.query.cost",
    "build_catalog": "knollm.catalog.build",
    "canonical_id": "knollm.catalog.identity",
    "json_schema": "knollm.catalog.schema",
    "Client": "knollm.client",
    "AsyncClient": "knollm.client",
    "ChatResult": "knollm.client",
    "EmbeddingResult": "knollm.client",
}
_ERRORS = set(_ERROR_NAMES)

if TYPE_CHECKING:  # pragma: no cover
    from knollm.catalog.build import build_catalog
    from knollm.query.api import Catalog
    from knollm.query.cost import Workload, cost_per_request, estimate, parse_count
    from knollm.query.filters import Filters
    from knollm.errors import *  # noqa: F403
    from knollm.catalog.identity import canonical_id
    from knollm.catalog.schema import json_schema
    from knollm.client import AsyncClient, ChatResult, Client, EmbeddingResult


def __getattr__(name: str) -> Any:
    import importlib

    if name in _ERRORS:
        return getattr(importlib.import_module("knollm.errors"), name)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'knollm' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


def __dir__() -> list[str]:
    return sorted(__all__)
