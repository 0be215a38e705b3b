"""The Python API over a built catalog: load, filter/search, cheapest-N, compare, cost.

The CLI and the site both use this module. Models are plain dicts in the catalog's JSON
shape (see :class:`knollm.catalog.schema.Model`), so the API needs no pydantic at query time.

    >>> from knollm import Catalog, Workload
    >>> cat = Catalog.load()                         # cached build of the default data
    >>> cat.search("llama", max_input_price=1, capabilities=["tools"])[:3]
    >>> cat.where("llama-3.3-70b-instruct")          # every provider, cheapest first
    >>> cat.costs(Workload(2000, 500, requests=10_000), capabilities=["tools"])[:5]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from knollm.errors import CatalogError
from knollm.query import index as _ix
from knollm.query.cost import Workload, cost_rows
from knollm.query.filters import SORT_KEYS, Filters

__all__ = ["Catalog", "Filters", "SORT_KEYS"]

# The query semantics (search predicate, sort orders, provider/model/canonical resolution,
# "did you mean") live in :mod:`knollm.query.index`, shared with the CLI's compact index.


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
        self._index: _ix.Index | None = None

    @property
    def index(self) -> _ix.Index:
        """The query index over this catalog's models (same order as :attr:`models`)."""
        if self._index is None:
            self._index = _ix.Index.from_catalog(self.data)
        return self._index

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
            from knollm.catalog.schema import SCHEMA_VERSION

            if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
                raise CatalogError(f"{p}: not a schema-v{SCHEMA_VERSION} Knollm catalog")
            return cls(data)
        from knollm.query.cache import cached_catalog, default_dumps

        return cls(cached_catalog(Path(dumps) if dumps is not None else default_dumps(), rebuild=rebuild))

    @classmethod
    def build(cls, dumps: str | Path | None = None, **kwargs: Any) -> Catalog:
        """Build afresh (no cache). ``kwargs`` go to :func:`knollm.catalog.build.build_catalog`."""
        from knollm.catalog.build import build_catalog

        return cls(build_catalog(dumps, **kwargs))

    # ------------------------------------------------------------------ lookup
    def provider(self, provider_id: str) -> dict[str, Any]:
        def alias(name: str) -> str:
            from knollm.providers import provider_registry

            return provider_registry().resolve(name)

        return self._by_provider_id[_ix.resolve_provider(provider_id, self._by_provider_id, alias)]

    def provider_by_id(self, provider_id: str) -> dict[str, Any] | None:
        """The provider record with exactly this Knollm id, or ``None`` (no alias resolution)."""
        return self._by_provider_id.get(provider_id)

    def provider_models(self, provider_id: str) -> list[dict[str, Any]]:
        pid = self.provider(provider_id)["id"]
        return [m for m in self.models if m["provider"] == pid]

    def model(self, ref: str) -> dict[str, Any]:
        """A model by ``provider/id`` key, bare model id or canonical id (several offers: the
        first-party one, else the cheapest paid; see :meth:`resolve`)."""
        m = self._by_key.get(ref)
        if m is not None:
            return m
        return self.models[self.index.model_pos(ref)]

    def resolve(self, ref: str) -> tuple[dict[str, Any], str | None]:
        """``(model, note)``: like :meth:`model`; ``note`` says which offer was chosen and why
        when ``ref`` named several (else ``None``)."""
        m = self._by_key.get(ref)
        if m is not None:
            return m, None
        pos, note = self.index.resolve(ref)
        return self.models[pos], note

    @staticmethod
    def suggest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
        return _ix.suggest(name, choices, n)

    def canonical_groups(self) -> dict[str, list[dict[str, Any]]]:
        if self._canon is None:
            g: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for m in self.models:
                g[m["canonical_id"]].append(m)
            self._canon = dict(g)
        return self._canon

    def where(self, model: str) -> list[dict[str, Any]]:
        """Every provider offer of the canonical model ``model`` (a canonical id, a model id or a
        ``provider/id`` key): cheapest paid first, then $0 offers, unknown prices last."""
        return [self.models[i] for i in self.index.where_positions(model)]

    # ------------------------------------------------------------------ search
    def search(self, filters: Filters | str | None = None, /, **kw: Any) -> list[dict[str, Any]]:
        """Models matching a :class:`~knollm.query.filters.Filters` and/or its fields as
        keywords (``search("llama", max_input_price=1)``; a first string is the search text).

        ``text``: all words must occur in the key, name or canonical id. ``capabilities``:
        each must be known True. ``modalities``: each must be an input or output modality.
        Price/context filters exclude models whose value is unknown. Deprecated models are
        hidden unless ``include_deprecated``. ``sort``: one of :data:`SORT_KEYS`.
        Invalid filters raise :class:`knollm.errors.FilterError`.
        """
        return [self.models[i] for i in self.index.search_positions(filters, **kw)]

    def cheapest(self, n: int = 10, workload: Workload | None = None, **filters: Any) -> list[dict[str, Any]]:
        """The ``n`` cheapest models under ``filters`` for ``workload`` (default 1:1 in/out)."""
        return self.costs(workload or Workload(1_000_000, 1_000_000), **filters)[:n]

    def costs(self, workload: Workload, models: Sequence[str] | None = None, filters: Filters | None = None,
              **kw: Any) -> list[dict[str, Any]]:
        """Cost of ``workload`` per model (listed ``models``, or all matching the filters),
        cheapest first; models whose cost is unknown are left out."""
        pool = [self.model(k) for k in models] if models else self.search(filters, **kw)
        return cost_rows(pool, workload)

    def compare(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        """The models ``refs`` (keys, bare ids or canonical ids, resolved like :meth:`model`), in order."""
        return [self.model(r) for r in refs]

    def stats(self) -> dict[str, Any]:
        from knollm.catalog.build import summarize

        return self.data.get("stats") or summarize(self.data)
