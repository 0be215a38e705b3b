"""Mistral: capabilities as an object ``capabilities.{function_calling, vision, …}``."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Spec, object_caps, translator

__all__ = ["Raw", "SPEC", "translate"]


class Capabilities(TypedDict, total=False):
    function_calling: bool
    vision: bool
    fine_tuning: bool
    audio: bool


class Raw(TypedDict, total=False):
    capabilities: Capabilities


SPEC = Spec(capabilities=object_caps("capabilities", {
    "tools": "function_calling", "vision": "vision", "fine_tuning": "fine_tuning", "audio_input": "audio"}))
translate = translator(SPEC)
