"""A small catalog for the client tests: real provider ids, prices chosen for exact sums."""

from __future__ import annotations

from typing import Any

import pytest

CANON = "llama-3.3-70b-instruct"


def model(provider: str, mid: str, canonical: str = CANON, *, input: float | None = 1.0,  # noqa: A002
          output: float | None = 2.0, cache_read: float | None = None, cache_write: float | None = None,
          context: int | None = 128_000, max_output: int | None = 8192, tools: bool | None = True,
          vision: bool | None = None, structured: bool | None = None, tiers: list | None = None,
          free: bool = False, variable: bool = False, kind: str = "chat",
          reasoning: bool | None = None) -> dict[str, Any]:
    return {
        "key": f"{provider}/{mid}", "provider": provider, "id": mid, "canonical_id": canonical, "family": "llama",
        "name": mid, "kind": kind, "context_window": context, "max_output": max_output,
        "input_modalities": ["text"] + (["image"] if vision else []), "output_modalities": ["text"],
        "capabilities": {"tools": tools, "vision": vision, "structured_output": structured, "reasoning": reasoning},
        "prices": {"input": input, "output": output, "cache_read": cache_read, "cache_write": cache_write,
                   "request": None, "image": None},
        "price_tiers": tiers or [], "free": free, "variable_pricing": variable, "deprecated": None,
        "open_weights": True, "sources": {"prices.input": "genai-prices", "prices.output": "genai-prices"},
    }


def catalog(*models: dict) -> dict[str, Any]:
    pids = sorted({m["provider"] for m in models})
    return {"schema_version": 1, "models": list(models), "providers": [{"id": p, "name": p} for p in pids]}


def env_for(servers: dict[str, Any], keys: dict[str, str] | None = None) -> dict[str, str]:
    """An environment pointing each provider id at its loopback server."""
    import re

    env = {f"KNOLLM_{re.sub(r'[^A-Za-z0-9]', '_', pid).upper()}_BASE_URL": (s.root if pid == "ollama" else s.base_url)
           for pid, s in servers.items()}
    env.update(keys or {})
    return env


def start_servers(*names: str) -> dict[str, Any]:
    """One loopback :class:`ProviderServer` per provider id."""
    from tests.support.provider_servers import ProviderServer

    return {p: ProviderServer(p).start() for p in names}


def reset_servers(servers: dict[str, Any]) -> dict[str, Any]:
    """Back to answering ``ok`` with the default usage, no script, no recorded requests."""
    for s in servers.values():
        s.script.clear()
        s.default, s.retry_after, s.hang_s, s.latency, s.usage = "ok", "0", 3.0, 0.0, (120, 30, 0)
        s.searches, s.think_s = 0, 1.0
        s.requests.clear()
    return servers


@pytest.fixture(scope="module")
def servers(request: Any) -> Any:
    """Loopback servers for the provider ids in the test module's ``PROVIDERS``."""
    s = start_servers(*request.module.PROVIDERS)
    yield s
    for x in s.values():
        x.stop()


@pytest.fixture
def srv(servers: dict[str, Any]) -> dict[str, Any]:
    return reset_servers(servers)
