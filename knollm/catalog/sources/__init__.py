"""Per-source translation of raw dump records.

Every dump ``models_<source>.json`` is read by the translator registered for ``<source>``
in :data:`TRANSLATORS`; a source not listed uses the shared :mod:`.generic` translator
(the common OpenAI-list fields). A source with odd fields is one module here: a
``TypedDict`` ``Raw`` declaring its raw shape, a :class:`~.generic.Spec` or its own
``translate(rid, record, warn, sentinels) -> [(provider or None, model id, fields)]``,
and one line in :data:`TRANSLATORS`. Translation is tolerant: a value that cannot be read
is reported through ``warn`` (the build names file and record) and left unknown; a record
that is unusable as a whole raises :class:`~knollm.errors.RecordError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from knollm.catalog.sources import (
    baseten,
    chutes,
    deepinfra,
    featherless,
    friendli,
    generic,
    huggingface,
    litellm,
    mistral,
    novita,
    togetherai,
)
from knollm.catalog.sources.generic import Offer, Warn

__all__ = ["Source", "TRANSLATORS", "source_for", "translate"]


class Source(NamedTuple):
    """How one dump source is read: its translator and the layer its offers land in."""

    translate: Callable[..., list[Offer]]
    layer: str = "dump"  # "dump" (the provider's own list) or "litellm" (third-party)


_GENERIC = Source(generic.translator(generic.GENERIC))

#: dump source (``models_<source>.json``) -> translator; anything else is generic
TRANSLATORS: dict[str, Source] = {
    "baseten": Source(baseten.translate),
    "chutes": Source(chutes.translate),
    "deepinfra": Source(deepinfra.translate),
    "featherless": Source(featherless.translate),
    "friendli": Source(friendli.translate),
    "huggingface": Source(huggingface.translate),
    "litellm": Source(litellm.translate, litellm.LAYER),
    "mistral": Source(mistral.translate),
    "novita": Source(novita.translate),
    "togetherai": Source(togetherai.translate),
}


def source_for(source: str) -> Source:
    return TRANSLATORS.get(source, _GENERIC)


def translate(source: str, rid: str, rec: dict, warn: Warn, *, sentinels: frozenset = frozenset()) -> list[Offer]:
    """Translate one record of ``models_<source>.json`` into its offers."""
    return source_for(source).translate(rid, rec, warn, sentinels)
