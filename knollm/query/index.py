"""The compact query index: what search / where / cost / providers need, and nothing else.

Loading the full catalog JSON (~17 MB, ~15k models with provenance) takes 100+ ms; the
CLI's query commands instead read this index, a :mod:`marshal` file of plain tuples
written next to the full catalog in the cache (same cache key, see :mod:`knollm.query.cache`).

:class:`knollm.query.api.Catalog` builds an :class:`Index` over its models and delegates
``search`` / ``where`` / sorting / provider and model resolution to it, so the CLI and
the Python API cannot disagree. The filter itself is :class:`knollm.query.filters.Filters`.

Import cost matters here: only the standard library (and :mod:`knollm.errors`,
:mod:`knollm.query.filters`) is imported at module level - no pydantic, no registries, no pandas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from knollm.errors import NotFoundError
from knollm.query.filters import (  # noqa: F401 - the row layout is shared with the filter
    CANON, CAPS, CTX, DEPR, FAMILY, FREE, HAY, ID, IN_MOD, KEY, KIND, MAXOUT, NAME, OPEN, OUT_MOD, PRICES,
    PROVIDER, SORT_KEYS, VARP, Filters, tokens,
)

__all__ = [
    "QUERY_INDEX_VERSION",
    "SORT_KEYS",
    "Filters",
    "Index",
    "build_index",
    "tokens",
    "suggest",
    "resolve_provider",
    "match_model",
    "resolve_canonical",
]

# building the index (what the cache writes) lives in index_build, so that the cache does
# not import this module and ``Index.load`` can import the cache without a cycle
from knollm.query.index_build import QUERY_INDEX_VERSION, build_index  # noqa: E402

# row layout (a tuple per model, in catalog order): KEY, PROVIDER, ID, NAME, CANON, FAMILY,
# KIND, CTX, MAXOUT, PRICES, CAPS, IN_MOD, OUT_MOD, FREE, OPEN, DEPR, HAY, VARP (index_build.model_row)


# ---------------------------------------------------------------------------- shared helpers
def suggest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """"Did you mean" candidates: close spellings first, then names containing ``name``."""
    import difflib

    choices = list(choices)
    low = name.lower()
    sub = [c for c in choices if low and low in c.lower()]
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    out: list[str] = []
    for c in close + sorted(sub, key=len):
        if c not in out:
            out.append(c)
    return out[:n]


def resolve_provider(name: str, ids: Mapping[str, Any], aliases: Mapping[str, str] | Callable[[str], str]) -> str:
    """Knollm provider id for ``name`` (exact, case-insensitive, or an alias); NotFoundError
    with suggestions otherwise. ``aliases``: lower-case alias -> id, or a resolver."""
    if name in ids:
        return name
    low = name.lower()
    if low in ids:
        return low
    alias = aliases(name) if callable(aliases) else aliases.get(low, low)
    if alias in ids:
        return alias
    raise NotFoundError("provider", name, suggest(name, ids))


def match_model(ref: str, by_key: Mapping[str, int], items: Callable[[], Iterable[tuple[int, str, str]]]) -> int:
    """Position of the model ``ref``: a ``provider/id`` key, or a bare id / key in any case
    when unambiguous. ``items()`` yields ``(position, key, id)``."""
    pos = by_key.get(ref)
    if pos is not None:
        return pos
    low = ref.lower()
    hits = [(p, k) for p, k, i in items() if k.lower() == low or i.lower() == low]
    if len(hits) == 1:
        return hits[0][0]
    if len(hits) > 1:
        raise NotFoundError("model", ref, [k for _, k in hits[:8]])
    raise NotFoundError("model", ref, suggest(ref, by_key))


def resolve_canonical(ref: str, groups: Mapping[str, Any], canonical_of: Callable[[str], str]) -> str:
    """The canonical id for ``ref``: a canonical id, a model key/id (``canonical_of``) or any
    spelling :func:`knollm.catalog.identity.canonical_id` maps onto a known canonical id."""
    if ref in groups:
        return ref
    try:
        return canonical_of(ref)
    except NotFoundError:
        pass
    from knollm.catalog.identity import canonical_id  # only on this rare path

    c = canonical_id(ref)
    if c in groups:
        return c
    raise NotFoundError("model", ref, suggest(ref, groups))


def _price_order(r: tuple) -> tuple:
    p = r[PRICES]
    return (p[0] is None or p[1] is None, (p[0] or 0) + (p[1] or 0), r[KEY])


SORTERS: dict[str, Callable[[tuple], Any]] = {
    "price": _price_order,
    "output_price": lambda r: (r[PRICES][1] is None, r[PRICES][1] or 0, r[KEY]),
    "context": lambda r: (-(r[CTX] or 0), r[KEY]),
    "name": lambda r: ((r[NAME] or r[ID]).lower(), r[KEY]),
    "provider": lambda r: (r[PROVIDER], r[ID].lower()),
}


# ---------------------------------------------------------------------------- querying
class Index:
    """Query API over index rows (tuples; see :meth:`summary` for the dict shape)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.rows: list[tuple] = data["rows"]
        self.capabilities: tuple[str, ...] = tuple(data["capabilities"])
        self.price_fields: tuple[str, ...] = tuple(data["price_fields"])
        self.aliases: dict[str, str] = data.get("aliases") or {}
        self.providers: list[dict[str, Any]] = data["providers"]
        self._pids = {p["id"]: p for p in self.providers}
        self._by_key: dict[str, int] | None = None
        self._canon: dict[str, list[int]] | None = None

    @classmethod
    def load(cls, dumps: Any = None, *, rebuild: bool = False, on_build: Callable[[], None] | None = None) -> Index:
        """The cached index for ``dumps`` (default ``$KNOLLM_DUMPS`` / ``work/model_catalog``);
        ``knollm.Client`` loads its default catalog this way."""
        from knollm.query.cache import cached_index, default_dumps

        return cls(cached_index(dumps if dumps is not None else default_dumps(), rebuild=rebuild, on_build=on_build))

    @classmethod
    def from_catalog(cls, cat: dict[str, Any]) -> Index:
        return cls(build_index(cat))

    # -- lookup
    @property
    def by_key(self) -> dict[str, int]:
        if self._by_key is None:
            self._by_key = {r[KEY]: i for i, r in enumerate(self.rows)}
        return self._by_key

    def provider_id(self, name: str) -> str:
        return resolve_provider(name, self._pids, self.aliases)

    def provider(self, name: str) -> dict[str, Any]:
        return self._pids[self.provider_id(name)]

    def model_pos(self, ref: str) -> int:
        return match_model(ref, self.by_key, lambda: ((i, r[KEY], r[ID]) for i, r in enumerate(self.rows)))

    def model(self, ref: str) -> tuple:
        return self.rows[self.model_pos(ref)]

    def canonical_groups(self) -> dict[str, list[int]]:
        if self._canon is None:
            g: dict[str, list[int]] = {}
            for i, r in enumerate(self.rows):
                g.setdefault(r[CANON], []).append(i)
            self._canon = g
        return self._canon

    def where_positions(self, ref: str) -> list[int]:
        groups = self.canonical_groups()
        canon = resolve_canonical(ref, groups, lambda x: self.rows[self.model_pos(x)][CANON])
        return sorted(groups[canon], key=lambda i: _price_order(self.rows[i]))

    def where(self, ref: str) -> list[tuple]:
        """Every provider offer of the canonical model ``ref``, cheapest first (unknown last)."""
        return [self.rows[i] for i in self.where_positions(ref)]

    # -- search
    def search_positions(self, filters: Filters | str | None = None, /, **kw: Any) -> list[int]:
        """Positions of the rows matching ``filters`` (a :class:`Filters`, or the search text)
        and/or its fields as keywords (semantics: :mod:`knollm.query.filters`)."""
        if isinstance(filters, str):
            kw.setdefault("text", filters)
            filters = None
        f = Filters.of(filters, **kw)
        pset = {self.provider_id(p) for p in f.providers} if f.providers else None
        ok = f.predicate(self.capabilities, pset)
        rows = self.rows
        words = f.words
        if words:
            # cheap pre-selection on the first word; ``ok`` still applies every filter
            w0 = words[0]
            out = [i for i, r in enumerate(rows) if w0 in r[HAY] and ok(r)]
        else:
            out = [i for i, r in enumerate(rows) if ok(r)]
        sk = SORTERS[f.sort]
        out.sort(key=lambda i: sk(rows[i]))
        return out[: f.limit] if f.limit else out

    def search(self, filters: Filters | str | None = None, /, **kw: Any) -> list[tuple]:
        return [self.rows[i] for i in self.search_positions(filters, **kw)]

    # -- cost
    def prices(self, r: tuple) -> dict[str, Any]:
        return dict(zip(self.price_fields, r[PRICES]))

    def costs(self, workload: Any, models: Sequence[str] | None = None, filters: Filters | None = None,
              **kw: Any) -> list[dict[str, Any]]:
        """Like ``Catalog.costs`` (same formula); ``model`` is the :meth:`summary` dict."""
        from knollm.query.cost import cost_rows

        pool = [self.model(k) for k in models] if models else self.search(filters, **kw)
        return cost_rows((self.summary(r) for r in pool), workload)

    # -- output
    def summary(self, r: tuple) -> dict[str, Any]:
        """The compact model dict (the CLI's stable JSON shape for model rows)."""
        return {
            "key": r[KEY],
            "provider": r[PROVIDER],
            "id": r[ID],
            "name": r[NAME],
            "canonical_id": r[CANON],
            "family": r[FAMILY],
            "kind": r[KIND],
            "context_window": r[CTX],
            "max_output": r[MAXOUT],
            "prices": dict(zip(self.price_fields, r[PRICES])),
            "capabilities": dict(zip(self.capabilities, r[CAPS])),
            "input_modalities": list(r[IN_MOD]),
            "output_modalities": list(r[OUT_MOD]),
            "free": r[FREE],
            "open_weights": r[OPEN],
            "deprecated": r[DEPR],
            "variable_pricing": r[VARP],
        }
