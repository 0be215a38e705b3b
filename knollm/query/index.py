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
    PROVIDER, SORT_KEYS, SUSPECT, TIERS, VARP, Filters, is_paid, known_context, tokens,
)
from knollm.vocab import first_party

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
    "edit_distance",
    "offer_rank",
]

#: Version of the marshal index layout written to the cache (not the site's ``index.json``).
QUERY_INDEX_VERSION = 2

# row layout (a tuple per model, in catalog order): KEY, PROVIDER, ID, NAME, CANON, FAMILY,
# KIND, CTX, MAXOUT, PRICES, CAPS, IN_MOD, OUT_MOD, FREE, OPEN, DEPR, HAY, VARP,
# SUSPECT ({field path: failed check}), TIERS (price tiers as tuples of (field, value) pairs)


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


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap two neighbours);
    any value above ``limit`` is returned as ``limit + 1`` (early exit)."""
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        best = i
        ca = a[i - 1]
        for j in range(1, lb + 1):
            cb = b[j - 1]
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            best = min(best, v)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[lb], limit + 1)


def _close(word: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Choices within a small edit distance of ``word`` (case-insensitive), closest first."""
    w = word.lower()
    limit = 1 if len(w) <= 4 else 2 if len(w) <= 10 else 3
    spelling: dict[str, str] = {}
    for c in choices:  # one spelling per lower-case form: the first one given wins
        spelling.setdefault(c.lower(), c)
    scored = []
    for low, c in spelling.items():
        d = edit_distance(w, low, limit)
        if d <= limit:
            scored.append((d, len(c), c))
    return [c for _, _, c in sorted(scored)[:n]]


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
    """Cheapest first; unknown and suspect prices last (a suspect price never ranks)."""
    p = r[PRICES]
    sus = r[SUSPECT]
    unknown = p[0] is None or p[1] is None or "prices.input" in sus or "prices.output" in sus
    return (unknown, 0 if unknown else p[0] + p[1], r[KEY])


def _output_price_order(r: tuple) -> tuple:
    unknown = r[PRICES][1] is None or "prices.output" in r[SUSPECT]
    return (unknown, 0 if unknown else r[PRICES][1], r[KEY])


def _paid_order(r: tuple) -> tuple:
    """Cheapest *paid* offer first, then $0 offers (free tiers), unknown prices last."""
    p = r[PRICES]
    unknown = p[0] is None or p[1] is None
    return (unknown, not is_paid(r), (p[0] or 0) + (p[1] or 0), r[KEY])


def is_first_party(r: tuple) -> bool:
    """The provider that makes the model serves this offer (:data:`knollm.vocab.FIRST_PARTY`)."""
    fp = first_party(r[FAMILY]) or first_party(r[CANON])
    return fp is not None and fp == r[PROVIDER]


def offer_rank(r: tuple) -> tuple:
    """Which offer a bare id / canonical id means: current before deprecated, the first-party
    offer, then the cheapest paid one (then $0 offers, unknown prices last)."""
    return (bool(r[DEPR]), not is_first_party(r)) + _paid_order(r)


SORTERS: dict[str, Callable[[tuple], Any]] = {
    "price": _price_order,
    "output_price": _output_price_order,
    "context": lambda r: (-(known_context(r) or 0), r[KEY]),  # unknown / suspect context last
    "name": lambda r: ((r[NAME] or r[ID]).lower(), r[KEY]),
    "provider": lambda r: (r[PROVIDER], r[ID].lower()),
}


def relevance_key(text: str | None) -> Callable[[tuple], Any]:
    """``relevance`` order: exact id / name / canonical-id match of ``text`` first, then ids that
    start with it, first-party offers next, deprecated last, then by name."""
    t = (text or "").strip().lower()

    from knollm.query.filters import word_groups

    alts = [" ".join(g) for g in word_groups(t)] or [""]

    def key(r: tuple) -> tuple:
        ident, name, canon = r[ID].lower(), (r[NAME] or "").lower(), r[CANON].lower()
        tail = ident.rsplit("/", 1)[-1]
        exact = 2
        for a in alts:
            if a and a in (ident, name, canon, tail, r[KEY].lower()):
                exact = 0
                break
            if a and (ident.startswith(a) or tail.startswith(a) or name.startswith(a) or canon.startswith(a)):
                exact = 1
        return (bool(r[DEPR]), exact, not is_first_party(r), (r[NAME] or r[ID]).lower(), r[KEY])

    return key


# ---------------------------------------------------------------------------- building
def model_row(m: dict[str, Any], capabilities: Sequence[str], price_fields: Sequence[str]) -> tuple:
    pr = m.get("prices") or {}
    cm = m.get("capabilities") or {}
    return (
        m["key"], m["provider"], m["id"], m.get("name"), m["canonical_id"], m.get("family"), m.get("kind"),
        m.get("context_window"), m.get("max_output"),
        tuple(pr.get(f) for f in price_fields),
        tuple(cm.get(c) for c in capabilities),
        tuple(m.get("input_modalities") or ()), tuple(m.get("output_modalities") or ()),
        bool(m.get("free")), m.get("open_weights"), m.get("deprecated"),
        f"{m['key']} {m.get('name') or ''} {m['canonical_id']}".lower(),
        bool(m.get("variable_pricing")),
        dict(m.get("suspect") or {}),
        tuple(tuple(sorted(t.items())) for t in m.get("price_tiers") or ()),
    )


