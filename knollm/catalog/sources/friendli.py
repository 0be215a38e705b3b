"""Friendli: capabilities as an object ``functionality.{tool_call, structured_output}``."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Spec, object_caps, translator

__all__ = ["Raw", "SPEC", "translate"]


class Functionality(TypedDict, total=False):
    tool_call: bool
    structured_output: bool


class Raw(TypedDict, total=False):
    functionality: Functionality
    # ``pricing.input`` / ``pricing.output`` per million: read by the common translator


SPEC = Spec(capabilities=object_caps("functionality", {"tools": "tool_call", "structured_output": "structured_output"}))
translate = translator(SPEC)
