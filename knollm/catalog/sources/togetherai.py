"""Together AI: the model kind is ``type`` (``chat``, ``embedding``, ``image``, ``rerank``…)."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    type: str  # other dumps use ``type`` for the object type ("model"), so only Together reads it


SPEC = Spec(kind_keys=("type",))
translate = translator(SPEC)