def _shared(rows: list[tuple]) -> list[tuple]:
    """Make equal values the same object, so :mod:`marshal` writes back-references and
    loading allocates ~4x fewer objects (measured: 40 ms -> 10 ms for 15k rows)."""
    memo: dict[Any, Any] = {}

    def one(x: Any) -> Any:
        if isinstance(x, tuple):
            x = tuple(one(y) for y in x)
        elif x is None or isinstance(x, (bool, dict)):
            return x
        return memo.setdefault((type(x), x), x)

    return [tuple(one(v) for v in r) for r in rows]


def build_index(cat: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """The index data (marshal-able) of a catalog dict."""
    from knollm.providers import provider_registry
    from knollm.vocab import CAPABILITIES, PRICE_FIELDS

    return {
        "index_version": QUERY_INDEX_VERSION,
        "key": key,
        "capabilities": tuple(CAPABILITIES),
        "price_fields": tuple(PRICE_FIELDS),
        "aliases": provider_registry().aliases(),
        "providers": list(cat["providers"]),
        "rows": _shared([model_row(m, CAPABILITIES, PRICE_FIELDS) for m in cat["models"]]),
        "sources": list(cat.get("sources") or []),
        "generated_at": cat.get("generated_at"),
        "data_date": cat.get("data_date"),
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
        return self.resolve(ref)[0]

    def resolve(self, ref: str) -> tuple[int, str | None]:
        """``(position, note)`` of the model ``ref``: a ``provider/id`` key, a bare model id or a
        canonical id (any case). Several offers: the first-party one, else the cheapest paid
        (:func:`offer_rank`); ``note`` then says which was chosen and why (``None`` when
        ``ref`` named one offer). Unknown: :class:`NotFoundError` with edit-distance suggestions."""
        pos = self.by_key.get(ref)
        if pos is not None:
            return pos, None
        low = ref.lower()
        rows = self.rows
        hits = [i for i, r in enumerate(rows) if r[KEY].lower() == low or r[ID].lower() == low]
        if not hits:
            groups = self.canonical_groups()
            canon = ref if ref in groups else next((c for c in groups if c.lower() == low), None)
            if canon is None and "/" not in ref:
                from knollm.catalog.identity import canonical_id  # only on this rare path

                c = canonical_id(ref)
                canon = c if c in groups else None
            hits = list(groups[canon]) if canon is not None else []
        if not hits:
            raise NotFoundError("model", ref, self.suggest_models(ref))
        if len(hits) == 1:
            return hits[0], None
        best = min(hits, key=lambda i: offer_rank(rows[i]))
        r = rows[best]
        why = ("the first-party offer" if is_first_party(r) else
               "the cheapest paid offer" if is_paid(r) else "the cheapest known offer")
        note = (f"{ref} -> {r[KEY]} ({why} of {len(hits)}; "
                f"`knollm models where {ref}` lists them all)")
        return best, note

    def suggest_models(self, ref: str, n: int = 6) -> list[str]:
        """"Did you mean": ids, names, canonical ids and keys within a small edit distance of
        ``ref`` (a bare id that now resolves is offered as such), then keys containing it."""
        if "/" in ref:
            pool = [r[KEY] for r in self.rows]
        else:
            pool = [r[ID] for r in self.rows] + [r[CANON] for r in self.rows] + [r[NAME] for r in self.rows if r[NAME]]
        out = _close(ref, pool, n)
        for c in suggest(ref, self.by_key, n):
            if c.lower() not in {x.lower() for x in out}:
                out.append(c)
        return out[:n]

    def suggest_text(self, text: str) -> str | None:
        """A corrected search text (each word replaced by the closest known word) or None."""
        vocab: set[str] = set()
        import re

        split = re.compile(r"[\s/_:.]+|-(?=[a-z])")
        for r in self.rows:
            for part in (r[ID], r[NAME] or "", r[CANON], r[FAMILY] or "", r[PROVIDER]):
                vocab.update(w for w in split.split(part.lower()) if len(w) > 2)
        words = tokens(text)
        fixed = []
        for w in words:
            if w in vocab or any(w in v for v in vocab if len(v) >= len(w)):
                fixed.append(w)
                continue
            close = _close(w, vocab, 1)
            fixed.append(close[0] if close else w)
        return " ".join(fixed) if fixed != words else None

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
        try:
            canon = resolve_canonical(ref, groups, lambda x: self.rows[self.model_pos(x)][CANON])
        except NotFoundError:
            raise NotFoundError("model", ref, self.suggest_models(ref)) from None
        return sorted(groups[canon], key=lambda i: _paid_order(self.rows[i]))

    def where(self, ref: str) -> list[tuple]:
        """Every provider offer of the canonical model ``ref``: cheapest paid first, then $0
        offers (free tiers), unknown prices last."""
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
        groups = f.groups
        if len(groups) == 1:
            # cheap pre-selection on the first word; ``ok`` still applies every filter
            w0 = groups[0][0]
            out = [i for i, r in enumerate(rows) if w0 in r[HAY] and ok(r)]
        else:
            out = [i for i, r in enumerate(rows) if ok(r)]
        sk = relevance_key(f.text) if f.sort == "relevance" else SORTERS[f.sort]
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
            "suspect": dict(r[SUSPECT]),
            "price_tiers": [dict(t) for t in r[TIERS]],
        }
