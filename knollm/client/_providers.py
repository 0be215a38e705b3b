"""The one place the client reads the provider registry (calling facts for a provider id).

Prefers :func:`knollm.providers.provider_registry` (the unified registry); until that
exists, derives the same facts from :func:`knollm.providers.provider_table`.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

__all__ = ["ProviderFacts", "provider_facts"]

_ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
#: local servers the registry may not list yet: (shape, default base URL)
_LOCAL = {
    "ollama": ("ollama", "http://localhost:11434"),
    "lmstudio": ("openai", "http://localhost:1234/v1"),
    "llamacpp": ("openai", "http://localhost:8080/v1"),
    "vllm": ("openai", "http://localhost:8000/v1"),
}


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
    try:
        from knollm.providers import provider_registry  # type: ignore[attr-defined]
    except ImportError:
        provider_registry = None
    if provider_registry is not None:
        reg = provider_registry()
        p = reg.find(reg.resolve(pid))
        if p is None:
            return None
        a, lim = p.api, p.limits
        return ProviderFacts(a.shape, a.base_url, tuple(a.key_env or ()), a.auth or "bearer", a.key_header,
                             dict(a.headers or {}), lim.rpm, lim.tpm)
    from knollm.providers import provider_table

    t = provider_table()
    p = t.providers.get(t.resolve(pid))
    if p is None:
        if pid in _LOCAL:
            shape, url = _LOCAL[pid]
            return ProviderFacts(shape, url, (), "none", None, {}, None, None)
        return None
    shape = p.api_shape or ("openai" if p.base_url else None)
    local = p.kind == "local" or p.id in ("ollama", "lmstudio", "llamacpp", "vllm")
    auth, header, headers = "bearer", None, {}
    if shape == "anthropic":
        auth, header, headers = "x-api-key", "x-api-key", dict(_ANTHROPIC_HEADERS)
    elif shape == "gemini":
        auth, header = "header", "x-goog-api-key"
    if local:
        auth = "none"
    if p.id in _LOCAL and not p.base_url:
        shape, url = _LOCAL[p.id]
        return ProviderFacts(shape, url, (), "none", None, {}, None, None)
    return ProviderFacts(shape, p.base_url, tuple(p.env or ()), auth, header, headers, None, None)
