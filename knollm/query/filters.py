"""One value for "which models, in what order": :class:`Filters`.

The Python API (:meth:`knollm.query.api.Catalog.search`), the CLI's index
(:meth:`knollm.query.index.Index.search`) and the CLI's filter options
(:func:`knollm.cli.filters.model_filters`) all build a :class:`Filters` and ask it for a
predicate over index rows (:meth:`Filters.predicate`). The site's ``filterRows`` in
``knollm.js`` keeps its own loop over its compact arrays and is checked against this one
by ``tests/test_browser_site.py``.

Semantics: ``text``: every word occurs in the key, name or canonical id; alternatives
separated by ``,``, ``|`` or the word ``or`` are OR-ed (``gpt-4o, claude`` finds both); ``capabilities``:
each known True; ``modalities``: each an input or output modality; ``kinds``: one of;
price / context limits exclude unknown and suspect values (``min_context=0`` too); deprecated models are hidden unless
``include_deprecated``; ``free`` / ``open_weights``: ``None`` = either; ``paid``: only
offers with a known price above $0 (free tiers and unpriced models left out).

Standard library only (the CLI query path imports it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from knollm.errors import FilterError

__all__ = ["Filters", "SORT_KEYS", "tokens", "word_groups", "is_paid", "known", "known_context"]

#: Sort orders; ``price`` is input + output (unknown last).
from knollm.vocab import SORT_KEYS  # noqa: E402 - the one vocabulary (stdlib only)

# index row positions (the layout is defined in :mod:`knollm.query.index`, which imports these)
KEY, PROVIDER, ID, NAME, CANON, FAMILY, KIND, CTX, MAXOUT, PRICES, CAPS, IN_MOD, OUT_MOD, FREE, OPEN, DEPR, \
    HAY, VARP, SUSPECT, TIERS = range(20)


def tokens(text: str) -> list[str]:
    """Search words: lower case, ``/`` is a separator."""
    return [t for t in text.lower().replace("/", " ").split() if t]


_OR = None


def word_groups(text: str) -> list[list[str]]:
    """The search text's alternatives (split on ``,``, ``|`` and the word ``or``), each a list
    of words that must all occur. Same as ``wordGroups`` in knollm.js."""
    global _OR
    if _OR is None:
        import re

        _OR = re.compile(r"\s*(?:,|\||(?<![0-9A-Za-z_])or(?![0-9A-Za-z_]))\s*")
    return [g for g in (tokens(part) for part in _OR.split(text.lower())) if g]


def known(r: tuple, path: str, value: Any) -> Any:
    """``value`` (field ``path`` of row ``r``), or None when the model's suspect map marks it:
    a suspect value is as good as unknown for bounds and sorting (prices and context alike)."""
    return None if path in r[SUSPECT] else value


def known_context(r: tuple) -> int | None:
    """The row's context window, None when unknown or suspect (e.g. a 99,999,999 placeholder)."""
    return known(r, "context_window", r[CTX])


def is_paid(r: tuple) -> bool:
    """A paid offer: not flagged free and a known input or output price above $0."""
    p = r[PRICES]
    return not r[FREE] and ((p[0] or 0) > 0 or (p[1] or 0) > 0)


def _tuple(v: Iterable[str] | str | None, lower: bool = False) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    return tuple(x.lower() if lower else x for x in v)


@dataclasses.dataclass(frozen=True)
class Filters:
    """Model filters plus sort order and limit (``limit=None``: all rows)."""

    text: str | None = None
    providers: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_context: int | None = None
    max_input_price: float | None = None
    max_output_price: float | None = None
    free: bool | None = None
    open_weights: bool | None = None
    include_deprecated: bool = False
    paid: bool = False
    sort: str = "name"
    limit: int | None = None

    def __post_init__(self) -> None:
        # accept lists / None / a single string for the sequence fields; store tuples
        set_ = object.__setattr__
        set_(self, "providers", _tuple(self.providers))
        set_(self, "capabilities", _tuple(self.capabilities))
        set_(self, "modalities", _tuple(self.modalities, lower=True))
        set_(self, "kinds", _tuple(self.kinds))
        if self.text is not None and not self.text.strip():
            set_(self, "text", None)
        if self.limit == 0:
            set_(self, "limit", None)
        if self.sort not in SORT_KEYS:
            raise FilterError(f"sort must be one of {', '.join(SORT_KEYS)}, not {self.sort!r}")
        if self.limit is not None and self.limit < 0:
            raise FilterError(f"limit must be >= 0, not {self.limit}")
        for name in ("min_context", "max_input_price", "max_output_price"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise FilterError(f"{name} must be >= 0, not {v}")

    @classmethod
    def of(cls, filters: Filters | Mapping[str, Any] | None = None, /, **kw: Any) -> Filters:
        """A :class:`Filters` from another one, a dict of fields, and/or keywords (keywords win)."""
        if isinstance(filters, Filters):
            return filters.replace(**kw) if kw else filters
        d = {**(filters or {}), **kw}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise FilterError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes: Any) -> Filters:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (lists for the sequences)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def words(self) -> list[str]:
        return tokens(self.text) if self.text else []

    @property
    def groups(self) -> list[list[str]]:
        """The OR-ed alternatives of the search text (:func:`word_groups`)."""
        return word_groups(self.text) if self.text else []

    def check_capabilities(self, known: Sequence[str]) -> None:
        for c in self.capabilities:
            if c not in known:
                raise FilterError(f"unknown capability {c!r}; known: {', '.join(known)}")

    def predicate(self, capabilities: Sequence[str], provider_ids: set[str] | None = None) -> Callable[[tuple], bool]:
        """The filter as a predicate over index rows. ``capabilities``: the index's capability
        order; ``provider_ids``: the resolved provider ids (``None``: every provider)."""
        self.check_capabilities(capabilities)
        cap_pos = [capabilities.index(c) for c in self.capabilities]
        groups, mods, kinds = self.groups, self.modalities, self.kinds
        min_context, max_in, max_out = self.min_context, self.max_input_price, self.max_output_price
        free, open_weights, include_deprecated = self.free, self.open_weights, self.include_deprecated
        paid = self.paid

        def ok(r: tuple) -> bool:
            if provider_ids is not None and r[PROVIDER] not in provider_ids:
                return False
            if not include_deprecated and r[DEPR]:
                return False
            if kinds and r[KIND] not in kinds:
                return False
            if groups:
                hay = r[HAY]
                for g in groups:
                    if all(w in hay for w in g):
                        break
                else:
                    return False
            if cap_pos:
                c = r[CAPS]
                for i in cap_pos:
                    if c[i] is not True:
                        return False
            for x in mods:
                if x not in r[IN_MOD] and x not in r[OUT_MOD]:
                    return False
            if min_context is not None:  # an unknown (or suspect) context never passes, not even 0
                ctx = known_context(r)
                if ctx is None or ctx < min_context:
                    return False
            p = r[PRICES]  # a suspect price is as good as unknown for a price bound
            if max_in is not None:
                pin = known(r, "prices.input", p[0])
                if pin is None or pin > max_in:
                    return False
            if max_out is not None:
                pout = known(r, "prices.output", p[1])
                if pout is None or pout > max_out:
                    return False
            if free is not None and bool(r[FREE]) != free:
                return False
            if open_weights is not None and r[OPEN] is not open_weights:
                return False
            if paid and not is_paid(r):
                return False
            return True

        return ok
