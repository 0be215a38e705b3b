"""Per-source translation of raw dump records.

Every dump ``models_<source>.json`` is read by the translator registered for ``<source>``
in :data:`TRANSLATORS`; a source not listed uses the shared :mod:`.generic` translator
(the common OpenAI-list fields). A source with odd fields is one module here, named after
the source (``novita.py`` reads ``models_novita.json``), holding:

* ``Raw`` – a ``TypedDict`` declaring the raw shape of its odd fields;
* ``translate(rid, record, warn, sentinels, price_unit=None) -> [(provider or None, model id, fields)]`` –
  ``price_unit`` is the registry's ``dump.price_unit`` multiplier (None: undeclared);
  usually ``generic.translator(Spec(...))``;
* optionally ``LAYER = "litellm"`` for a third-party dump (default ``"dump"``).

The module is found by name: no table to edit. Translation is tolerant: a value that
cannot be read is reported through ``warn`` (the build names file and record) and left
unknown; a record unusable as a whole raises :class:`~knollm.errors.RecordError`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import NamedTuple

from knollm.catalog.sources import generic
from knollm.catalog.sources.generic import Offer, Warn

__all__ = ["Source", "TRANSLATORS", "HELPERS", "source_for", "translate"]


class Source(NamedTuple):
    """How one dump source is read: its translator and the layer its offers land in."""

    translate: Callable[..., list[Offer]]
    layer: str = "dump"  # "dump" (the provider's own list) or "litellm" (third-party)


#: modules of this package that are shared helpers, not sources
HELPERS = frozenset({"generic", "features"})

_GENERIC = Source(generic.translator(generic.GENERIC))


def _discover() -> dict[str, Source]:
    out: dict[str, Source] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in HELPERS:
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        out[info.name] = Source(mod.translate, getattr(mod, "LAYER", "dump"))
    return out


#: dump source (``models_<source>.json``) -> translator; anything else is generic
TRANSLATORS: dict[str, Source] = _discover()


def source_for(source: str, provider: str | None = None) -> Source:
    """The translator of ``models_<source>.json``; a subset file (``featherless_best``) that
    has none of its own is read by its ``provider``'s translator."""
    hit = TRANSLATORS.get(source)
    if hit is None and provider:
        hit = TRANSLATORS.get(provider)
    return hit or _GENERIC


def translate(source: str, rid: str, rec: dict, warn: Warn, *, sentinels: frozenset = frozenset()) -> list[Offer]:
    """Translate one record of ``models_<source>.json`` into its offers."""
    return source_for(source).translate(rid, rec, warn, sentinels)
