"""The one place the client reads the provider registry (calling facts for a provider id):
:func:`knollm.providers.provider_registry` (``knollm/data/providers.toml``).
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

__all__ = ["ProviderFacts", "provider_facts"]

class ProviderFacts(NamedTuple):
    shape: str | None          # "openai" | "anthropic" | "gemini" | "ollama" | ...
    base_url: str | None
    key_env: tuple[str, ...]
    auth: str                  # "bearer" | "x-api-key" | "header" | "query" | "none"
    key_header: str | None
    headers: dict
    rpm: int | None
    tpm: int | None


@cache
def provider_facts(pid: str) -> ProviderFacts | None:
    """Calling facts for provider ``pid`` (any spelling the registry resolves); None if unknown."""
    from knollm.providers import provider_registry

    p = provider_registry().find(pid)
    if p is None:
        return None
    a, lim = p.api, p.limits
    return ProviderFacts(a.shape, a.base_url, tuple(a.key_env), a.auth, a.key_header, dict(a.headers),
                         lim.rpm, lim.tpm)
