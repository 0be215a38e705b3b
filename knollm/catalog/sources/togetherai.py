"""Together AI: the model kind is ``type`` (``chat``, ``embedding``, ``image``, ``rerank``…).

``pricing.input`` / ``pricing.output`` are USD per million *tokens* (common translator),
except:

* ``type = "audio"`` (text-to-speech: Cartesia Sonic, …), which Together bills per million
  *characters* of input text: that price is ``character_input``, never ``input``;
* ``type = "transcribe"`` (speech-to-text: ``openai/whisper-large-v3``), billed per audio
  minute: the ``input`` / ``output`` numbers it lists (0.27 / 0.85) are not per token and their
  unit is not documented, so they are kept but marked ``price_unit_unknown`` (the build marks
  them suspect ``unit_unknown``: never summed as a token price, never "cheapest");
* ``0`` / ``0`` is Together's placeholder for "not billed per token" (image models, MoA
  pipelines, some chat models such as ``lgai/exaone-*``): it is read as *unknown*, never free,
  unless the id or display name says ``free`` (``…-Turbo-Free``).
"""

from __future__ import annotations

import re
from typing import TypedDict

from knollm.catalog.sources.generic import Prices, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    type: str  # other dumps use ``type`` for the object type ("model"), so only Together reads it


#: Together ``type`` values priced per million characters (``pricing.input``), not tokens
PER_CHARACTER_TYPES = frozenset({"audio"})
#: Together ``type`` values whose ``pricing.input`` / ``.output`` have no documented unit
UNKNOWN_UNIT_TYPES = frozenset({"transcribe"})
_FREE = re.compile(r"(:|-|_|\b)free\b", re.IGNORECASE)


def _says_free(rec: dict) -> bool:
    return any(isinstance(rec.get(k), str) and _FREE.search(rec[k]) for k in ("id", "display_name", "name"))


def _prices(rec: dict, p: Prices) -> None:
    """Per-character TTS prices, unknown-unit transcription prices, and 0/0 as unknown."""
    kind = rec.get("type")
    kind = kind.lower() if isinstance(kind, str) else ""
    if p.values.get("input") == 0 and p.values.get("output") == 0 and not _says_free(rec):
        for k in ("input", "output"):
            del p.values[k]
            p.raw.pop(k, None)
        return
    if kind in UNKNOWN_UNIT_TYPES:
        p.unit_unknown = True
    if kind not in PER_CHARACTER_TYPES:
        return
    if "input" in p.values and "character_input" not in p.values:
        p.values["character_input"] = p.values.pop("input")
        raw = p.raw.pop("input", None)
        if raw is not None:
            p.raw["character_input"] = raw


SPEC = Spec(kind_keys=("type",), prices=_prices)
translate = translator(SPEC)
