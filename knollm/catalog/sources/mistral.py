"""Mistral: capabilities as an object ``capabilities.{function_calling, vision, …}``."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Put, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Capabilities(TypedDict, total=False):
    function_calling: bool
    vision: bool
    fine_tuning: bool
    audio: bool


class Raw(TypedDict, total=False):
    capabilities: Capabilities


def _capabilities(rec: dict, put: Put) -> None:
    c = rec.get("capabilities")
    if isinstance(c, dict):
        put("tools", c.get("function_calling"))
        put("vision", c.get("vision"))
        put("fine_tuning", c.get("fine_tuning"))
        put("audio_input", c.get("audio"))


SPEC = Spec(capabilities=_capabilities)
translate = translator(SPEC)
