"""Together AI: the model kind is ``type`` (``chat``, ``embedding``, ``image``, ``rerank``…).

``pricing.input`` / ``pricing.output`` are USD per million *tokens* (common translator),
except for ``type = "audio"`` (text-to-speech: Cartesia Sonic, …), which Together bills per
million *characters* of input text: that price is ``character_input``, never ``input``.
"""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Prices, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    type: str  # other dumps use ``type`` for the object type ("model"), so only Together reads it


#: Together ``type`` values priced per million characters (``pricing.input``), not tokens
PER_CHARACTER_TYPES = frozenset({"audio"})


def _prices(rec: dict, p: Prices) -> None:
    """A text-to-speech model's ``pricing.input`` is USD per 1M input characters."""
    kind = rec.get("type")
    if not (isinstance(kind, str) and kind.lower() in PER_CHARACTER_TYPES):
        return
    if "input" in p.values and "character_input" not in p.values:
        p.values["character_input"] = p.values.pop("input")
        raw = p.raw.pop("input", None)
        if raw is not None:
            p.raw["character_input"] = raw


SPEC = Spec(kind_keys=("type",), prices=_prices)
translate = translator(SPEC)
