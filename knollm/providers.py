"""Knollm's provider table (``knollm/data/providers.toml``): ids, aliases, calling facts."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

__all__ = ["ProviderInfo", "ProviderTable", "provider_table"]


@dataclass(frozen=True)
class ProviderInfo:
    id: str
    name: str | None = None
    models_dev: str | None = None
    genai_prices: str | None = None
    base_url: str | None = None
    env: tuple[str, ...] | None = None
    docs: str | None = None
    api_shape: str | None = None
    kind: str | None = None


@dataclass
class ProviderTable:
    providers: dict[str, ProviderInfo]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        """Knollm id for a dump source / registry id / alias (unknown names map to themselves)."""
        n = name.lower()
        return self.aliases.get(n, n)

    def by_models_dev(self) -> dict[str, str]:
        return {p.models_dev: p.id for p in self.providers.values() if p.models_dev}

    def by_genai_prices(self) -> dict[str, str]:
        return {p.genai_prices: p.id for p in self.providers.values() if p.genai_prices}


@cache
def provider_table() -> ProviderTable:
    raw = tomllib.loads(resources.files("knollm.data").joinpath("providers.toml").read_text("utf-8"))
    provs = {}
    for pid, d in raw.get("providers", {}).items():
        env = d.get("env")
        provs[pid] = ProviderInfo(
            id=pid,
            name=d.get("name"),
            models_dev=d.get("models_dev"),
            genai_prices=d.get("genai_prices"),
            base_url=d.get("base_url"),
            env=tuple(env) if env is not None else None,
            docs=d.get("docs"),
            api_shape=d.get("api_shape"),
            kind=d.get("kind"),
        )
    return ProviderTable(provs, {k.lower(): v for k, v in raw.get("aliases", {}).items()})
