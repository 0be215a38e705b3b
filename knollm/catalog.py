"""The Python API over a built catalog: load, filter/search, cheapest-N, compare, cost.

The CLI and the site both use this module. Models are plain dicts in the catalog's JSON
shape (see :class:`knollm.schema.Model`), so the API needs no pydantic at query time.

    >>> from knollm import Catalog, Workload
    >>> cat = Catalog.load()                         # cached build of the default data
    >>> cat.search("llama", max_input_price=1, capabilities=["tools"])[:3]
    >>> cat.where("llama-3.3-70b-instruct")          # every provider, cheapest first
    >>> cat.costs(Workload(2000, 500, requests=10_000), capabilities=["tools"])[:5]
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .cost import Workload, estimate
from .errors import CatalogError, NotFoundError

__all__ = ["Catalog", "Filters", "SORT_KEYS"]

SORT_KEYS = ("price", "context", "name", "provider", "output_price")


class Filters(dict):
    """Keyword filters accepted by :meth:`Catalog.search` (documented there)."""


def _tokens(text: str) -> list[str]:
    return [t for t in text.lower().replace("/", " ").split() if t]


class Catalog:
    """A loaded catalog. ``data`` is the catalog JSON dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict) or "models" not in data or "providers" not in data:
            raise CatalogError("not a Knollm catalog (no 'models'/'providers')")
        self.data = data
        self.models: list[dict[str, Any]] = data["models"]
        self.providers: list[dict[str, Any]] = data["providers"]
        self._by_key = {m["key"]: m for m in self.models}
        self._by_provider_id: dict[str, dict[str, Any]] = {p["id"]: p for p in self.providers}
        self._canon: dict[str, list[dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path | None = None, *, dumps: str | Path | None = None,
             rebuild: bool = False) -> Catalog:
        """Load a catalog file, or build (cached) from ``dumps`` (default ``$KNOLLM_DUMPS`` /
        ``work/model_catalog``) plus the registries."""
        if path is not None:
            import orjson

            p = Path(path)
            try:
                data = orjson.loads(p.read_bytes())
            except OSError as e:
                raise CatalogError(f"{p}: cannot read catalog: {e.strerror}") from None
            except orjson.JSONDecodeError as e:
                raise CatalogError(f"{p}: not valid JSON: {e}") from None
            from .schema import SCHEMA_VERSION

            if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
                raise CatalogError(f"{p}: not a schema-v{SCHEMA_VERSION} Knollm catalog")
            return cls(data)
        from .cache import cached_catalog, default_dumps

        return cls(cached_catalog(Path(dumps) if dumps is not None else default_dumps(), rebuild=rebuild))

    @classmethod
    def build(cls, dumps: str | Path | None = None, **kwargs: Any) -> Catalog:
        """Build afresh (no cache). ``kwargs`` go to :func:`knollm.build.build_catalog`."""
        from .build import build_catalog

        return cls(build_catalog(dumps, **kwargs))

    # ------------------------------------------------------------------ lookup
    def provider(self, provider_id: str) -> dict[str, Any]:
        p = self._by_provider_id.get(provider_id) or self._by_provider_id.get(provider_id.lower())
        if p is None:
            from .providers import provider_table

            alias = provider_table().resolve(provider_id)
            p = self._by_provider_id.get(alias)
        if p is None:
            raise NotFoundError("provider", provider_id, self.suggest(provider_id, self._by_provider_id))
        return p

    def provider_models(self, provider_id: str) -> list[dict[str, Any]]:
        pid = self.provider(provider_id)["id"]
        return [m for m in self.models if m["provider"] == pid]

    def model(self, ref: str) -> dict[str, Any]:
        """A model by ``provider/id`` key; a bare id works when it is unambiguous."""
        m = self._by_key.get(ref)
        if m is not None:
            return m
        low = ref.lower()
        hits = [m for m in self.models if m["key"].lower() == low or m["id"].lower() == low]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise NotFoundError("model", ref, [h["key"] for h in hits[:8]])
        raise NotFoundError("model", ref, self.suggest(ref, self._by_key))

    @staticmethod
    def suggest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
        choices = list(choices)
        low = name.lower()
        sub = [c for c in choices if low and low in c.lower()]
        close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
        out: list[str] = []
        for c in close + sorted(sub, key=len):
            if c not in out:
                out.append(c)
        return out[:n]

    def canonical_groups(self) -> dict[str, list[dict[str, Any]]]:
        if self._canon is None:
            g: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for m in self.models:
                g[m["canonical_id"]].append(m)
            self._canon = dict(g)
        return self._canon

    def where(self, model: str) -> list[dict[str, Any]]:
        """Every provider offer of the canonical model ``model`` (a canonical id, a model id or a
        ``provider/id`` key), cheapest first (unknown prices last)."""
        groups = self.canonical_groups()
        canon = model if model in groups else None
        if canon is None:
            try:
                canon = self.model(model)["canonical_id"]
            except NotFoundError:
                from .identity import canonical_id

                c = canonical_id(model)
                if c in groups:
                    canon = c
        if canon is None:
            raise NotFoundError("model", model, self.suggest(model, groups))
        return sorted(groups[canon], key=_price_key)

    # ------------------------------------------------------------------ search
    def search(
        self,
        text: str | None = None,
        *,
        providers: Sequence[str] | None = None,
        capabilities: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        min_context: int | None = None,
        max_input_price: float | None = None,
        max_output_price: float | None = None,
        free: bool | None = None,
        open_weights: bool | None = None,
        include_deprecated: bool = False,
        sort: str = "name",
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Models matching every given filter.

        ``text``: all words must occur in the key, name or canonical id. ``capabilities``:
        each must be known True. ``modalities``: each must be an input or output modality.
        Price/context filters exclude models whose value is unknown. Deprecated models are
        hidden unless ``include_deprecated``. ``sort``: one of :data:`SORT_KEYS`.
        """
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
        words = _tokens(text) if text else []
        pset = None
        if providers:
            pset = {self.provider(p)["id"] for p in providers}
        caps = list(capabilities or [])
        from .schema import CAPABILITIES

        for c in caps:
            if c not in CAPABILITIES:
                raise ValueError(f"unknown capability {c!r}; known: {', '.join(CAPABILITIES)}")
        out = []
        for m in self.models:
            if pset is not None and m["provider"] not in pset:
                continue
            if not include_deprecated and m.get("deprecated"):
                continue
            if kinds and m.get("kind") not in kinds:
                continue
            if words:
                hay = f"{m['key']} {m.get('name') or ''} {m['canonical_id']}".lower()
                if not all(w in hay for w in words):
                    continue
            cm = m["capabilities"]
            if any(cm.get(c) is not True for c in caps):
                continue
            if modalities and any(
                x not in m.get("input_modalities", []) and x not in m.get("output_modalities", []) for x in modalities
            ):
                continue
            if min_context is not None and (m.get("context_window") or 0) < min_context:
                continue
            pr = m["prices"]
            if max_input_price is not None and (pr["input"] is None or pr["input"] > max_input_price):
                continue
            if max_output_price is not None and (pr["output"] is None or pr["output"] > max_output_price):
                continue
            if free is not None and bool(m.get("free")) != free:
                continue
            if open_weights is not None and m.get("open_weights") is not open_weights:
                continue
            out.append(m)
        out.sort(key=_SORTERS[sort])
        return out[:limit] if limit else out

    def cheapest(self, n: int = 10, workload: Workload | None = None, **filters: Any) -> list[dict[str, Any]]:
        """The ``n`` cheapest models under ``filters`` for ``workload`` (default 1:1 in/out)."""
        return self.costs(workload or Workload(1_000_000, 1_000_000), **filters)[:n]

    def costs(self, workload: Workload, models: Sequence[str] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Cost of ``workload`` per model (listed ``models``, or all matching ``filters``),
        cheapest first; models whose cost is unknown are left out."""
        pool = [self.model(k) for k in models] if models else self.search(**filters)
        rows = []
        for m in pool:
            e = estimate(m, workload)
            if e["total"] is None:
                continue
            rows.append({**e, "model": m})
        rows.sort(key=lambda r: (r["total"], r["key"]))
        return rows

    def compare(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        """The models ``refs`` (keys or unambiguous ids), in order."""
        return [self.model(r) for r in refs]

    def stats(self) -> dict[str, Any]:
        from .build import summarize

        return self.data.get("stats") or summarize(self.data)


def _price_key(m: dict[str, Any]) -> tuple:
    p = m["prices"]
    unknown = p["input"] is None or p["output"] is None
    return (unknown, (p["input"] or 0) + (p["output"] or 0), m["key"])


_SORTERS = {
    "price": _price_key,
    "output_price": lambda m: (m["prices"]["output"] is None, m["prices"]["output"] or 0, m["key"]),
    "context": lambda m: (-(m.get("context_window") or 0), m["key"]),
    "name": lambda m: ((m.get("name") or m["id"]).lower(), m["key"]),
    "provider": lambda m: (m["provider"], m["id"].lower()),
}
